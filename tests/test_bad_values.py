"""Every command, fed bad values: a one-line usage error and exit 2, never a traceback.

Each value is refused while the command line is read, before anything is built: these run as
root too, where a value refused only later would already have made namespaces or sent frames.
"""

from __future__ import annotations

import pytest

from lab.cli.errors import ExitCode
from lab.cli.main import COMMANDS
from lab.cli.main import main as lab_main

CAPTURE = "captures/peer/ftp_retr.pcap"
URL = "ftp://198.18.0.1/hello.txt"

BAD_VALUES: dict[str, list[list[str]]] = {
    "demo": [
        ["--size", "-5"],
        ["--size", "lots"],
        ["--size", "1.5"],
        ["--loss", "1.5"],
        ["--loss", "-1%"],
        ["--loss", "150%"],
        ["--reorder", "often"],
        ["--delay", "-1"],
        ["--delay", "10 parsecs"],
        ["--jitter", "-2ms"],
        ["--seed", "-1"],
        ["--seed", "x"],
        ["--codec", "zip"],
    ],
    "replay": [
        [CAPTURE, "--plot", "out.xyz"],
        [CAPTURE, "--plot", ""],
        [CAPTURE, "--policy", "middle"],
        [],
    ],
    "reenact": [
        [CAPTURE, "--session", "-1"],
        [CAPTURE, "--timeout", "0"],
        [CAPTURE, "--timeout", "soon"],
        [CAPTURE, "--codec", "zip"],
    ],
    "up": [["--prefixlen", "99"], ["--prefixlen", "x"], ["extra"]],
    "down": [["a", "b"], ["--bogus"]],
    "clean": [["--bogus"], ["extra"]],
    "doctor": [["--bogus"], ["extra"]],
    "exercise": [
        [],
        ["fly"],
        ["check", "reassembly", "--loss", "150%"],
        ["check", "reassembly", "--loss", "5"],
        ["check", "reassembly", "--delay", "-1"],
        ["check", "reassembly", "--seed", "-3"],
        ["check", "reassembly", "--rate", "fast"],
    ],
    "get": [
        [URL, "--loss", "5"],
        [URL, "--loss", "-1%"],
        [URL, "--delay", "-1"],
        [URL, "--rate", "fast"],
        [URL, "--timeout", "0"],
        [URL, "--seed", "x"],
        [],
    ],
    "put": [["README.md", URL, "--corrupt", "200%"], ["README.md", URL, "--jitter", "x"]],
    "ls": [[URL, "--dup", "1.5"], [URL, "--timeout", "-3"]],
    "ping": [["-c", "-1"], ["-i", "0"], ["-s", "-5"], ["-s", "70000"], ["-W", "0"]],
    "notebook": [
        [],
        ["run"],
        ["run", "42"],
        ["run", "01", "--mode", "sideways"],
        ["run", "01", "--timeout", "0"],
    ],
    "connect": [
        ["198.18.0.1", "70000"],
        ["198.18.0.1", "0"],
        ["198.18.0.1", "http"],
        ["198.18.0.1", "7", "--timeout", "0"],
        ["198.18.0.1"],
    ],
    "script": [
        [],
        ["--tolerance", "fast", "tests/conformance/passive-open.pkt"],
        ["--tolerance", "-5ms", "tests/conformance/passive-open.pkt"],
        ["--against", "nowhere", "tests/conformance/passive-open.pkt"],
        ["--tolerance-percent", "150", "tests/conformance/passive-open.pkt"],
        ["--tolerance-percent", "-1", "tests/conformance/passive-open.pkt"],
        ["--tolerance-percent", "lots", "tests/conformance/passive-open.pkt"],
    ],
    "rootless": [["--join"]],
}


def test_the_table_covers_every_command() -> None:
    assert set(BAD_VALUES) == set(COMMANDS)


@pytest.mark.parametrize(
    "argv",
    [[name, *bad] for name, table in BAD_VALUES.items() for bad in table],
    ids=lambda argv: " ".join(argv) or "(none)",
)
def test_a_bad_value_is_a_one_line_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = lab_main(argv)
    except SystemExit as exit_:
        code = exit_.code  # argparse's usage errors
    out, err = capsys.readouterr()
    assert code == ExitCode.USAGE, (out, err)
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"lab {argv[0]}"), err
