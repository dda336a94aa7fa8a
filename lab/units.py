"""One syntax for the quantities people type: percentages, durations, rates, sizes and counts.

Every command takes the same forms, so what works for `lab get` works for `lab demo` and for
`lab exercise check`:

* a percentage is `5%` or a probability `0.05` (a bare number above 1 is refused: `5` could mean
  either, and the error says to write `5%`);
* a duration is `10ms`, `500us`, `1.5s`; a bare number is in the option's own unit, which its help
  names (milliseconds for delays, seconds for timeouts and intervals);
* a rate is tc's `10mbit`, `500kbit`, `1gbit` (`bps` units are bytes per second, as in tc);
* a size is `200000`, `64k`, `1M`, `1.5MB` (SI: k = 1000) or `64KiB`, `1MiB` (powers of 1024);
  every size option reads it with `size(minimum, maximum)`, which names its bounds in that form.

Each parser raises `UnitError`, both an `argparse.ArgumentTypeError` (argparse prints its text as
the usage error, exit 2) and a `ValueError` (for callers outside the command line).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

__all__ = [
    "UnitError",
    "count",
    "duration",
    "format_duration",
    "format_percent",
    "format_size",
    "parse_count",
    "parse_duration",
    "parse_percent",
    "parse_percent_points",
    "parse_port",
    "parse_rate",
    "parse_seconds",
    "parse_seed",
    "parse_size",
    "size",
]


class UnitError(argparse.ArgumentTypeError, ValueError):
    """A value that is not a quantity of the kind asked for; the text says what would be."""


_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))"
_DURATION_UNITS = {"us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000}
# tc's words: "bit" units are bits per second, "bps" units are BYTES per second.
_RATE_UNITS = {
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "bps": 8,
    "kbps": 8 * 10**3,
    "mbps": 8 * 10**6,
    "gbps": 8 * 10**9,
}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def _split(text: str, units: str) -> tuple[float, str] | None:
    match = re.fullmatch(_NUMBER + r"\s*(" + units + r")", text.strip().lower())
    if match is None:
        return None
    return float(match.group(1)), match.group(2)


def parse_percent(text: str) -> float:
    """ "5%" or "0.05" -> 0.05: a share between 0 and 1."""
    parsed = _split(text, "%|")
    if parsed is None:
        raise UnitError(f"not a percentage: {text!r} (e.g. 5% or 0.05)")
    value, unit = parsed
    share = value / 100 if unit == "%" else value
    if share < 0:
        raise UnitError(f"{text!r} is negative: a share is between 0% and 100%")
    if share > 1:
        hint = f" (for {value:g} percent write {value:g}%)" if unit == "" else ""
        raise UnitError(f"{text!r} is more than 100%{hint}")
    return share


def parse_percent_points(text: str) -> float:
    """ "12.5" or "12.5%" -> 12.5: a number of percent between 0 and 100, as packetdrill's
    --tolerance_percent reads it (a bare number is percent here, not a share)."""
    parsed = _split(text, "%|")
    if parsed is None:
        raise UnitError(f"not a percentage: {text!r} (e.g. 12.5)")
    value = parsed[0]
    if not 0 <= value <= 100:
        raise UnitError(f"a percentage is between 0 and 100, not {text}")
    return value


def parse_duration(text: str, bare: str = "ms") -> int:
    """ "10ms", "500us", "1.5s", or a bare number in the unit `bare` -> microseconds (>= 0)."""
    parsed = _split(text, "us|µs|ms|s|")
    if parsed is None:
        raise UnitError(f"not a duration: {text!r} (e.g. 10ms, 500us, 1.5s)")
    value, unit = parsed
    if value < 0:
        raise UnitError(f"a duration cannot be negative: {text!r}")
    return round(value * _DURATION_UNITS[unit or bare])


def duration(bare: str) -> Callable[[str], int]:
    """The argparse type of a duration option whose bare numbers are in `bare` units."""

    def parse(text: str) -> int:
        return parse_duration(text, bare)

    parse.__name__ = f"duration in {bare}"
    return parse


def parse_seconds(text: str) -> float:
    """A timeout or an interval: "30", "1.5s", "200ms" -> seconds, more than 0 (0 would mean
    no wait at all, never "no limit")."""
    value = parse_duration(text, "s") / 1_000_000
    if value <= 0:
        raise UnitError(f"must be more than 0 seconds: {text!r}")
    return value


def parse_rate(text: str) -> int:
    """ "10mbit" -> 10_000_000 bits per second; tc's units (kbit, mbit, gbit; bps = bytes/s)."""
    parsed = _split(text, "[kmg]?(?:bit|bps)")
    if parsed is None:
        raise UnitError(f"not a rate: {text!r} (e.g. 10mbit, 500kbit, 1gbit)")
    value = round(parsed[0] * _RATE_UNITS[parsed[1]])
    if value <= 0:
        raise UnitError(f"rate must be positive: {text!r}")
    return value


