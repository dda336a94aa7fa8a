"""Names of a topology and the state file that records who owns it.

Every run gets a 6-hex-digit id; all its kernel objects carry it after the `lab` prefix, so two runs
coexist and `lab clean` can recognise ours. The state file (/run/lab/<id>.json, tmpfs: it vanishes
at reboot like the namespaces) is written *before* anything is created, as an intent log: a run
that crashes half-way still leaves a record. It names the owning process (pid and start time, so a
recycled pid is not mistaken for the owner), which lets `lab clean` spare topologies whose owner is
still running and remove the ones whose owner died.

A topology may own more namespaces than its two (an attacker's, for an exercise): they are named
`lab-<id>-<suffix>` and listed in the same state file under `extra_namespaces`, written before
each is created, so they are spared, removed and cleaned exactly like the two.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path

PREFIX = "lab"
STATE_DIR = Path("/run/lab")
IFNAMSIZ = 16  # interface names are at most 15 characters plus the terminating NUL

DEFAULT_SERVER_IP = "198.18.0.1"
DEFAULT_CLIENT_IP = "198.18.0.2"
DEFAULT_PREFIXLEN = 24
# IPv6 beside it: RFC 5180's benchmarking prefix 2001:2::/48 mirrors 198.18.0.0/15 (RFC 2544).
DEFAULT_SERVER_IP6 = "2001:2::1"
DEFAULT_CLIENT_IP6 = "2001:2::2"
DEFAULT_PREFIXLEN6 = 64


EXTRA_SUFFIX = re.compile(r"[a-z0-9]{1,8}")
RESERVED_SUFFIXES = frozenset({"srv", "cli"})


def extra_namespace_name(run_id: str, suffix: str) -> str:
    """`lab-<run_id>-<suffix>`: the name of an extra namespace of run `run_id`.

    The suffix is 1 to 8 lowercase letters or digits, and not one of the two the topology uses
    itself, so the name is a valid file name under /run/netns and says whose it is.
    """
    if not EXTRA_SUFFIX.fullmatch(suffix) or suffix in RESERVED_SUFFIXES:
        raise ValueError(
            f"namespace suffix {suffix!r}: use 1-8 lowercase letters or digits, not srv or cli"
        )
    return f"{PREFIX}-{run_id}-{suffix}"


# The names the lab gives kernel objects, and only those: `lab-<run id>-<suffix>` for namespaces
# (srv, cli, or an extra one's 1-8 letters or digits) and `lab<run id><letter>` for links, where
# the run id is six hex digits. A user's own `labnet0` or `lab-test` is not ours to remove.
_LAB_NAME = re.compile(rf"{PREFIX}-[0-9a-f]{{6}}-[a-z0-9]{{1,8}}|{PREFIX}[0-9a-f]{{6}}[a-z]")


def is_lab_name(name: str) -> bool:
    """The one test `lab clean` applies before removing anything: a name the lab itself gives."""
    return _LAB_NAME.fullmatch(name) is not None


def new_run_id() -> str:
    return secrets.token_hex(3)


@dataclass(frozen=True, slots=True)
class TopologyNames:
    """The kernel names of one run: two namespaces and the two ends of the veth between them."""

    run_id: str
    server_ns: str
    client_ns: str
    server_if: str
    client_if: str

    @classmethod
    def for_run(cls, run_id: str) -> TopologyNames:
        names = cls(
            run_id=run_id,
            server_ns=f"{PREFIX}-{run_id}-srv",
            client_ns=f"{PREFIX}-{run_id}-cli",
            server_if=f"{PREFIX}{run_id}s",
            client_if=f"{PREFIX}{run_id}c",
        )
        for ifname in (names.server_if, names.client_if):
            if len(ifname) >= IFNAMSIZ:
                raise ValueError(f"interface name {ifname!r} longer than {IFNAMSIZ - 1} characters")
        return names

    def all(self) -> tuple[str, str, str, str]:
        return (self.server_ns, self.client_ns, self.server_if, self.client_if)


@dataclass(frozen=True, slots=True)
class TopologyInfo:
    """Everything later code needs to use a built topology.

    `client_ip` is the lab stack's address: the kernel in the client namespace has none.
    `server_ip6` / `client_ip6` are the same two roles in IPv6 (the topology is dual-stack).
    """

    names: TopologyNames
    server_mac: str
    client_mac: str
    server_ip: str = DEFAULT_SERVER_IP
    client_ip: str = DEFAULT_CLIENT_IP
    prefixlen: int = DEFAULT_PREFIXLEN
    server_ip6: str = DEFAULT_SERVER_IP6
    client_ip6: str = DEFAULT_CLIENT_IP6
    prefixlen6: int = DEFAULT_PREFIXLEN6

    @property
    def run_id(self) -> str:
        return self.names.run_id

    @property
    def server_ns(self) -> str:
        return self.names.server_ns

    @property
    def client_ns(self) -> str:
        return self.names.client_ns

    @property
    def server_if(self) -> str:
        return self.names.server_if

    @property
    def client_if(self) -> str:
        return self.names.client_if

    def describe(self) -> list[str]:
        return [
            f"run {self.run_id}",
            f"server namespace {self.server_ns}: {self.server_if} {self.server_mac} "
            f"{self.server_ip}/{self.prefixlen} {self.server_ip6}/{self.prefixlen6} (kernel)",
            f"client namespace {self.client_ns}: {self.client_if} {self.client_mac} "
            f"{self.client_ip}/{self.prefixlen} {self.client_ip6}/{self.prefixlen6} "
            "(lab stack, no kernel address)",
        ]


@dataclass(frozen=True, slots=True)
class Owner:
    """A process, identified robustly against pid reuse by its start time (in clock ticks)."""

    pid: int
    start_time: int

    @classmethod
    def current(cls) -> Owner:
        return cls(os.getpid(), process_start_time(os.getpid()) or 0)

    def is_alive(self) -> bool:
        return process_start_time(self.pid) == self.start_time


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None when the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may contain spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


@dataclass(frozen=True, slots=True)
class StateRecord:
    """The contents of one state file."""

    names: TopologyNames
    owner: Owner | None  # None: detached by `lab up`, owned by nobody until `lab down`
    info: TopologyInfo | None  # None while the topology is being built
    extra_namespaces: tuple[str, ...] = ()  # made by `Topology.add_namespace`

    def all_names(self) -> tuple[str, ...]:
        """Every kernel name the topology owns: its two namespaces, veth ends, and extras."""
        return (*self.names.all(), *self.extra_namespaces)

    def owned_by_other_live_process(self) -> bool:
        return self.owner is not None and self.owner.pid != os.getpid() and self.owner.is_alive()


def state_path(run_id: str, state_dir: Path = STATE_DIR) -> Path:
    return state_dir / f"{run_id}.json"


def write_state(record: StateRecord, state_dir: Path = STATE_DIR) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(record.names.run_id, state_dir)
    payload = {
        "names": asdict(record.names),
        "owner": None if record.owner is None else asdict(record.owner),
        "info": None if record.info is None else _info_to_dict(record.info),
        "extra_namespaces": list(record.extra_namespaces),
    }
    if record.info is not None:
        # Beside "info", not in it: a lab of before IPv6 reads this file with
        # TopologyInfo(**info) and would find the record unreadable, and so a leftover to
        # remove, while its owner is still running (a concurrent session's leak check).
        payload["info6"] = _info6_to_dict(record.info)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    return path


def _info_to_dict(info: TopologyInfo) -> dict[str, object]:
    return {
        "server_mac": info.server_mac,
        "client_mac": info.client_mac,
        "server_ip": info.server_ip,
        "client_ip": info.client_ip,
        "prefixlen": info.prefixlen,
    }


def _info6_to_dict(info: TopologyInfo) -> dict[str, object]:
    return {
        "server_ip6": info.server_ip6,
        "client_ip6": info.client_ip6,
        "prefixlen6": info.prefixlen6,
    }


def read_state(path: Path) -> StateRecord | None:
    """The record in `path`, or None if it is missing or unreadable (never raises)."""
    try:
        data = json.loads(path.read_text())
        names = TopologyNames(**data["names"])
        owner = None if data["owner"] is None else Owner(**data["owner"])
        extras = tuple(str(n) for n in data.get("extra_namespaces", ()))  # absent: older file
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    # The names and the owner are what `lab clean` and the test leak check need to spare a running
    # topology. A record written by another version of lab (fields added or removed in `info`)
    # must still be read for those, or that version's live topology looks orphaned and is removed
    # under it: take the fields this version knows and give up only on the info.
    info = None
    raw_info = data.get("info")
    info6 = data.get("info6")  # absent: a file from before IPv6 (the defaults hold)
    if isinstance(raw_info, dict) and isinstance(info6, dict):
        raw_info = {**raw_info, **info6}
    if isinstance(raw_info, dict):
        known = {f.name for f in fields(TopologyInfo)} - {"names"}
        with contextlib.suppress(TypeError, ValueError):
            info = TopologyInfo(names=names, **{k: v for k, v in raw_info.items() if k in known})
    return StateRecord(names=names, owner=owner, info=info, extra_namespaces=extras)


def list_states(state_dir: Path = STATE_DIR) -> dict[Path, StateRecord | None]:
    if not state_dir.is_dir():
        return {}
    return {path: read_state(path) for path in sorted(state_dir.glob("*.json"))}


def remove_state(run_id: str, state_dir: Path = STATE_DIR) -> None:
    state_path(run_id, state_dir).unlink(missing_ok=True)
