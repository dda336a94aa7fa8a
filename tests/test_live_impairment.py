"""Fault injection on the live commands: `lab get/put/ls/connect/ping --loss 5% ... --seed N`.

Unprivileged tests pin down the options (one shared set, from `lab.cli.stack_options`, on every live
command), the seed decided once per command line, the summary, and the usage error of `--kernel`
with faults (the kernel's path has no lab link to impair). Privileged ones download and upload
through a lossy, reordering link and check the bytes, the summary, and the capture's comments:
the schedule with its seed, and a record of each drop, so the run can be reproduced.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from lab.capture.reader import read_packets
from lab.cli import main as cli
from lab.cli.errors import ExitCode
from lab.cli.ftp import summary_line
from lab.cli.main import command_parser
from lab.cli.stack_options import impairment_of, impairment_requested, impairment_text
from lab.link.impairment import Impairment
from lab.topology import privileges

FAULTS = ["--loss", "5%", "--reorder", "2%", "--dup", "1%", "--corrupt", "0.1%"]
FAULTS += ["--delay", "10ms", "--rate", "10mbit", "--seed", "9"]
COMMANDS: dict[str, list[str]] = {
    "get": ["ftp://198.18.0.1/1M.bin"],
    "put": ["README.md", "ftp://198.18.0.1/"],
    "ls": ["ftp://198.18.0.1/"],
    "connect": ["198.18.0.1", "7"],
    "ping": [],
}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


# -- unprivileged ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_live_command_takes_the_same_fault_options(name: str) -> None:
    parser, _ = command_parser(name)
    args = parser.parse_args([*COMMANDS[name], *FAULTS])
    assert impairment_of(args) == Impairment(
        loss=0.05,
        reorder=0.02,
        duplicate=0.01,
        corrupt=0.001,
        delay=10_000,
        rate_bps=10_000_000,
        seed=9,
    )
    assert impairment_text(args) == (
        "loss=5% reorder=2% dup=1% corrupt=0.1% reorder-delay=10ms delay=10ms "
        "rate=10000000bit seed=9"
    )
    plain = parser.parse_args(COMMANDS[name])
    assert not impairment_requested(plain)
    assert impairment_of(plain) is None


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_stack_options_are_shared_by_every_live_command(name: str) -> None:
    parser, _ = command_parser(name)
    network = ["--iface", "lab0", "--addr", "198.18.5.2/24", "--gateway", "198.18.5.1"]
    args = parser.parse_args(
        [*COMMANDS[name], "--codec", "scapy", "--capture", "x.pcapng", *network]
    )
    assert (args.codec, args.capture, args.iface) == ("scapy", Path("x.pcapng"), "lab0")
    assert (args.addr, args.gateway) == ("198.18.5.2/24", "198.18.5.1")


def test_without_seed_one_random_seed_is_drawn_once_per_command_line() -> None:
    parser, _ = command_parser("get")
    args = parser.parse_args(["ftp://198.18.0.1/1M.bin", "--loss", "1%"])
    first = impairment_of(args)
    assert first is not None
    assert impairment_of(args) is first  # the stack and the summary name the same seed
    assert f"seed={first.seed}" in (impairment_text(args) or "")


def test_a_seed_alone_asks_for_no_fault() -> None:
    parser, _ = command_parser("get")
    assert impairment_of(parser.parse_args(["ftp://198.18.0.1/1M.bin", "--seed", "4"])) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "ftp://198.18.0.1/1M.bin", "--kernel", "--loss", "5%"],
        ["put", "README.md", "ftp://198.18.0.1/", "--kernel", "--reorder", "2%"],
        ["ls", "ftp://198.18.0.1/", "--kernel", "--rate", "1mbit"],
    ],
)
def test_kernel_with_faults_is_a_usage_error_before_anything_is_built(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(privileges, "effective_capabilities", lambda: 0)
    code, out, err = run_cli(argv, capsys)
    assert code == ExitCode.USAGE
    assert "--kernel has no lab link to impair" in err
    assert err.count("\n") == 1
    assert "Traceback" not in out + err


def test_the_summary_line_names_the_schedule_and_the_faults() -> None:
    summary: dict[str, Any] = {
        "command": "RETR",
        "remote": "1M.bin",
        "bytes": 1 << 20,
        "resumed_from": 0,
        "seconds": 1.5,
        "mb_per_s": 0.7,
        "segments_in": 700,
        "segments_out": 600,
        "retransmissions": 3,
        "mode": "active",
        "stack": "lab (fast codec)",
        "capture": "c.pcapng",
        "impairment": "loss=5% seed=3",
        "faults": {"drop": 70, "reorder": 20},
    }
    line = summary_line(summary)
    assert "impairment loss=5% seed=3 (70 drop, 20 reorder)" in line
    assert "impairment" not in summary_line({**summary, "impairment": None, "faults": None})


# -- privileged: through the impaired link -----------------------------------------------------

LOSSY = ["--loss", "5%", "--reorder", "2%", "--seed", "3"]


def comments_of(capture: Path) -> str:
    return "\n".join(p.comment or "" for p in read_packets(capture))


def assert_faults_logged(capture: Path) -> None:
    comments = comments_of(capture)
    assert "impair: schedule out loss=5% reorder=2% reorder-delay=10ms seed=3" in comments
    assert "; in loss=5% reorder=2% reorder-delay=10ms seed=3" in comments
    assert "impair: drop out #" in comments
    assert "impair: drop in #" in comments
    assert "impair: reorder " in comments


@pytest.mark.privileged
@pytest.mark.parametrize("passive", [False, True], ids=["active", "passive"])
def test_lab_get_through_loss_and_reordering_is_byte_exact_and_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], passive: bool
) -> None:
    from lab.ftp.server import sample_bytes

    capture = tmp_path / "get.pcapng"
    local = tmp_path / "1M.bin"
    argv = ["get", "ftp://198.18.0.1/1M.bin", "-o", str(local), "--json", "--capture", str(capture)]
    code, out, err = run_cli([*argv, *LOSSY, *(["--passive"] if passive else [])], capsys)
    assert code == 0, err
    expected = hashlib.sha256(sample_bytes("1M.bin", 1 << 20)).hexdigest()
    assert hashlib.sha256(local.read_bytes()).hexdigest() == expected
    summary = json.loads(out)
    assert summary["sha256"] == expected
    assert summary["impairment"] == "loss=5% reorder=2% reorder-delay=10ms seed=3"
    assert summary["faults"]["drop"] > 0
    assert summary["faults"]["reorder"] > 0
    assert_faults_logged(capture)


@pytest.mark.privileged
def test_lab_put_through_loss_and_reordering_is_stored_byte_exact_and_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import lab.ftp.server

    root = tmp_path / "server"
    real = lab.ftp.server.EmbeddedServer

    def server_with_known_root(topology: Any, big: bool = False) -> Any:
        return real(topology, root=root, big=big)

    monkeypatch.setattr(lab.ftp.server, "EmbeddedServer", server_with_known_root)
    source = tmp_path / "up.bin"
    source.write_bytes(random.Random(11).randbytes(1 << 20))
    capture = tmp_path / "put.pcapng"
    code, out, err = run_cli(
        ["put", str(source), "ftp://198.18.0.1/", "--capture", str(capture), *LOSSY], capsys
    )
    assert code == 0, err
    assert "STOR up.bin" in out
    assert "impairment loss=5% reorder=2% reorder-delay=10ms seed=3 (" in out
    assert (root / "lab" / "up.bin").read_bytes() == source.read_bytes()
    assert_faults_logged(capture)


@pytest.mark.privileged
def test_lab_ls_through_a_lossy_link_still_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "l.pcapng"
    argv = ["ls", "ftp://198.18.0.1/pub/", "--names", "--capture", str(capture)]
    code, out, err = run_cli([*argv, "--loss", "10%", "--seed", "1"], capsys)
    assert code == 0, err
    assert out.split() == ["10M.bin"]


def test_without_privileges_faults_do_not_change_exit_77(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(privileges, "effective_capabilities", lambda: 0)
    code, out, err = run_cli(["get", "ftp://198.18.0.1/1M.bin", *LOSSY], capsys)
    assert code == 77
    assert "Traceback" not in out + err


@pytest.mark.privileged
def test_lab_connect_echo_through_loss_reordering_and_duplicates_is_byte_exact(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    capture = tmp_path / "connect.pcapng"
    data = b"".join(b"%06d impaired connect\n" % i for i in range(20_000))
    faults = ["--loss", "5%", "--reorder", "2%", "--dup", "1%", "--seed", "5"]
    command = [sys.executable, "-m", "lab", "connect", "198.18.0.1", "7"]
    result = subprocess.run(
        [*command, "--capture", str(capture), *faults],
        input=data,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == data
    comments = comments_of(capture)
    assert "impair: schedule out loss=5% reorder=2% dup=1% reorder-delay=10ms seed=5" in comments
    assert "impair: drop out #" in comments
    assert "impair: drop in #" in comments


@pytest.mark.privileged
def test_lab_ping_through_total_loss_gets_no_reply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "ping.pcapng"
    argv = ["ping", "-c", "2", "-i", "0.05", "-W", "0.5", "--capture", str(capture)]
    code, out, _ = run_cli([*argv, "--loss", "100%", "--seed", "1"], capsys)
    assert code == 1
    assert "2 packets transmitted, 0 received, 100% packet loss" in out