def parse_size(text: str, minimum: int = 0, maximum: int | None = None) -> int:
    """ "200000", "64k", "1M", "1.5MB", "64KiB" -> bytes, whole, in [minimum, maximum]."""
    parsed = _split(text, "|b|[kmg]b?|[kmg]ib")
    if parsed is None:
        raise UnitError(f"not a size: {text!r} (e.g. 20000, 64k, 1M, 1MiB)")
    value, unit = parsed
    if value < 0:
        raise UnitError(f"a size cannot be negative: {text!r}")
    size_ = value * _SIZE_UNITS[unit]
    if size_ != int(size_):
        raise UnitError(f"not a whole number of bytes: {text!r}")
    if size_ < minimum:
        raise UnitError(f"{text!r} is too small: at least {format_size(minimum)} bytes")
    if maximum is not None and size_ > maximum:
        raise UnitError(f"{text!r} is too large: at most {format_size(maximum)} bytes")
    return int(size_)


def size(minimum: int = 0, maximum: int | None = None) -> Callable[[str], int]:
    """The argparse type of every size option (bytes), in [minimum, maximum]: one parser, so
    `lab demo --size 1M` and `lab ping -s 1k` read the same forms and refuse alike."""

    def parse(text: str) -> int:
        return parse_size(text, minimum, maximum)

    parse.__name__ = "size"
    return parse


def parse_count(text: str, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number in [minimum, maximum]."""
    try:
        value = int(text.strip())
    except ValueError:
        raise UnitError(f"not a whole number: {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and {maximum}"
        what = f"at least {minimum}" if maximum is None else f"between {minimum}{upper}"
        raise UnitError(f"{text!r} is out of range: must be {what}")
    return value


def count(minimum: int = 0, maximum: int | None = None) -> Callable[[str], int]:
    """The argparse type of a whole-number option in [minimum, maximum]."""

    def parse(text: str) -> int:
        return parse_count(text, minimum, maximum)

    parse.__name__ = "count"
    return parse


def parse_port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    return parse_count(text, 1, 65535)


def parse_seed(text: str) -> int:
    """The seed of a fault schedule: a whole number, 0 or more."""
    return parse_count(text, 0)


def format_duration(us: int) -> str:
    """Microseconds as a person writes them, in the syntax `parse_duration` reads back."""
    if us % 1_000_000 == 0 and us:
        return f"{us // 1_000_000}s"
    if us % 1_000 == 0:
        return f"{us // 1_000}ms"
    return f"{us}us"


def format_size(n: int) -> str:
    """Bytes as a person writes them, in the syntax `parse_size` reads back: 100M, 64k, 65507."""
    for unit, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def format_percent(share: float) -> str:
    """0.05 -> "5%", 0.001 -> "0.1%": as `parse_percent` reads it back."""
    return f"{share * 100:g}%"
