"""IPv6 end to end, live: the dual-stack topology, FTP with EPRT |2| and EPSV, captures, replay.

One topology for the module, dual stack: the server namespace's kernel at 198.18.0.1 and
2001:2::1 with the embedded pyftpdlib listening on both, the lab stack at 198.18.0.2 and
2001:2::2 on the client veth, and beside it the client namespace's kernel at 198.18.0.3 and
2001:2::3 (`kernel_client`). Every FTP test runs over both. RETR and STOR of 1M.bin must be
byte-exact over v6 against the embedded server, vsftpd (`listen_ipv6=YES`) and proftpd
(`UseIPv6 on`), in active mode (EPRT |2|, never PORT) and passive mode (EPSV, never PASV); the
data-connection rule must refuse a v6 intruder; `lab get/put/ls ftp://[2001:2::1]/...` must
leave a capture that tshark finds clean and that `lab replay` turns back into the file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from privileges import skip_unless_root

from lab.cli import main as cli
from lab.ftp.client import Client
from lab.ftp.server import EmbeddedServer, sample_bytes
from lab.ftp.servers import UPLOAD_DIR, DaemonFtpServer, Proftpd, Vsftpd
from lab.ftp.transport import KernelTransport, LabTransport, Transport, same_address
from lab.session import KERNEL_CLIENT_IP6, KernelSide, LabStack, kernel_client
from lab.topology import Topology
from lab.topology.topology import IFA_F_NODAD

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]

MODES = ("active", "passive")
ONE_MB = sample_bytes("1M.bin", 1 << 20)
INTRUDER6 = "2001:2::99"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TRANSPORTS = ("lab", "kernel")


@dataclass
class Live6:
    stack: LabStack
    server: EmbeddedServer
    kernel: KernelSide

    @property
    def topo(self) -> Topology:
        assert self.stack.topology is not None
        return self.stack.topology

    def transport(self, name: str) -> Transport:
        if name == "lab":
            return LabTransport(self.stack.runtime, seed=6)
        return KernelTransport(
            namespace=self.kernel.namespace,
            source_ip=self.kernel.address,
            source_ip6=self.kernel.address6,
        )

    def client_ip6(self, name: str) -> str:
        return self.topo.info.client_ip6 if name == "lab" else KERNEL_CLIENT_IP6


@pytest.fixture(scope="module")
def live6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live6]:
    skip_unless_root()
    root = tmp_path_factory.mktemp("ftp6-root")
    with LabStack.on_topology(record=False) as stack:
        assert stack.topology is not None
        with (
            EmbeddedServer(stack.topology, root=root) as server,
            kernel_client(stack.topology, capture=None) as side,
        ):
            yield Live6(stack, server, side)


def dialogue_of(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(">")]


def assert_rfc2428_only(sent: list[str], mode: str, client_ip6: str) -> None:
    """Over v6: EPRT |2| with our own address (active) or EPSV (passive); never PORT or PASV."""
    verbs = [line.split()[1] for line in sent]
    assert "PORT" not in verbs
    assert "PASV" not in verbs
    if mode == "active":
        eprts = [line for line in sent if line.startswith("> EPRT")]
        assert eprts
        assert all(line.startswith(f"> EPRT |2|{client_ip6}|") for line in eprts)
    else:
        assert "EPSV" in verbs


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retr_and_stor_of_1m_over_v6_against_the_embedded_server_are_byte_exact(
    live6: Live6, transport: str, mode: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    server6 = live6.server.address6
    with Client(
        live6.transport(transport),
        timeout=10,
        data_timeout=10,
        passive=mode == "passive",
        dialogue=lambda d, t: lines.append(f"{d} {t}"),
    ) as client:
        client.connect(server6)
        assert client.over_ipv6
        assert client.control is not None
        assert same_address(client.control.local_address[0], live6.client_ip6(transport))
        client.login("lab", "lab")
        stored = client.store(_one_mb(tmp_path), f"up-{transport}-{mode}.bin")
        assert stored.total == len(ONE_MB)
        assert stored.reply.code == 226
        assert same_address(stored.data_peer[0], server6)
    assert sha((live6.server.user_home / f"up-{transport}-{mode}.bin").read_bytes()) == sha(ONE_MB)
    with Client(live6.transport(transport), timeout=10, passive=mode == "passive") as anonymous:
        anonymous.connect(server6)
        anonymous.login()
        got = tmp_path / "1M.bin"
        fetched = anonymous.retrieve("1M.bin", got)
    assert sha(got.read_bytes()) == live6.server.digests["1M.bin"] == sha(ONE_MB)
    assert fetched.mode == mode
    assert same_address(fetched.data_peer[0], server6)
    assert_rfc2428_only(dialogue_of(lines), mode, live6.client_ip6(transport))


def _one_mb(tmp_path: Path) -> Path:
    path = tmp_path / "1M-upload.bin"
    path.write_bytes(ONE_MB)
    return path


DAEMONS: dict[str, type[DaemonFtpServer]] = {"vsftpd": Vsftpd, "proftpd": Proftpd}


@pytest.fixture(scope="module", params=sorted(DAEMONS))
def daemon6(request: pytest.FixtureRequest, live6: Live6) -> Iterator[DaemonFtpServer]:
    cls = DAEMONS[request.param]
    reason = cls.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    info = live6.topo.info
    daemon = cls(
        info.server_ns,
        address=info.server_ip,
        address6=info.server_ip6,
        port=2100 + sorted(DAEMONS).index(request.param),  # the embedded server has port 21
        files={"1M.bin": ONE_MB, "readme.txt": b"v6\r\n"},
    )
    with daemon:
        yield daemon


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retr_and_stor_of_1m_over_v6_against_the_daemons_are_byte_exact(
    live6: Live6, daemon6: DaemonFtpServer, transport: str, mode: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    server6 = live6.topo.info.server_ip6
    remote = f"{UPLOAD_DIR}/{daemon6.kind}-{transport}-{mode}.bin"
    with Client(
        live6.transport(transport),
        timeout=10,
        data_timeout=10,
        passive=mode == "passive",
        dialogue=lambda d, t: lines.append(f"{d} {t}"),
    ) as client:
        client.connect(server6, daemon6.port)
        client.login()
        got = tmp_path / "1M.bin"
        fetched = client.retrieve("1M.bin", got)
        stored = client.store(_one_mb(tmp_path), remote)
    assert sha(got.read_bytes()) == sha(ONE_MB)
    assert sha((daemon6.root / remote).read_bytes()) == sha(ONE_MB)
    assert stored.reply.code == 226
    for result in (fetched, stored):
        assert same_address(result.data_peer[0], server6)
        if mode == "active" and daemon6.active_source_port() is not None:
            assert result.data_peer[1] == daemon6.active_source_port()  # vsftpd: port 20
    assert_rfc2428_only(dialogue_of(lines), mode, live6.client_ip6(transport))


def test_the_daemons_still_serve_v4_while_listening_on_v6(
    live6: Live6, daemon6: DaemonFtpServer, tmp_path: Path
) -> None:
    """vsftpd's one "::" socket takes IPv4 clients through v4-mapped addresses: PORT-era
    clients must see no difference."""
    lines: list[str] = []
    with Client(
        live6.transport("kernel"), timeout=10, dialogue=lambda d, t: lines.append(f"{d} {t}")
    ) as client:
        client.connect(live6.topo.info.server_ip, daemon6.port)
        got = tmp_path / "1M.bin"
        client.login()
        result = client.retrieve("1M.bin", got)
    assert sha(got.read_bytes()) == sha(ONE_MB)
    assert result.data_peer[0] == live6.topo.info.server_ip  # not ::ffff:198.18.0.1
    assert any(line.startswith("> EPRT |1|198.18.0.3|") for line in lines)


def test_a_v6_data_connection_from_another_address_is_refused(live6: Live6) -> None:
    """The active-mode rule on v6: only the control peer (2001:2::1) may connect; a connection
    from 2001:2::99 (a second address of the server namespace) is reset, and the peer's is
    taken."""
    info = live6.topo.info
    from pyroute2 import NetNS

    with NetNS(info.server_ns, flags=0) as ns:
        index = ns.link_lookup(ifname=info.server_if)[0]
        ns.addr("add", index=index, address=INTRUDER6, prefixlen=64, flags=IFA_F_NODAD)
    try:
        listener = live6.transport("kernel").listen(KERNEL_CLIENT_IP6, peer_ip=info.server_ip6)
        host, port = listener.address

        def connect_from(source: str) -> socket.socket:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.bind((source, 0))
            sock.settimeout(5)
            sock.connect((host, port))
            return sock

        intruder = live6.topo.run_in_server(lambda: connect_from(INTRUDER6))
        friend = live6.topo.run_in_server(lambda: connect_from(info.server_ip6))
        try:
            stream = listener.accept(5, "2001:0002::0001")  # the peer, spelt differently
            assert same_address(stream.remote_address[0], info.server_ip6)
            assert [ip for ip, _ in listener.rejected] == [INTRUDER6]  # type: ignore[attr-defined]
            with pytest.raises(ConnectionResetError):
                intruder.recv(10)
            stream.close()
        finally:
            intruder.close()
            friend.close()
            listener.close()
    finally:
        with NetNS(info.server_ns, flags=0) as ns:
            index = ns.link_lookup(ifname=info.server_if)[0]
            ns.addr("del", index=index, address=INTRUDER6, prefixlen=64)


def test_the_lab_stack_refuses_a_v6_data_connection_from_another_address_at_the_syn(
    live6: Live6,
) -> None:
    """The same rule over the lab stack: the listener's admission hook compares the SYN's
    source with the control peer as values, and 2001:2::99 gets a RST at its SYN."""
    info = live6.topo.info
    from pyroute2 import NetNS

    with NetNS(info.server_ns, flags=0) as ns:
        index = ns.link_lookup(ifname=info.server_if)[0]
        ns.addr("add", index=index, address=INTRUDER6, prefixlen=64, flags=IFA_F_NODAD)
    listener = live6.transport("lab").listen(info.client_ip6, peer_ip="2001:2:0::1")
    try:
        host, port = listener.address
        assert host == info.client_ip6

        def connect_from(source: str) -> socket.socket:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.bind((source, 0))
            sock.settimeout(5)
            sock.connect((host, port))
            return sock

        with pytest.raises(ConnectionRefusedError):
            live6.topo.run_in_server(lambda: connect_from(INTRUDER6))
        friend = live6.topo.run_in_server(lambda: connect_from(info.server_ip6))
        try:
            stream = listener.accept(5, info.server_ip6)
            assert stream.remote_address[0] == info.server_ip6
            assert [ip for ip, _ in listener.rejected] == [INTRUDER6]  # type: ignore[attr-defined]
            stream.close()
        finally:
            friend.close()
    finally:
        listener.close()
        with NetNS(info.server_ns, flags=0) as ns:
            index = ns.link_lookup(ifname=info.server_if)[0]
            ns.addr("del", index=index, address=INTRUDER6, prefixlen=64)


def test_the_lab_stack_announces_a_v6_mss_of_1440_and_answers_neighbor_discovery(
    live6: Live6,
) -> None:
    """The server kernel learns our MAC by Neighbor Discovery (its neighbour table has
    2001:2::2 at the client veth's MAC), and our SYN's MSS leaves room for the 40-byte header."""
    info = live6.topo.info
    with Client(live6.transport("lab"), timeout=10) as client:
        client.connect(info.server_ip6)
        assert client.control is not None
        key = (*client.control.local_address, *client.control.remote_address)
        conn = live6.stack.host.tcp.connections[key]
        assert conn.config.mss == 1440
    neighbours = subprocess.run(
        ["ip", "-n", info.server_ns, "-6", "neigh", "show", info.client_ip6],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert info.client_mac.lower() in neighbours.lower()


# -- the command line: lab get/put/ls with a v6 URL, the capture, the replay ----------------------


def tshark_errors(capture: Path) -> str | None:
    """tshark's expert summary when it reports errors (None: clean, or no tshark)."""
    if shutil.which("tshark") is None:
        return None
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-q", "-z", "expert"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return out if "Errors (" in out or "Malformed" in out else None


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(args)
    except SystemExit as exit_:  # refused by an option's own type (lab.cli.values)
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stack", ["--codec=mixed", "--kernel"])
def test_cli_get_put_ls_with_a_v6_url_capture_clean_and_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stack: str, mode: str
) -> None:
    skip_unless_root()
    extra = [stack, *(["--passive"] if mode == "passive" else [])]
    capture = tmp_path / "get.pcapng"
    local = tmp_path / "1M.bin"
    code, out, err = run_cli(
        [
            "get",
            "ftp://[2001:2::1]/1M.bin",
            "-o",
            str(local),
            "--json",
            "-v",
            "--capture",
            str(capture),
            *extra,
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["sha256"] == sha(ONE_MB) == sha(local.read_bytes())
    assert summary["mode"] == mode
    assert "note: the embedded server" not in err
    assert ("> EPRT |2|" in err) == (mode == "active")
    assert "> PORT" not in err
    assert "> PASV" not in err
    assert tshark_errors(capture) is None

    out_dir = tmp_path / "replayed"
    report = tmp_path / "report.json"
    code, _, err = run_cli(
        ["replay", str(capture), "--out", str(out_dir), "--json", str(report)], capsys
    )
    assert code == 0, err
    assert sha((out_dir / "1M.bin").read_bytes()) == sha(ONE_MB)
    text = report.read_text()
    assert "2001:2::1" in text
    assert "foreign_data_address" not in text  # our EPRT named our own v6 address

    put_capture = tmp_path / "put.pcapng"
    code, out, err = run_cli(
        [
            "put",
            str(local),
            "ftp://[2001:2::1]:21/",
            "--json",
            "--capture",
            str(put_capture),
            *extra,
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["total"] == len(ONE_MB)
    assert tshark_errors(put_capture) is None
    code, out, err = run_cli(
        ["ls", "ftp://[2001:2::1]/", "--names", "--capture", str(tmp_path / "ls.pcapng"), *extra],
        capsys,
    )
    assert code == 0, err
    assert "1M.bin" in out.split()


def test_a_v6_address_without_brackets_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(["get", "ftp://2001:2::1/1M.bin", "--kernel"], capsys)
    assert code == 2
    assert "brackets" in err
    assert "Traceback" not in err


def test_lab_ping_answers_over_v6(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    skip_unless_root()
    capture = tmp_path / "ping6.pcapng"
    code, out, err = run_cli(
        ["ping", "2001:2::1", "-c", "2", "-i", "0.1", "--json", "--capture", str(capture)], capsys
    )
    assert code == 0, err
    stats = json.loads(out)
    assert (stats["target"], stats["transmitted"], stats["received"]) == ("2001:2::1", 2, 2)
    assert stats["rtt_max"] < 1000  # DAD's second is not in the RTT
    assert tshark_errors(capture) is None
    code, out, err = run_cli(["ping", "-6", "-c", "1"], capsys)
    assert code == 0, err
    assert "PING 2001:2::1 from 2001:2::2" in out
    assert "bytes from 2001:2::1: icmp_seq=1" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-4", "2001:2::1"], "-4 given, but 2001:2::1 is an IPv6 address"),
        (["-6", "198.18.0.1"], "-6 given, but 198.18.0.1 is an IPv4 address"),
        (["2001:2::zz"], "not an IPv4 or IPv6 address"),
        (["-6", "-s", "1453"], "between 0 and 1452"),
    ],
)
def test_lab_ping_family_mismatches_are_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    code, _, err = run_cli(["ping", *args], capsys)
    assert code == 2
    assert says in err
    assert "Traceback" not in err


def test_lab_connect_to_a_v6_host_echoes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    skip_unless_root()
    import io
    import sys

    class Stdin:
        buffer = io.BytesIO(b"hello over IPv6\n")

    monkeypatch.setattr(sys, "stdin", Stdin())
    code, out, err = run_cli(
        ["connect", "2001:2::1", "7007", "--json", "--capture", str(tmp_path / "c.pcapng")],
        capsys,
    )
    assert code == 0, err
    assert out == "hello over IPv6\n"
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["local"].startswith("[2001:2::2]:")
    assert summary["remote"] == "[2001:2::1]:7007"
    assert tshark_errors(tmp_path / "c.pcapng") is None


def test_ping_and_connect_over_v6_on_an_existing_interface(tmp_path: Path) -> None:
    """`--iface IF --addr CIDR --addr6 CIDR6`: the stack takes both addresses on a link it did
    not make, with its own Neighbor Discovery, and the kernel there owns neither."""
    skip_unless_root()
    import sys

    from lab.topology.peers import start_echo_server

    with Topology() as topo:
        info = topo.info
        start_echo_server(topo, info.server_ip6, 7)
        iface = [
            "--iface", topo.names.client_if, "--addr", f"{info.client_ip}/{info.prefixlen}",
            "--addr6", f"{info.client_ip6}/{info.prefixlen6}",
        ]  # fmt: skip

        def in_client(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
            process = topo.popen_client(
                [sys.executable, "-m", "lab", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = process.communicate(stdin, timeout=60)
            return subprocess.CompletedProcess(args, process.returncode, out, err)

        ping = in_client(
            "ping", "-6", info.server_ip6, "-c", "2", "-i", "0.05", *iface,
            "--capture", str(tmp_path / "p.pcapng"),
        )  # fmt: skip
        assert ping.returncode == 0, ping.stderr
        assert b"2 packets transmitted, 2 received, 0% packet loss" in ping.stdout
        connect = in_client(
            "connect", info.server_ip6, "7", *iface, "--capture", str(tmp_path / "c.pcapng"),
            stdin=b"v6 over an existing interface\n",
        )  # fmt: skip
        assert connect.returncode == 0, connect.stderr
        assert connect.stdout == b"v6 over an existing interface\n"
        refused = in_client("ping", "--addr6", "2001:2::9/64")
        assert refused.returncode == 2
        assert b"go with --iface" in refused.stderr
