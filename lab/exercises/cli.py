"""`lab exercise list|show|start|check|reset`: the course's front door.

Exit status of `check`: 0 when every criterion passes, 1 when one fails, 2 for a usage error (no
student file: run `start` first), 77 when the exercise needs privileges this process lacks.
`start` of a live exercise builds its topology and leaves it up for experiments (recorded in
DIR/.lab-exercise.json); `check` always builds a fresh one and tears it down, so a grade never
depends on leftovers; `reset` removes what `start` left up and the check's work files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from lab.exercises import CheckResult, Exercise, UnknownExercise, all_exercises, load

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_PRIVILEGES = 77
RECORD = ".lab-exercise.json"
WORKDIR = ".lab-check"

EPILOG = """\
examples:
  lab exercise list
  lab exercise show reassembly
  lab exercise start reassembly ~/tcp-lab     # copies reassembly.py there
  lab exercise check reassembly ~/tcp-lab     # grades it; exit 0 when every criterion passes
  sudo lab exercise check handshake ~/tcp-lab
  lab exercise reset ~/tcp-lab

exit status: 0 all criteria passed, 1 some failed, 2 usage error, 77 needs root
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="the exercises")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p = sub.add_parser("show", help="goal, background, steps and hints of one exercise")
    p.add_argument("name")
    p.add_argument("--solution", action="store_true", help="also print the reference solution")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p = sub.add_parser("start", help="copy the starter file (and build the topology, if live)")
    p.add_argument("name")
    p.add_argument("dir", nargs="?", type=Path, help="the student's folder (default ./lab-NAME)")
    p.add_argument("--force", action="store_true", help="overwrite an existing starter file")
    p = sub.add_parser("check", help="run and grade the attempt in DIR")
    p.add_argument("name")
    p.add_argument("dir", nargs="?", type=Path, help="the student's folder (default ./lab-NAME)")
    p.add_argument("--json", action="store_true", help="print the criteria as JSON")
    p = sub.add_parser("reset", help="remove the topology left by start and the check's files")
    p.add_argument("dir", nargs="?", type=Path, default=None, help="the student's folder")


def _folder(exercise: Exercise, given: Path | None) -> Path:
    return given if given is not None else Path(f"lab-{exercise.name}")


def _colour(text: str, code: str, out: TextIO) -> str:
    from lab.cli import use_colour  # a terminal, and no NO_COLOR

    return f"\x1b[{code}m{text}\x1b[0m" if use_colour(out) else text


def _show(exercise: Exercise, solution: bool, as_json: bool, out: TextIO) -> None:
    if as_json:
        data: dict[str, Any] = {
            k: getattr(exercise, k)
            for k in ("name", "title", "goal", "background", "steps", "hints", "starter")
        }
        data["privileged"] = exercise.privileged
        if solution:
            data["solution"] = exercise.source_of("solution")
        json.dump(data, out, indent=2)
        out.write("\n")
        return
    out.write(f"{exercise.title}\n{'=' * len(exercise.title)}\n\n")
    out.write(f"Goal: {exercise.goal}\n\n{exercise.background}\n\nSteps:\n")
    for i, step in enumerate(exercise.steps, 1):
        out.write(f"  {i}. {step}\n")
    out.write("\nHints:\n")
    for hint in exercise.hints:
        out.write(f"  - {hint}\n")
    if exercise.privileged:
        out.write("\nNeeds root: the checker builds network namespaces and captures the wire.\n")
    if solution:
        out.write(f"\nReference solution ({exercise.starter}):\n\n")
        out.write(exercise.source_of("solution"))


