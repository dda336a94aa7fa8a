"""An installation of lab that another account can run, for tests that drop root.

Why: the tests' own interpreter may live where other accounts cannot read (pyenv under a 0700
/root) and the clone may sit in a folder they cannot enter, so `nobody` or the lab's test student
running `sys.executable -m lab` sees nothing. Here: a virtualenv made from the system's python3
(readable by all), cached under /tmp by its requirements, and a copy of this checkout's `lab`
package made per test session; a .pth file joins the two. Everything is 0755/0644 and root-owned,
so the other account can run it but not change it.

The test account (`labstudent`, see `student_account`) is created with useradd when missing: an
ordinary user with no home and no login shell, only ever used by these tests.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
STUDENT = "labstudent"


@dataclass(frozen=True)
class ReadableInstall:
    """`python` runs `-m lab` for any account; `base` is the per-session folder to remove."""

    python: Path
    base: Path
    venv: Path


def _requirements() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    reqs = cfg["options"]["install_requires"].split()
    reqs += cfg["options.extras_require"]["notebook"].split()
    return sorted(r for r in reqs if r)


def _system_python() -> str | None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return None
    check = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys, venv; print(sys.version_info[:2] >= (3, 11))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return SYSTEM_PYTHON if check.stdout.strip() == "True" else None


def _make_venv(python: str, reqs: list[str]) -> Path:
    """The cached virtualenv for `reqs` (built once, then reused by later sessions)."""
    key = hashlib.sha256(f"{python}\n{sys.version_info[:2]}\n{reqs}".encode()).hexdigest()[:12]
    venv = Path(tempfile.gettempdir()) / f"lab-readable-venv-{key}"
    if (venv / ".complete").exists():
        return _ours(venv)
    building = Path(tempfile.mkdtemp(prefix="lab-readable-venv-building-"))
    try:
        subprocess.run([python, "-m", "venv", str(building)], check=True, capture_output=True)
        subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet", *reqs],
            check=True,
            capture_output=True,
            timeout=600,
        )
        (building / ".complete").touch()
        _readable(building)
        # Atomic: the cached venv exists only complete. A concurrent session that got there
        # first wins, and this copy goes (scripts keep absolute paths; `python -m` does not).
        building.rename(venv)
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
        if not (venv / ".complete").exists():
            raise
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return _ours(venv)


def _ours(venv: Path) -> Path:
    """`venv`, after checking that we made it: /tmp is everyone's, and we run its python."""
    info = venv.lstat()
    if info.st_uid != os.geteuid() or info.st_mode & 0o022 or venv.is_symlink():
        raise RuntimeError(f"{venv} was not made by this account: remove it")
    return venv


def _readable(path: Path) -> None:
    path.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames:
            (Path(dirpath) / name).chmod(0o755)
        for name in filenames:
            file = Path(dirpath) / name
            if not file.is_symlink():
                file.chmod(0o755 if os.access(file, os.X_OK) else 0o644)


def build_readable_install() -> ReadableInstall | None:
    """A venv from the system python plus a copy of `lab`; None when there is no such python."""
    python = _system_python()
    if python is None:
        return None
    venv = _make_venv(python, _requirements())
    base = Path(tempfile.mkdtemp(prefix="lab-readable-"))
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".lab-check")
    for name in ("lab", "notebooks", "captures"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
    # A per-session venv layer: the cached venv's packages plus our source, through .pth files.
    session_venv = base / "venv"
    subprocess.run(
        [python, "-m", "venv", "--without-pip", str(session_venv)], check=True, capture_output=True
    )
    site = next((session_venv / "lib").glob("python3*/site-packages"))
    cached_site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "lab-cached-venv.pth").write_text(f"{cached_site}\n{src}\n")
    _readable(base)
    return ReadableInstall(session_venv / "bin" / "python", base, venv)


def student_account() -> pwd.struct_passwd:
    """The unprivileged account the tests run as (created when missing; needs root)."""
    try:
        return pwd.getpwnam(STUDENT)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", STUDENT],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(STUDENT)
