"""`lab exercise list|show|start|check|reset`: the course's front door.

Exit status of `check`: 0 when every criterion passes, 1 when one fails, 2 for a usage error (no
student file: run `start` first), 77 when LAB_MODE=live asks for a live check this process lacks
the privileges for (otherwise a live exercise runs offline: lab.exercises.offline).
`start` of a live exercise builds its topology and leaves it up for experiments (recorded in
DIR/.lab-exercise.json); `check` always builds a fresh one and tears it down, so a grade never
depends on leftovers; `reset` removes what `start` left up and the check's work files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from lab.cli.errors import ExitCode
from lab.cli.impairment import add_impairment_arguments, impairment_from_args
from lab.cli.values import existing_folder, output_dir
from lab.exercises import CheckResult, Exercise, UnknownExercise, all_exercises, load
from lab.exercises.harness import OUTPUT_FILE
from lab.link.impairment import Impairment

RECORD = ".lab-exercise.json"
OFFLINE_HELP = (
    "a live exercise without namespaces: your code against the lab's own stack on an "
    "in-memory wire, graded the same way (the default when this machine cannot run live)"
)
WORKDIR = ".lab-check"

EPILOG = """\
examples:
  lab exercise list
  lab exercise show reassembly
  lab exercise start reassembly ~/tcp-lab     # copies reassembly.py there
  lab exercise check reassembly ~/tcp-lab     # grades it; exit 0 when every criterion passes
  lab exercise check reassembly ~/tcp-lab --loss 30% --reorder 20% --seed 3   # one more session
  sudo lab exercise check handshake ~/tcp-lab
  lab exercise reset ~/tcp-lab

