"""`python -m lab.exercises.runner EXERCISE STUDENT_FILE TASK_JSON RESULT_JSON`: one attempt.

Runs in a child process (inside the client namespace for live exercises): loads the student's
file as a module, hands it and the task to the exercise's `drive`, and writes
{"ok": true, "result": ...} or {"ok": false, "error": "<traceback>"} to RESULT_JSON. The checker
reads that file, never the child's stdout, which belongs to the student's prints.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import reprlib
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType, ModuleType

WHERE_SIGNAL = signal.SIGUSR1  # the checker's "where are you?" before it kills a slow attempt


def load_student(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("student", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["student"] = module
    spec.loader.exec_module(module)
    return module


def where(frame: FrameType | None, student_file: str) -> str:
    """Where in the student's file this stack is, and the call the checker made into it:
    "in push (reassembly.py line 12: `while True:`), called as push(seq=1000, data=b'ab...')"."""
    frames = [f for f, _line in traceback.walk_stack(frame) if f.f_code.co_filename == student_file]
    if not frames:
        return ""
    inner, outer = frames[0], frames[-1]
    summary = traceback.extract_stack(inner, limit=1)[-1]
    code = (summary.line or "").strip()
    text = f"in {inner.f_code.co_name} ({Path(student_file).name} line {inner.f_lineno}: `{code}`)"
    names = outer.f_code.co_varnames[: outer.f_code.co_argcount]
    short = reprlib.Repr()
    short.maxstring = short.maxother = 40
    args = ", ".join(f"{n}={short.repr(outer.f_locals.get(n))}" for n in names if n != "self")
    return f"{text}, called as {outer.f_code.co_name}({args})"


def _answer_where(student_file: str, where_file: Path) -> None:
    """On WHERE_SIGNAL, write `where` of the interrupted frame to `where_file` and go on: Python
    runs the handler between two bytecodes, so even a `while True: pass` answers."""

    def handler(_signum: int, frame: FrameType | None) -> None:
        partial = where_file.with_suffix(".part")
        partial.write_text(where(frame, student_file))
        partial.replace(where_file)  # whole or not at all, for the checker polling for it

    signal.signal(WHERE_SIGNAL, handler)


def main(argv: list[str]) -> int:
    exercise, student_file, task_file, result_file = argv
    _answer_where(str(Path(student_file).resolve()), Path(result_file).with_name("where.txt"))
    finish = None  # offline: the lab's stack as the server, in this process (see offline.py)
    peer: dict[str, object] | None = None
    try:
        package = importlib.import_module(f"lab.exercises.{exercise.replace('-', '_')}")
        task = json.loads(Path(task_file).read_text())
        if "offline" in task:
            from lab.exercises.offline import start_in_child

            finish = start_in_child(task)  # may complete task["lab"]
        module = load_student(Path(student_file))
        result = package.drive(module, task)
        if finish is not None:
            peer, finish = finish(), None
        text = json.dumps({"ok": True, "result": result, "peer": peer})
        code = 0
    except BaseException:  # the student's SystemExit and KeyboardInterrupt included
        # json.dumps inside the try: a result that is not JSON-able is the attempt's error too.
        error = traceback.format_exc(limit=-8)
        if finish is not None:
            peer = finish()
        text = json.dumps({"ok": False, "error": error, "peer": peer})
        code = 1
    Path(result_file).write_text(text)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
