"""Every script of tests/conformance/ against the lab's TCP, and against the kernel as root.

Scripts listed in EXPECTED_TO_FAIL_ON_LAB reproduce a known lab defect: they are strict xfails,
so the day the defect is fixed the test turns red until the script is taken off the list. The
kernel runs use a 100 ms tolerance (the machine is shared; `lab script` defaults to 25 ms). Both
run `strict`: every segment a stack sends must be listed (packetdrill only looks at `>` lines).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.script.parser import KERNEL_NOTE_KEYS, NOTE_KEYS, load_script
from lab.script.run import run_on_kernel, run_on_lab

CONFORMANCE = Path(__file__).parent / "conformance"
SCRIPTS = sorted(CONFORMANCE.glob("*.pkt"))
KERNEL_TOLERANCE = 100_000
LAB_TOLERANCE = 25_000

EXPECTED_TO_FAIL_ON_LAB: dict[str, str] = {}


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _noted_skip(path: Path, target: str) -> bool:
    return "skip" in load_script(path).note_keys(target)


# Scripts noted `// kernel-differs: skip` (or lab-differs) are not run there at all, rather than
# collected and skipped: each such note names why (minutes of real time, a Linux choice), and
# test_every_noted_skip_says_why checks that it does.
LAB_SCRIPTS = [p for p in SCRIPTS if not _noted_skip(p, "lab")]
KERNEL_SCRIPTS = [p for p in SCRIPTS if not _noted_skip(p, "kernel")]


def test_suite_is_large_enough() -> None:
    assert len(SCRIPTS) >= 40
    assert len(LAB_SCRIPTS) >= 40
    assert len(KERNEL_SCRIPTS) >= 40
    assert set(EXPECTED_TO_FAIL_ON_LAB) <= {p.name for p in SCRIPTS}


def test_every_noted_skip_says_why() -> None:
    for path in SCRIPTS:
        for note in load_script(path).notes:
            if "skip" in note.keys:
                assert len(note.reason.split()) >= 3, f"{path.name}: a skip needs its reason"


def _differences_table() -> dict[str, set[str]]:
    """The README's table of intended differences: key -> the sides whose notes use it."""
    text = (CONFORMANCE / "README.md").read_text()
    section = text.split("## Intended differences", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table: dict[str, set[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        key = cells[0].strip("`")
        assert key not in table, f"README: {key} has two rows"
        table[key] = {side.strip() for side in cells[1].split(",")} - {"unused"}
    return table


def test_differences_table_agrees_with_the_keys_and_the_scripts_notes() -> None:
    table = _differences_table()
    assert set(table) == set(NOTE_KEYS) | set(KERNEL_NOTE_KEYS), "README table vs parser keys"
    used: dict[str, set[str]] = {key: set() for key in table}
    for path in SCRIPTS:
        for note in load_script(path).notes:
            for key in note.keys:
                assert note.target in table[key], (
                    f"{path.name}:{note.line}: a {note.target}-differs note uses {key}, which "
                    f"the README's table does not list as noted on {note.target}"
                )
                used[key].add(note.target)
    stale = {key: table[key] - sides for key, sides in used.items() if table[key] - sides}
    assert not stale, (
        f"README's table says these are noted, but no script's note uses them: {stale}"
    )


@pytest.mark.parametrize("path", LAB_SCRIPTS, ids=_ids(LAB_SCRIPTS))
def test_script_against_lab(path: Path) -> None:
    result = run_on_lab(load_script(path), LAB_TOLERANCE, strict=True)
    if path.name in EXPECTED_TO_FAIL_ON_LAB:
        if result.passed:
            pytest.fail(f"{path.name} now passes: take it off EXPECTED_TO_FAIL_ON_LAB")
        pytest.xfail(EXPECTED_TO_FAIL_ON_LAB[path.name])
    assert result.status == "pass", (
        f"line {result.line}: {result.reason}\n  expected {result.expected}\n"
        f"  actual   {result.actual}"
    )


@pytest.mark.privileged  # the kernel runner needs root (a TUN device in a lab namespace)
@pytest.mark.kernel_runner
@pytest.mark.parametrize("path", KERNEL_SCRIPTS, ids=_ids(KERNEL_SCRIPTS))
def test_script_against_kernel(path: Path) -> None:
    result = run_on_kernel(load_script(path), KERNEL_TOLERANCE, strict=True)
    assert result.status == "pass", (
        f"line {result.line}: {result.reason}\n  expected {result.expected}\n"
        f"  actual   {result.actual}"
    )
