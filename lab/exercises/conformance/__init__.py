"""Exercise `conformance`: write a test, in packetdrill's language, that catches a broken TCP.

The student's `script()` returns the text of a script. It is graded by running it, in memory, on
virtual time (`lab.script`), against two receivers: the lab's TCP, which it must pass, and the same
TCP with SACK turned off (a receiver that answers out-of-order data with plain duplicate ACKs),
which it must fail. A script that checks nothing (`<...>` everywhere) passes both and earns no
credit: the point of a conformance test is the bug it would catch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any

from lab.exercises import CheckResult, Exercise
from lab.exercises.harness import run_student
from lab.script.engine import DEFAULT_TOLERANCE, Engine, ScriptResult
from lab.script.lab_runner import LINUX_LIKE, LabTarget
from lab.script.parser import PacketEvent, Script, ScriptSyntaxError, parse_script
from lab.tcp.connection import TcpConfig


def drive(module: ModuleType, task: dict[str, Any]) -> dict[str, Any]:
    text = module.script()
    if not isinstance(text, str):
        raise TypeError(f"script() returned {type(text).__name__}, not the script's text")
    return {"script": text}


def run_against(script: Script, config: TcpConfig) -> ScriptResult:
    """One run of `script` against the lab's TCP with `config`."""
    target = LabTarget(config=config)
    # Strict: a segment the script does not list fails it, so that a student's script checks
    # everything the stack sends, not only what it happens to mention.
    return Engine(script, target, "lab", tolerance=DEFAULT_TOLERANCE, strict=True).run()


def leaves_a_hole(script: Script) -> bool:
    """True when some inbound data segment starts beyond every byte sent before it."""
    edge = 1
    for ev in script.events:
        if isinstance(ev, PacketEvent) and ev.inbound and ev.length:
            if ev.seq > edge:
                return True
            edge = max(edge, ev.end)
    return False


def check(student_file: Path, workdir: Path) -> CheckResult:
    result = CheckResult("conformance")
    run = run_student("conformance", student_file, {}, workdir, timeout=30)
    if not run.ok:
        result.student_error = run.error
        result.add("your code runs", False, f"it raised: {run.short_error()}")
        return result
    try:
        script = parse_script(run.result["script"], "your script")
    except ScriptSyntaxError as exc:
        result.add("in the language", False, str(exc))
        return result
    result.add("in the language", True, f"{len(script.events)} events")
    result.add(
        "out-of-order data",
        leaves_a_hole(script),
        "an inbound segment leaves a hole"
        if leaves_a_hole(script)
        else "every inbound segment starts where the previous ones ended: send one beyond a hole",
    )
    good = run_against(script, LINUX_LIKE)
    result.add(
        "passes against the lab",
        good.status == "pass",
        "the lab's TCP passes it"
        if good.status == "pass"
        else f"line {good.line}: {good.reason} (expected {good.expected}, the lab sent "
        f"{good.actual or 'nothing'})",
    )
    mutant = run_against(script, dataclasses.replace(LINUX_LIKE, sack=False))
    result.add(
        "catches a receiver without SACK",
        mutant.status == "fail",
        f"it fails at line {mutant.line}: {mutant.reason}"
        if mutant.status == "fail"
        else "a receiver that sends no SACK blocks passes your script too: say which SACK block "
        "the duplicate ACK must carry",
    )
    return result


EXERCISE = Exercise(
    name="conformance",
    title="Conformance: a packetdrill-style script that catches a broken receiver",
    goal="Write a script that the lab's TCP passes and a receiver without SACK fails.",
    background=(
        "packetdrill scripts are how TCP stacks are tested: the script plays the peer, injects "
        "segments at exact times and states what the stack must send back. `lab script` runs "
        "the same language against the lab's TCP in memory and against the Linux kernel. A good "
        "conformance test is precise: it states each field that matters (here the SACK block of "
        "RFC 2018), so that a stack that gets it wrong fails."
    ),
    steps=(
        "lab exercise start conformance [DIR]   (copies conformance.py into DIR)",
        "Read tests/conformance/README.md and two scripts there (out-of-order-sack.pkt is close).",
        "Complete script() in DIR/conformance.py; try the text with `lab script FILE` as you go.",
        "lab exercise check conformance [DIR]",
    ),
    hints=(
        "Sequence numbers are relative: the peer's first data byte is 1.",
        "An out-of-order segment is acknowledged at once (RFC 5681 4.2) with the same ACK number.",
        "The SACK option follows two NOPs: <nop,nop,sack 1001:2001>.",
        "LAB_SCRIPT_TRACE=1 lab script FILE prints what the stack really sent.",
    ),
    starter="conformance.py",
    privileged=False,
    check=check,
)
