"""Many captures at once: `lab replay A.pcap B.pcapng DIR/ --jobs N`, or any cluster's `map`.

Why a pure function per capture: `replay_one(task)` takes a path (and options) and returns a
plain, picklable `dict` (the JSON report, its status: complete, incomplete or unreadable, the
human summary and the damage lines),
touching nothing but its own output folder. Any engine that can map a function over a list can
then run it: the built-in `map` (one at a time), a process pool (`--jobs N`), or Dask
(`--dask ADDRESS`, extra `lab[cluster]`), with identical per-capture results.

    from lab.replay import replay_many
    outcomes = replay_many(["a.pcap", "captures/"], map=pool.map)

A directory stands for its capture files, recursively, recognised by their first bytes (pcap,
pcapng, or one of them compressed with gzip, xz or zstd), not by their names.
"""

from __future__ import annotations

import importlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MAGICS = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
    b"\x1f\x8b",
    b"\xfd7zXZ\x00",
    b"\x28\xb5\x2f\xfd",
)

Outcome = dict[str, Any]
CONNECT_TIMEOUT = "10s"  # a scheduler that does not answer by then is a usage error
Mapper = Callable[[Callable[["Task"], Outcome], Iterable["Task"]], Iterable[Outcome]]


@dataclass(frozen=True, slots=True)
class Task:
    """One capture to replay, with the options; small and picklable."""

    path: str
    out_dir: str | None = None
    policy: str = "first"
    summary: bool = True


def looks_like_capture(path: Path) -> bool:
    """A regular file that starts like a (possibly compressed) pcap or pcapng."""
    try:
        with path.open("rb") as f:
            head = f.read(6)
    except OSError:
        return False
    return any(head.startswith(m) for m in _MAGICS)


def capture_files(directory: Path) -> list[Path]:
    """The capture files under `directory`, recursively, in a stable (sorted) order."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            if p.is_file() and looks_like_capture(p):
                found.append(p)
    return found


def replay_one(task: Task) -> Outcome:
    """Replay one capture: a path in, a report out (pure apart from writing into `out_dir`)."""
    from lab.replay.report import print_summary, replay_capture

    try:
        result = replay_capture(task.path, out_dir=task.out_dir, policy=task.policy)  # type: ignore[arg-type]
    except OSError as exc:
        return {
            "capture": task.path,
            "status": "unreadable",
            "report": None,
            "summary": "",
            "errors": [str(exc)],
        }
    text = io.StringIO()
    if task.summary:
        print_summary(result, text)
    return {
        "capture": task.path,
        "status": result.status,
        "report": result.report,
        "summary": text.getvalue(),
        "errors": result.damage_lines(),
    }


def tasks(
    paths: Iterable[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    policy: str = "first",
    summary: bool = True,
) -> list[Task]:
    """One task per capture; directories expanded. With `out_dir` and several captures each
    capture's files go to a folder of its own (named after the capture) so names never clash."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        files.extend(capture_files(p) if p.is_dir() else [p])
    out: list[Task] = []
    for i, f in enumerate(files):
        target = None
        if out_dir is not None:
            target = str(out_dir) if len(files) == 1 else str(Path(out_dir) / f"{i:04d}-{f.name}")
        out.append(Task(str(f), target, policy, summary))
    return out


def replay_many(
    paths: Iterable[str | os.PathLike[str]],
    *,
    map: Mapper | None = None,  # the name says what to pass: any map-like callable
    out_dir: str | os.PathLike[str] | None = None,
    policy: str = "first",
    summary: bool = True,
) -> list[Outcome]:
    """Replay every capture of `paths` (directories: their captures, recursively) with `map`
    (default: one at a time), in the order given; one outcome dict per capture."""
    mapper: Mapper = map if map is not None else _builtin_map
    return list(mapper(replay_one, tasks(paths, out_dir=out_dir, policy=policy, summary=summary)))


def _builtin_map(fn: Callable[[Task], Outcome], items: Iterable[Task]) -> Iterator[Outcome]:
    return (fn(t) for t in items)


def process_pool_map(jobs: int) -> tuple[Mapper, Callable[[], None]]:
    """A `map` over `jobs` worker processes, and the function that shuts them down."""
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=jobs)

    def mapper(fn: Callable[[Task], Outcome], items: Iterable[Task]) -> Iterable[Outcome]:
        return pool.map(fn, items)

    return mapper, pool.shutdown


def dask_map(address: str | None) -> tuple[Mapper, Callable[[], None]]:
    """A `map` on a Dask cluster (`address`: a scheduler, e.g. tcp://host:8786), or, with None,
    on Dask's local process scheduler. Needs the `lab[cluster]` extra."""
    # Imported by name: Dask is optional and untyped, so it is used as `Any`.
    if address is None:
        dask_bag: Any = importlib.import_module("dask.bag")

        def local(fn: Callable[[Task], Outcome], items: Iterable[Task]) -> Iterable[Outcome]:
            items = list(items)
            if not items:
                return []
            bag = dask_bag.from_sequence(items, npartitions=len(items))
            return list(bag.map(fn).compute(scheduler="processes"))

        return local, lambda: None
    distributed: Any = importlib.import_module("dask.distributed")
    client = distributed.Client(address, timeout=CONNECT_TIMEOUT)

    def remote(fn: Callable[[Task], Outcome], items: Iterable[Task]) -> Iterable[Outcome]:
        futures = client.map(fn, list(items), pure=False)
        return list(client.gather(futures))

    return remote, client.close
