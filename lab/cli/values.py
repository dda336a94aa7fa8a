"""The values on a command line that are not quantities: addresses and the paths a command writes.

Quantities (sizes, durations, shares, rates) have their own home, `lab.units`; this module is for
the rest, with the same contract: each function is an argparse type (or is called before any work
is done) and raises `UnitError`, which argparse prints as a one-line usage error (exit 2).

Addresses: the lab resolves no names, so an address is an IP literal, checked as it is read (a
bad one used to get as far as building a topology and then fail inside the ISN generator).

Output paths: a command that would write a picture, a report or a capture at the end of its work
tries first, before that work, whether it can: it creates and deletes a temporary file where the
output will go. Asking `os.access` is not enough: root passes it in /proc, on a read-only mount
and in a folder under a file. Missing folders are not made here (the writers make them, only when
they write: a command refused for privileges leaves no folder behind); the nearest folder that
exists is tried instead.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.units import UnitError, parse_port
from lab.viz.paths import picture_path, picture_paths

__all__ = [
    "check_output_file",
    "existing_folder",
    "file_or_folder",
    "host_and_port",
    "ip_address",
    "ipv4_address",
    "ipv4_interface",
    "ipv6_address",
    "ipv6_interface",
    "output_dir",
    "output_file",
    "plot_path",
    "report_file",
]


# -- addresses ----------------------------------------------------------------------------------


def _address(text: str, kind: Callable[[str], Any], what: str, example: str) -> str:
    try:
        kind(text.strip())
    except ValueError:
        hint = f"e.g. {example}; the lab resolves no names"
        raise UnitError(f"not {what}: {text!r} ({hint})") from None
    return text.strip()


def ip_address(text: str) -> str:
    """An IPv4 or IPv6 address, as typed (198.18.0.1, 2001:2::1)."""
    return _address(text, ipaddress.ip_address, "an IPv4 or IPv6 address", "198.18.0.1")


def ipv4_address(text: str) -> str:
    return _address(text, ipaddress.IPv4Address, "an IPv4 address", "198.18.0.1")


def ipv6_address(text: str) -> str:
    return _address(text, ipaddress.IPv6Address, "an IPv6 address", "2001:2::1")


def ipv4_interface(text: str) -> str:
    """An address with its prefix length, as `ip addr add` takes it (198.18.5.2/24)."""
    return _address(text, ipaddress.IPv4Interface, "an IPv4 address/prefix", "198.18.5.2/24")


def ipv6_interface(text: str) -> str:
    return _address(text, ipaddress.IPv6Interface, "an IPv6 address/prefix", "2001:2:0:5::2/64")


def host_and_port(text: str, default_port: int = 21) -> tuple[str, int]:
    """HOST[:PORT], an IPv6 host in brackets when a port follows ([2001:2::1]:2121)."""
    stripped = text.strip()
    if stripped.startswith("["):
        host, sep, rest = stripped[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UnitError(f"not HOST[:PORT]: {text!r} (e.g. [2001:2::1]:2121)")
        return ipv6_address(host), parse_port(rest[1:]) if rest else default_port
    if stripped.count(":") == 1:
        host, _, port = stripped.partition(":")
        return ipv4_address(host), parse_port(port)
    return ip_address(stripped), default_port


# -- paths a command writes -----------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _try_writing_in(folder: Path) -> str | None:
    """Why no file can be made in `folder`, or None when one was (and was removed at once)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".lab-write-test-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(name)
    return None


def check_output_file(path: Path) -> None:
    """Raise `UnitError` unless a file can be written at `path` (see the module docstring)."""
    if path.is_dir():
        raise UnitError(f"{str(path)!r} is a folder: give a file name")
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise UnitError(f"cannot write {str(path)!r}: {base} is not a folder")
    why = _try_writing_in(base)
    if why is not None:
        raise UnitError(f"cannot write {str(path)!r}: no file can be made in {base} ({why})")
    if path.exists() and not os.access(path, os.W_OK):
        raise UnitError(f"cannot write {str(path)!r}: the file is read-only")


def output_file(text: str) -> Path:
    """The argparse type of an option naming a file the command writes (a capture, a notebook)."""
    if not text.strip():
        raise UnitError("an empty file name")
    path = Path(text)
    check_output_file(path)
    return path


def file_or_folder(text: str) -> Path:
    """`lab get -o`: a file to write, or a folder that exists, to write the URL's name into."""
    path = Path(text)
    return output_dir(text) if path.is_dir() else output_file(text)


def report_file(text: str) -> Path:
    """`--json FILE`: a file the report is written to, or '-' for stdout."""
    return Path(text) if text == "-" else output_file(text)


def output_dir(text: str) -> Path:
    """The argparse type of an option naming a folder the command writes files into."""
    if not text.strip():
        raise UnitError("an empty folder name")
    path = Path(text)
    base = _nearest_existing(path)
    if not base.is_dir():
        where = "it is a file" if base == path.absolute() else f"{base} is not a folder"
        raise UnitError(f"cannot write into {text!r}: {where}, give a folder")
    why = _try_writing_in(base)
    if why is not None:
        raise UnitError(f"cannot write into {text!r}: no file can be made in {base} ({why})")
    return path


def existing_folder(text: str) -> Path:
    """The argparse type of a folder that must already be there (`lab exercise reset DIR`)."""
    path = Path(text)
    if not path.exists():
        raise UnitError(f"no such folder: {text!r}")
    if not path.is_dir():
        raise UnitError(f"{text!r} is a file, not a folder")
    return path


def plot_path(text: str) -> Path:
    """`--plot FILE`: a picture type matplotlib writes (`lab.viz.paths.picture_path`), in a place
    the command can write: FILE-ladder.png (or FILE with {kind} replaced) is tried."""
    path = picture_path(text)
    check_output_file(picture_paths(path)["ladder"])
    return path
