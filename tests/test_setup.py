"""`make`'s own set-up (Makefile, .ci/system-packages): what a user sees on every run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from privileges import other_account_reason
from rootless_install import student_account

ROOT = Path(__file__).resolve().parent.parent
NOTE = "note: not root: Debian package step skipped"


@pytest.fixture
def checkout() -> Iterator[tuple[Path, list[str]]]:
    """The set-up files in a folder of an ordinary user's, with the venv already installed
    (its stamp newer than setup.cfg), and the prefix that runs a command as that user."""
    folder = Path(tempfile.mkdtemp(prefix="lab-make-"))
    try:
        shutil.copytree(ROOT / ".ci", folder / ".ci")
        for name in ("Makefile", "setup.cfg", "pyproject.toml"):
            shutil.copy(ROOT / name, folder / name)
        (folder / ".venv").mkdir()
        time.sleep(0.01)
        (folder / ".venv" / ".installed").touch()
        prefix: list[str] = []
        if os.geteuid() == 0:
            why = other_account_reason()
            if why is not None:  # root of the lab's user namespace: make would see uid 0
                pytest.skip(why)
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root, and setpriv (util-linux) is missing to drop it")
            student = student_account()
            folder.chmod(0o755)
            for path in (folder, *folder.rglob("*")):
                os.chown(path, student.pw_uid, student.pw_gid, follow_symlinks=False)
            prefix = [setpriv, f"--reuid={student.pw_uid}", f"--regid={student.pw_gid}"]
            prefix.append("--clear-groups")
        yield folder, prefix
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_user_is_told_every_time_that_the_debian_package_step_is_skipped(
    checkout: tuple[Path, list[str]],
) -> None:
    folder, prefix = checkout
    for _ in range(2):  # the second run too: no stamp may make it silent
        result = subprocess.run(
            [*prefix, "make", "--no-print-directory", ".venv/.system-packages"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert NOTE in result.stderr, result.stdout + result.stderr
    assert not (folder / ".venv" / ".system-packages").exists()
