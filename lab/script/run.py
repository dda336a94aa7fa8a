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
    Target,
    TargetUnavailableError,
)
from lab.script.parser import Script


def skip_reason(script: Script, target: str) -> str:
    """Why the script's `// TARGET-differs: skip - why` note skips it, in the note's words."""
    why = [n.reason for n in script.notes if n.target == target and "skip" in n.keys]
    return f"{target}-differs: skip - " + ("; ".join(w for w in why if w) or "no reason given")


def run_on(
    script: Script,
    target_name: str,
    tolerance: int,
    *,
    tolerance_percent: float = DEFAULT_TOLERANCE_PERCENT,
    strict: bool = False,
) -> ScriptResult:
    """Play `script` against `target_name`, honouring its `// TARGET-differs:` notes.

    "lab" is the lab's TCP in memory; "kernel" is the Linux kernel through TUN in a fresh lab
    namespace (a kernel this process cannot reach makes a skipped run, with the reason)."""
    relax = script.note_keys(target_name)
    notes = [
        f"{target_name}-differs: {', '.join(n.keys)} - {n.reason}"
        for n in script.notes
        if n.target == target_name
    ]
    if "skip" in relax:
        reason = skip_reason(script, target_name)
        return ScriptResult(script.path, target_name, "skip", reason=reason, notes=notes)
    try:
        target = _open_target(script, target_name)
    except TargetUnavailableError as exc:
        return ScriptResult(script.path, target_name, "skip", reason=str(exc), notes=notes)
    try:
        result = Engine(
            script,
            target,
            target_name,
            tolerance=tolerance,
            tolerance_percent=tolerance_percent,
            relax=relax,
            strict=strict,
        ).run()
    finally:
        target.close()
    result.notes = notes
    return result


def _open_target(script: Script, target_name: str) -> Target:
    if target_name == "lab":
        from lab.script.lab_runner import LabTarget

        return LabTarget(local_isn=script.options.get("lab_local_isn"))
    if target_name == "kernel":
        from lab.script.kernel_runner import KernelTarget

        return KernelTarget()
    raise ValueError(f"unknown target {target_name!r} (lab or kernel)")


def run_on_lab(
    script: Script,
    tolerance: int,
    *,
    tolerance_percent: float = DEFAULT_TOLERANCE_PERCENT,
    strict: bool = False,
) -> ScriptResult:
    """`run_on(script, "lab", ...)`: the lab's TCP in memory."""
    return run_on(script, "lab", tolerance, tolerance_percent=tolerance_percent, strict=strict)


def run_on_kernel(
    script: Script,
    tolerance: int,
    *,
    tolerance_percent: float = DEFAULT_TOLERANCE_PERCENT,
    strict: bool = False,
) -> ScriptResult:
    """`run_on(script, "kernel", ...)`: the Linux kernel through TUN in a fresh lab namespace."""
    return run_on(script, "kernel", tolerance, tolerance_percent=tolerance_percent, strict=strict)


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
        for name in ("lab", "kernel"):
            if against in (name, "both"):
                results.append(
                    run_on(
                        script, name, tolerance, tolerance_percent=tolerance_percent, strict=strict
                    )
                )
    return results
