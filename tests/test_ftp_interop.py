"""Interop with FTP servers no one here wrote: vsftpd and proftpd in the server namespace.

The same `Client` runs over the hand-built stack and over kernel sockets (from 198.18.0.4 on the
same veth), in active and passive mode, against each daemon: RETR byte-exact (sha256), LIST
showing the files the daemon serves, STOR into the anonymous upload directory byte-exact on the
server's disk, STOR elsewhere refused. In active mode the data connection must come from where
vsftpd is known to connect from (port 20): proof that the server really opened it towards our
listener.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from ftp_stacks import LiveStack, live_stack
from privileges import skip_unless_root

from lab.ftp.client import Client, FtpPermanentError
from lab.ftp.servers import UPLOAD_DIR, DaemonFtpServer, Proftpd, RunningServer, Vsftpd
from lab.session import KERNEL_CLIENT_IP

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]

T = TypeVar("T")

SERVERS: dict[str, type[DaemonFtpServer]] = {"vsftpd": Vsftpd, "proftpd": Proftpd}
TRANSPORTS = ("lab", "kernel")
MODES = ("active", "passive")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def stack() -> Iterator[LiveStack]:
    skip_unless_root()
    with live_stack(KERNEL_CLIENT_IP) as live:
        yield live


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, stack: LiveStack) -> Iterator[RunningServer]:
    cls = SERVERS[request.param]
    reason = cls.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    daemon = cls(stack.topo.names.server_ns, address=stack.info.server_ip)
    with daemon as running:
        yield running


def session(
    stack: LiveStack, server: RunningServer, transport: str, mode: str, fn: Callable[[Client], T]
) -> T:
    """Log in anonymously over `transport` in `mode`, run `fn`, say QUIT."""

    def run() -> T:
        make = stack.lab_client if transport == "lab" else stack.kernel_client
        with make(passive=mode == "passive", timeout=10, data_timeout=10) as client:
            client.connect(server.address, server.port)
            assert client.control is not None
            expected_ip = stack.info.client_ip if transport == "lab" else KERNEL_CLIENT_IP
            assert client.control.local_address[0] == expected_ip
            client.login()
            return fn(client)

    return run()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retr_is_byte_exact(
    stack: LiveStack, server: RunningServer, transport: str, mode: str, tmp_path: Path
) -> None:
    names = ("one-mb.bin", "small.bin", "readme.txt")

    def fetch(client: Client) -> list[tuple[int, tuple[str, int]]]:
        out = []
        for name in names:
            result = client.retrieve(name, tmp_path / name)
            out.append((result.total, result.data_peer))
        return out

    results = session(stack, server, transport, mode, fetch)
    for name, (total, data_peer) in zip(names, results, strict=True):
        got = (tmp_path / name).read_bytes()
        assert total == len(server.files[name])
        assert sha(got) == sha(server.files[name]), name
        assert not (tmp_path / f"{name}.part").exists()
        assert data_peer[0] == server.address
        if mode == "active" and server.active_source_port is not None:
            assert data_peer[1] == server.active_source_port


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_list_shows_the_served_files(
    stack: LiveStack, server: RunningServer, transport: str, mode: str
) -> None:
    lines = session(stack, server, transport, mode, lambda client: client.list())
    listed = {line.split()[-1]: line for line in lines}
    assert set(listed) == {*server.files, UPLOAD_DIR}
    for name, data in server.files.items():
        assert str(len(data)) in listed[name].split()  # the size column
    assert listed[UPLOAD_DIR].startswith("d")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stor_into_the_upload_directory_is_byte_exact(
    stack: LiveStack, server: RunningServer, transport: str, mode: str, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 2048 + b"\r\n\n\r tail"  # CR/LF bytes must pass untouched
    local = tmp_path / "upload.bin"
    local.write_bytes(payload)
    remote = f"{UPLOAD_DIR}/{server.kind}-{transport}-{mode}.bin"
    result = session(stack, server, transport, mode, lambda client: client.store(local, remote))
    assert result.total == len(payload)
    assert result.reply.code == 226
    stored = server.root / remote
    assert sha(stored.read_bytes()) == sha(payload)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stor_outside_the_upload_directory_is_refused(
    stack: LiveStack, server: RunningServer, transport: str, tmp_path: Path
) -> None:
    from lab.topology.userns import is_rootless

    if is_rootless():  # the daemon then runs as the files' owner: no permission can refuse it
        pytest.skip("rootless: the server runs as the owner of its tree (one mapped uid)")
    local = tmp_path / "nope.bin"
    local.write_bytes(b"should not land")

    def store(client: Client) -> int:
        with pytest.raises(FtpPermanentError) as info:
            client.store(local, "nope.bin")
        client.noop()  # the dialogue is still in step after the refusal
        return info.value.code

    assert session(stack, server, transport, "passive", store) in (550, 553)
    assert not (server.root / "nope.bin").exists()


def test_lab_and_kernel_see_the_same_listing_and_bytes(
    stack: LiveStack, server: RunningServer, tmp_path: Path
) -> None:
    def both(client: Client) -> tuple[list[str], bytes]:
        target = tmp_path / f"{client.transport.name}.bin"
        client.retrieve("one-mb.bin", target)
        return client.list(), target.read_bytes()

    lab = session(stack, server, "lab", "active", both)
    kernel = session(stack, server, "kernel", "active", both)
    assert lab == kernel


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_a_daemon_that_fails_to_come_up_is_stopped_whatever_the_failure(
    kind: str, stack: LiveStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only a ServerStartError: the wait for the listening socket failing any other way (the
    namespace removed under it, Ctrl-C) must not leave the daemon running on its own."""
    from lab.ftp import servers

    cls = SERVERS[kind]
    reason = cls.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    started: list[int] = []

    def vanished(namespace: str, address: str, port: int, process: object, timeout: float) -> None:
        started.append(getattr(process, "pid"))  # noqa: B009
        raise FileNotFoundError(f"/run/netns/{namespace}")

    monkeypatch.setattr(servers, "_wait_listening", vanished)
    daemon = cls(stack.topo.names.server_ns, address=stack.info.server_ip, port=2121)
    with pytest.raises(FileNotFoundError):
        daemon.start()
    assert started
    assert daemon.process is None
    with pytest.raises(ProcessLookupError):
        os.killpg(started[0], 0)  # the whole process group is gone
    assert not daemon.workdir.exists()
