"""How a notebook decides between live and offline, and says so in its first output.

Live mode builds network namespaces and opens AF_PACKET sockets, which needs root's capabilities;
offline mode runs the same steps on the in-memory wire or a shipped capture and needs nothing. A
notebook calls `choose_mode()` in its first code cell and prints `banner()`, so whoever reads the
output knows which world the numbers came from. A teacher forces one with `LAB_MODE=live` or
`LAB_MODE=offline`; forcing live without the capabilities is an error, not a silent fallback,
because a class that asked for the real network should not quietly get a simulation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeVar

from lab.topology.privileges import PRIVILEGE_MESSAGE, PrivilegeError, missing_capabilities

Mode = Literal["live", "offline"]
ENV_VAR = "LAB_MODE"


@dataclass(frozen=True, slots=True)
class NotebookMode:
    """The mode a notebook runs in and why it was chosen."""

    mode: Mode
    reason: str

    @property
    def live(self) -> bool:
        return self.mode == "live"

    @property
    def offline(self) -> bool:
        return self.mode == "offline"

    def banner(self) -> str:
        other = "offline" if self.live else "live"
        return f"mode: {self.mode.upper()} ({self.reason}); {ENV_VAR}={other} chooses the other"


def choose_mode(
    environ: Mapping[str, str] | None = None, *, capabilities: int | None = None
) -> NotebookMode:
    """Live when the process may build namespaces and raw sockets, else offline; `LAB_MODE`
    overrides. `capabilities` is an effective-capability mask for tests (default: this process).
    """
    env = os.environ if environ is None else environ
    missing = missing_capabilities(capabilities)
    forced = env.get(ENV_VAR, "").strip().lower()
    if forced == "offline":
        return NotebookMode("offline", f"forced by {ENV_VAR}=offline")
    if forced == "live":
        if missing:
            raise PrivilegeError(
                f"{ENV_VAR}=live, but {PRIVILEGE_MESSAGE} (missing: {', '.join(missing)})"
            )
        return NotebookMode("live", f"forced by {ENV_VAR}=live")
    if forced:
        raise ValueError(f"{ENV_VAR} must be 'live' or 'offline', not {forced!r}")
    if missing:
        return NotebookMode("offline", f"no privileges for namespaces: {', '.join(missing)}")
    return NotebookMode("live", "root: namespaces and raw sockets are available")


T = TypeVar("T")


def off_the_event_loop(fn: Callable[[], T]) -> T:
    """Call `fn` in a worker thread and return its result (or raise its exception).

    Why: a Jupyter kernel runs cells inside a running asyncio event loop, and pyroute2, which
    builds the topology, runs its own loop with `run_until_complete`, which refuses to start
    inside a running one. A fresh thread has no running loop. Outside Jupyter this is harmless.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-notebook") as pool:
        return pool.submit(fn).result()
