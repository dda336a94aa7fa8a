"""Bad input to `lab script`: one line on stderr, `FILE:LINE: message`, and exit status 2.

Each case is a script that reads well up to its last line; the run must not start (no verdict
on stdout) and the message must name that line, whatever kind of mistake it holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli.main import main

HEADER = """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 65535 <mss 1000>
+0 > S. 0:0(0) ack 1 <...>
+.1 < . 1:1(0) ack 1 win 1000
+0 accept(3, ..., ...) = 4
"""
LINE = HEADER.count("\n") + 1

CASES = [
    # syntax
    ("+0 getsockopt(4, SOL_SOCKET, SO_ERROR, [0], [4]) = 0", "unsupported call 'getsockopt'"),
    ("+0 < X 1:1(0) ack 1 win 1", "unknown TCP flag 'X'"),
    ("< . 1:1(0) ack 1 win 1", "a line must start with a time"),
    ("+0 < . 1:1 ack 1 win 1", "expected seq:end(len)"),
    ("+0 close(4) = 0x", "cannot read the result"),
    ("+0 fcntl(4, F_GETFL) = 0x802 (flags O_RDWR|O_NONBLOCK)", "must be words only"),
    # negative numbers
    ("+0 < P. -1:0(1) ack 1 win 1", "seq must be a non-negative integer, not '-1'"),
    ("+0 < . 1:1(0) ack -1 win 1", "ack must be a non-negative integer, not '-1'"),
    ("+0 < . 1:1(0) ack 1 win -5", "win must be a non-negative integer, not '-5'"),
    ("+0 < . 1:1(0) ack 1 win 1 <mss -1>", "mss must be a non-negative integer"),
    ("+0 < . 1:1(0) ack 1 win 1 <nop,nop,TS val -1 ecr 0>", "TS val must be a non-negative"),
    ("+0 < . 1:1(0) ack 1 win 1 <nop,nop,sack 1:>", "SACK edge must be a non-negative"),
    ("+0 write(4, ..., -1) = -1 EINVAL (x)", "write: the size must be between 0 and"),
    ("+0 read(4, ..., -1) = 0", "read: the size must be between 0 and"),
    # huge numbers
    ("+0 < P. 99999999999:99999999999(0) ack 1 win 1", "seq 99999999999 is larger than"),
    ("+0 < . 1:1(0) ack 4294967296 win 1", "ack 4294967296 is larger than 4294967295"),
    ("+0 < . 1:1(0) ack 1 win 65536", "win 65536 is larger than 65535"),
    ("+0 < . 1:1(0) ack 1 win 1 <mss 70000>", "mss 70000 is larger than 65535"),
    ("+0 < . 1:1(0) ack 1 win 1 <nop,wscale 300>", "wscale 300 is larger than 255"),
    ("+0 < . 1:1(0) ack 1 win 1 <nop,nop,TS val 4294967296 ecr 0>", "TS val 4294967296 is"),
    ("+0 < P. 1:70001(70000) ack 1 win 1", "does not fit in one IPv4 packet"),
    ("+0 < . 1:1(0) ack 1 win 1 <" + ",".join(["mss 1"] * 11) + ">", "more than the 40"),
    ("+0 write(4, ..., 99999999999999) = 10", "does not fit in a C int"),
    ("+0 write(4, ..., 1073741824) = 10", "write: the size must be between 0 and 16777216"),
    ("+0 listen(3, 99999999999999999999) = 0", "does not fit in a C int"),
    ("+0 setsockopt(4, SOL_SOCKET, SO_RCVBUF, [99999999999], 4) = 0", "does not fit in a C"),
    ("+0 close(99999999999999999999) = -1 EBADF (x)", "does not fit in a C int"),
    ("+0 close(4) = 99999999999999999999999", "does not fit in 64 bits"),
    ("+99999999999 close(4) = 0", "is more than a day"),
    ("+0.0000001 close(4) = 0", "finer than a microsecond"),
]


@pytest.mark.parametrize(("line", "message"), CASES, ids=[c[1][:40] for c in CASES])
def test_bad_value_is_one_line_naming_the_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    script = tmp_path / "bad.pkt"
    script.write_text(HEADER + line + "\n")
    assert main(["script", "--against", "both", str(script)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"{script}:{LINE}: "), captured.err
    assert message in captured.err


def test_unreadable_and_empty_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["script", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"{tmp_path}: cannot read the script: Is a directory\n"
    first = tmp_path / "late.pkt"
    first.write_text("// starts late\n+1 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n")
    assert main(["script", str(first)]) == 2
    assert capsys.readouterr().err == f"{first}:2: the first event must be at time 0\n"
