"""The FTP client without privileges: a scripted in-memory server, and pyftpdlib on loopback.

The scripted server (`FakeServer`) answers each command at once through in-memory streams, so a
test can make it misbehave precisely (refuse EPRT, point PASV elsewhere, close a data connection
early, never answer). The loopback tests run the real client over kernel sockets against a real
pyftpdlib in a thread: every command of the client against a server no one here wrote.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.cli.errors import UsageError
from lab.cli.ftp import FtpUrl
from lab.ftp.client import (
    AsciiDecoder,
    AsciiEncoder,
    Client,
    FtpConnectionClosed,
    FtpPermanentError,
    FtpProtocolViolation,
    FtpTimeout,
    TransferIncomplete,
    part_path,
)
from lab.ftp.protocol import Reply
from lab.ftp.server import make_server, prepare_root, sample_bytes
from lab.ftp.transport import KernelDataListener, KernelTransport, SegmentStats, Stream

SERVER_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"

# -- an in-memory scripted server -----------------------------------------------------------------


@dataclass
class FakeStream:
    """One in-memory connection end. `chunks` are what recv returns; None in it = time out."""

    local: tuple[str, int]
    remote: tuple[str, int]
    chunks: list[bytes | None] = field(default_factory=list)
    eof: bool = True
    sent: bytearray = field(default_factory=bytearray)
    on_send: Callable[[bytes], None] | None = None
    aborted: bool = False
    closed: bool = False
    shut: bool = False

    @property
    def local_address(self) -> tuple[str, int]:
        return self.local

    @property
    def remote_address(self) -> tuple[str, int]:
        return self.remote

    def sendall(self, data: bytes, timeout: float | None) -> None:
        self.sent += data
        if self.on_send is not None:
            self.on_send(data)

    def recv(self, max_bytes: int, timeout: float | None) -> bytes:
        if not self.chunks:
            if self.eof:
                return b""
            raise TimeoutError("nothing to read")
        chunk = self.chunks.pop(0)
        if chunk is None:
            raise TimeoutError("scripted silence")
        if len(chunk) > max_bytes:
            self.chunks.insert(0, chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    def recv_chunks(self, max_bytes: int, timeout: float | None) -> list[bytes]:
        data = self.recv(max_bytes, timeout)
        return [data] if data else []

    def shutdown(self) -> None:
        self.shut = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def stats(self) -> SegmentStats | None:
        return None


class FakeListener:
    def __init__(self, server: FakeServer, port: int) -> None:
        self.server = server
        self._address = (CLIENT_IP, port)
        self.closed = False

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def accept(self, timeout: float | None, peer_ip: str | None) -> Stream:
        if not self.server.data:
            raise TimeoutError("no data connection")
        stream = self.server.data.pop(0)
        assert peer_ip == SERVER_IP  # the client always asks for the control peer only
        return stream

    def close(self) -> None:
        self.closed = True


class FakeServer:
    """Answers commands from `files`; `overrides[VERB]` replaces the normal answer."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = dict(files or {})
        self.commands: list[str] = []
        self.control: FakeStream | None = None
        self.data: list[FakeStream] = []
        self.overrides: dict[str, Callable[[str], None]] = {}
        self.rest = 0
        self.connected_to: list[tuple[str, int]] = []
        self.uploads: dict[str, bytes] = {}

    # what the client's transport calls
    def connect(self, host: str, port: int) -> FakeStream:
        if self.control is None:
            self.control = FakeStream((CLIENT_IP, 40000), (host, port), eof=False)
            self.control.on_send = self._on_command
            self.reply("220 fake ready")
            return self.control
        self.connected_to.append((host, port))
        if not self.data:
            raise ConnectionRefusedError("no passive listener")
        return self.data.pop(0)

    def reply(self, *lines: str) -> None:
        assert self.control is not None
        self.control.chunks.append("".join(line + "\r\n" for line in lines).encode())

    def _on_command(self, raw: bytes) -> None:
        line = raw.decode().rstrip("\r\n")
        self.commands.append(line)
        verb, _, arg = line.partition(" ")
        if verb in self.overrides:
            self.overrides[verb](arg)
            return
        handler = getattr(self, f"do_{verb}", None)
        if handler is None:
            self.reply("502 not implemented")
        else:
            handler(arg)

    def data_stream(self, payload: bytes = b"", **kwargs: object) -> FakeStream:
        stream = FakeStream((SERVER_IP, 20), (CLIENT_IP, 40001), [payload] if payload else [])
        for key, value in kwargs.items():
            setattr(stream, key, value)
        self.data.append(stream)
        return stream

    def do_USER(self, arg: str) -> None:
        self.reply("331 password please")

    def do_PASS(self, arg: str) -> None:
        self.reply("230 welcome")

    def do_TYPE(self, arg: str) -> None:
        self.reply("200 ok")

    def do_SIZE(self, arg: str) -> None:
        if arg in self.files:
            self.reply(f"213 {len(self.files[arg])}")
        else:
            self.reply("550 no such file")

    def do_EPRT(self, arg: str) -> None:
        self.reply("200 EPRT ok")

    def do_PORT(self, arg: str) -> None:
        self.reply("200 PORT ok")

    def do_EPSV(self, arg: str) -> None:
        self.reply("229 Entering Extended Passive Mode (|||50000|)")

    def do_REST(self, arg: str) -> None:
        self.rest = int(arg)
        self.reply("350 restarting")

    def do_RETR(self, arg: str) -> None:
        if arg not in self.files:
            self.reply("550 no such file")
            return
        self.data_stream(self.files[arg][self.rest :])
        self.rest = 0
        self.reply("150 opening", "226 done")

    def do_STOR(self, arg: str) -> None:
        stream = self.data_stream()
        stream.on_send = lambda data: self.uploads.__setitem__(
            arg, self.uploads.get(arg, b"") + data
        )
        self.reply("150 send it", "226 stored")

    def do_NLST(self, arg: str) -> None:
        self.data_stream("".join(f"{name}\r\n" for name in self.files).encode())
        self.reply("150 list", "226 listed")

    def do_ABOR(self, arg: str) -> None:
        self.reply("225 nothing to abort")

    def do_NOOP(self, arg: str) -> None:
        self.reply("200 noop")

    def do_QUIT(self, arg: str) -> None:
        self.reply("221 bye")

    def do_PWD(self, arg: str) -> None:
        self.reply('257 "/with ""quotes""" is the current directory')


