"""Checking, before touching anything, that we may build namespaces and raw sockets.

Building the topology needs CAP_SYS_ADMIN (create and enter network namespaces), CAP_NET_ADMIN
(links, addresses, offloads, nftables) and CAP_NET_RAW (AF_PACKET sockets). Without them the kernel
answers EPERM half-way through; checking first gives one clear sentence instead of a traceback, and
the CLI turns it into exit code 77 (the automake/pytest convention for "skipped: cannot run here").
"""

from __future__ import annotations

from pathlib import Path

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21

REQUIRED_CAPABILITIES: dict[int, str] = {
    CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
    CAP_NET_ADMIN: "CAP_NET_ADMIN",
    CAP_NET_RAW: "CAP_NET_RAW",
}

PRIVILEGE_MESSAGE = (
    "lab needs root (CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN) to build network namespaces "
    "and open raw sockets; run it with sudo"
)


class PrivilegeError(PermissionError):
    """The process lacks the capabilities the topology or a raw socket needs."""


def effective_capabilities(status_path: Path = Path("/proc/self/status")) -> int:
    """The effective capability mask of this process (0 when it cannot be read)."""
    try:
        text = status_path.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def missing_capabilities(mask: int | None = None) -> list[str]:
    """Names of the required capabilities absent from `mask` (default: this process)."""
    caps = effective_capabilities() if mask is None else mask
    return [name for bit, name in REQUIRED_CAPABILITIES.items() if not caps >> bit & 1]


def require_privileges(mask: int | None = None) -> None:
    """Raise PrivilegeError with a one-line explanation unless every capability is present."""
    missing = missing_capabilities(mask)
    if missing:
        raise PrivilegeError(f"{PRIVILEGE_MESSAGE} (missing: {', '.join(missing)})")
