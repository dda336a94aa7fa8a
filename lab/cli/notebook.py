"""`lab notebook list|run NAME`: the teaching notebooks without Jupyter's interface.

`run` executes a notebook top to bottom in a fresh kernel (nbclient, the `notebook` extra that
`make venv` installs), prints what each code cell printed as it finishes, and exits 0 when every
cell ran (the last cell asserts what the notebook taught), 1 when a cell raised. Why a command
of its own: JupyterLab is large and optional, and `jupyter nbconvert` is not installed; a
student on a terminal, a teacher checking a machine before class, or CI all need the same one
line. The notebooks stay as stored (no outputs, as tests/test_notebooks.py demands); `--output
FILE` writes the executed copy elsewhere.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab.cli.errors import ExitCode
from lab.cli.values import output_file
from lab.units import parse_seconds

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"

EPILOG = """\
examples:
  lab notebook list
  lab notebook run 01                      # 01_crafting_a_syn.ipynb, live as root, else offline
  lab notebook run replaying_captures --mode offline --output /tmp/05.ipynb

exit status: 0 every cell ran, 1 a cell raised (or nbclient is missing), 2 usage (no such notebook)
"""


def notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    return sorted(directory.glob("[0-9]*.ipynb"))


def find_notebook(name: str, directory: Path = NOTEBOOK_DIR) -> Path | None:
    """A notebook by path, file name, stem, number (`01`, `1`) or title (`crafting_a_syn`)."""
    given = Path(name)
    if given.suffix == ".ipynb" and given.is_file():
        return given
    key = given.stem
    for path in notebooks(directory):
        number, _, title = path.stem.partition("_")
        if key in (path.stem, title) or (key.isdigit() and int(key) == int(number)):
            return path
    return None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="the notebooks")
    run = sub.add_parser("run", help="execute one notebook headless and print its output")
    run.add_argument("name", help="number (01), name (crafting_a_syn) or path of the notebook")
    run.add_argument(
        "--mode",
        choices=("live", "offline"),
        help="force a mode (sets LAB_MODE); default: live as root, else offline",
    )
    run.add_argument("--output", type=output_file, help="also write the executed notebook here")
    run.add_argument("--timeout", type=parse_seconds, default=300.0, help="seconds per cell (300)")


def _cell_text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(output.get("text", ""))
        elif kind in ("display_data", "execute_result"):
            data = output.get("data", {})
            if "image/png" in data:
                parts.append("[picture]\n")
            elif "text/plain" in data:
                parts.append(data["text/plain"] + "\n")
    return "".join(parts)


def _run(path: Path, args: argparse.Namespace) -> int:
    try:
        import nbclient
        import nbformat
        from nbclient.exceptions import CellExecutionError
    except ImportError as exc:
        print(
            f"lab notebook run: {exc.name} is missing: pip install -e '.[notebook]' "
            "(make venv does)",
            file=sys.stderr,
        )
        return ExitCode.FAILURE
    if args.output is not None and args.output.resolve().parent == NOTEBOOK_DIR:
        print(
            "lab notebook run: --output must be outside notebooks/ (notebooks are stored "
            "without outputs)",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    if args.mode is not None:
        os.environ["LAB_MODE"] = args.mode  # the kernel inherits it; lab.notebook reads it
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]

    def show(cell: Any, cell_index: int, **_: Any) -> None:
        if cell.get("cell_type") == "code":
            sys.stdout.write(_cell_text(cell))
            sys.stdout.flush()

    client = nbclient.NotebookClient(
        nb,
        timeout=round(args.timeout),
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=show,
    )
    code = ExitCode.OK
    try:
        # The kernel process's own stderr (not the cells': those come as outputs) holds only
        # its start-up chatter, such as a warning that it listens on local TCP ports.
        client.execute(stderr=subprocess.DEVNULL)
    except CellExecutionError as exc:
        what = f"{exc.ename}: {exc.evalue}" if exc.ename else "an error"
        print(f"lab notebook run: {path.name}: a cell failed: {what}", file=sys.stderr)
        code = ExitCode.FAILURE
    except Exception as exc:  # the kernel did not start or died: say so, no traceback
        print(f"lab notebook run: {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = ExitCode.FAILURE
    finally:
        if args.output is not None:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, args.output)  # type: ignore[no-untyped-call]
    return code


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for listed in notebooks():
            print(listed.stem)
        if not notebooks():
            print(f"lab notebook: no notebooks in {NOTEBOOK_DIR}", file=sys.stderr)
            return ExitCode.FAILURE
        return ExitCode.OK
    found = find_notebook(args.name)
    if found is None:
        names = ", ".join(p.stem for p in notebooks())
        print(f"lab notebook run: no notebook {args.name!r} (choose from {names})", file=sys.stderr)
        return ExitCode.USAGE
    return _run(found, args)
