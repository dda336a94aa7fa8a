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
import sys
import traceback
from pathlib import Path
from types import ModuleType


def load_student(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("student", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["student"] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    exercise, student_file, task_file, result_file = argv
    try:
        package = importlib.import_module(f"lab.exercises.{exercise.replace('-', '_')}")
        task = json.loads(Path(task_file).read_text())
        module = load_student(Path(student_file))
        text = json.dumps({"ok": True, "result": package.drive(module, task)})
        code = 0
    except BaseException:  # the student's SystemExit and KeyboardInterrupt included
        # json.dumps inside the try: a result that is not JSON-able is the attempt's error too.
        text = json.dumps({"ok": False, "error": traceback.format_exc(limit=-8)})
        code = 1
    Path(result_file).write_text(text)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