class FakeTransport:
    name = "fake"

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.listeners: list[FakeListener] = []

    def connect(self, host: str, port: int, timeout: float | None) -> Stream:
        return self.server.connect(host, port)

    def listen(self, local_ip: str, peer_ip: str | None = None) -> FakeListener:
        assert local_ip == CLIENT_IP  # the control connection's local address
        assert peer_ip == SERVER_IP  # only the control peer is wanted, from the SYN on
        listener = FakeListener(self.server, 40001 + len(self.listeners))
        self.listeners.append(listener)
        return listener


def logged_in(server: FakeServer, **kwargs: object) -> tuple[Client, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    client = Client(
        FakeTransport(server),
        timeout=1,
        data_timeout=1,
        dialogue=lambda d, t: lines.append((d, t)),
        **kwargs,  # type: ignore[arg-type]
    )
    client.connect(SERVER_IP)
    client.login("someone", "secret")
    return client, lines


# -- behaviours against the scripted server -------------------------------------------------------


def test_retrieve_writes_through_part_and_renames_when_complete(tmp_path: Path) -> None:
    server = FakeServer({"f.bin": b"x" * 1000})
    client, _ = logged_in(server)
    target = tmp_path / "f.bin"
    result = client.retrieve("f.bin", target)
    assert target.read_bytes() == b"x" * 1000
    assert not part_path(target).exists()
    assert (result.bytes, result.expected, result.mode) == (1000, 1000, "active")
    assert server.commands[-2].startswith("EPRT |1|198.18.0.2|")


def test_dialogue_shows_each_line_and_hides_the_password() -> None:
    _, lines = logged_in(FakeServer())
    assert (">", "USER someone") in lines
    assert (">", "PASS ****") in lines
    assert ("<", "230 welcome") in lines
    assert not any("secret" in text for _, text in lines)


def test_eprt_refused_with_502_falls_back_to_port(tmp_path: Path) -> None:
    server = FakeServer({"f": b"abc"})
    server.overrides["EPRT"] = lambda arg: server.reply("502 EPRT not implemented")
    client, _ = logged_in(server)
    client.retrieve("f", tmp_path / "f")
    client.retrieve("f", tmp_path / "g")
    verbs = [c.split()[0] for c in server.commands]
    assert verbs.count("EPRT") == 1  # not asked again after the refusal
    assert verbs.count("PORT") == 2
    port_arg = next(c for c in server.commands if c.startswith("PORT")).split()[1]
    assert port_arg.startswith("198,18,0,2,")


def passive_elsewhere(server: FakeServer, epsv_refusal: str) -> None:
    """EPSV refused; PASV answers with a third host's address (10.9.8.7:50000)."""

    def pasv(arg: str) -> None:
        server.data_stream(b"abc")
        server.reply("227 Entering Passive Mode (10,9,8,7,195,80).")

    server.overrides["EPSV"] = lambda arg: server.reply(epsv_refusal)
    server.overrides["PASV"] = pasv
    server.overrides["RETR"] = lambda arg: server.reply("150 go", "226 done")


def test_a_227_address_elsewhere_is_ignored_for_the_control_peer(tmp_path: Path) -> None:
    server = FakeServer({"f": b"abc"})
    passive_elsewhere(server, "500 what?")
    client, lines = logged_in(server, passive=True)
    client.retrieve("f", tmp_path / "f")
    assert server.connected_to == [(SERVER_IP, 50000)]
    assert any("10.9.8.7" in text and "ignored" in text for d, text in lines if d == "*")


def test_trust_pasv_ip_connects_where_the_227_says(tmp_path: Path) -> None:
    server = FakeServer({"f": b"abc"})
    passive_elsewhere(server, "502 no")
    client, _ = logged_in(server, passive=True, trust_pasv_ip=True)
    client.retrieve("f", tmp_path / "f")
    assert server.connected_to == [("10.9.8.7", 50000)]


def test_server_closing_mid_transfer_leaves_a_part_and_says_how_much(tmp_path: Path) -> None:
    server = FakeServer({"f": b"y" * 5000})

    def short(arg: str) -> None:
        server.data_stream(b"y" * 1234)
        server.reply("150 go", "426 connection closed; transfer aborted")

    server.overrides["RETR"] = short
    client, _ = logged_in(server)
    target = tmp_path / "f"
    with pytest.raises(TransferIncomplete) as info:
        client.retrieve("f", target)
    assert (info.value.received, info.value.expected) == (1234, 5000)
    assert info.value.part_path == part_path(target)
    assert part_path(target).read_bytes() == b"y" * 1234
    assert not target.exists()
    assert "1234 of 5000" in str(info.value)


def test_short_file_with_226_is_still_incomplete_when_size_disagrees(tmp_path: Path) -> None:
    server = FakeServer({"f": b"z" * 100})

    def short(arg: str) -> None:
        server.data_stream(b"z" * 60)
        server.reply("150 go", "226 all good (not really)")

    server.overrides["RETR"] = short
    client, _ = logged_in(server)
    with pytest.raises(TransferIncomplete, match="size mismatch"):
        client.retrieve("f", tmp_path / "f")
    assert part_path(tmp_path / "f").stat().st_size == 60


def test_resume_sends_rest_with_the_part_length_and_appends(tmp_path: Path) -> None:
    content = bytes(range(256)) * 20
    server = FakeServer({"f": content})
    target = tmp_path / "f"
    part_path(target).write_bytes(content[:1000])
    client, _ = logged_in(server)
    result = client.retrieve("f", target, resume=True)
    assert "REST 1000" in server.commands
    assert target.read_bytes() == content
    assert (result.resumed_from, result.bytes, result.total) == (1000, len(content) - 1000, 5120)


def test_data_connection_going_silent_times_out_and_resynchronises(tmp_path: Path) -> None:
    server = FakeServer({"f": b"q" * 300})

    def stall(arg: str) -> None:
        server.data_stream(b"q" * 100, chunks=[b"q" * 100, None], eof=False)
        server.reply("150 go")

    server.overrides["RETR"] = stall
    client, _ = logged_in(server)
    with pytest.raises(TransferIncomplete, match="idle") as info:
        client.retrieve("f", tmp_path / "f")
    assert info.value.received == 100
    assert server.commands[-2:] == ["ABOR", "NOOP"]
    assert client.noop().code == 200  # the dialogue is in step again


def test_a_data_connection_that_never_comes_times_out_and_resynchronises(tmp_path: Path) -> None:
    server = FakeServer({"f": b"abc"})
    server.overrides["RETR"] = lambda arg: server.reply("150 connecting (but never will)")
    client, _ = logged_in(server)
    with pytest.raises(FtpTimeout, match="no data connection"):
        client.retrieve("f", tmp_path / "f")
    assert server.commands[-2:] == ["ABOR", "NOOP"]
    assert not part_path(tmp_path / "f").exists()
    assert client.noop().code == 200


def test_refused_retr_raises_the_reply_and_leaves_no_part(tmp_path: Path) -> None:
    client, _ = logged_in(FakeServer())
    with pytest.raises(FtpPermanentError) as info:
        client.retrieve("missing", tmp_path / "missing")
    assert info.value.code == 550
    assert info.value.reply == Reply(550, ("550 no such file",))
    assert not part_path(tmp_path / "missing").exists()


def test_a_reply_that_never_comes_raises_ftp_timeout() -> None:
    server = FakeServer()
    server.overrides["NOOP"] = lambda arg: None
    client, _ = logged_in(server)
    with pytest.raises(FtpTimeout):
        client.noop()


def late_final_reply(server: FakeServer) -> None:
    """RETR sends all its bytes, but its 226 comes only after the client's wait has ended."""

    def retr(arg: str) -> None:
        server.data_stream(server.files[arg])
        server.reply("150 go")
        assert server.control is not None
        server.control.chunks.append(None)  # the client's wait for the final reply times out
        server.reply("226 done, but late")

    server.overrides["RETR"] = retr


def test_a_final_reply_that_times_out_makes_quit_close_without_waiting(tmp_path: Path) -> None:
    server = FakeServer({"f": b"abc"})
    late_final_reply(server)
    client, _ = logged_in(server)
    with pytest.raises(TransferIncomplete, match="no final reply"):
        client.retrieve("f", tmp_path / "f")
    assert server.control is not None
    assert client.quit() is None
    assert "QUIT" not in server.commands  # no second wait for a 221 that is out of step
    assert server.control.closed
    assert client.control is None


def test_a_late_226_is_never_taken_as_the_reply_to_the_next_command(tmp_path: Path) -> None:
    server = FakeServer({"f": b"abc"})
    late_final_reply(server)
    client, _ = logged_in(server)
    with pytest.raises(TransferIncomplete):
        client.retrieve("f", tmp_path / "f")
    sent = len(server.commands)
    with pytest.raises(FtpConnectionClosed, match="did not come in time"):
        client.noop()
    assert len(server.commands) == sent  # refused before anything was sent


def test_leaving_a_with_block_after_a_reply_timeout_does_not_wait_again() -> None:
    server = FakeServer()
    server.overrides["NOOP"] = lambda arg: None
    client, _ = logged_in(server)
    with client, pytest.raises(FtpTimeout):  # the timeout is caught inside: a clean exit
        client.noop()
    assert "QUIT" not in server.commands
    assert server.control is not None
    assert server.control.closed


def test_unexpected_positive_reply_is_a_protocol_violation() -> None:
    server = FakeServer()
    server.overrides["NOOP"] = lambda arg: server.reply("257 a path?")
    client, _ = logged_in(server)
    with pytest.raises(FtpProtocolViolation, match="257"):
        client.noop()


def test_overlong_reply_line_is_a_protocol_violation() -> None:
    server = FakeServer()
    server.overrides["NOOP"] = lambda arg: server.reply("200 " + "A" * 10000)
    client, _ = logged_in(server)
    with pytest.raises(FtpProtocolViolation, match="reply line"):
        client.noop()


def test_pwd_unescapes_doubled_quotes() -> None:
    client, _ = logged_in(FakeServer())
    assert client.pwd() == '/with "quotes"'


def test_store_sends_the_file_and_half_closes(tmp_path: Path) -> None:
    server = FakeServer()
    source = tmp_path / "up.bin"
    source.write_bytes(b"u" * 200_000)
    client, _ = logged_in(server)
    result = client.store(source, "up.bin")
    assert server.uploads["up.bin"] == b"u" * 200_000
    assert result.total == 200_000


def test_progress_callback_failure_interrupts_and_keeps_the_part(tmp_path: Path) -> None:
    server = FakeServer({"f": b"p" * 10})

    def boom(done: int, total: int | None) -> None:
        raise KeyboardInterrupt

    client, _ = logged_in(server)
    with pytest.raises(TransferIncomplete, match="interrupted"):
        client.retrieve("f", tmp_path / "f", progress=boom)
    assert part_path(tmp_path / "f").read_bytes() == b"p" * 10


# -- ASCII conversion -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6))
def test_ascii_decoder_turns_crlf_into_lf_whatever_the_chunking(
    data: bytes, cuts: list[int]
) -> None:
    decoder = AsciiDecoder()
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out = b"".join(decoder.feed(piece) for piece in pieces) + decoder.flush()
    assert out == data.replace(b"\r\n", b"\n")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6))
