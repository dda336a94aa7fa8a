"""Behaviour of `lab reenact`: a captured client's commands performed again, replies compared.

The script (commands and recorded replies) is read from the committed tool captures; the driver
runs unprivileged over kernel sockets against pyftpdlib on loopback, and, as root, through
`lab reenact` over the hand-built stack against the embedded server in a lab topology.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.capture.reader import CaptureReader
from lab.cli.main import main as lab_main
from lab.ftp.server import make_server, prepare_root
from lab.ftp.transport import KernelTransport
from lab.replay.decode import decode_packet
from lab.replay.reenact import Outcome, reenact, script_from_session, scripts_from_capture

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
FTPLIB_PASSIVE = CAPTURES / "tools-pyftpdlib-ftplib-passive.pcap"
FTPLIB_ACTIVE = CAPTURES / "tools-pyftpdlib-ftplib-active.pcap"
CURL_ACTIVE = CAPTURES / "tools-pyftpdlib-curl-active.pcap"
LFTP_PASSIVE = CAPTURES / "tools-pyftpdlib-lftp-passive.pcap"
VSFTPD_CURL = CAPTURES / "tools-vsftpd-curl-passive.pcap"
ONE_MB_SHA = "10fa0295"  # prefix of 1M.bin's sha256 (seeded sample of lab.ftp.server)


def script_of(path: Path, tmp: Path):  # type: ignore[no-untyped-def]
    (script,) = scripts_from_capture(path, tmp)
    return script


# -- the script -----------------------------------------------------------------------------------


def test_script_pairs_each_command_with_the_replies_recorded_after_it(tmp_path: Path) -> None:
    script = script_of(FTPLIB_PASSIVE, tmp_path)
    assert script.greeting == (220,)
    assert script.server == "198.18.0.1:21"
    verbs = [c.verb for c in script.commands]
    assert verbs[:5] == ["USER", "PASS", "TYPE", "PASV", "LIST"]
    assert verbs[-1] == "QUIT"
    by_line = {c.line: c for c in script.commands}
    assert by_line["USER anonymous"].replies == (331,)
    assert by_line["RETR 1M.bin"].replies == (150, 226)
    transfer = by_line["RETR 1M.bin"].transfer
    assert transfer is not None
    assert transfer.bytes == 1 << 20
    assert transfer.sha256 is not None
    assert transfer.sha256.startswith(ONE_MB_SHA)


def test_password_is_never_shown(tmp_path: Path) -> None:
    script = script_of(FTPLIB_PASSIVE, tmp_path)
    (pass_cmd,) = [c for c in script.commands if c.verb == "PASS"]
    assert pass_cmd.shown == "PASS ****"


def _session(lines: list[tuple[str, str]], transfers: list[dict] | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "server": "s:21",
        "client": "c:1",
        "dialogue": [{"t": 0.0, "from": who, "line": line} for who, line in lines],
        "transfers": transfers or [],
    }


def test_multi_line_reply_counts_once() -> None:
    script = script_from_session(
        _session(
            [
                ("server", "220-Welcome"),
                ("server", "220 ready"),
                ("client", "FEAT"),
                ("server", "211-Features:"),
                ("server", " EPRT"),
                ("server", " 211 is not the end"),
                ("server", "211 End"),
            ]
        )
    )
    assert script.greeting == (220,)
    assert script.commands[0].replies == (211,)


def test_refused_transfer_does_not_take_the_next_transfers_recording() -> None:
    moved = {"command": "RETR", "argument": "b", "bytes": 5, "sha256": "x", "complete": True}
    script = script_from_session(
        _session(
            [
                ("server", "220 hi"),
                ("client", "RETR a"),
                ("server", "550 no"),
                ("client", "RETR b"),
                ("server", "150 here"),
                ("server", "226 done"),
            ],
            [moved],
        )
    )
    assert script.commands[0].transfer is None
    assert script.commands[1].transfer is not None
    assert script.commands[1].transfer.bytes == 5


@pytest.mark.parametrize(
    ("recorded", "live", "match", "exact"),
    [
        ((150, 226), (150, 226), True, True),
        ((150, 226), (125, 226), True, False),  # data connection already open: same meaning
        ((150, 226), (550,), False, False),
        ((230,), (331,), False, False),
    ],
)
def test_reply_codes_match_exactly_or_up_to_125_for_150(
    recorded: tuple[int, ...], live: tuple[int, ...], match: bool, exact: bool
) -> None:
    outcome = Outcome("RETR x", recorded, live)
    assert outcome.codes_match is match
    assert outcome.exact is exact


def test_data_is_compared_by_size_and_hash_but_listings_only_shown() -> None:
    same = Outcome("RETR x", (150, 226), (150, 226), 3, 3, "aa", "aa")
    other = Outcome("RETR x", (150, 226), (150, 226), 3, 3, "aa", "bb")
    listing = Outcome("LIST", (150, 226), (150, 226), 3, 4, "aa", "bb", listing=True)
    assert same.data_match is True
    assert other.data_match is False
    assert listing.data_match is None


# -- the driver over kernel sockets (unprivileged) ------------------------------------------------


@pytest.fixture
def loopback_server(tmp_path: Path) -> Iterator[int]:
    """pyftpdlib on 127.0.0.1 with the embedded server's sample files; yields its port."""
    prepare_root(tmp_path)
    server = make_server(tmp_path, "127.0.0.1", 0, (0, 0))
    server.handler.passive_ports = None  # any free port
    port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1}, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.close_all()
        thread.join(5)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("capture", [FTPLIB_PASSIVE, FTPLIB_ACTIVE, CURL_ACTIVE, LFTP_PASSIVE])
