"""The packetdrill-subset parser: whole scripts, every prefix of one, and bad input by line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.script.parser import (
    CallEvent,
    EventTime,
    PacketEvent,
    ScriptSyntaxError,
    ShellEvent,
    parse_event,
    parse_options,
    parse_script,
    parse_time,
)
from lab.wire.options import (
    EndOfOptions,
    MaxSegmentSize,
    NoOperation,
    SackBlocks,
    SackPermitted,
    Timestamps,
    WindowScale,
)
from lab.wire.segment import Flags

SCRIPT = """\
// a passive open
--tolerance_usecs=10000
// lab-differs: option-order, window - layout
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <...>
+.1 < . 1:1(0) ack 1 win 257   // trailing comment
0.2~0.3 > P. 1:1001(1000) ack 1 <nop,nop,sack 1:2 5:9>
* > F. 1001:1001(0) ack 1
+0 accept(3, ..., ...) = -1 EAGAIN (Resource temporarily unavailable)
+0 ioctl(4, SIOCINQ, [1000]) = 0
+0 `sysctl -q net.ipv4.tcp_sack=1`
"""


def test_whole_script_parses_into_typed_events() -> None:
    script = parse_script(SCRIPT, "x.pkt")
    assert script.options == {"tolerance_usecs": 10000}
    assert [n.keys for n in script.notes] == [("option-order", "window")]
    kinds = [type(e).__name__ for e in script.events]
    assert kinds == ["CallEvent"] * 5 + ["PacketEvent"] * 5 + ["CallEvent"] * 2 + ["ShellEvent"]
    syn = script.events[5]
    assert isinstance(syn, PacketEvent)
    assert syn.inbound
    assert syn.flags == Flags.SYN
    assert syn.window == 65535
    assert syn.line == 9
    assert syn.options == (
        MaxSegmentSize(1460),
        SackPermitted(),
        Timestamps(100, 0),
        NoOperation(),
        WindowScale(7),
    )
    synack = script.events[6]
    assert isinstance(synack, PacketEvent)
    assert not synack.inbound
    assert synack.options is None
    assert synack.ack == 1
    data = script.events[8]
    assert isinstance(data, PacketEvent)
    assert (data.seq, data.end, data.length) == (1, 1001, 1000)
    assert data.time == EventTime(200_000, 300_000, relative=False)
    assert data.options == (NoOperation(), NoOperation(), SackBlocks(((1, 2), (5, 9))))
    assert script.events[9].time.anytime
    accept = script.events[10]
    assert isinstance(accept, CallEvent)
    assert (accept.name, accept.ret, accept.errno) == ("accept", -1, "EAGAIN")
    ioctl = script.events[11]
    assert isinstance(ioctl, CallEvent)
    assert ioctl.args == (4, "SIOCINQ", (1000,))
    shell = script.events[12]
    assert isinstance(shell, ShellEvent)
    assert shell.command == "sysctl -q net.ipv4.tcp_sack=1"


def test_every_prefix_parses_or_names_its_line() -> None:
    """Cut anywhere (a truncated file): a clean parse or a ScriptSyntaxError, nothing else."""
    bad_lines: list[tuple[int, int]] = []
    for cut in range(len(SCRIPT) + 1):
        try:
            parse_script(SCRIPT[:cut])
        except ScriptSyntaxError as exc:
            bad_lines.append((exc.line, SCRIPT[:cut].count("\n") + 1))
    assert bad_lines  # cutting inside a line does break it
    assert all(1 <= line <= last for line, last in bad_lines)


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("0123456789+.~*<>:()[],SFRP. -=abcdefmnoprstwkTSvl`/\n")),
        max_size=80,
    )
)
def test_garbage_gives_only_syntax_errors(text: str) -> None:
    line = 1
    try:
        parse_script(text)
    except ScriptSyntaxError as exc:
        line = exc.line
    assert line >= 1


@pytest.mark.parametrize(
    ("text", "us", "relative"),
    [("0", 0, False), ("1.5", 1_500_000, False), ("+.1", 100_000, True), (".25", 250_000, False)],
)
def test_times(text: str, us: int, relative: bool) -> None:
    t = parse_time(text, 1)
    assert (t.start, t.end, t.relative) == (us, us, relative)


def test_time_range_and_its_errors() -> None:
    assert parse_time("+0~+.2", 1) == EventTime(0, 200_000, relative=True)
    with pytest.raises(ScriptSyntaxError, match="mixes"):
        parse_time("+0~0.2", 1)
    with pytest.raises(ScriptSyntaxError, match="ends before"):
        parse_time("0.3~0.2", 1)
    with pytest.raises(ScriptSyntaxError, match="finer than a microsecond"):
        parse_time("0.0000001", 1)


def test_no_flags_and_any_options() -> None:
    ev = parse_event("+0 > - 1:1(0) <...>", 1)
    assert isinstance(ev, PacketEvent)
    assert ev.flags == Flags(0)
    assert ev.options is None
    assert parse_options("", 1) == ()
    assert parse_options("mss 1000,sackOK,eol,eol", 1)[2:] == (EndOfOptions(), EndOfOptions())


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0", "unsupported call 'getsockopt'"),
        ("+0 < X 0:0(0) win 1", "unknown TCP flag 'X'"),
        ("+0 < S 0:5(0) win 1", "end - seq is not the length"),
        ("+0 < S 0:0(0) win 1 <md5 abc>", "unsupported TCP option 'md5 abc'"),
        ("+0 < S 0:0(0) win 1 <...>", "only makes sense on an outbound"),
        ("+0 < S 0:0(0) urg 5", "unsupported segment field 'urg'"),
        ("+0 < S 0:0(0) win 70000", "larger than 65535"),
        ("+0 close(3) = -1", "needs an errno"),
        ("+0 close(3) = 0 EAGAIN", "only -1 takes one"),
        ("+0 close(3) = -1 ENOSUCH", "unsupported errno ENOSUCH"),
        ("+0 setsockopt(3, SOL_SOCKET, SO_LINGER, [1], 4) = 0", "unsupported option"),
        ("+0 socket(..., SOCK_DGRAM, IPPROTO_UDP) = 3", "only socket(..., SOCK_STREAM"),
        ("+0 fcntl(3, F_SETFL, O_APPEND) = 0", "only O_RDWR|O_NONBLOCK"),
        ("+0 ioctl(3, SIOCOUTQ, [0]) = 0", "only SIOCINQ and FIONREAD"),
        ("< S 0:0(0) win 1", "must start with a time"),
        ("+0", "a time with no event"),
        ("+0 `ls", "enclosed in backticks"),
        ("+0 < S 0:0(0) win 1 <sack 1:2 3:4 5:6 7:8 9:10>", "more than 4 SACK blocks"),
        ("+0...0.1 < S 0:0(0) win 1", "START...END is for a blocking call"),
        ("+0 < S 0:0(0) win 1 <mss 1000,sackOK>", "6 bytes, not a multiple of 4"),
        ("+0 > S. 0:0(0) ack 1 <mss 1000,wscale 7>", "7 bytes, not a multiple of 4: pad them"),
        ("+0.2...0.1 accept(3, ..., ...) = 4", "the call ends (0.1) before it starts"),
    ],
)
def test_bad_lines_name_the_line(line: str, message: str) -> None:
    text = "// header\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n" + line + "\n"
    with pytest.raises(ScriptSyntaxError) as info:
        parse_script(text, "bad.pkt")
    assert info.value.line == 3
    assert message in info.value.message
    assert str(info.value).startswith("bad.pkt:3: ")


def test_notes_and_options_are_checked() -> None:
    with pytest.raises(ScriptSyntaxError, match="unknown lab-differs key 'colour'") as info:
        parse_script("0 close(3) = 0\n// lab-differs: colour - no\n")
    assert info.value.line == 2
    with pytest.raises(ScriptSyntaxError, match="before the first event"):
        parse_script("0 close(3) = 0\n--tolerance_usecs=5\n")
    with pytest.raises(ScriptSyntaxError, match="unknown option --speed"):
        parse_script("--speed=5\n")
    with pytest.raises(ScriptSyntaxError, match="/\\* \\*/ comments"):
        parse_script("/* block */ 0 close(3) = 0\n")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("+.1 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n", 1, "first event must be at time 0"),
        ("0 close(3) = 0\n* < . 1:1(0) ack 1 win 1\n", 2, "time * can only be used with out"),
        ("0 close(3) = 0\n+0~+.1 close(3) = 0\n", 2, "range (~) can only be used with out"),
        ("0 close(3) = 0\n0.2 close(3) = 0\n0.1 close(3) = 0\n", 3, "time goes backwards"),
    ],
)
def test_time_rules_are_packetdrills(text: str, line: int, message: str) -> None:
    with pytest.raises(ScriptSyntaxError) as info:
        parse_script(text, "t.pkt")
    assert info.value.line == line
    assert message in info.value.message
    # A relative event after an absolute one may go anywhere; ranges on `>` lines are fine.
    parse_script("0 close(3) = 0\n0.2 close(3) = 0\n+0 close(3) = 0\n0.1~0.3 > . 1:1(0)\n")


def test_blocking_call_end_time() -> None:
    ev = parse_event("+0...0.1 accept(3, ..., ...) = 4", 7)
    assert isinstance(ev, CallEvent)
    assert (ev.time, ev.end) == (EventTime(0, 0, relative=True), 100_000)
    ev = parse_event("0.2...0.35 read(4, ..., 10) = 10", 7)
    assert isinstance(ev, CallEvent)
    assert (ev.time.start, ev.end) == (200_000, 350_000)
