"""The README's console examples of unprivileged commands are the commands' real output.

Each ```console block is a session: `$ COMMAND` lines, each followed by what it prints. The
unprivileged ones (`lab demo` in memory, `lab replay`, `lab exercise` list/show/start/check of the
exercises that need no root) run here, in order, in a scratch folder that sees the repository's
`captures/`, and their output must match what the README shows. A line holding only `...`
stands for any number of lines (none included), as doctest's ELLIPSIS; nothing else is skipped.
Commands that need root, or whose output depends on the machine (`lab doctor`, `lab get` and the
other live ones), are listed in LIVE and not run.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.cli.main import main as lab_main

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
LIVE = {"doctor", "get", "put", "ls", "ping", "connect", "reenact", "up", "down", "clean"}


@dataclass(frozen=True, slots=True)
class Example:
    line: int  # of the `$` in README.md, for the failure message
    argv: list[str] | None  # None: not run here (live, or shell syntax)
    expected: list[str]


def examples(text: str) -> list[list[Example]]:
    """The console blocks, each a list of examples in order."""
    blocks: list[list[Example]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        block: list[Example] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            if lines[i].startswith("$ "):
                start, command = i + 1, lines[i][2:]
                i += 1
                expected = []
                while i < len(lines) and not lines[i].startswith(("```", "$ ")):
                    expected.append(lines[i])
                    i += 1
                block.append(Example(start, _argv(command), expected))
            else:
                i += 1
        blocks.append(block)
        i += 1
    return blocks


def _argv(command: str) -> list[str] | None:
    command = re.sub(r"\s+#.*$", "", command)
    if any(c in command for c in "|;<>&"):
        return None
    words = shlex.split(command)
    if not words or words[0] != "lab" or len(words) < 2 or words[1] in LIVE:
        return None
    if words[1] == "demo" and "--live" in words:
        return None
    if words[1] == "script" and {"kernel", "both"} & set(words):
        from lab.script.kernel_runner import unavailable_reason

        if unavailable_reason() is not None:
            return None  # the kernel runs need root (or a TUN device we may open): root's output
    if words[1] == "exercise":
        from lab.exercises import NAMES, load

        name = next((w for w in words[2:] if w in NAMES), None)
        if name is not None and load(name).privileged:
            return None
    return words[1:]


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; a `...` line matches any run of lines (none included)."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and actual[0].rstrip() == head.rstrip() and matches(rest, actual[1:])


def _blocks_that_run() -> list[list[Example]]:
    return [b for b in examples(README.read_text()) if any(e.argv for e in b)]


def test_the_readme_has_console_examples_to_check() -> None:
    ran = [e for b in _blocks_that_run() for e in b if e.argv]
    assert {e.argv[0] for e in ran if e.argv} >= {"demo", "replay", "exercise"}


def test_ellipsis_stands_for_any_run_of_lines() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "d"], ["a", "d"])
    assert not matches(["a", "...", "d"], ["a", "b"])
    assert not matches(["a", "b"], ["a", "b", "c"])


@pytest.mark.parametrize(
    "block", _blocks_that_run(), ids=lambda b: f"line {b[0].line}: {' '.join(b[0].argv or [])}"
)
def test_a_readme_console_block_is_what_the_commands_print(
    block: list[Example],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "captures").symlink_to(REPO / "captures")
    (tmp_path / "tests").symlink_to(REPO / "tests")  # `lab script tests/conformance/...`
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("LAB_MODE", "offline")  # as the README shows it: a student without root
    for example in block:
        if example.argv is None:
            continue
        with contextlib.suppress(SystemExit):  # argparse's usage errors end the same way
            lab_main(example.argv)
        captured = capsys.readouterr()
        actual = (captured.out + captured.err).splitlines()
        assert matches(example.expected, actual), (
            f"README.md line {example.line}: `lab {' '.join(example.argv)}` now prints:\n"
            + "\n".join(actual)
        )