def test_reenacted_session_gets_the_recorded_replies_and_bytes(
    tmp_path: Path, loopback_server: int, capture: Path
) -> None:
    script = script_of(capture, tmp_path)
    result = reenact(script, KernelTransport(), "127.0.0.1", loopback_server, timeout=10)
    assert [s.command for s in result.steps] == ["(greeting)"] + [c.shown for c in script.commands]
    assert all(s.codes_match for s in result.steps), [s for s in result.steps if not s.codes_match]
    retr = [s for s in result.steps if s.command == "RETR 1M.bin"]
    assert len(retr) == 1
    assert retr[0].live_bytes == 1 << 20
    assert retr[0].data_match is True
    assert result.all_match


@pytest.mark.timeout(60)
def test_another_servers_capture_shows_where_replies_differ(
    tmp_path: Path, loopback_server: int
) -> None:
    # recorded against vsftpd, which logs anonymous in on USER alone (230); pyftpdlib asks for
    # a password (331), and then refuses everything until PASS, which the script never sends
    script = script_of(VSFTPD_CURL, tmp_path)
    result = reenact(script, KernelTransport(), "127.0.0.1", loopback_server, timeout=10)
    first = result.steps[1]
    assert first.command == "USER anonymous"
    assert (first.recorded, first.live) == ((230,), (331,))
    retr = [s for s in result.steps if s.command.startswith("RETR")]
    assert retr
    assert all(s.live == (530,) and s.data_match is False for s in retr)
    assert result.steps[-1].codes_match  # QUIT still answered 221
    assert not result.all_match


# -- live, over the hand-built stack (privileged) -------------------------------------------------


def _client_syn_seq(path: Path) -> int:
    for pkt in CaptureReader(path):
        tcp = decode_packet(pkt).tcp
        if tcp is not None and tcp.segment.syn and not tcp.segment.has_ack:
            return tcp.segment.seq
    raise AssertionError(f"no SYN in {path}")


@pytest.mark.privileged
@pytest.mark.timeout(120)
def test_lab_reenact_over_the_lab_stack_matches_the_recording(tmp_path: Path) -> None:
    report = tmp_path / "reenact.json"
    live = tmp_path / "live.pcapng"
    code = lab_main(
        ["reenact", str(FTPLIB_ACTIVE), "--json", str(report), "--live-capture", str(live)]
    )
    assert code == 0
    doc = json.loads(report.read_text())
    assert doc["all_match"] is True
    assert doc["live"]["stack"].startswith("lab")
    assert doc["matched"] == doc["total"] > 10
    (retr,) = [s for s in doc["steps"] if s["command"] == "RETR 1M.bin"]
    assert retr["live_sha256"] == retr["recorded_sha256"]
    # fresh connections: the lab stack chose its own initial sequence number
    assert _client_syn_seq(live) != _client_syn_seq(FTPLIB_ACTIVE)


@pytest.mark.privileged
@pytest.mark.timeout(120)
def test_lab_reenact_exits_1_when_replies_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = lab_main(["reenact", str(VSFTPD_CURL), "--live-capture", str(tmp_path / "l.pcapng")])
    assert code == 1
    out = capsys.readouterr().out
    assert "!=USER anonymous" in out
    assert "replies match the recording" in out


def _vsftpd_files() -> dict[str, bytes]:
    """The files make_captures.py served from vsftpd (its module is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("make_captures", CAPTURES / "make_captures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return dict(module.VSFTPD_FILES)


@pytest.mark.privileged
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "capture",
    [VSFTPD_CURL, CAPTURES / "tools-vsftpd-ftplib-active.pcap"],
    ids=["curl-epsv", "ftplib-port-stor"],
)
def test_vsftpd_session_reenacted_over_the_lab_stack_against_vsftpd(
    tmp_path: Path, capture: Path
) -> None:
    from lab.ftp.servers import Vsftpd
    from lab.ftp.transport import LabTransport
    from lab.session import LabStack

    if (reason := Vsftpd.unavailable_reason()) is not None:
        pytest.skip(reason)
    script = script_of(capture, tmp_path / "recorded")
    with (
        LabStack.on_topology(capture=tmp_path / "live.pcapng") as stack,
        Vsftpd(stack.topology.names.server_ns, files=_vsftpd_files()) as server,  # type: ignore[union-attr]
    ):
        result = reenact(script, LabTransport(stack.runtime), server.address, server.port)
        uploaded = sorted(p.name for p in server.upload_dir.iterdir())
    assert result.all_match, [s for s in result.steps if not s.codes_match or s.data_match is False]
    stor = [s for s in result.steps if s.command.startswith("STOR")]
    if stor:  # the upload was sent again from the recovered bytes, and stored
        assert stor[0].live_bytes == stor[0].recorded_bytes == 50_000
        assert uploaded == ["upload-active.bin"]


def test_capture_without_ftp_exits_2(tmp_path: Path) -> None:
    path = CAPTURES / "peer" / "tcp_handshake-reorder.pcap"
    assert lab_main(["reenact", str(path)]) == 2


def test_a_file_that_is_not_a_capture_is_named_so(capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli.main import main as lab_main

    readme = Path(__file__).resolve().parent.parent / "README.md"
    assert lab_main(["reenact", str(readme)]) == 2
    err = capsys.readouterr().err
    assert "not a capture" in err
    assert "no FTP session" not in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("path", ["/dev/null", "captures"])
def test_something_that_is_not_a_file_is_not_called_missing(
    path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli.main import main as lab_main

    assert lab_main(["reenact", path]) == 2
    err = capsys.readouterr().err
    assert err == f"lab reenact: {path}: not a file, so not a capture\n"
