"""Every script of tests/conformance/ against the lab's TCP, and against the kernel as root.

Scripts listed in EXPECTED_TO_FAIL_ON_LAB reproduce a known lab defect: they are strict xfails,
so the day the defect is fixed the test turns red until the script is taken off the list. The
kernel runs use a 100 ms tolerance (the machine is shared; `lab script` defaults to 25 ms).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.script.parser import load_script
from lab.script.run import run_on_kernel, run_on_lab

CONFORMANCE = Path(__file__).parent / "conformance"
SCRIPTS = sorted(CONFORMANCE.glob("*.pkt"))
KERNEL_TOLERANCE = 100_000
LAB_TOLERANCE = 25_000

EXPECTED_TO_FAIL_ON_LAB: dict[str, str] = {}


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_suite_is_large_enough() -> None:
    assert len(SCRIPTS) >= 40
    assert set(EXPECTED_TO_FAIL_ON_LAB) <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("path", SCRIPTS, ids=_ids(SCRIPTS))
def test_script_against_lab(path: Path) -> None:
    result = run_on_lab(load_script(path), LAB_TOLERANCE)
    if path.name in EXPECTED_TO_FAIL_ON_LAB:
        if result.passed:
            pytest.fail(f"{path.name} now passes: take it off EXPECTED_TO_FAIL_ON_LAB")
        pytest.xfail(EXPECTED_TO_FAIL_ON_LAB[path.name])
    assert result.status in ("pass", "skip"), (
        f"line {result.line}: {result.reason}\n  expected {result.expected}\n"
        f"  actual   {result.actual}"
    )


@pytest.mark.parametrize("path", SCRIPTS, ids=_ids(SCRIPTS))
def test_script_against_kernel(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the kernel runner needs root (TUN device in a lab namespace)")
    result = run_on_kernel(load_script(path), KERNEL_TOLERANCE)
    if result.status == "skip":
        pytest.skip(result.reason)
    assert result.status == "pass", (
        f"line {result.line}: {result.reason}\n  expected {result.expected}\n"
        f"  actual   {result.actual}"
    )