def test_ascii_encoder_ends_every_line_with_crlf_whatever_the_chunking(
    data: bytes, cuts: list[int]
) -> None:
    encoder = AsciiEncoder()
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out = b"".join(encoder.feed(piece) for piece in pieces)
    assert out == encoder_reference(data)
    assert AsciiDecoder().feed(out).replace(b"\r", b"") == data.replace(b"\r", b"")


def encoder_reference(data: bytes) -> bytes:
    out = bytearray()
    for i, byte in enumerate(data):
        if byte == 0x0A and (i == 0 or data[i - 1] != 0x0D):
            out += b"\r"
        out.append(byte)
    return bytes(out)


# -- URLs -----------------------------------------------------------------------------------------


def test_url_parsing_decodes_user_password_port_and_path() -> None:
    url = FtpUrl.parse("ftp://us%40er:p%3Ass@198.18.0.1:2121/pub/a%20b.txt")
    assert url == FtpUrl("198.18.0.1", 2121, "pub/a b.txt", "us@er", "p:ss")
    assert url.basename == "a b.txt"
    with pytest.raises(UsageError):
        FtpUrl.parse("http://example.org/x")


# -- kernel sockets: the active-mode listener and a real pyftpdlib on loopback --------------------


def test_kernel_data_listener_resets_a_connection_from_a_third_address() -> None:
    listener = KernelTransport().listen("127.0.0.1")
    assert isinstance(listener, KernelDataListener)
    intruder = socket.socket()
    intruder.bind(("127.0.0.2", 0))
    intruder.connect(listener.address)
    friend = socket.create_connection(listener.address)
    try:
        stream = listener.accept(5, "127.0.0.1")
        assert stream.remote_address == friend.getsockname()
        assert listener.rejected == [intruder.getsockname()]
        intruder.settimeout(5)
        with pytest.raises(ConnectionResetError):
            intruder.recv(10)
        stream.close()
    finally:
        listener.close()
        intruder.close()
        friend.close()


