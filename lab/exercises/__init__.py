"""Exercises graded from what crossed the wire: the registry and the values every exercise shares.

An exercise is a package under `lab.exercises` holding:

* `EXERCISE`, an `Exercise`: the texts `lab exercise show` prints (goal, background, steps, hints),
  the name of the starter file `start` copies into the student's folder, and `check`, the checker;
* `starter.py`, the file the student completes, and `solution.py`, the reference solution (never
  copied by `start`; printed by `show --solution`, and run by the tests, which prove that it
  passes its checker and that a broken variant fails it with the expected reason);
* `drive(module, task)`, run in a child process by `lab.exercises.runner`: it calls the student's
  code on one task and returns a JSON-able result. A child, so that a student's crash, endless
  loop or `sys.exit` ends the attempt and not the checker, and so that live exercises can run it
  inside the client namespace of the topology.

A checker returns `Criterion` values, each passed or failed with a reason a student can act on.
Live checkers capture every frame on the veth (`lab.exercises.harness.server_sniffer`, a
`lab.link.sniffer.FrameSniffer`) and grade from the capture and from the server kernel's own view
(its /proc/net/tcp, its counters), never from what the student's code says it did.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.link.impairment import Impairment

# In the order `lab exercise list` shows them (and the order a course would take them).
NAMES = (
    "arp",
    "ndp",
    "handshake",
    "ftp-login",
    "active-data",
    "reassembly",
    "blind-reset",
    "forensics",
    "conformance",
)


@dataclass(frozen=True, slots=True)
class Criterion:
    """One graded point: passed or not, and why."""

    name: str
    passed: bool
    reason: str


@dataclass(slots=True)
class CheckResult:
    """Everything a check produced: the criteria, and where its capture and logs were written."""

    exercise: str
    criteria: list[Criterion] = field(default_factory=list)
    capture: Path | None = None
    student_error: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.criteria) and all(c.passed for c in self.criteria)

    def add(self, name: str, passed: bool, reason: str) -> bool:
        self.criteria.append(Criterion(name, passed, reason))
        return passed


Checker = Callable[[Path, Path], CheckResult]
"""(student file, work folder for the capture and inputs) -> result."""

ImpairedChecker = Callable[[Path, Path, Impairment], CheckResult]
"""The same, with one more graded run under the fault schedule `lab exercise check --loss ...`
asked for (an exercise that has no such run rejects those options as a usage error)."""


@dataclass(frozen=True, slots=True)
class Exercise:
    name: str
    title: str
    goal: str
    background: str
    steps: tuple[str, ...]
    hints: tuple[str, ...]
    starter: str  # the file name the student edits (copied from the package's starter.py)
    privileged: bool  # needs root: builds a topology
    check: Checker
    check_impaired: ImpairedChecker | None = None
    # The live exercises' offline mode: the lab's own stack as the server on an in-memory wire
    # (lab.exercises.offline), graded by the same criteria from the same kind of capture.
    check_offline: Checker | None = None
    impairment_options: tuple[str, ...] = ()  # the fault options check_impaired honours

    @property
    def package(self) -> str:
        return f"lab.exercises.{self.name.replace('-', '_')}"

    def source_of(self, which: str) -> str:
        """The text of the package's `starter.py` or `solution.py`."""
        module = importlib.import_module(self.package)
        path = Path(module.__file__ or "").parent / f"{which}.py"
        return path.read_text()


class UnknownExercise(KeyError):  # noqa: N818 - reads as what it is
    """No exercise has that name."""


def load(name: str) -> Exercise:
    if name not in NAMES:
        raise UnknownExercise(name)
    module = importlib.import_module(f"lab.exercises.{name.replace('-', '_')}")
    exercise: Exercise = module.EXERCISE
    return exercise


def all_exercises() -> list[Exercise]:
    return [load(name) for name in NAMES]
