"""lab.units: one syntax for percentages, durations, rates, sizes and counts in every command."""

from __future__ import annotations

import argparse
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.units import (
    UnitError,
    format_duration,
    format_percent,
    format_size,
    parse_count,
    parse_duration,
    parse_percent,
    parse_percent_points,
    parse_port,
    parse_rate,
    parse_seconds,
    parse_size,
    size,
)


@pytest.mark.parametrize(
    ("text", "share"), [("5%", 0.05), ("0.1%", 0.001), ("0.05", 0.05), ("0", 0.0), ("100%", 1.0)]
)
def test_a_percentage_is_written_with_a_sign_or_as_a_share(text: str, share: float) -> None:
    assert parse_percent(text) == pytest.approx(share)


def test_a_bare_number_above_one_is_refused_with_the_form_to_write() -> None:
    with pytest.raises(UnitError, match="write 5%"):
        parse_percent("5")


@pytest.mark.parametrize(
    ("text", "us"),
    [("10ms", 10_000), ("500us", 500), ("1.5s", 1_500_000), ("10", 10_000), ("0", 0)],
)
def test_durations_take_units_and_a_bare_number_is_in_the_options_unit(text: str, us: int) -> None:
    assert parse_duration(text) == us
    assert parse_duration("2", bare="s") == 2_000_000


def test_timeouts_are_seconds_and_never_zero() -> None:
    assert parse_seconds("30") == 30.0
    assert parse_seconds("200ms") == 0.2
    for bad in ("0", "-1", "inf", "nan", "soon"):
        with pytest.raises(UnitError):
            parse_seconds(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [("200000", 200_000), ("64k", 64_000), ("1M", 1_000_000), ("1.5MB", 1_500_000),
     ("64KiB", 65_536), ("1MiB", 1_048_576), ("0", 0)],
)  # fmt: skip
def test_sizes_take_si_and_binary_suffixes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_a_size_option_names_its_bounds_in_the_form_it_reads() -> None:
    ping_size = size(0, 65507)
    assert ping_size("1k") == 1000
    with pytest.raises(UnitError, match="'70k' is too large: at most 65507 bytes"):
        ping_size("70k")
    with pytest.raises(UnitError, match="'200M' is too large: at most 100M bytes"):
        size(1, 100 * 10**6)("200M")
    with pytest.raises(UnitError, match="'0' is too small: at least 1 bytes"):
        size(1)("0")


def _size_options() -> dict[str, argparse.Action]:
    """Every option of every command (and subcommand) whose value is a number of bytes."""
    from lab.cli.main import COMMANDS, command_parser

    found: dict[str, argparse.Action] = {}

    def walk(prog: str, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(f"{prog} {name}", sub)
            elif "size" in action.dest or re.search(r"\bbytes (to|per|of)\b", action.help or ""):
                found[f"{prog} {'/'.join(action.option_strings) or action.dest}"] = action

    for name in COMMANDS:
        walk(f"lab {name}", command_parser(name)[0])
    return found


def test_every_size_option_reads_sizes_with_the_one_size_parser() -> None:
    options = _size_options()
    assert {"lab demo --size", "lab ping -s/--size"} <= set(options)
    for where, action in options.items():
        assert getattr(action.type, "__name__", None) == "size", where


@pytest.mark.parametrize(
    ("argv", "value"),
    [(["demo", "--size", "1M"], 1_000_000), (["demo", "--size", "64KiB"], 65_536),
     (["ping", "-s", "1k"], 1000), (["ping", "-s", "56"], 56)],
)  # fmt: skip
def test_size_options_take_the_same_forms(argv: list[str], value: int) -> None:
    from lab.cli.main import parse

    parsed = parse(argv)
    assert parsed is not None
    assert parsed[1].size == value


def test_rates_take_tcs_units() -> None:
    assert parse_rate("10mbit") == 10_000_000
    assert parse_rate("1mbps") == 8_000_000


@pytest.mark.parametrize(("text", "points"), [("12.5", 12.5), ("12.5%", 12.5), ("0", 0.0)])
def test_percent_points_read_a_bare_number_as_percent_as_packetdrill(
    text: str, points: float
) -> None:
    assert parse_percent_points(text) == points


@pytest.mark.parametrize(
    ("parser", "text"),
    [
        (parse_percent_points, "150"),
        (parse_percent_points, "-1"),
        (parse_percent_points, "lots"),
        (parse_percent, "-5%"),
        (parse_percent, "150%"),
        (parse_percent, "1.5"),
        (parse_percent, "lots"),
        (parse_duration, "-1"),
        (parse_duration, "10 parsecs"),
        (parse_size, "-5"),
        (parse_size, "1.5"),
        (parse_size, "big"),
        (parse_rate, "fast"),
        (parse_rate, "0mbit"),
        (parse_port, "0"),
        (parse_port, "70000"),
        (parse_count, "-1"),
        (parse_count, "two"),
    ],
)
def test_bad_values_raise_a_usage_error_that_is_also_a_value_error(
    parser: object, text: str
) -> None:
    with pytest.raises(UnitError) as caught:
        parser(text)  # type: ignore[operator]
    assert isinstance(caught.value, argparse.ArgumentTypeError)
    assert isinstance(caught.value, ValueError)
    assert text in str(caught.value)


@given(st.integers(min_value=0, max_value=10**9))
def test_a_formatted_duration_reads_back(us: int) -> None:
    assert parse_duration(format_duration(us)) == us


@given(st.integers(min_value=0, max_value=10**12))
def test_a_formatted_size_reads_back(n: int) -> None:
    assert parse_size(format_size(n)) == n


@given(st.integers(min_value=0, max_value=1000))
def test_a_formatted_percentage_reads_back(tenths: int) -> None:
    share = tenths / 1000
    assert parse_percent(format_percent(share)) == pytest.approx(share)