def _start(exercise: Exercise, folder: Path, force: bool, out: TextIO) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / exercise.starter
    if target.exists() and not force:
        out.write(f"{target} exists: keeping your work (use --force to start over)\n")
    else:
        target.write_text(exercise.source_of("starter"))
        out.write(f"wrote {target}\n")
    if not exercise.privileged:
        out.write(f"next: edit {target}, then: lab exercise check {exercise.name} {folder}\n")
        return EXIT_OK
    from lab.topology import PrivilegeError, Topology

    try:
        topo = Topology(handle_signals=False)
        info = topo.up()
    except PrivilegeError as exc:
        out.write(f"no topology built: {exc}\n")
        return EXIT_NO_PRIVILEGES
    topo.detach()
    record = {"exercise": exercise.name, "run_id": info.names.run_id}
    (folder / RECORD).write_text(json.dumps(record))
    out.write(
        f"topology {info.names.run_id} is up for your experiments:\n"
        f"  your side: namespace {info.names.client_ns}, interface {info.names.client_if} "
        f"(MAC {info.client_mac}), you are {info.client_ip}\n"
        f"  server:    namespace {info.names.server_ns}, {info.server_ip}\n"
        f"  run your code there: sudo ip netns exec {info.names.client_ns} python3 ...\n"
        f"next: lab exercise check {exercise.name} {folder}   (builds its own fresh topology)\n"
        f"when done: lab exercise reset {folder}\n"
    )
    return EXIT_OK


def _print_result(result: CheckResult, as_json: bool, out: TextIO) -> None:
    if as_json:
        json.dump(
            {
                "exercise": result.exercise,
                "passed": result.passed,
                "criteria": [asdict(c) for c in result.criteria],
                "capture": str(result.capture) if result.capture else None,
                "error": result.student_error,
            },
            out,
            indent=2,
        )
        out.write("\n")
        return
    for c in result.criteria:
        mark = _colour("PASS", "32", out) if c.passed else _colour("FAIL", "31", out)
        out.write(f"{mark}  {c.name}\n      {c.reason}\n")
    if result.student_error:
        out.write(f"\nyour code's error:\n{result.student_error.rstrip()}\n")
    if result.capture:
        out.write(f"\ncapture of everything that crossed the wire: {result.capture}\n")
    passed = sum(c.passed for c in result.criteria)
    out.write(f"\n{passed}/{len(result.criteria)} criteria passed\n")


def _check(exercise: Exercise, folder: Path, as_json: bool, out: TextIO) -> int:
    student = folder / exercise.starter
    if not student.exists():
        print(
            f"lab exercise check: {student} not found; run: lab exercise start "
            f"{exercise.name} {folder}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if exercise.privileged:
        from lab.topology import PrivilegeError, require_privileges

        try:
            require_privileges()
        except PrivilegeError as exc:
            print(f"lab exercise check {exercise.name}: {exc}", file=sys.stderr)
            return EXIT_NO_PRIVILEGES
    result = exercise.check(student, folder / WORKDIR)
    _print_result(result, as_json, out)
    return EXIT_OK if result.passed else EXIT_FAILED


def _reset(folder: Path | None, out: TextIO) -> int:
    folder = folder if folder is not None else Path(".")
    record_file = folder / RECORD
    if record_file.exists():
        record = json.loads(record_file.read_text())
        from lab.topology import PrivilegeError, TopologyNames, remove_topology, require_privileges
        from lab.topology.state import STATE_DIR, remove_state

        try:
            require_privileges()
        except PrivilegeError as exc:
            print(f"lab exercise reset: {exc}", file=sys.stderr)
            return EXIT_NO_PRIVILEGES
        names = TopologyNames.for_run(record["run_id"])
        for item in remove_topology(names):
            out.write(f"removed {item}\n")
        remove_state(names.run_id, STATE_DIR)
        record_file.unlink()
    work = folder / WORKDIR
    if work.exists():
        shutil.rmtree(work)
        out.write(f"removed {work}\n")
    out.write("reset done (your files are kept)\n")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    if args.action == "list":
        exercises = all_exercises()
        if args.json:
            rows = [
                {"name": e.name, "title": e.title, "privileged": e.privileged} for e in exercises
            ]
            json.dump(rows, out, indent=2)
            out.write("\n")
        else:
            width = max(len(e.name) for e in exercises)
            for e in exercises:
                root = "  (needs root)" if e.privileged else ""
                out.write(f"{e.name:<{width}}  {e.title}{root}\n")
        return EXIT_OK
    if args.action == "reset":
        return _reset(args.dir, out)
    try:
        exercise = load(args.name)
    except UnknownExercise:
        names = ", ".join(e.name for e in all_exercises())
        print(f"lab exercise: no exercise {args.name!r} (there are: {names})", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "show":
        _show(exercise, args.solution, args.json, out)
        return EXIT_OK
    folder = _folder(exercise, args.dir)
    if args.action == "start":
        return _start(exercise, folder, args.force, out)
    return _check(exercise, folder, args.json, out)
