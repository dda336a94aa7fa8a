"""The skip reasons of live tests (tests/privileges.py) name the exact cause and the way out."""

from __future__ import annotations

import privileges
import pytest


@pytest.fixture(autouse=True)
def fresh_reason() -> None:
    privileges.not_root_reason.cache_clear()


def test_a_user_where_rootless_works_is_told_the_command_that_runs_the_live_tests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("lab.topology.userns.probe", lambda: (True, "ok"))
    reason = privileges.not_root_reason()
    assert reason.startswith("not root (uid 1000): needs CAP_NET_ADMIN and CAP_NET_RAW")
    assert "lab rootless .venv/bin/pytest" in reason


def test_a_user_where_user_namespaces_are_refused_is_told_what_refuses_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refusal = (
        "rootless mode unavailable: unshare(CLONE_NEWUSER): Operation not permitted; found "
        "kernel.apparmor_restrict_unprivileged_userns=1 (Ubuntu's AppArmor restriction); fix: x"
    )
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("lab.topology.userns.probe", lambda: (False, refusal))
    reason = privileges.not_root_reason()
    assert reason == f"not root (uid 1000): needs CAP_NET_ADMIN and CAP_NET_RAW, and {refusal}"


def test_tests_run_as_another_account_say_why_they_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lab.topology.userns.is_rootless", lambda: True)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    reason = str(privileges.other_account_reason())
    assert "inside the lab's user namespace (lab rootless)" in reason
    monkeypatch.setattr("lab.topology.userns.is_rootless", lambda: False)
    assert privileges.other_account_reason() is None
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert "not root (uid 1000)" in str(privileges.other_account_reason())
