"""Rootless mode's pieces that need no privileges: how a refusal is explained, where we are."""

from __future__ import annotations

from pathlib import Path

from lab.topology.userns import explain_refusal, is_rootless, uid_map


def test_refusals_are_explained_by_what_proc_shows(tmp_path: Path) -> None:
    def proc_with(name: str, value: str) -> Path:
        root = tmp_path / name.replace("/", "_")
        (root / name).parent.mkdir(parents=True)
        (root / name).write_text(value + "\n")
        return root

    cases = {
        ("sys/kernel/unprivileged_userns_clone", "0"): (
            "found kernel.unprivileged_userns_clone=0",
            "fix: sudo sysctl -w kernel.unprivileged_userns_clone=1",
        ),
        ("sys/user/max_user_namespaces", "0"): (
            "found user.max_user_namespaces=0",
            "fix: sudo sysctl -w user.max_user_namespaces=15000",
        ),
        ("sys/kernel/apparmor_restrict_unprivileged_userns", "1"): (
            "found kernel.apparmor_restrict_unprivileged_userns=1",
            "fix: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        ),
        ("self/status", "Name:\tx\nSeccomp:\t2"): (
            "found a seccomp filter",
            "--security-opt seccomp=unconfined",
        ),
    }
    for (name, value), (found, fix) in cases.items():
        text = explain_refusal(1, "unshare(CLONE_NEWUSER)", proc_with(name, value))
        assert "\n" not in text, text
        assert found in text, text
        assert fix in text, text
    assert "allow unprivileged user namespaces" in explain_refusal(1, "x", tmp_path)
    assert not is_rootless(tmp_path / "missing")


def test_a_one_user_map_to_root_is_rootless_and_the_host_map_is_not(tmp_path: Path) -> None:
    path = tmp_path / "uid_map"
    path.write_text("         0       1000          1\n")
    assert uid_map(path) == [(0, 1000, 1)]
    assert is_rootless(path)
    path.write_text("         0          0 4294967295\n")
    assert not is_rootless(path)
