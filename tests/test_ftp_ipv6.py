"""FTP over IPv6 without privileges: EPRT |2| and EPSV only, addresses compared as values.

RFC 2428: PORT and PASV carry four address bytes, so on a v6 control connection the client must
use EPRT and EPSV and must not fall back when they are refused. The scripted server of
`test_ftp_client_logic` plays the server (moved to v6 addresses); a real pyftpdlib on ::1 proves
the same against a server no one here wrote; the kernel listener proves the data-connection rule
for v6 peers however their address is spelt.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_ftp_client_logic as scripted

from lab.cli.errors import UsageError
from lab.cli.ftp import FtpUrl
from lab.ftp.client import Client, FtpPermanentError, FtpTransientError
from lab.ftp.server import make_server, prepare_root, sample_bytes
from lab.ftp.transport import KernelTransport, is_ipv6, same_address

SERVER6 = "2001:2::1"
CLIENT6 = "2001:2::2"


@pytest.fixture
def v6(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripted server and its fakes at 2001:2::1, the client at 2001:2::2."""
    monkeypatch.setattr(scripted, "SERVER_IP", SERVER6)
    monkeypatch.setattr(scripted, "CLIENT_IP", CLIENT6)


def verbs(server: scripted.FakeServer) -> list[str]:
    return [c.split()[0] for c in server.commands]


def test_active_mode_over_v6_announces_eprt_family_2(v6: None, tmp_path: Path) -> None:
    server = scripted.FakeServer({"f": b"abc" * 100})
    client, _ = scripted.logged_in(server)
    assert client.over_ipv6
    client.retrieve("f", tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"abc" * 100
    eprt = next(c for c in server.commands if c.startswith("EPRT"))
    assert eprt.startswith(f"EPRT |2|{CLIENT6}|")
    assert "PORT" not in verbs(server)


@pytest.mark.parametrize("refusal", ["502 EPRT not implemented", "522 use (1)", "500 what?"])
def test_a_refused_eprt_over_v6_is_an_error_and_never_a_port(
    v6: None, tmp_path: Path, refusal: str
) -> None:
    server = scripted.FakeServer({"f": b"abc"})
    server.overrides["EPRT"] = lambda arg: server.reply(refusal)
    client, _ = scripted.logged_in(server)
    with pytest.raises(FtpPermanentError, match="PORT cannot carry an IPv6 address") as info:
        client.retrieve("f", tmp_path / "f")
    assert info.value.code == int(refusal[:3])
    assert "PORT" not in verbs(server)
    assert not (tmp_path / "f").exists()
    # and again: the refusal does not switch the client to PORT for the next transfer
    with pytest.raises(FtpPermanentError):
        client.retrieve("f", tmp_path / "f")
    assert verbs(server).count("EPRT") == 2
    assert "PORT" not in verbs(server)


def test_a_transient_eprt_refusal_over_v6_keeps_its_class(v6: None, tmp_path: Path) -> None:
    server = scripted.FakeServer({"f": b"abc"})
    server.overrides["EPRT"] = lambda arg: server.reply("450 not now")
    client, _ = scripted.logged_in(server)
    with pytest.raises(FtpTransientError, match="450 not now"):
        client.retrieve("f", tmp_path / "f")
    assert "PORT" not in verbs(server)


def test_a_refused_eprt_over_v4_still_falls_back_to_port(tmp_path: Path) -> None:
    server = scripted.FakeServer({"f": b"abc"})
    server.overrides["EPRT"] = lambda arg: server.reply("502 EPRT not implemented")
    client, _ = scripted.logged_in(server)
    assert not client.over_ipv6
    client.retrieve("f", tmp_path / "f")
    assert "PORT" in verbs(server)


def test_passive_mode_over_v6_uses_epsv_and_connects_to_the_control_peer(
    v6: None, tmp_path: Path
) -> None:
    server = scripted.FakeServer({"f": b"xyz"})

    def epsv(arg: str) -> None:
        server.data_stream(b"xyz")
        server.reply("229 Entering Extended Passive Mode (|||50000|)")

    server.overrides["EPSV"] = epsv
    server.overrides["RETR"] = lambda arg: server.reply("150 go", "226 done")
    client, _ = scripted.logged_in(server, passive=True)
    client.retrieve("f", tmp_path / "f")
    assert server.connected_to == [(SERVER6, 50000)]
    assert "PASV" not in verbs(server)


@pytest.mark.parametrize("refusal", ["502 no", "522 family"])
def test_a_refused_epsv_over_v6_is_an_error_and_never_a_pasv(
    v6: None, tmp_path: Path, refusal: str
) -> None:
    server = scripted.FakeServer({"f": b"abc"})
    scripted.passive_elsewhere(server, refusal)
    client, _ = scripted.logged_in(server, passive=True)
    with pytest.raises(FtpPermanentError, match="PASV cannot carry an IPv6 address"):
        client.retrieve("f", tmp_path / "f")
    assert "PASV" not in verbs(server)
    assert server.connected_to == []


def test_a_transient_epsv_refusal_over_v6_stays_transient(v6: None, tmp_path: Path) -> None:
    server = scripted.FakeServer({"f": b"abc"})
    server.overrides["EPSV"] = lambda arg: server.reply("425 no port free")
    client, _ = scripted.logged_in(server, passive=True)
    with pytest.raises(FtpTransientError, match="no fallback"):
        client.retrieve("f", tmp_path / "f")
    assert "PASV" not in verbs(server)


# -- addresses as values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("2001:2::1", "2001:0002:0000:0000:0000:0000:0000:0001", True),
        ("2001:2::1", "2001:2:0::1", True),
        ("2001:2::1", "2001:2::2", False),
        ("2001:2::1", "2001:2::1%lab0", False),  # a scoped address is another address
        ("::ffff:198.18.0.1", "198.18.0.1", True),  # a dual-stack socket's view of a v4 peer
        ("198.18.0.1", "198.18.0.2", False),
        ("198.18.0.1", "2001:2::1", False),
        ("ftp.example", "ftp.example", True),
        ("ftp.example", "198.18.0.1", False),
    ],
)
def test_same_address_compares_values_not_strings(a: str, b: str, same: bool) -> None:
    assert same_address(a, b) is same
    assert same_address(b, a) is same


