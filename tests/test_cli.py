"""The `lab` command as a whole: help, examples, exit codes, global flags, colour, JSON."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shlex
import sys
import types
from pathlib import Path

import pytest

from lab import __version__
from lab.cli.errors import ExitCode
from lab.cli.main import COMMANDS, EXAMPLES, EXIT_STATUS, main, parse, use_colour
from lab.link.impairment import Impairment
from lab.sim.transfer import Transfer

ROOT = Path(__file__).resolve().parent.parent
SMALL_CAPTURE = ROOT / "captures" / "peer" / "ftp_retr.pcap"
ANSI = "\x1b["


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`lab ARGV` in-process: the exit code (returned or raised), stdout and stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


# -- help, examples and exit status ----------------------------------------------------------


def test_rootless_join_of_a_topology_it_cannot_join_is_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As root nothing is joined (root's topologies are on the host); as a user there is no
    # holder 999999. Either way COMMAND must not run as if it were in that topology.
    code, out, err = run_main(capsys, "rootless", "--join", "999999", "echo", "ran")
    assert code == 1
    assert "ran" not in out
    assert "999999" in err


def test_top_level_help_lists_every_command_examples_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_main(capsys, "--help")
    assert code == 0
    for name, (_module, text) in COMMANDS.items():
        assert name in out
        assert text.split()[0] in out
    assert "examples:" in out
    for exit_code in ("0 ", "1 ", "2 ", "3 ", "4 ", "77 ", "130 "):
        assert f"\n  {exit_code}" in out
    assert "Traceback" not in err


def test_every_command_has_examples_and_an_exit_status() -> None:
    assert set(EXAMPLES) == set(COMMANDS)
    assert set(EXIT_STATUS) == set(COMMANDS)
    assert all(1 <= len(lines) <= 3 for lines in EXAMPLES.values())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_help_shows_usage_examples_and_exit_status(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(capsys, name, "--help")
    assert code == 0
    assert out.startswith(f"usage: lab {name}")
    assert "examples:" in out
    assert "exit" in out.lower()
    assert "Traceback" not in err
    for example in EXAMPLES[name]:
        assert example in out or f"lab {name}" in out
    # the flags every command accepts
    assert "-v" in out
    assert "-q" in out


def _example_argv(line: str) -> list[str]:
    """The argv of an example line: no comment, no shell pipe before or redirect after."""
    command = line.split("#", 1)[0]
    command = command.split("|", 1)[-1] if "|" in command.split("lab", 1)[0] else command
    words = [w for w in shlex.split(command) if not w.startswith(("<", ">"))]
    assert words[0] == "lab"
    return words[1:]


@pytest.mark.parametrize(
    "line", [line for lines in EXAMPLES.values() for line in lines], ids=lambda s: s[:40]
)
def test_every_example_parses_with_the_commands_own_parser(line: str) -> None:
    parsed = parse(_example_argv(line))
    assert parsed is not None
    _module, args = parsed
    assert isinstance(args.verbose, bool)
    assert isinstance(args.quiet, bool)


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_main(capsys, "frobnicate")
    assert code == ExitCode.USAGE
    assert "unknown command 'frobnicate'" in err
    assert "Traceback" not in err


def test_unknown_global_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_main(capsys, "--frobnicate", "demo")
    assert code == ExitCode.USAGE
    assert "--frobnicate" in err


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_main(capsys)
    assert code == ExitCode.USAGE
    assert "COMMAND" in out
    code, out, _err = run_main(capsys, "-v")
    assert code == ExitCode.USAGE


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_main(capsys, "--version")
    assert code == 0
    assert out.strip() == f"lab {__version__}"


def test_bad_option_of_a_command_exits_2_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _out, err = run_main(capsys, "demo", "--size", "lots")
    assert code == ExitCode.USAGE
    # One line: what was wrong and where the usage is (tests/test_bad_values.py: every command).
    assert err == (
        "lab demo: argument --size: not a size: 'lots' (e.g. 20000, 64k, 1M, 1MiB)"
        " (see lab demo --help)\n"
    )


# -- -v/-q before or after the command -----------------------------------------------------------


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    """Three fake commands: `plain` (no -v/-q), `own` (its own -v) and `nested` (subcommands)."""
    seen: list[argparse.Namespace] = []

    def record(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    def plain_configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("thing")

    def own_configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("thing")
        parser.add_argument("-v", "--verbose", action="store_true", help="its own")

    def nested_configure(parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("go").add_argument("thing")

    for name, configure in (
        ("plain", plain_configure),
        ("own", own_configure),
        ("nested", nested_configure),
    ):
        module = types.ModuleType(f"lab_test_probe_{name}")
        module.configure = configure  # type: ignore[attr-defined]
        module.run = record  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(COMMANDS, name, (module.__name__, f"probe {name}"))
        monkeypatch.setitem(EXAMPLES, name, [f"lab {name} x"])
        monkeypatch.setitem(EXIT_STATUS, name, "0 always")
    return seen


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "plain", "x"],
        ["plain", "-v", "x"],
        ["plain", "x", "--verbose"],
        ["-v", "own", "x"],
        ["own", "x", "-v"],
        ["-v", "nested", "go", "x"],
        ["nested", "-v", "go", "x"],
        ["nested", "go", "-v", "x"],
    ],
)
def test_verbose_means_the_same_before_or_after_the_command(
    argv: list[str], probes: list[argparse.Namespace]
) -> None:
    assert main(argv) == 0
    assert probes[-1].verbose is True
    assert probes[-1].quiet is False
    assert probes[-1].thing == "x"


@pytest.mark.parametrize(
    "argv",
    [
        ["-q", "plain", "x"],
        ["plain", "x", "-q"],
        ["-q", "nested", "go", "x"],
        ["nested", "go", "x", "--quiet"],
    ],
)
def test_quiet_means_the_same_before_or_after_the_command(
    argv: list[str], probes: list[argparse.Namespace]
) -> None:
    assert main(argv) == 0
    assert probes[-1].quiet is True
    assert probes[-1].verbose is False


def test_without_flags_verbose_and_quiet_are_false(probes: list[argparse.Namespace]) -> None:
    for argv in (["plain", "x"], ["own", "x"], ["nested", "go", "x"]):
        assert main(argv) == 0
        assert probes[-1].verbose is False
        assert probes[-1].quiet is False


def test_combined_short_global_flags(probes: list[argparse.Namespace]) -> None:
    assert main(["-vq", "plain", "x"]) == 0
    assert probes[-1].verbose is True
    assert probes[-1].quiet is True


def test_quiet_demo_is_the_same_before_or_after(capsys: pytest.CaptureFixture[str]) -> None:
    before = run_main(capsys, "-q", "demo", "--size", "20000")
    after = run_main(capsys, "demo", "--size", "20000", "-q")
    assert before == after
    code, out, _err = before
    assert code == 0
    assert "verify          OK" in out
    assert "client > server" not in out  # the story is left out, the totals stay
    loud = run_main(capsys, "demo", "--size", "20000")
    assert "client > server" in loud[1]


def test_quiet_replay_prints_no_summary_in_either_place(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["-q", "replay", str(SMALL_CAPTURE)], ["replay", "-q", str(SMALL_CAPTURE)]):
        code, out, _err = run_main(capsys, *argv)
        assert code == 0
        assert out == ""
    code, out, _err = run_main(capsys, "replay", str(SMALL_CAPTURE))
    assert "RETR" in out


# -- colour only on a terminal, never with NO_COLOR -------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_use_colour_needs_a_terminal_and_no_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_colour(FakeTerminal()) is True
    assert use_colour(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_colour(FakeTerminal()) is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert use_colour(FakeTerminal()) is False


def test_output_to_a_pipe_has_no_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["demo", "--size", "20000"],
        ["replay", str(SMALL_CAPTURE)],
        ["exercise", "list"],
        ["exercise", "show", "reassembly"],
    ):
        code, out, err = run_main(capsys, *argv)
        assert code == 0, argv
        assert out
        assert ANSI not in out
        assert ANSI not in err


def _demo_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> str:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["demo", "--size", "20000"]) == 0
    return terminal.getvalue()


def test_demo_is_coloured_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert ANSI in _demo_on_a_terminal(monkeypatch)  # proof the no-colour tests can fail


def test_no_color_turns_colour_off_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = _demo_on_a_terminal(monkeypatch)
    assert ANSI not in out
    assert "verify          OK" in out


def test_exercise_marks_honour_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.cli.exercise import _colour

    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert _colour("PASS", "32", FakeTerminal()).startswith(ANSI)
    monkeypatch.setenv("NO_COLOR", "1")
    assert _colour("PASS", "32", FakeTerminal()) == "PASS"
    monkeypatch.delenv("NO_COLOR")
    assert _colour("PASS", "32", io.StringIO()) == "PASS"


# -- --json ---------------------------------------------------------------------------------------


def test_demo_json_is_one_object_with_the_totals(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_main(capsys, "demo", "--size", "20000", "--seed", "4", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True
    assert data["delivered"] == 20000
    assert data["intact"] is True
    assert data["both_closed"] is True
    # the same seeded run through the harness: the JSON reports its numbers, not estimates
    payload = random.Random(4).randbytes(20000)
    impairment = Impairment(loss=0.05, reorder=0.05, delay=5_000, seed=4)
    result = Transfer(payload, b"", impairment, seed=4).run()
    assert data["retransmissions"] == result.retransmissions
    assert data["faults"] == dict(sorted(result.wire.stats.faults.items()))
    assert data["sha256"] == hashlib.sha256(payload).hexdigest()


def test_demo_json_reports_failure_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    # every packet lost: nothing arrives, and the JSON says so
    code, out, _err = run_main(capsys, "demo", "--size", "5000", "--loss", "1.0", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    assert data["delivered"] == 0


def test_replay_json_dash_prints_the_report_instead_of_the_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _err = run_main(capsys, "replay", str(SMALL_CAPTURE), "--json", "-")
    assert code == 0
    report = json.loads(out)
    assert report["packets"] == 67
    assert report["ftp_sessions"][0]["transfers"][0]["bytes"] == 16557
    assert not Path("-").exists()


def test_replay_json_file_still_writes_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "report.json"
    code, out, _err = run_main(capsys, "replay", str(SMALL_CAPTURE), "--json", str(target))
    assert code == 0
    assert "RETR" in out
    assert json.loads(target.read_text())["packets"] == 67


def test_doctor_json_parses(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "doctor", "--json")
    data = json.loads(out)
    assert code == (0 if data["ok"] else 1)
    assert {c["name"] for c in data["checks"]} >= {"root"}
    assert "Traceback" not in err


def test_exercise_list_json_parses(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_main(capsys, "exercise", "list", "--json")
    assert code == 0
    assert "reassembly" in {row["name"] for row in json.loads(out)}


def test_ping_summary_json_has_the_statistics() -> None:
    from lab.cli.ping import summary_json

    data = summary_json("198.18.0.1", 4, [1.0, 3.0], 3.2)
    assert data["transmitted"] == 4
    assert data["received"] == 2
    assert data["loss_percent"] == 50
    assert data["rtt_min"] == 1.0
    assert data["rtt_max"] == 3.0
    assert data["rtt_avg"] == 2.0
    assert summary_json("198.18.0.1", 1, [], 1.0)["rtt_avg"] is None


@pytest.mark.privileged
def test_up_and_down_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_main(capsys, "up", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["run_id"] == info["names"]["run_id"]
    assert info["names"]["server_ns"].startswith("lab-")
    code, out, _err = run_main(capsys, "down", info["run_id"], "--json")
    assert code == 0
    removed = json.loads(out)
    assert info["names"]["server_ns"] in removed["removed"]


def test_broken_pipe_ends_quietly(
    monkeypatch: pytest.MonkeyPatch, probes: list[argparse.Namespace]
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise BrokenPipeError

    monkeypatch.setattr(sys.modules[COMMANDS["plain"][0]], "run", broken)
    assert main(["plain", "x"]) == ExitCode.BROKEN_PIPE


def test_interrupt_exits_130(
    monkeypatch: pytest.MonkeyPatch,
    probes: list[argparse.Namespace],
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules[COMMANDS["plain"][0]], "run", interrupted)
    assert main(["plain", "x"]) == ExitCode.INTERRUPTED
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.privileged
def test_live_demo_json_is_one_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "demo.pcapng"
    code, out, _err = run_main(capsys, "demo", "--live", "--json", "--capture", str(capture))
    assert code == 0
    data = json.loads(out)  # nothing but the object: the story is left out
    assert data["ok"] is True
    assert data["bytes"] == 1048576
    assert data["capture"] == str(capture)
    assert capture.is_file()
