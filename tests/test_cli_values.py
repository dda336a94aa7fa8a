"""lab.cli.values: addresses and output paths, checked as the command line is read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cli.values import (
    existing_folder,
    file_or_folder,
    host_and_port,
    ip_address,
    ipv4_interface,
    output_dir,
    output_file,
    plot_path,
    report_file,
)
from lab.units import UnitError


def test_trying_an_output_path_leaves_nothing_behind(tmp_path: Path) -> None:
    assert output_file(str(tmp_path / "new" / "deeper" / "run.pcapng")).name == "run.pcapng"
    assert plot_path(str(tmp_path / "pictures" / "p.png")).name == "p.png"
    assert output_dir(str(tmp_path / "files")).name == "files"
    assert list(tmp_path.iterdir()) == []  # no temporary file left, no folder made


@pytest.mark.parametrize("where", ["/proc/lab-nowhere/x.pcapng", "/proc/x.pcapng", "/sys/x.json"])
def test_a_place_where_no_file_can_be_made_is_refused_even_as_root(where: str) -> None:
    # os.access says yes to root here; only trying tells.
    with pytest.raises(UnitError, match="no file can be made in"):
        output_file(where)


def test_a_file_in_the_way_is_named(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UnitError, match="is not a folder"):
        output_file(str(afile / "out.json"))
    with pytest.raises(UnitError, match="is a folder: give a file name"):
        report_file(str(tmp_path))
    with pytest.raises(UnitError, match="it is a file, give a folder"):
        output_dir(str(afile))
    with pytest.raises(UnitError, match="is a file, not a folder"):
        existing_folder(str(afile))
    with pytest.raises(UnitError, match="no such folder"):
        existing_folder(str(tmp_path / "missing"))
    assert report_file("-") == Path("-")
    assert file_or_folder(str(tmp_path)) == tmp_path  # lab get -o DIR: saved under its name
    with pytest.raises(UnitError, match="is not a folder"):
        file_or_folder(str(afile / "x"))


READ_ONLY_CHECK = """
import sys
from lab.cli.values import output_file
from lab.units import UnitError
try:
    output_file(sys.argv[1])
except UnitError as exc:
    print("UnitError:", exc)
"""


def test_a_read_only_file_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro.json"
    ro.write_text("{}")
    ro.chmod(0o444)
    if os.geteuid() != 0:
        with pytest.raises(UnitError, match="read-only"):
            output_file(str(ro))
        return
    # Root writes a 0444 file (CAP_DAC_OVERRIDE), so it is right that the lab lets root
    # overwrite it. The refusal is checked as root without capabilities, which the file
    # refuses as it refuses a user.
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is part of every Debian system"
    without_capabilities = (setpriv, "--inh-caps=-all", "--bounding-set=-all")
    result = subprocess.run(
        [*without_capabilities, sys.executable, "-c", READ_ONLY_CHECK, str(ro)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.startswith("UnitError:"), (result.stdout, result.stderr)
    assert "the file is read-only" in result.stdout
    assert output_file(str(ro)) == ro  # with its capabilities, root may overwrite it


def test_addresses_are_ip_literals() -> None:
    assert ip_address("198.18.0.1") == "198.18.0.1"
    assert ip_address(" 2001:2::1") == "2001:2::1"
    assert ipv4_interface("198.18.5.2/24") == "198.18.5.2/24"
    for bad in ("198.18.0.300", "server", "198.18.0", ""):
        with pytest.raises(UnitError, match="the lab resolves no names"):
            ip_address(bad)
    with pytest.raises(UnitError, match="not an IPv4 address/prefix"):
        ipv4_interface("198.18.5.2/33")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.18.0.1", ("198.18.0.1", 21)),
        ("198.18.0.1:2121", ("198.18.0.1", 2121)),
        ("2001:2::1", ("2001:2::1", 21)),
        ("[2001:2::1]:2121", ("2001:2::1", 2121)),
        ("[2001:2::1]", ("2001:2::1", 21)),
    ],
)
def test_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert host_and_port(text) == expected


@pytest.mark.parametrize("bad", ["198.18.0.1:ftp", "198.18.0.1:0", "[2001:2::1", "[::1]x", "h:1"])
def test_bad_host_and_port(bad: str) -> None:
    with pytest.raises(UnitError):
        host_and_port(bad)
