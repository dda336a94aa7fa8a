"""The FTP client live: the hand-built stack against the embedded pyftpdlib, and the kernel too.

One topology for the module: the lab stack on the client veth end (198.18.0.2), the kernel's own
sockets on the same veth (198.18.0.3), and pyftpdlib in the server namespace (198.18.0.1). Every
operation runs over both, in active and passive mode, and the results must be equal byte for byte.
Small files go through the Scapy codec; the 50 MB file through the fast one.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from privileges import skip_unless_root

from lab.cli import main as cli
from lab.ftp.client import Client, FtpPermanentError, TransferIncomplete, part_path
from lab.ftp.server import EmbeddedServer
from lab.ftp.transport import KernelTransport, LabTransport, Transport
from lab.session import LabStack, kernel_client

pytestmark = pytest.mark.privileged

MODES = [False, True]
MODE_IDS = ["active", "passive"]


@dataclass
class Live:
    stack: LabStack
    server: EmbeddedServer
    lab: LabTransport
    kernel: KernelTransport

    def transport(self, name: str) -> Transport:
        return self.lab if name == "lab" else self.kernel


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    skip_unless_root()
    captures = tmp_path_factory.mktemp("ftp-captures")
    root = tmp_path_factory.mktemp("ftp-root")
    with LabStack.on_topology(codec="scapy", capture=captures / "lab.pcapng") as stack:
        assert stack.topology is not None
        with (
            EmbeddedServer(stack.topology, root=root, big=True) as server,
            kernel_client(stack.topology, capture=captures / "kernel.pcapng") as side,
        ):
            yield Live(
                stack,
                server,
                LabTransport(stack.runtime, seed=1),
                KernelTransport(namespace=side.namespace, source_ip=side.address),
            )


def client_for(live: Live, name: str, passive: bool, user: str = "anonymous") -> Client:
    client = Client(live.transport(name), timeout=10, data_timeout=10, passive=passive)
    client.connect(live.server.address)
    client.login(user, "lab" if user == "lab" else "lab@")
    return client


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("passive", MODES, ids=MODE_IDS)
def test_retr_small_files_over_lab_and_kernel_are_byte_exact(
    live: Live, tmp_path: Path, passive: bool
) -> None:
    live.stack.set_codec("scapy")
    for name in ("lab", "kernel"):
        with client_for(live, name, passive) as client:
            for remote in ("hello.txt", "1M.bin"):
                local = tmp_path / f"{name}-{remote}"
                result = client.retrieve(remote, local)
                assert sha256(local) == live.server.digests[remote], (name, remote)
                assert result.mode == ("passive" if passive else "active")
                assert result.data_peer[0] == live.server.address
                assert result.reply.code == 226
                assert result.stats is not None
                assert result.stats.segments_received > 0
    assert (tmp_path / "lab-1M.bin").read_bytes() == (tmp_path / "kernel-1M.bin").read_bytes()


@pytest.mark.parametrize("passive", MODES, ids=MODE_IDS)
def test_listings_size_and_directory_operations_match_the_kernel(
    live: Live, tmp_path: Path, passive: bool
) -> None:
    live.stack.set_codec("scapy")
    seen: dict[str, tuple[object, ...]] = {}
    upload = tmp_path / "up.bin"
    upload.write_bytes(os.urandom(200_000))
    for name in ("lab", "kernel"):
        directory = f"{name}-{'p' if passive else 'a'}"
        with client_for(live, name, passive, user="lab") as client:
            client.mkd(directory)
            client.cwd(directory)
            client.store(upload, "up.bin")
            assert client.size("up.bin") == 200_000
            client.rename("up.bin", "renamed.bin")
            names = client.nlst()
            listing = [line.split()[-1] for line in client.list()]
            facts = [(e.name, e.type, e.size) for e in client.mlsd()]
            back = tmp_path / f"{name}-back.bin"
            client.retrieve("renamed.bin", back)
            assert back.read_bytes() == upload.read_bytes()
            client.dele("renamed.bin")
            assert client.nlst() == []
            client.cdup()
            client.rmd(directory)
            assert directory not in client.nlst()
            seen[name] = (names, listing, facts)
        with client_for(live, name, passive) as anonymous:
            assert anonymous.size("pub/10M.bin") == 10 << 20
            with pytest.raises(FtpPermanentError):
                anonymous.mkd("nope")  # the anonymous root is read-only
    assert seen["lab"] == seen["kernel"]
    assert seen["lab"][0] == ["renamed.bin"]
    assert seen["lab"][2] == [("renamed.bin", "file", 200_000)]
    assert (live.server.user_home / "up.bin").exists() is False


TEXT = "".join(f"line {i}: caf\u00e9 \u2014 {'x' * (i % 97)}\n" for i in range(5000)).encode()


@pytest.mark.parametrize("passive", MODES, ids=MODE_IDS)
def test_every_command_over_the_lab_stack_as_over_the_kernel(
    live: Live, tmp_path: Path, passive: bool
) -> None:
    """SYST, FEAT, OPTS UTF8, PWD, CWD/CDUP, TYPE A both ways (CRLF on the wire, LF on disk),
    STOR + APPE, MDTM, REST, ABOR mid-transfer: the same answers over both transports."""
    live.stack.set_codec("scapy")
    source = tmp_path / "text.txt"
    source.write_bytes(TEXT)
    lines = TEXT.count(b"\n")
    big = live.server.user_home / f"big-{passive}.bin"
    big.write_bytes(os.urandom(10 << 20))
    seen: dict[str, tuple[object, ...]] = {}
    for name in ("lab", "kernel"):
        directory = f"every-{name}-{'p' if passive else 'a'}"
        shown: list[str] = []
        client = Client(
            live.transport(name),
            timeout=10,
            data_timeout=10,
            passive=passive,
            dialogue=lambda d, text, shown=shown: shown.append(f"{d} {text}"),
        )
        with client:
            client.connect(live.server.address)
            client.login("lab", "lab")
            system = client.syst()
            features = client.feat()
            assert {"EPRT", "EPSV", "MDTM", "MLST", "REST", "SIZE", "UTF8"} <= features
            assert client.opts_utf8().code in (200, 202)
            assert client.pwd() == "/"
            client.mkd(directory)
            client.cwd(directory)
            assert client.pwd() == f"/{directory}"
            # TYPE A out: every LF leaves as CRLF; pyftpdlib stores the local line end (LF).
            sent = client.store(source, "text.txt", ascii=True)
            assert sent.bytes == len(TEXT) + lines
            assert (live.server.user_home / directory / "text.txt").read_bytes() == TEXT
            # TYPE A in: CRLF on the wire, LF on disk.
            back = tmp_path / f"{name}-ascii.txt"
            got = client.retrieve("text.txt", back, ascii=True)
            assert got.bytes == len(TEXT) + lines
            assert back.read_bytes() == TEXT
            # APPE adds to the end; SIZE (binary) sees both halves.
            client.store(source, "text.txt", append=True)
            assert client.size("text.txt") == 2 * len(TEXT)
            stamp = client.mdtm("text.txt")
            assert stamp[:4].isdigit()
            assert len(stamp) >= 14
            # REST: a .part holding the first half continues from there.
            half = tmp_path / f"{name}-half.txt"
            part_path(half).write_bytes(TEXT)
            resumed = client.retrieve("text.txt", half, resume=True)
            assert resumed.resumed_from == len(TEXT)
            assert resumed.bytes == len(TEXT)
            assert half.read_bytes() == TEXT * 2
            client.cdup()
            assert client.pwd() == "/"
            listing = client.nlst(directory)
            # ABOR mid-transfer: cut 10 MB short after 1 MB, then the dialogue is usable again.
            live.stack.set_codec("fast")
            cut = tmp_path / f"{name}-cut.bin"

            def stop_after_1mb(done: int, total: int | None) -> None:
                if done >= 1 << 20:
                    raise StopTransferError

            with pytest.raises(TransferIncomplete) as info:
                client.retrieve(f"/{big.name}", cut, progress=stop_after_1mb)
            live.stack.set_codec("scapy")
            assert (1 << 20) <= info.value.received < 10 << 20
            assert part_path(cut).stat().st_size == info.value.received
            assert "> ABOR" in shown
            assert client.noop().code == 200
            assert client.pwd() == "/"
            client.dele(f"{directory}/text.txt")
            client.rmd(directory)
            seen[name] = (system, features, listing, len(stamp))
    big.unlink()
    assert seen["lab"] == seen["kernel"]


class StopTransferError(Exception):
    """Raised from a progress callback to cut a transfer short."""


def test_interrupted_retr_keeps_a_part_and_resume_completes_it(live: Live, tmp_path: Path) -> None:
    live.stack.set_codec("fast")
    local = tmp_path / "10M.bin"

    def stop_after_3mb(done: int, total: int | None) -> None:
        if done >= 3 << 20:
            raise StopTransferError

    with client_for(live, "lab", passive=False) as client:
        with pytest.raises(TransferIncomplete) as info:
            client.retrieve("pub/10M.bin", local, progress=stop_after_3mb)
        kept = part_path(local).stat().st_size
        assert kept == info.value.received
        assert 3 << 20 <= kept < 10 << 20
        assert not local.exists()
        assert client.noop().code == 200  # ABOR + NOOP put the dialogue back in step
        result = client.retrieve("pub/10M.bin", local, resume=True)
    assert result.resumed_from == kept
    assert result.bytes == (10 << 20) - kept
    assert sha256(local) == live.server.digests["pub/10M.bin"]
    assert not part_path(local).exists()


def test_server_dying_mid_transfer_leaves_a_part_then_resume_finishes(
    live: Live, tmp_path: Path
) -> None:
    live.stack.set_codec("fast")
    local = tmp_path / "50M.bin"
    killed = False

    def kill_server_after_5mb(done: int, total: int | None) -> None:
        nonlocal killed
        if done >= 5 << 20 and not killed:
            killed = True
            assert live.server.process is not None
            os.kill(live.server.process.pid, signal.SIGKILL)

    try:
        client = client_for(live, "lab", passive=False)
        with pytest.raises(TransferIncomplete) as info:
            client.retrieve("50M.bin", local, progress=kill_server_after_5mb)
        client.close()
    finally:
        live.server.stop_process()
        live.server.start()
    assert killed
    received = part_path(local).stat().st_size
    assert info.value.received == received
    assert received < 50 << 20
    assert str(received) in str(info.value)
    with client_for(live, "lab", passive=False) as client:
        client.retrieve("50M.bin", local, resume=True)
    assert sha256(local) == live.server.digests["50M.bin"]


@pytest.mark.parametrize("passive", MODES, ids=MODE_IDS)
def test_50_mb_retr_fast_codec_is_byte_exact_and_equal_to_the_kernel(
    live: Live, tmp_path: Path, passive: bool
) -> None:
    live.stack.set_codec("fast")
    figures = {}
    for name in ("lab", "kernel"):
        local = tmp_path / f"{name}.bin"
        with client_for(live, name, passive) as client:
            started = time.monotonic()
            result = client.retrieve("50M.bin", local)
            figures[name] = (result.mb_per_s, time.monotonic() - started, result.stats)
        assert sha256(local) == live.server.digests["50M.bin"]
    assert (tmp_path / "lab.bin").read_bytes() == (tmp_path / "kernel.bin").read_bytes()
    lab_rate, lab_seconds, lab_stats = figures["lab"]
    kernel_rate, _, _ = figures["kernel"]
    print(
        f"\n50 MB RETR {'passive' if passive else 'active'}: lab {lab_rate:.1f} MB/s "
        f"({lab_seconds:.1f} s, {lab_stats}), kernel {kernel_rate:.1f} MB/s",
        file=sys.stderr,
    )
    assert lab_seconds < 45


@pytest.mark.parametrize("passive", MODES, ids=MODE_IDS)
def test_10_mb_stor_fast_codec_arrives_byte_exact_like_the_kernel_s(
    live: Live, tmp_path: Path, passive: bool
) -> None:
    live.stack.set_codec("fast")
    source = tmp_path / "10M.bin"
    source.write_bytes(os.urandom(10 << 20))
    for name in ("lab", "kernel"):
        remote = f"stor-{name}-{passive}.bin"
        with client_for(live, name, passive, user="lab") as client:
            result = client.store(source, remote)
            assert result.reply.code == 226
            assert client.size(remote) == 10 << 20
        stored = live.server.user_home / remote
        assert stored.read_bytes() == source.read_bytes(), name
        print(f"\n10 MB STOR {name}: {result.mb_per_s:.1f} MB/s", file=sys.stderr)
        stored.unlink()


# -- the command line ---------------------------------------------------------------------------


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_get_json_summary_and_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "get.pcapng"
    local = tmp_path / "1M.bin"
    code, out, err = run_cli(
        ["get", "ftp://198.18.0.1/1M.bin", "-o", str(local), "--json", "--capture", str(capture)],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ok"] is True
    assert summary["bytes"] == 1 << 20
    assert summary["mode"] == "active"
    assert summary["sha256"] == sha256(local)
    assert summary["segments_in"] >= (1 << 20) // 1460
    assert summary["segments_out"] > 0
    # each retransmission is one of the segments we sent (a count that ran away would exceed it)
    assert isinstance(summary["retransmissions"], int)
    assert summary["retransmissions"] <= summary["segments_out"]
    assert summary["seconds"] > 0
    assert summary["mb_per_s"] == pytest.approx(summary["bytes"] / summary["seconds"] / 1e6, 0.01)
    assert summary["capture"] == str(capture)
    assert summary["stack"].startswith("lab (")  # the hand-built stack, not the kernel
    assert summary["exit"] == 0
    assert summary["reply"].startswith("226")
    assert capture.stat().st_size > 1 << 20


def test_cli_verbose_passive_kernel_shows_the_dialogue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        ["get", "ftp://198.18.0.1/hello.txt", "-o", str(tmp_path), "-v", "--passive", "--kernel",
         "--capture", str(tmp_path / "k.pcapng")],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "> EPSV" in err
    assert "< 226" in err
    assert "PASS ****" in err
    assert "RETR hello.txt: 82 bytes" in out
    assert (tmp_path / "hello.txt").stat().st_size == 82


def test_cli_get_makes_the_missing_folders_of_its_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = tmp_path / "new" / "dir" / "hello.txt"
    code, _, err = run_cli(
        ["get", "ftp://198.18.0.1/hello.txt", "-o", str(local), "--passive", "--kernel",
         "--capture", str(tmp_path / "k.pcapng")],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert local.stat().st_size == 82
    assert not local.with_name("hello.txt.part").exists()


def test_cli_missing_file_exits_1_and_incomplete_exits_3_keeping_the_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        ["get", "ftp://198.18.0.1/missing.bin", "-o", str(tmp_path / "m"), "--json",
         "--capture", str(tmp_path / "a.pcapng")],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert json.loads(out)["ok"] is False
    assert "550" in json.loads(out)["error"]
    assert not (tmp_path / "m.part").exists()
    # A .part longer than the remote file cannot be resumed: incomplete, the .part stays.
    part = tmp_path / "hello.txt.part"
    part.write_bytes(b"x" * 500)
    code, _, err = run_cli(
        ["get", "ftp://198.18.0.1/hello.txt", "-o", str(tmp_path / "hello.txt"), "--resume",
         "--capture", str(tmp_path / "b.pcapng")],
        capsys,
    )  # fmt: skip
    assert code == 3
    assert "500 of 82 bytes" in err
    assert part.stat().st_size == 500
    code, out, _ = run_cli(
        ["get", "ftp://198.18.0.1/hello.txt", "-o", str(tmp_path / "hello.txt"), "--resume",
         "--json", "--capture", str(tmp_path / "c.pcapng")],
        capsys,
    )  # fmt: skip
    failed = json.loads(out)
    assert (code, failed["exit"], failed["ok"]) == (3, 3, False)
    assert (failed["received"], failed["expected"]) == (500, 82)
    assert failed["part"] == str(part)


def test_cli_put_and_ls_use_the_writable_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "mine.txt"
    source.write_bytes(b"uploaded by the lab stack\n")
    code, out, err = run_cli(
        ["put", str(source), "ftp://198.18.0.1/", "--capture", str(tmp_path / "p.pcapng")], capsys
    )
    assert code == 0, err
    assert "STOR mine.txt" in out
    code, out, err = run_cli(
        ["ls", "ftp://198.18.0.1/pub/", "--names", "--capture", str(tmp_path / "l.pcapng")], capsys
    )
    assert code == 0, err
    assert out.split() == ["10M.bin"]


def test_live_demo_fetches_in_active_mode_and_writes_the_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "demo.pcapng"
    code, out, err = run_cli(["demo", "--live", "--capture", str(capture)], capsys)
    assert code == 0, err
    assert "EPRT |1|198.18.0.2|" in out
    assert "LISTEN -> SYN-RECEIVED" in out  # the server's SYN reached our listener
    assert "226 Transfer complete." in out
    assert "matches the server file" in out
    assert capture.stat().st_size > 1 << 20


def test_a_failed_live_demo_exits_1_and_leaves_no_part_beside_the_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_retrieve = Client.retrieve

    def stop_after_100k(self: Client, remote: str, local: Path, **kwargs: object) -> object:
        def stop(done: int, total: int | None) -> None:
            if done >= 100_000:
                raise StopTransferError

        return real_retrieve(self, remote, local, progress=stop)

    monkeypatch.setattr(Client, "retrieve", stop_after_100k)
    capture = tmp_path / "demo.pcapng"
    code, _, err = run_cli(["demo", "--live", "--capture", str(capture)], capsys)
    assert code == 1
    assert "transfer incomplete" in err
    assert capture.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.pcapng"]


def test_cli_on_an_existing_interface_inside_a_namespace(tmp_path: Path) -> None:
    """`--iface` as a user would run it: `ip netns exec NS lab get --iface IF --addr CIDR URL`."""
    import subprocess

    from lab.topology import Topology

    with Topology() as topo, EmbeddedServer(topo) as server:
        names = topo.names
        local = tmp_path / "hello.txt"
        child = topo.popen_client(
            [sys.executable, "-m", "lab", "get", "ftp://198.18.0.1/hello.txt", "--json",
             "--iface", names.client_if, "--addr", "198.18.0.7/24", "-o", str(local),
             "--capture", str(tmp_path / "iface.pcapng")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        summary = json.loads(out)
        assert summary["sha256"] == server.digests["hello.txt"]
        assert (
            summary["stack"] == "lab (mixed codec)"
        )  # the default: Scapy for control, struct for bulk
    assert (tmp_path / "iface.pcapng").stat().st_size > 0