@pytest.fixture(scope="module")
def loopback_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    root = tmp_path_factory.mktemp("ftp-root")
    prepare_root(root)
    server = make_server(root, "127.0.0.1", 0, (0, 0))
    server.handler.passive_ports = None
    port = server.socket.getsockname()[1]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield port, root
    stop.set()
    thread.join(5)
    server.close_all()


@pytest.mark.parametrize("passive", [False, True], ids=["active", "passive"])
def test_every_command_against_pyftpdlib_over_kernel_sockets(
    loopback_server: tuple[int, Path], tmp_path: Path, passive: bool
) -> None:
    port, root = loopback_server
    mode = "passive" if passive else "active"
    with Client(KernelTransport(), timeout=5, data_timeout=5, passive=passive) as client:
        assert client.connect("127.0.0.1", port).code == 220
        client.login("lab", "lab")
        assert "UNIX" in client.syst()
        assert {"EPRT", "EPSV", "MLST", "SIZE", "REST"} <= client.feat()
        client.opts_utf8()
        assert client.pwd() == "/"
        source = tmp_path / "up.bin"
        source.write_bytes(sample_bytes("up", 300_000))
        client.mkd(f"d-{mode}")
        client.cwd(f"d-{mode}")
        client.store(source, "up.bin")
        client.store(source, "up.bin", append=True)
        assert client.size("up.bin") == 600_000
        assert len(client.mdtm("up.bin")) >= 14
        assert client.nlst() == ["up.bin"]
        assert any(line.endswith("up.bin") for line in client.list())
        [entry] = client.mlsd()
        assert (entry.name, entry.type, entry.size) == ("up.bin", "file", 600_000)
        client.rename("up.bin", "moved.bin")
        back = tmp_path / "back.bin"
        result = client.retrieve("moved.bin", back)
        assert back.read_bytes() == source.read_bytes() * 2
        assert result.mode == mode
        client.dele("moved.bin")
        assert client.nlst() == []
        client.cdup()
        client.rmd(f"d-{mode}")
        assert client.noop().code == 200
    text = tmp_path / "hello.txt"
    with Client(KernelTransport(), timeout=5, passive=passive) as client:
        client.connect("127.0.0.1", port)
        client.login()
        client.retrieve("hello.txt", text, ascii=True)
        assert text.read_bytes() == (root / "anon" / "hello.txt").read_bytes().replace(
            b"\r\n", b"\n"
        )
        with pytest.raises(FtpPermanentError):
            client.mkd("not-allowed")
    digest = hashlib.sha256((root / "anon" / "1M.bin").read_bytes()).hexdigest()
    assert digest == hashlib.sha256(sample_bytes("1M.bin", 1 << 20)).hexdigest()


