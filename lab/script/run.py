"""Play a parsed script against a target: the lab's TCP in memory, or the Linux kernel.

Each honours the script's `// lab-differs:` or `// kernel-differs:` notes (a noted `skip` is a
skipped run, with the note as its reason). The command line (`lab script`) is `lab.cli.script`.
"""

from __future__ import annotations

from collections.abc import Sequence

from lab.script.engine import (
    DEFAULT_TOLERANCE_PERCENT,
    Engine,
    ScriptResult,
    TargetUnavailableError,
)
from lab.script.parser import Script


def skip_reason(script: Script, target: str) -> str:
    """Why the script's `// TARGET-differs: skip - why` note skips it, in the note's words."""
    why = [n.reason for n in script.notes if n.target == target and "skip" in n.keys]
    return f"{target}-differs: skip - " + ("; ".join(w for w in why if w) or "no reason given")


def run_on_lab(
    script: Script,
    tolerance: int,
    *,
    tolerance_percent: float = DEFAULT_TOLERANCE_PERCENT,
    strict: bool = False,
) -> ScriptResult:
    """Play `script` against the lab's TCP, honouring its `// lab-differs:` notes."""
    from lab.script.lab_runner import LabTarget

    relax = script.note_keys("lab")
    notes = [
        f"lab-differs: {', '.join(n.keys)} - {n.reason}" for n in script.notes if n.target == "lab"
    ]
    if "skip" in relax:
        return ScriptResult(
            script.path, "lab", "skip", reason=skip_reason(script, "lab"), notes=notes
        )
    target = LabTarget(local_isn=script.options.get("lab_local_isn"))
    try:
        result = Engine(
            script,
            target,
            "lab",
            tolerance=tolerance,
            tolerance_percent=tolerance_percent,
            relax=relax,
            strict=strict,
        ).run()
    finally:
        target.close()
    result.notes = notes
    return result


def run_on_kernel(
    script: Script,
    tolerance: int,
    *,
    tolerance_percent: float = DEFAULT_TOLERANCE_PERCENT,
    strict: bool = False,
) -> ScriptResult:
    """Play `script` against the Linux kernel through TUN in a fresh lab namespace."""
    from lab.script.kernel_runner import KernelTarget

    relax = script.note_keys("kernel")
    notes = [
        f"kernel-differs: {', '.join(n.keys)} - {n.reason}"
        for n in script.notes
        if n.target == "kernel"
    ]
    if "skip" in relax:
        return ScriptResult(
            script.path, "kernel", "skip", reason=skip_reason(script, "kernel"), notes=notes
        )
    try:
        target = KernelTarget()
    except TargetUnavailableError as exc:
        return ScriptResult(script.path, "kernel", "skip", reason=str(exc), notes=notes)
    try:
        result = Engine(
            script,
            target,
            "kernel",
            tolerance=tolerance,
            tolerance_percent=tolerance_percent,
            relax=relax,
            strict=strict,
        ).run()
    finally:
        target.close()
    result.notes = notes
    return result


def run_scripts(
    scripts: Sequence[Script],
    against: str,
    tolerance: int,
    *,
    tolerance_percent: float = DEFAULT_TOLERANCE_PERCENT,
    strict: bool = False,
) -> list[ScriptResult]:
    results: list[ScriptResult] = []
    for script in scripts:
        if against in ("lab", "both"):
            results.append(
                run_on_lab(script, tolerance, tolerance_percent=tolerance_percent, strict=strict)
            )
        if against in ("kernel", "both"):
            results.append(
                run_on_kernel(script, tolerance, tolerance_percent=tolerance_percent, strict=strict)
            )
    return results