exit status: 0 all criteria passed, 1 some failed, 2 usage error, 77 LAB_MODE=live without root
"""


# What `lab exercise ACTION --help` ends with: its own examples and exit status.
ACTION_EPILOGS = {
    "list": "examples:\n  lab exercise list\n  lab exercise list --json\n\nexit status: 0",
    "show": "examples:\n  lab exercise show handshake\n"
    "  lab exercise show reassembly --solution   # the reference solution too\n\n"
    "exit status: 0 shown, 2 no such exercise",
    "start": "examples:\n"
    "  lab exercise start reassembly                 # ./lab-reassembly/reassembly.py\n"
    "  sudo lab exercise start handshake ~/tcp-lab   # also leaves a topology up\n\n"
    "exit status: 0 started, 2 no such exercise, 77 LAB_MODE=live without root",
    "check": "examples:\n  lab exercise check reassembly\n"
    "  sudo lab exercise check handshake ~/tcp-lab --json\n"
    "  lab exercise check reassembly --loss 30% --reorder 20% --dup 5% --seed 3\n\n"
    "-q: only the failed criteria and the tally; -v: also what your code printed\n\n"
    "exit status: 0 every criterion passed, 1 one failed, 2 usage (no student file, a fault "
    "option the exercise cannot honour), 77 LAB_MODE=live without root (else: offline)",
    "reset": "examples:\n  lab exercise reset                 # . and the ./lab-NAME folders\n"
    "  sudo lab exercise reset ~/tcp-lab\n\n"
    "exit status: 0 done, 77 a topology is left and removing it needs root",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add_parser(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            epilog=ACTION_EPILOGS[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add_parser("list", help="the exercises")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p = add_parser("show", help="goal, background, steps and hints of one exercise")
    p.add_argument("name")
    p.add_argument("--solution", action="store_true", help="also print the reference solution")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p = add_parser("start", help="copy the starter file (and build the topology, if live)")
    p.add_argument("name")
    p.add_argument(
        "dir", nargs="?", type=output_dir, help="the student's folder (default ./lab-NAME)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing starter file")
    p.add_argument("--offline", action="store_true", help=OFFLINE_HELP)
    p.add_argument("--json", action="store_true", help="print what was set up as JSON")
    p = add_parser("check", help="run and grade the attempt in DIR")
    p.add_argument("name")
    p.add_argument("dir", nargs="?", type=Path, help="the student's folder (default ./lab-NAME)")
    p.add_argument("--json", action="store_true", help="print the criteria as JSON")
    p.add_argument("--offline", action="store_true", help=OFFLINE_HELP)
    add_impairment_arguments(p)
    p = add_parser("reset", help="remove the topology left by start and the check's files")
    p.add_argument(
        "dir",
        nargs="?",
        type=existing_folder,
        default=None,
        help="the student's folder (default: . and the ./lab-NAME folders start made)",
    )
    p.add_argument("--json", action="store_true", help="print what was removed as JSON")


def _mode(exercise: Exercise, args: argparse.Namespace | None = None) -> str:
    """Where a check of `exercise` runs: "live" (namespaces: root), or "offline" (the lab's own
    stack as the server, on an in-memory wire: lab.exercises.offline), or "offline" always for
    the exercises that need no privileges. `--offline` or LAB_MODE=offline force offline,
    LAB_MODE=live forces live (and a missing privilege is then an error, not a fallback)."""
    if not exercise.privileged or exercise.check_offline is None:
        return "offline" if not exercise.privileged else "live"
    forced = os.environ.get("LAB_MODE", "").strip().lower()
    if getattr(args, "offline", False) or forced == "offline":
        return "offline"
    if forced == "live":
        return "live"
    from lab.exercises.offline import live_available

    return "live" if live_available() else "offline"


def _mode_note(exercise: Exercise) -> str:
    if _mode(exercise) == "live":
        return "live, as root"
    forced = os.environ.get("LAB_MODE", "").strip().lower() == "offline"
    return "offline" + ("" if forced else ": no root here, the lab's stack plays the server")


def _folder(exercise: Exercise, given: Path | None) -> Path:
    return given if given is not None else Path(f"lab-{exercise.name}")


def _colour(text: str, code: str, out: TextIO) -> str:
    from lab.cli.main import use_colour  # a terminal, and no NO_COLOR

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


def where_to_run(run_id: str, client_ns: str) -> str:
    """The command that runs the student's code on their side of a topology `start` left up.

    As root, the namespace is on the host: `sudo ip netns exec`. As an ordinary user it lives in
    the user namespace of the process holding the topology (lab.topology.userns), which a later
    command reaches only through `lab rootless --join RUN`; sudo would be wrong twice there."""
    from lab.topology.userns import is_rootless

    if is_rootless():
        return f"lab rootless --join {run_id} ip netns exec {client_ns} python3 ..."
    return f"sudo ip netns exec {client_ns} python3 ..."


def _start(
    exercise: Exercise,
    folder: Path,
    force: bool,
    as_json: bool,
    out: TextIO,
    *,
    offline: bool = False,
) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / exercise.starter
    kept = target.exists() and not force
    if not kept:
        target.write_text(exercise.source_of("starter"))
    summary: dict[str, Any] = {"exercise": exercise.name, "file": str(target), "kept": kept}
    lines = [
        f"{target} exists: keeping your work (use --force to start over)"
        if kept
        else f"wrote {target}"
    ]
    code = ExitCode.OK
    if offline:
        summary["mode"] = "offline"
        lines += [
            "offline mode: no topology (that needs root); the check runs your code against "
            "the lab's own stack on an in-memory wire, graded as live",
            f"next: edit {target}, then: lab exercise check {exercise.name} {folder}",
        ]
    elif not exercise.privileged:
        lines.append(f"next: edit {target}, then: lab exercise check {exercise.name} {folder}")
    else:
        from lab.topology import PrivilegeError, Topology

        try:
            topo = Topology(handle_signals=False)
            info = topo.up()
        except PrivilegeError as exc:
            print(f"lab exercise start: no topology built: {exc}", file=sys.stderr)
            code = ExitCode.NO_PRIVILEGES
        else:
            topo.detach()
            run_there = where_to_run(info.names.run_id, info.names.client_ns)
            record = {"exercise": exercise.name, "run_id": info.names.run_id}
            (folder / RECORD).write_text(json.dumps(record))
            summary["topology"] = {
                "run_id": info.names.run_id,
                "client_namespace": info.names.client_ns,
                "client_interface": info.names.client_if,
                "client_mac": info.client_mac,
                "client_ip": info.client_ip,
                "server_namespace": info.names.server_ns,
                "server_ip": info.server_ip,
            }
            summary["run_there"] = run_there
            lines += [
                f"topology {info.names.run_id} is up for your experiments:",
                f"  your side: namespace {info.names.client_ns}, interface "
                f"{info.names.client_if} (MAC {info.client_mac}), you are {info.client_ip}",
                f"  server:    namespace {info.names.server_ns}, {info.server_ip}",
                f"  run your code there: {run_there}",
                f"next: lab exercise check {exercise.name} {folder}   (builds its own fresh "
                "topology)",
                f"when done: lab exercise reset {folder}",
            ]
    summary["exit"] = code
    if as_json:
        json.dump(summary, out, indent=2)
        out.write("\n")
    else:
        out.write("".join(f"{line}\n" for line in lines))
    return code


def _print_result(
    result: CheckResult,
    as_json: bool,
    out: TextIO,
    *,
    verbose: bool = False,
    quiet: bool = False,
    printed: str = "",
) -> None:
    """The criteria; -q: only the failed ones and the tally; -v: also what the code printed."""
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
        if quiet and c.passed:
            continue
        mark = _colour("PASS", "32", out) if c.passed else _colour("FAIL", "31", out)
        out.write(f"{mark}  {c.name}\n      {c.reason}\n")
    if verbose and printed.strip():
        out.write(f"\nwhat your code printed:\n{printed.rstrip()}\n")
    if result.student_error and not quiet:
        out.write(f"\nyour code's error:\n{result.student_error.rstrip()}\n")
    if result.capture and not quiet:
        # A live check captured the wire; an offline one (forensics) hands its capture over.
        live = load(result.exercise).privileged
        what = "capture of everything that crossed the wire" if live else "the capture you read"
        out.write(f"\n{what}: {result.capture}\n")
    passed = sum(c.passed for c in result.criteria)
    gap = "" if quiet and result.passed else "\n"  # -q and all passed: the tally alone
    out.write(f"{gap}{passed}/{len(result.criteria)} criteria passed\n")


# The fault options, as `lab exercise check --help` names them, and their defaults.
_FAULT_OPTIONS = {
    "loss": 0.0,
    "reorder": 0.0,
    "dup": 0.0,
    "corrupt": 0.0,
    "delay": 0,
    "jitter": 0,
    "rate": None,
    "seed": None,
}


def _impairment(exercise: Exercise, args: argparse.Namespace) -> Impairment | str | None:
    """The schedule `check` was asked for, None for none, or the usage error to print."""
    given = [
        name for name, default in _FAULT_OPTIONS.items() if getattr(args, name, default) != default
    ]
    refused = [name for name in given if name not in exercise.impairment_options]
    if refused:
        flags = ", ".join(f"--{name}" for name in refused)
        if exercise.check_impaired is None:
            return (
                f"{exercise.name} takes no fault options ({flags}): it grades hand-made "
                "frames on a clean link; the reassembly exercise takes --loss, --reorder, "
                "--dup and --seed"
            )
        honoured = ", ".join(f"--{name}" for name in exercise.impairment_options)
        return f"{exercise.name} takes only {honoured}, not {flags}"
    if not given:
        return None
    return impairment_from_args(args) or Impairment(seed=args.seed)


def _check(
    exercise: Exercise,
    folder: Path,
    as_json: bool,
    out: TextIO,
    impairment: Impairment | None = None,
    *,
    verbose: bool = False,
    quiet: bool = False,
    offline: bool = False,
) -> int:
    student = folder / exercise.starter
    if not student.exists():
        print(
            f"lab exercise check: {student} not found; run: lab exercise start "
            f"{exercise.name} {folder}",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    if exercise.privileged and not offline:
        from lab.topology import PrivilegeError, require_privileges

        try:
            require_privileges()
        except PrivilegeError as exc:
            print(f"lab exercise check {exercise.name}: {exc}", file=sys.stderr)
            return ExitCode.NO_PRIVILEGES
    # Absolute: checkers hand paths to servers and to the attempt, which run in other folders
    # (the attempt in DIR itself), where `lab-NAME/.lab-check/...` would name nothing.
    workdir = (folder / WORKDIR).resolve()
    if impairment is not None and exercise.check_impaired is not None:
        result = exercise.check_impaired(student, workdir, impairment)
    elif offline and exercise.check_offline is not None:
        result = exercise.check_offline(student, workdir)
    else:
        result = exercise.check(student, workdir)
    result.capture = _shown(result.capture)
    output_file = folder / WORKDIR / OUTPUT_FILE
    printed = output_file.read_text() if verbose and output_file.exists() else ""
    _print_result(result, as_json, out, verbose=verbose, quiet=quiet, printed=printed)
    return ExitCode.OK if result.passed else ExitCode.FAILURE


def _shown(path: Path | None) -> Path | None:
    """A path under the current folder as the student typed it: relative."""
    if path is None:
        return None
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _reset_folders(given: Path | None) -> list[Path]:
    """The folders to reset: DIR, or else `.` and the default `./lab-NAME` folders of `start`
    and `check` (a student who typed no DIR there expects no DIR here)."""
    if given is not None:
        return [given]
    here = Path(".")
    candidates = [here, *sorted(p for p in here.glob("lab-*") if p.is_dir())]
    return [p for p in candidates if p == here or (p / RECORD).exists() or (p / WORKDIR).exists()]


def _reset(given: Path | None, as_json: bool, out: TextIO) -> int:
    removed: list[str] = []
    for folder in _reset_folders(given):
        record_file = folder / RECORD
        if record_file.exists():
            record = json.loads(record_file.read_text())
            from lab.topology import (
                PrivilegeError,
                TopologyNames,
                remove_topology,
                require_privileges,
            )
            from lab.topology.state import STATE_DIR, remove_state

            try:
                require_privileges()
            except PrivilegeError as exc:
                print(f"lab exercise reset: {exc}", file=sys.stderr)
                return ExitCode.NO_PRIVILEGES
            names = TopologyNames.for_run(record["run_id"])
            removed += [str(item) for item in remove_topology(names)]
            remove_state(names.run_id, STATE_DIR)
            record_file.unlink()
        work = folder / WORKDIR
        if work.exists():
            shutil.rmtree(work)
            removed.append(str(work))
    if as_json:
        json.dump({"removed": removed, "exit": ExitCode.OK}, out, indent=2)
        out.write("\n")
    else:
        out.write("".join(f"removed {item}\n" for item in removed))
        out.write("reset done (your files are kept)\n")
    return ExitCode.OK


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    if args.action == "list":
        exercises = all_exercises()
        if args.json:
            rows = [
                {"name": e.name, "title": e.title, "privileged": e.privileged, "mode": _mode(e)}
                for e in exercises
            ]
            json.dump(rows, out, indent=2)
            out.write("\n")
        else:
            width = max(len(e.name) for e in exercises)
            for e in exercises:
                note = f"  ({_mode_note(e)})" if e.privileged else ""
                out.write(f"{e.name:<{width}}  {e.title}{note}\n")
        return ExitCode.OK
    if args.action == "reset":
        return _reset(args.dir, args.json, out)
    try:
        exercise = load(args.name)
    except UnknownExercise:
        names = ", ".join(e.name for e in all_exercises())
        print(f"lab exercise: no exercise {args.name!r} (there are: {names})", file=sys.stderr)
        return ExitCode.USAGE
    if args.action == "show":
        _show(exercise, args.solution, args.json, out)
        return ExitCode.OK
    folder = _folder(exercise, args.dir)
    offline = exercise.privileged and _mode(exercise, args) == "offline"
    if args.action == "start":
        return _start(exercise, folder, args.force, args.json, out, offline=offline)
    impairment = _impairment(exercise, args)
    if isinstance(impairment, str):
        print(f"lab exercise check: {impairment}", file=sys.stderr)
        return ExitCode.USAGE
    return _check(
        exercise,
        folder,
        args.json,
        out,
        impairment,
        verbose=bool(getattr(args, "verbose", False)),
        quiet=bool(getattr(args, "quiet", False)),
        offline=offline,
    )
