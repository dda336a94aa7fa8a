"""`lab ping` and `lab connect`: the hand-built stack from the command line.

Unprivileged tests pin down the argument checks and the exit code 77 without capabilities.
Privileged ones run the real commands on a lab topology: ping the server namespace's kernel from
our stack, send stdin through a kernel echo server and get it back byte for byte, and do both on
an interface that already exists (`--iface`), from inside the client namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.cli.errors import ExitCode
from lab.cli.main import main as lab_main
from lab.cli.ping import summary
from lab.topology import privileges

privileged = pytest.mark.privileged


# -- unprivileged ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["ping"], ["connect", "198.18.0.1", "7"]])
def test_without_capabilities_one_line_and_exit_77(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(privileges, "effective_capabilities", lambda: 0)
    assert lab_main(argv) == ExitCode.NO_PRIVILEGES
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert "CAP_NET_RAW" in captured.err
    assert "Traceback" not in captured.err + captured.out


@pytest.mark.parametrize("argv", [["ping"], ["connect", "198.18.0.1", "7"]])
def test_a_raw_socket_refused_on_an_existing_interface_is_exit_77_too(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.link.packet import PacketLink

    def refuse(*args: object, **kwargs: object) -> PacketLink:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(PacketLink, "open", refuse)
    extra = ["--iface", "lab0", "--addr", "198.18.77.2/24"]
    if argv == ["ping"]:
        extra.insert(0, "198.18.77.1")
    assert lab_main([*argv, *extra]) == ExitCode.NO_PRIVILEGES
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Operation not permitted" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ping", "198.18.0.1", "--iface", "lab0"], "--iface needs --addr"),
        (["ping", "--addr", "198.18.0.9/24"], "--addr and --gateway go with --iface"),
        (["ping", "--iface", "lab0", "--addr", "198.18.5.2/24"], "name the HOST"),
        (["ping", "--iface", "lab0", "--addr", "198.18.5.300/24", "x"], "198.18.5.300"),
        (["ping", "-s", "1473"], "-s must be"),
        # a bad port is refused by the parser now: tests/test_bad_values.py
        (["connect", "198.18.0.1", "7", "--iface", "lo", "--addr", "127.0.0.1/8"], "owns"),
    ],
)
def test_bad_arguments_are_usage_errors_before_anything_is_built(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = lab_main(argv)
    except SystemExit as exit_:  # refused by the option's own type (lab.cli.values)
        code = exit_.code
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_the_ping_summary_reads_like_ping8() -> None:
    lines = summary("198.18.0.1", 4, [0.5, 0.25, 0.75], 3.0021)
    assert lines == [
        "--- 198.18.0.1 ping statistics ---",
        "4 packets transmitted, 3 received, 25% packet loss, time 3002ms",
        "rtt min/avg/max/mdev = 0.250/0.500/0.750/0.204 ms",
    ]
    assert summary("x", 2, [], 1.0)[
        1
    ] == "2 packets transmitted, 0 received, 100% packet loss, " + ("time 1000ms")


# -- privileged --------------------------------------------------------------------------------


def tshark_errors(capture: Path) -> str | None:
    """tshark's expert summary when it reports errors or malformed frames (None: clean)."""
    if shutil.which("tshark") is None:
        return None
    result = subprocess.run(
        ["tshark", "-r", str(capture), "-q", "-z", "expert"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    bad = result.returncode != 0 or "Malformed" in result.stdout or "Errors (" in result.stdout
    return result.stdout + result.stderr if bad else None


@privileged
def test_lab_ping_gets_answers_from_the_server_namespace_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.capture.reader import read_packets

    capture = tmp_path / "ping.pcapng"
    argv = ["ping", "-c", "3", "-i", "0.05", "--codec", "scapy", "--capture", str(capture)]
    assert lab_main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("PING 198.18.0.1 from 198.18.0.2 (lab stack, scapy codec)")
    replies = [line for line in out if line.startswith("64 bytes from 198.18.0.1: icmp_seq=")]
    assert [r.split()[4] for r in replies] == ["icmp_seq=1", "icmp_seq=2", "icmp_seq=3"]
    assert all(" ttl=64 time=" in r and r.endswith(" ms") for r in replies)
    assert "3 packets transmitted, 3 received, 0% packet loss" in out[-2]
    assert out[-1].startswith("rtt min/avg/max/mdev = ")
    packets = list(read_packets(capture))
    requests = [p for p in packets if p.direction == "out" and p.data[23] == 1 and p.data[34] == 8]
    assert len(requests) == 3
    assert tshark_errors(capture) is None


@privileged
def test_lab_ping_to_an_address_nobody_has_says_unreachable_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ping", "198.18.0.9", "-c", "1", "-W", "6", "--capture", str(tmp_path / "x.pcapng")]
    assert lab_main(argv) == 1
    out = capsys.readouterr().out
    assert "From 198.18.0.2 icmp_seq=1 Destination Host Unreachable" in out
    assert "1 packets transmitted, 0 received, 100% packet loss" in out


def lab_command(
    *args: str, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@privileged
def test_lab_connect_sends_stdin_through_a_kernel_echo_server_and_prints_it_back(
    tmp_path: Path,
) -> None:
    capture = tmp_path / "connect.pcapng"
    data = b"".join(b"%06d lab connect\n" % i for i in range(20_000))  # 340 kB
    result = lab_command("connect", "198.18.0.1", "7", "-v", "--capture", str(capture), stdin=data)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert result.stdout == data
    lines = err.splitlines()
    assert any(ln.startswith("out ") and ln.endswith("CLOSED -> SYN-SENT") for ln in lines)
    assert any(ln.startswith(" in ") and ln.endswith("SYN-SENT -> ESTABLISHED") for ln in lines)
    assert any(ln.endswith("ESTABLISHED -> FIN-WAIT-1") for ln in lines)
    assert f"sent {len(data)} bytes, received {len(data)} bytes" in err
    assert "ends in TIME-WAIT" in err
    assert tshark_errors(capture) is None


@privileged
def test_lab_connect_json_summary_goes_to_stderr_and_the_peers_bytes_to_stdout() -> None:
    data = b"json summary please\n" * 50
    result = lab_command("connect", "198.18.0.1", "7", "--json", stdin=data)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == data
    summary = json.loads(result.stderr.decode().strip().splitlines()[-1])
    assert summary["sent"] == summary["received"] == len(data)
    assert summary["remote"] == "198.18.0.1:7"
    assert summary["final_state"] == "TIME-WAIT"


@privileged
def test_lab_connect_to_a_port_nobody_listens_on_is_refused(tmp_path: Path) -> None:
    capture = tmp_path / "refused.pcapng"
    result = lab_command("connect", "198.18.0.1", "7", "--no-server", "--capture", str(capture))
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        "lab connect: ConnectionRefused: connection to 198.18.0.1:7 refused"
    )
    assert result.stdout == b""


ECHO_SERVER = textwrap.dedent(
    """
    import socket, sys
    server = socket.socket()
    server.bind((sys.argv[1], 7))
    server.listen()
    print("ready", flush=True)
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
    """
)


@privileged
def test_ping_and_connect_work_on_an_existing_interface(tmp_path: Path) -> None:
    from lab.topology import Topology

    with Topology() as topo:
        info = topo.info
        server = topo.popen_server(
            [sys.executable, "-c", ECHO_SERVER, info.server_ip], stdout=subprocess.PIPE
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        iface = ["--iface", topo.names.client_if, "--addr", f"{info.client_ip}/{info.prefixlen}"]

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
            "ping", info.server_ip, "-c", "2", "-i", "0.05", *iface,
            "--capture", str(tmp_path / "p.pcapng"),
        )  # fmt: skip
        assert ping.returncode == 0, ping.stderr
        assert b"2 packets transmitted, 2 received, 0% packet loss" in ping.stdout
        connect = in_client(
            "connect", info.server_ip, "7", *iface, "--capture", str(tmp_path / "c.pcapng"),
            stdin=b"over an existing interface\n",
        )  # fmt: skip
        assert connect.returncode == 0, connect.stderr
        assert connect.stdout == b"over an existing interface\n"


TRICKLE_SERVER = textwrap.dedent(
    """
    import socket, sys, time
    server = socket.socket()
    server.bind((sys.argv[1], 7))
    server.listen()
    print("ready", flush=True)
    conn, _ = server.accept()
    with conn:
        for i in range(8):
            conn.sendall(b"line %d\\n" % i)
            time.sleep(0.25)
    """
)


@privileged
def test_lab_connect_keeps_reading_while_the_peer_still_sends_after_our_fin(
    tmp_path: Path,
) -> None:
    """--timeout counts silence: a peer that sends for longer than it after our FIN is heard out."""
    from lab.topology import Topology

    with Topology() as topo:
        info = topo.info
        server = topo.popen_server(
            [sys.executable, "-c", TRICKLE_SERVER, info.server_ip], stdout=subprocess.PIPE
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        process = topo.popen_client(
            [
                sys.executable, "-m", "lab", "connect", info.server_ip, "7", "--timeout", "1",
                "--iface", topo.names.client_if, "--addr", f"{info.client_ip}/{info.prefixlen}",
                "--capture", str(tmp_path / "c.pcapng"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = process.communicate(b"", timeout=60)  # stdin ends at once: our FIN goes first
        assert process.returncode == 0, err
        assert out == b"".join(b"line %d\n" % i for i in range(8))
        assert b"did not close" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["ping"],
        ["connect", "198.18.0.1", "7"],
        ["get", "ftp://198.18.0.1/hello.txt"],
        ["put", "--json", "notes.txt", "ftp://198.18.0.1/"],
        ["ls", "ftp://198.18.0.1/"],
        ["reenact", "captures/tools-pyftpdlib-curl-active.pcap"],
    ],
)
def test_a_command_refused_for_privileges_leaves_no_folder_behind(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capture = Path(__file__).resolve().parent.parent / "captures" / argv[-1].split("/")[-1]
    if argv[0] == "reenact":
        argv = [*argv[:-1], str(capture)]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello\n")
    monkeypatch.setattr(privileges, "effective_capabilities", lambda: 0)
    assert lab_main(argv) == ExitCode.NO_PRIVILEGES
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no empty captures/runs/