# -- the command line without privileges ----------------------------------------------------------


def refuse_privileges(monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.topology
    from lab.topology import PrivilegeError

    def refuse(mask: int | None = None) -> None:
        raise PrivilegeError("lab needs root (test)")

    monkeypatch.setattr(lab.topology, "require_privileges", refuse)


def test_cli_without_privileges_says_so_in_one_line_and_exits_77(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main as cli

    refuse_privileges(monkeypatch)
    code = cli.main(["get", "ftp://198.18.0.1/hello.txt", "--capture", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 77
    assert err.strip() == "lab needs root (test)"


def test_cli_get_without_a_file_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main as cli

    assert cli.main(["get", "ftp://198.18.0.1/pub/"]) == 2
    assert "give -o" in capsys.readouterr().err


def test_live_demo_falls_back_to_the_memory_demo_without_privileges(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main as cli

    refuse_privileges(monkeypatch)
    code = cli.main(["demo", "--live", "--size", "20000"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "in-memory demo instead" in err
    assert "20000 of 20000 delivered" in out


def test_cli_refuses_an_interface_address_the_kernel_already_owns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from lab.cli import main as cli

    args = ["get", "ftp://127.0.0.1/x", "--iface", "lo", "--addr", "127.0.0.1/8"]
    assert cli.main([*args, "--capture", str(tmp_path / "c.pcapng")]) == 2
    assert "kernel already owns 127.0.0.1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "ftp://198.18.0.1/a%0d%0aDELE%20x",  # a second command smuggled onto the control line
        "ftp://198.18.0.1/a%00b",  # a NUL in what would be the local name
        "ftp://us%0aer@198.18.0.1/x",
        "ftp://u:p%0d@198.18.0.1/x",
    ],
)
def test_cli_refuses_control_characters_in_the_url_before_building_anything(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main as cli

    refuse_privileges(monkeypatch)  # reaching the environment would exit 77, not 2
    assert cli.main(["get", url]) == 2
    assert "control character" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("ftp://198.18.0.1/../../etc/x", "x"),
        ("ftp://198.18.0.1/%2e%2e/%2e%2e/etc/passwd", "passwd"),
        ("ftp://198.18.0.1/a%2f..%2fb", "b"),
    ],
)
def test_the_local_name_is_the_url_s_last_component_never_a_path(url: str, local: str) -> None:
    import argparse

    from lab.cli.ftp import _local_target

    target = _local_target(argparse.Namespace(output=None), FtpUrl.parse(url))
    assert target == Path(local)
    assert target.parent == Path(".")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_timeout_that_is_not_a_positive_number_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main as cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["get", "ftp://198.18.0.1/x", "--timeout", value])
    assert exit_.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_kernel_data_listener_times_out_rather_than_failing_when_the_time_is_used_up() -> None:
    listener = KernelTransport().listen("127.0.0.1")
    intruder = socket.socket()
    intruder.bind(("127.0.0.2", 0))
    try:
        intruder.connect(listener.address)
        # The intruder is rejected, and no time is left: a timeout, not BlockingIOError.
        with pytest.raises(TimeoutError) as caught:
            listener.accept(0.0, "127.0.0.1")
        assert not isinstance(caught.value, BlockingIOError)
    finally:
        listener.close()
        intruder.close()


class _Terminal:
    """A stderr that says it is a terminal (and swallows what rich writes)."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.written: list[str] = []

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise OSError("not a real file")


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "pipe"])
def test_the_progress_bar_shows_only_on_a_terminal_and_only_after_a_second(
    tty: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from lab.cli import ftp as ftp_cli

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys, "stderr", _Terminal(tty))
    bar = ftp_cli.ProgressBar("get x", enabled=True)
    bar.update(1000, 10_000)
    assert bar._progress is None  # under a second: nothing yet
    bar._started -= ftp_cli.PROGRESS_AFTER + 0.1
    bar.update(2000, 10_000)
    assert (bar._progress is not None) is tty
    bar.close()
    assert bar._progress is None
    # --json (or a quiet caller) turns it off even on a terminal.
    quiet = ftp_cli.ProgressBar("get x", enabled=False)
    quiet._started -= ftp_cli.PROGRESS_AFTER + 0.1
    quiet.update(2000, 10_000)
    assert quiet._progress is None


@dataclass
class _TrickleStream(FakeStream):
    """A STOR data connection whose server never closes: a byte back every millisecond.

    Time is the fake clock's, advanced by each read, so the test does not depend on how
    fast this machine loops (a real clock let a fast or a frozen-clock runner read for ever).
    """

    clock: list[float] = field(default_factory=lambda: [0.0])
    reads: int = 0

    def recv(self, max_bytes: int, timeout: float | None) -> bytes:
        self.reads += 1
        if self.reads > 100_000:
            raise AssertionError("the client kept reading: no bound on the wait for the FIN")
        self.clock[0] += 0.001
        return b"x"


def test_a_server_trickling_bytes_after_our_fin_cannot_hold_a_store_for_ever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    from lab.ftp import client as client_module

    clock = [1000.0]
    monkeypatch.setattr(client_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    server = FakeServer()
    source = tmp_path / "up.bin"
    source.write_bytes(b"u" * 1000)
    client, _ = logged_in(server)
    streams: list[_TrickleStream] = []

    def stor(arg: str) -> None:
        stream = _TrickleStream((SERVER_IP, 20), (CLIENT_IP, 40001), clock=clock)
        streams.append(stream)
        server.data.append(stream)
        server.reply("150 send it", "226 stored")

    server.overrides["STOR"] = stor
    client.data_timeout = 0.3
    result = client.store(source, "up.bin")
    assert result.reply.code == 226
    # The wait for the server's FIN is bounded by data_timeout: about 300 one-millisecond reads.
    assert 250 <= streams[0].reads <= 350


def test_resume_in_ascii_mode_is_a_usage_error_before_building_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main as cli

    refuse_privileges(monkeypatch)  # reaching the environment would exit 77, not 2
    assert cli.main(["get", "ftp://198.18.0.1/hello.txt", "--resume", "--ascii"]) == 2
    assert "--resume needs binary mode" in capsys.readouterr().err