def test_is_ipv6_counts_v4_mapped_as_ipv4() -> None:
    assert is_ipv6("2001:2::1")
    assert not is_ipv6("::ffff:198.18.0.1")
    assert not is_ipv6("198.18.0.1")
    assert not is_ipv6("ftp.example")


def test_kernel_listener_on_v6_takes_the_peer_however_spelt_and_resets_others() -> None:
    listener = KernelTransport().listen("::1")
    friend = socket.create_connection(listener.address)
    try:
        stream = listener.accept(5, "0:0:0:0:0:0:0:1")  # ::1, spelt out
        assert same_address(stream.remote_address[0], "::1")
        stream.close()
        intruder = socket.create_connection(listener.address)
        intruder.settimeout(5)
        with pytest.raises(TimeoutError):
            listener.accept(0.5, SERVER6)  # ::1 is not the control peer: reset, keep waiting
        with pytest.raises(ConnectionResetError):
            intruder.recv(10)
        intruder.close()
        assert len(listener.rejected) == 1  # type: ignore[attr-defined]
    finally:
        listener.close()
        friend.close()


# -- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("ftp://[2001:2::1]/1M.bin", "2001:2::1", 21),
        ("ftp://[2001:2::1]:2121/1M.bin", "2001:2::1", 2121),
        ("ftp://[2001:0002:0000::0001]/1M.bin", "2001:2::1", 21),
        ("ftp://lab:lab@[2001:2::1]:21/1M.bin", "2001:2::1", 21),
    ],
)
def test_url_with_a_bracketed_v6_host(text: str, host: str, port: int) -> None:
    url = FtpUrl.parse(text)
    assert (url.host, url.port, url.path) == (host, port, "1M.bin")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ftp://[2001:2::1/1M.bin", "bad host"),
        ("ftp://[zz]/1M.bin", "bad host"),
        ("ftp://2001:2::1/1M.bin", "brackets"),
        ("ftp://[2001:2::1]:99999/1M.bin", "bad port"),
    ],
)
def test_malformed_v6_urls_are_usage_errors(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        FtpUrl.parse(text)


# -- a real pyftpdlib on ::1 ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def loopback6_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    root = tmp_path_factory.mktemp("ftp6-root")
    prepare_root(root)
    try:
        server = make_server(root, "::1", 0, (0, 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 on loopback here: {exc}")
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
def test_retr_and_stor_against_pyftpdlib_over_v6_loopback(
    loopback6_server: tuple[int, Path], tmp_path: Path, passive: bool
) -> None:
    port, root = loopback6_server
    lines: list[str] = []
    with Client(
        KernelTransport(),
        timeout=5,
        data_timeout=5,
        passive=passive,
        dialogue=lambda d, t: lines.append(f"{d} {t}"),
    ) as client:
        client.connect("::1", port)
        client.login("lab", "lab")
        up = tmp_path / "up.bin"
        up.write_bytes(sample_bytes("up6", 300_000))
        stored = client.store(up, f"up-{passive}.bin")
        back = tmp_path / "back.bin"
        fetched = client.retrieve(f"up-{passive}.bin", back)
        assert back.read_bytes() == up.read_bytes()
        assert (root / "lab" / f"up-{passive}.bin").read_bytes() == up.read_bytes()
        assert same_address(fetched.data_peer[0], "::1")
        assert stored.mode == fetched.mode == ("passive" if passive else "active")
    with Client(KernelTransport(), timeout=5, data_timeout=5, passive=passive) as anonymous:
        anonymous.connect("::1", port)
        anonymous.login()
        got = tmp_path / "1M.bin"
        anonymous.retrieve("1M.bin", got)
    assert (
        hashlib.sha256(got.read_bytes()).digest()
        == hashlib.sha256(sample_bytes("1M.bin", 1 << 20)).digest()
    )
    sent = [line for line in lines if line.startswith(">")]
    if passive:
        assert any(line == "> EPSV" for line in sent)
        assert not any(line.startswith("> PASV") for line in sent)
    else:
        assert any(line.startswith("> EPRT |2|::1|") for line in sent)
        assert not any(line.startswith("> PORT") for line in sent)
