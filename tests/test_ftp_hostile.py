"""The client against a hostile FTP server: each attack gets a clear error, a `.part` file where
data was moving, and no hang.

The server is `hostile_ftp.HostileFtpServer`, a scripted kernel-socket server in the server
namespace; the client runs over the hand-built stack, and for the data-connection attacks over
kernel sockets too (the address check and the .part logic must not depend on the stack). The
namespace gets a third address (198.18.0.3) so the server can open a data connection from
somewhere else, and so a 227 reply can point at a real, listening host that is not the control
peer.

Every test has a pytest-timeout mark: a hang is a failure, not a stuck run. Each measures how
long the client took to give up, so "no hang" is asserted, not assumed.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from ftp_stacks import LiveStack, live_stack
from hostile_ftp import (
    CloseControl,
    DataClose,
    DataConnect,
    DataSend,
    HostileFtpServer,
    On,
    PassiveListen,
    Send,
    Silence,
    add_address,
    reply,
)
from privileges import skip_unless_root

from lab.ftp import protocol as p
from lab.ftp.client import (
    RESYNC_TIMEOUT,
    Client,
    DataConnectionError,
    FtpConnectionClosed,
    FtpProtocolViolation,
    FtpTimeout,
    TransferIncomplete,
    TransferResult,
    part_path,
)

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(30)]

THIRD_IP = "198.18.0.3"
ELSEWHERE_IP = "198.18.0.99"  # on the subnet, but no one has it
PAYLOAD = bytes(range(256)) * 1024  # 256 KiB
OVERLONG = r"reply line (longer than|of) \d+ bytes"
TRANSPORTS = ("lab", "kernel")
T = TypeVar("T")
_ports = itertools.count(2200)
KERNEL_CLIENT_IP = "198.18.0.4"  # the kernel beside the lab stack (198.18.0.3 is THIRD_IP)


@pytest.fixture(scope="module")
def stack() -> Iterator[LiveStack]:
    skip_unless_root()
    with live_stack(KERNEL_CLIENT_IP) as live:
        names = live.info.names
        add_address(names.server_ns, names.server_if, THIRD_IP, live.info.prefixlen)
        yield live


def hostile(stack: LiveStack, *script: On, banner: bytes | None = None) -> HostileFtpServer:
    return HostileFtpServer(
        stack.topo.names.server_ns,
        stack.info.server_ip,
        next(_ports),
        script,
        files={"file.bin": PAYLOAD},
        banner=b"220 hostile test server ready\r\n" if banner is None else banner,
    )


def client(stack: LiveStack, transport: str = "lab", **kwargs: object) -> Client:
    options: dict[str, object] = {"timeout": 2.0, "data_timeout": 2.0}
    options.update(kwargs)
    if transport == "kernel":
        return stack.kernel_client(**options)
    return stack.lab_client(**options)


def over(stack: LiveStack, transport: str, fn: Callable[[], T]) -> T:
    """Run `fn` (both transports make their sockets where they belong: no thread needed)."""
    return fn()


def give_up_bound(c: Client) -> float:
    """The longest a failing call may take: a reply wait, a data wait, then the bounded ABOR/NOOP
    resynchronisation, plus slack for a loaded machine. Beyond this it hangs."""
    return c.timeout + c.data_timeout + RESYNC_TIMEOUT + 1.5


def staged(server: HostileFtpServer) -> None:
    """The server played its whole script, without an error of its own."""
    assert not server.unused_rules, f"rules never reached: {server.unused_rules}"
    assert not server.errors, server.errors


def login(c: Client, server: HostileFtpServer) -> None:
    c.connect(server.address, server.port)
    c.login()


# -- replies that break the rules ------------------------------------------------------------------


def test_an_overlong_greeting_line_is_a_protocol_violation(stack: LiveStack) -> None:
    banner = b"220 " + b"x" * (p.MAX_LINE_LENGTH + 100) + b"\r\n"
    with hostile(stack, banner=banner) as server, client(stack) as c:
        started = time.monotonic()
        with pytest.raises(FtpProtocolViolation, match=OVERLONG):
            c.connect(server.address, server.port)
        assert time.monotonic() - started < 2.0  # detected from the bytes, not by a timeout
        with pytest.raises(FtpConnectionClosed, match="unusable"):
            c.noop()


def test_an_overlong_reply_line_mid_dialogue_is_a_protocol_violation(stack: LiveStack) -> None:
    overlong = On("PASS", Send(b"230 " + b"y" * (p.MAX_LINE_LENGTH * 3) + b"\r\n"))
    with hostile(stack, overlong) as server, client(stack) as c:
        c.connect(server.address, server.port)
        with pytest.raises(FtpProtocolViolation, match=OVERLONG):
            c.login()


def test_a_reply_with_too_many_lines_is_a_protocol_violation(stack: LiveStack) -> None:
    lines = b"211-Features:\r\n" + b" X\r\n" * (p.MAX_REPLY_LINES + 10) + b"211 End\r\n"
    with hostile(stack, On("FEAT", Send(lines))) as server, client(stack) as c:
        login(c, server)
        with pytest.raises(FtpProtocolViolation, match=f"longer than {p.MAX_REPLY_LINES} lines"):
            c.feat()


def test_a_reply_without_a_code_is_a_protocol_violation(stack: LiveStack) -> None:
    script = On("USER", Send(b"hello, I am not a reply\r\n"))
    with hostile(stack, script) as server, client(stack) as c:
        c.connect(server.address, server.port)
        with pytest.raises(FtpProtocolViolation, match="without a code"):
            c.login()


def test_a_reply_code_the_command_does_not_allow_is_a_protocol_violation(
    stack: LiveStack,
) -> None:
    script = On("TYPE", reply(150, "sure, here is a file"))
    with hostile(stack, script) as server, client(stack) as c:
        login(c, server)
        with pytest.raises(FtpProtocolViolation, match="150"):
            c.type(binary=True)


# -- addresses the server tries to steer us to -----------------------------------------------------


def test_a_pasv_reply_pointing_elsewhere_is_ignored(
    stack: LiveStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = (
        On("EPSV", reply(502, "no EPSV")),
        On("PASV", PassiveListen(bind=stack.info.server_ip, announce=ELSEWHERE_IP)),
    )
    target = tmp_path / "file.bin"
    with (
        caplog.at_level(logging.WARNING, logger="lab.ftp"),
        hostile(stack, *script) as server,
        client(stack, passive=True) as c,
    ):
        login(c, server)
        result = c.retrieve("file.bin", target)
    assert target.read_bytes() == PAYLOAD
    assert result.data_peer[0] == stack.info.server_ip
    assert any(
        ELSEWHERE_IP in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records
    )
    assert any(f"accepted from {stack.info.client_ip}" in e for e in server.events)
    staged(server)


def test_a_pasv_reply_naming_a_third_host_is_not_followed_without_trust(
    stack: LiveStack, tmp_path: Path
) -> None:
    """The announced host really listens; we still go to the control peer, which refuses."""
    script = (
        On("EPSV", reply(502, "no EPSV")),
        On("PASV", PassiveListen(bind=THIRD_IP, announce=THIRD_IP)),
    )
    with hostile(stack, *script) as server, client(stack, passive=True) as c:
        login(c, server)
        started = time.monotonic()
        with pytest.raises(DataConnectionError, match=stack.info.server_ip):
            c.retrieve("file.bin", tmp_path / "file.bin")
        assert time.monotonic() - started < 3.0
    assert not any("accepted" in e for e in server.events)
    staged(server)


def test_a_pasv_reply_naming_a_third_host_is_followed_with_trust_pasv_ip(
    stack: LiveStack, tmp_path: Path
) -> None:
    script = (
        On("EPSV", reply(502, "no EPSV")),
        On("PASV", PassiveListen(bind=THIRD_IP, announce=THIRD_IP)),
    )
    target = tmp_path / "file.bin"
    with hostile(stack, *script) as server, client(stack, passive=True, trust_pasv_ip=True) as c:
        login(c, server)
        result = c.retrieve("file.bin", target)
    assert result.data_peer[0] == THIRD_IP
    assert target.read_bytes() == PAYLOAD
    staged(server)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_data_connection_from_a_third_address_is_reset_and_the_real_one_used(
    stack: LiveStack, tmp_path: Path, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    script = On(
        "RETR",
        reply(150, "opening"),
        DataConnect(source=THIRD_IP, expect_reset=True),
        DataConnect(),
        DataSend(PAYLOAD),
        DataClose(),
        reply(226, "done"),
    )
    target = tmp_path / "file.bin"

    def fetch() -> TransferResult:
        with hostile(stack, script) as server, client(stack, transport) as c:
            login(c, server)
            result = c.retrieve("file.bin", target)
        assert any(f"from {THIRD_IP} reset by the client" in e for e in server.events), (
            server.events
        )
        if transport == "lab":  # refused at the SYN: no handshake ever completed
            at_syn = f"from {THIRD_IP} reset by the client (at the SYN)"
            assert any(at_syn in e for e in server.events), server.events
        staged(server)
        return result

    with caplog.at_level(logging.WARNING, logger="lab.ftp"):
        result = over(stack, transport, fetch)
    assert target.read_bytes() == PAYLOAD
    assert result.data_peer[0] == stack.info.server_ip
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(THIRD_IP in w and "rejected" in w for w in warnings)


def test_only_a_third_address_connecting_fails_with_a_timeout_not_a_hang(
    stack: LiveStack, tmp_path: Path
) -> None:
    script = On(
        "RETR", reply(150, "opening"), DataConnect(source=THIRD_IP, expect_reset=True), Silence()
    )
    with hostile(stack, script) as server, client(stack, timeout=1.0) as c:
        login(c, server)
        started = time.monotonic()
        with pytest.raises(FtpTimeout, match="no data connection"):
            c.retrieve("file.bin", tmp_path / "file.bin")
        assert time.monotonic() - started < give_up_bound(c)
    assert any("reset by the client (at the SYN)" in e for e in server.events), server.events
    staged(server)


# -- the server going away mid-transfer ------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("abort", [False, True], ids=["fin", "rst"])
def test_the_server_closing_mid_transfer_leaves_a_part_file(
    stack: LiveStack, tmp_path: Path, abort: bool, transport: str
) -> None:
    half = len(PAYLOAD) // 2
    script = On(
        "RETR",
        reply(150, "opening"),
        DataConnect(),
        DataSend(PAYLOAD[:half], pause=0.3),
        DataClose(abort=abort),
        CloseControl(),
    )
    target = tmp_path / "file.bin"

    def fetch() -> TransferIncomplete:
        with hostile(stack, script) as server, client(stack, transport) as c:
            login(c, server)
            started = time.monotonic()
            with pytest.raises(TransferIncomplete) as info:
                c.retrieve("file.bin", target)
            assert time.monotonic() - started < 4.0
        staged(server)
        return info.value

    error = over(stack, transport, fetch)
    part = part_path(target)
    assert not target.exists()
    assert part.read_bytes() == PAYLOAD[:half]
    assert error.received == half
    assert error.expected == len(PAYLOAD)
    assert error.part_path == part
    assert f"{half} of {len(PAYLOAD)} bytes" in str(error)


def test_all_bytes_but_no_final_reply_still_leaves_a_part_file(
    stack: LiveStack, tmp_path: Path
) -> None:
    script = On(
        "RETR", reply(150, "opening"), DataConnect(), DataSend(PAYLOAD), DataClose(), Silence()
    )
    target = tmp_path / "file.bin"
    with hostile(stack, script) as server, client(stack, timeout=1.0) as c:
        login(c, server)
        started = time.monotonic()
        with pytest.raises(TransferIncomplete, match="no final reply") as info:
            c.retrieve("file.bin", target)
        assert time.monotonic() - started < give_up_bound(c)
    assert not target.exists()
    assert part_path(target).read_bytes() == PAYLOAD
    assert info.value.received == len(PAYLOAD)


def test_a_data_connection_that_stalls_times_out_into_a_part_file(
    stack: LiveStack, tmp_path: Path
) -> None:
    script = On("RETR", reply(150, "opening"), DataConnect(), DataSend(PAYLOAD[:1000]), Silence())
    target = tmp_path / "file.bin"
    with hostile(stack, script) as server, client(stack, data_timeout=1.0) as c:
        login(c, server)
        started = time.monotonic()
        with pytest.raises(TransferIncomplete, match="idle") as info:
            c.retrieve("file.bin", target)
        assert time.monotonic() - started < give_up_bound(c)
    assert part_path(target).read_bytes() == PAYLOAD[:1000]
    assert info.value.received == 1000


# -- a reply that never comes ----------------------------------------------------------------------


def test_a_reply_that_never_comes_times_out(stack: LiveStack) -> None:
    with hostile(stack, On("PASS", Silence())) as server, client(stack, timeout=1.0) as c:
        c.connect(server.address, server.port)
        started = time.monotonic()
        with pytest.raises(FtpTimeout, match="no reply within 1 s"):
            c.login()
        assert 0.9 < time.monotonic() - started < 2.5
        assert isinstance(FtpTimeout("x"), TimeoutError)


def test_a_greeting_that_never_comes_times_out(stack: LiveStack) -> None:
    with hostile(stack, banner=b"") as server, client(stack, timeout=1.0) as c:
        started = time.monotonic()
        with pytest.raises(FtpTimeout):
            c.connect(server.address, server.port)
        assert time.monotonic() - started < 2.5


def test_the_stack_these_tests_share_runs_without_recording(stack: LiveStack) -> None:
    """`LabStack.on_topology(record=False)` and `kernel_client(capture=None)`: no tap, no file."""
    assert stack.lab.capture is None
    assert stack.lab.tap is None
    assert stack.lab.frames_captured() == 0
    assert stack.kernel.sniffer is None
    assert stack.kernel.frames == 0
    with hostile(stack) as server, client(stack) as c:
        login(c, server)
        assert c.noop().code == 200
