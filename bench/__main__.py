"""`python -m bench [NAME [ARGS...]]`: run one benchmark with its own arguments, or all of them.

Every module in this package with a `main(argv) -> int` is a benchmark; the first line of its
docstring is its summary (`--list` prints them). Benchmarks print measurements; they never assert
timings, since a loaded CI machine would make any threshold flaky.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent


def benchmarks() -> dict[str, str]:
    """name -> module name, for every module of the package that defines `main`."""
    found: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules([str(_HERE)]), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "main", None)):
            found[info.name] = module.__name__
    return found


def _summary(module: ModuleType) -> str:
    doc = (module.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _run(name: str, module_name: str, args: list[str]) -> int:
    module = importlib.import_module(module_name)
    print(f"== {name}: {_summary(module)}", flush=True)
    started = time.perf_counter()
    status = int(module.main(args))
    print(f"   ({time.perf_counter() - started:.1f} s)\n", flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    found = benchmarks()
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if args[:1] == ["--list"]:
        for name, module_name in found.items():
            print(f"{name:24} {_summary(importlib.import_module(module_name))}")
        return 0
    if args:
        name, rest = args[0], args[1:]
        if name not in found:
            print(f"unknown benchmark {name!r}; known: {', '.join(found)}", file=sys.stderr)
            return 2
        return _run(name, found[name], rest)
    status = 0
    for name, module_name in found.items():
        status |= _run(name, module_name, [])
    return status


if __name__ == "__main__":
    sys.exit(main())
