"""Why a test that needs privileges skips: the exact cause, and what would run it.

One home for the reasons, so that every skipped live test says the same true thing: not root
(and then either the command that runs it in the lab's user namespace, or what refuses one here
and the fix), or root of the lab's user namespace, which cannot switch to another account.
"""

from __future__ import annotations

import functools
import os

import pytest


def is_root() -> bool:
    return os.geteuid() == 0


@functools.cache
def not_root_reason() -> str:
    """Why a test needing CAP_NET_ADMIN and CAP_NET_RAW skips in this (non-root) process."""
    from lab.topology.userns import probe

    uid = os.geteuid()
    available, why = probe()
    if available:
        return (
            f"not root (uid {uid}): needs CAP_NET_ADMIN and CAP_NET_RAW; run the tests in the "
            "lab's user namespace to have them: lab rootless .venv/bin/pytest (make test does)"
        )
    return f"not root (uid {uid}): needs CAP_NET_ADMIN and CAP_NET_RAW, and {why}"


def skip_unless_root() -> None:
    """Skip the calling test or fixture, with the exact cause, unless this process is root."""
    if not is_root():
        pytest.skip(not_root_reason())


def other_account_reason() -> str | None:
    """None when this process can run commands as the test account; else why not."""
    from lab.topology.userns import is_rootless

    if is_rootless():
        return (
            "inside the lab's user namespace (lab rootless): its root maps one uid and cannot "
            "switch to the test account; these tests run as root on the host (CI)"
        )
    if not is_root():
        return f"not root (uid {os.geteuid()}): switching to the test account needs root"
    return None
