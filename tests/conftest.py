"""Shared test set-up: the `privileged` and `kernel_runner` markers and the end-of-session leak
check.

Privileged tests (marked `@pytest.mark.privileged`) build namespaces and open raw sockets; they
skip when not run as root, with the exact cause (`privileges.not_root_reason`). Inside
`lab rootless` (how `make test` runs as a user) the process is root of its own user namespace,
so they run there too. Tests of `lab script`'s kernel runner (marked `kernel_runner`) also need
a TUN device this process may open, and skip with the runner's own reason where it cannot (in
the user namespace, where the host's /dev/net/tun is mode 0600).

After the whole session, no lab namespace, veth or nftables table created during it may remain,
even when a test failed: the check removes what it finds and fails the session. Objects that
existed before the session, or that belong to a topology whose owner is another running process
(a concurrent test run), are not ours and are left alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from privileges import is_root, not_root_reason, other_account_reason
from rootless_install import ReadableInstall, build_readable_install


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("privileged") is not None and not is_root():
        pytest.skip(not_root_reason())
    if item.get_closest_marker("kernel_runner") is not None:
        from lab.script.kernel_runner import unavailable_reason

        why = unavailable_reason()  # e.g. rootless, where /dev/net/tun is the host root's 0600
        if why is not None:
            pytest.skip(why)


@pytest.fixture(scope="session", autouse=True)
def no_lab_leftovers() -> Iterator[None]:
    if not is_root():
        yield
        return
    from lab.topology.clean import find_leftovers, remove_leftovers

    before = find_leftovers()
    yield
    preexisting = set(before.namespaces) | set(before.links) | {n for _, n in before.nft_tables}
    leaked = find_leftovers(spare_running=True).without(preexisting)
    if leaked:
        remove_leftovers(leaked)
        pytest.fail(f"lab objects left behind by this test session: {', '.join(leaked.describe())}")


@pytest.fixture(scope="session")
def readable_install() -> Iterator[ReadableInstall]:
    """lab installed where any account can run it (see rootless_install); built once a session."""
    reason = other_account_reason()
    if reason is not None:
        pytest.skip(reason)
    install = build_readable_install()
    if install is None:
        pytest.skip("no system python3 (>= 3.11, with venv) to build a readable installation")
    yield install
    shutil.rmtree(install.base, ignore_errors=True)
