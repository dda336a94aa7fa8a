"""Every command, fed bad values: a one-line usage error and exit 2, never a traceback.

Each value is refused while the command line is read, before anything is built: these run as
root too, where a value refused only later would already have made namespaces or sent frames.
"""

from __future__ import annotations

import argparse

import pytest

from lab.cli.errors import ExitCode
from lab.cli.main import COMMANDS, command_parser
from lab.cli.main import main as lab_main

CAPTURE = "captures/peer/ftp_retr.pcap"
URL = "ftp://198.18.0.1/hello.txt"
# Places no file can be written, even as root (who passes os.access everywhere): /proc makes no
# files, and README.md is a file, so nothing lies under it.
NOWHERE = "/proc/lab-nowhere"
UNDER_A_FILE = "README.md/out"
IFACE = ["--iface", "lo", "--addr", "198.18.99.2/24"]

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
        ["--size", "2G"],
        ["--size", "101M"],
        ["--plot", f"{NOWHERE}/demo.png"],
        ["--plot", f"{UNDER_A_FILE}.png"],
        ["--live", "--capture", f"{NOWHERE}/demo.pcapng"],
    ],
    "replay": [
        [CAPTURE, "--plot", "out.xyz"],
        [CAPTURE, "--plot", ""],
        [CAPTURE, "--policy", "middle"],
        [],
        [CAPTURE, "--plot", f"{NOWHERE}/p.png"],
        [CAPTURE, "--json", f"{NOWHERE}/r.json"],
        [CAPTURE, "--json", f"{UNDER_A_FILE}.json"],
        [CAPTURE, "--out", f"{NOWHERE}/files"],
    ],
    "reenact": [
        [CAPTURE, "--session", "-1"],
        [CAPTURE, "--timeout", "0"],
        [CAPTURE, "--timeout", "soon"],
        [CAPTURE, "--codec", "zip"],
        [CAPTURE, "--json", f"{NOWHERE}/r.json"],
        [CAPTURE, "--live-capture", f"{UNDER_A_FILE}.pcapng"],
        [CAPTURE, *IFACE, "--server", "198.18.0.300"],
        [CAPTURE, *IFACE, "--server", "198.18.0.1:ftp"],
        [CAPTURE, "--iface", "lo", "--addr", "198.18.99"],
    ],
    "up": [
        ["--prefixlen", "99"],
        ["--prefixlen", "x"],
        ["extra"],
        ["--server-ip", "server"],
        ["--client-ip", "198.18.0.2.7"],
        ["--client-ip", "2001:2::2"],
    ],
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
        ["list", "extra"],
        ["show"],
        ["show", "fly"],
        ["start", "fly"],
        ["start", "arp", UNDER_A_FILE],
        ["start", "arp", f"{NOWHERE}/lab-arp"],
        ["check"],
        ["reset", "no-such-folder"],
        ["reset", "README.md"],
    ],
    "get": [
        [URL, "--loss", "5"],
        [URL, "--loss", "-1%"],
        [URL, "--delay", "-1"],
        [URL, "--rate", "fast"],
        [URL, "--timeout", "0"],
        [URL, "--seed", "x"],
        [],
        ["ftp://198.18.0.300/hello.txt"],
        ["ftp://server/hello.txt"],
        [URL, "-o", f"{NOWHERE}/hello.txt"],
        [URL, "--capture", f"{NOWHERE}/get.pcapng"],
        [URL, "--capture", f"{UNDER_A_FILE}.pcapng"],
        ["ftp://[2001:2::1]/hello.txt", *IFACE],
        [URL, "--iface", "lo", "--addr", "198.18.99.2/24", "--gateway", "198.18.99"],
        [URL, "--iface", "lo", "--addr", "198.18.99.2/24", "--addr6", "2001:2::x/64"],
    ],
    "put": [
        ["README.md", URL, "--corrupt", "200%"],
        ["README.md", URL, "--jitter", "x"],
        ["README.md", "ftp://1.2.3/copy"],
    ],
    "ls": [
        [URL, "--dup", "1.5"],
        [URL, "--timeout", "-3"],
        ["ftp://198.18.0.300/"],
        ["ftp://198.18.0.1/", "--capture", f"{NOWHERE}/ls.pcapng"],
    ],
    "ping": [
        ["-c", "-1"],
        ["-i", "0"],
        ["-s", "-5"],
        ["-s", "70000"],
        ["-s", "70k"],
        ["-W", "0"],
        ["198.18.0.300"],
        ["2001:2::1", *IFACE],
    ],
    "notebook": [
        [],
        ["run"],
        ["run", "42"],
        ["run", "01", "--mode", "sideways"],
        ["run", "01", "--timeout", "0"],
        ["run", "01", "--output", f"{NOWHERE}/01.ipynb"],
        ["list", "extra"],
    ],
    "connect": [
        ["198.18.0.1", "70000"],
        ["198.18.0.1", "0"],
        ["198.18.0.1", "http"],
        ["198.18.0.1", "7", "--timeout", "0"],
        ["198.18.0.1"],
        ["198.18.0.300", "7"],
        ["server", "7"],
        ["2001:2::1", "7", *IFACE],
        ["198.18.0.1", "7", "--capture", f"{NOWHERE}/c.pcapng"],
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


def _subcommands(name: str) -> set[str]:
    """The verbs of `lab NAME` (`lab exercise check`, ...), or none."""
    parser, _ = command_parser(name)
    return {
        verb
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for verb in action.choices
    }


def test_the_table_covers_every_command_and_every_subcommand() -> None:
    assert set(BAD_VALUES) == set(COMMANDS)
    for name, table in BAD_VALUES.items():
        verbs = _subcommands(name)
        covered = {argv[0] for argv in table if argv and argv[0] in verbs}
        assert covered == verbs, f"lab {name}: no bad values for {sorted(verbs - covered)}"


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
