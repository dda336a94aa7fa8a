"""`lab clean`: remove what crashed runs left behind (the `mn -c` of the lab).

Only names that start with `lab` are ever touched: network namespaces under /run/netns, veth links
in this namespace and inside lab namespaces, and nftables tables of every family in this namespace.
Topologies whose state file names a *running* owner other than us are spared unless `everything`
is asked for: another test session or a `with Topology()` block may be using them right now.
Processes still inside a removed namespace are reported, never killed: the namespace then lives on,
empty of links, until they exit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute, NetNS
from pyroute2 import netns as _netns
from pyroute2.nftables.main import NFTables

from lab.topology.netns import list_namespaces
from lab.topology.state import PREFIX, STATE_DIR, is_lab_name, list_states, state_path

NFPROTO_UNSPEC = 0  # dump tables of every family in one request
NFT_FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}


@dataclass(frozen=True, slots=True)
class Leftovers:
    """Lab-prefixed kernel objects visible from this namespace."""

    namespaces: tuple[str, ...] = ()
    links: tuple[str, ...] = ()  # veth links in this (the host's) namespace
    nft_tables: tuple[tuple[int, str], ...] = ()  # (family, name)

    def without(self, names: set[str]) -> Leftovers:
        return Leftovers(
            namespaces=tuple(n for n in self.namespaces if n not in names),
            links=tuple(n for n in self.links if n not in names),
            nft_tables=tuple(t for t in self.nft_tables if t[1] not in names),
        )

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.links or self.nft_tables)

    def describe(self) -> list[str]:
        return (
            [f"namespace {name}" for name in self.namespaces]
            + [f"link {name}" for name in self.links]
            + [f"nftables table {NFT_FAMILIES.get(f, f)} {name}" for f, name in self.nft_tables]
        )


@dataclass(slots=True)
class CleanReport:
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    nft_tables: list[str] = field(default_factory=list)
    state_files: list[str] = field(default_factory=list)
    spared: list[str] = field(default_factory=list)  # names kept because their owner runs
    held_by: dict[str, list[int]] = field(default_factory=dict)  # namespace -> pids still in it

    def removed_anything(self) -> bool:
        return bool(self.namespaces or self.links or self.nft_tables or self.state_files)

    def lines(self) -> list[str]:
        out = [f"removed namespace {n}" for n in self.namespaces]
        out += [f"removed link {n}" for n in self.links]
        out += [f"removed nftables table {n}" for n in self.nft_tables]
        out += [f"removed state file {n}" for n in self.state_files]
        out += [f"kept {n}: its owner is still running" for n in self.spared]
        out += [
            f"namespace {ns} is still held by pid(s) {', '.join(map(str, pids))}"
            for ns, pids in self.held_by.items()
        ]
        return out or ["nothing to clean"]


def _lab_veths(ipr: IPRoute) -> list[str]:
    names = []
    for link in ipr.get_links():
        name = link.get("IFLA_IFNAME")
        info = link.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info is not None else None
        if name and is_lab_name(name) and kind == "veth":
            names.append(str(name))
    return sorted(names)


def _lab_nft_tables() -> list[tuple[int, str]]:
    try:
        with NFTables(nfgen_family=NFPROTO_UNSPEC) as nft:
            tables = nft.get_tables()
    except Exception:  # nf_tables not available in this kernel: nothing to clean
        return []
    found = []
    for table in tables:
        name = table.get("NFTA_TABLE_NAME")
        if name and is_lab_name(name):
            found.append((int(table["nfgen_family"]), str(name)))
    return sorted(found)


def running_owned_names(state_dir: Path = STATE_DIR) -> set[str]:
    """Names belonging to topologies whose owner is another process that is still running."""
    names: set[str] = set()
    for record in list_states(state_dir).values():
        if record is not None and record.owned_by_other_live_process():
            names.update(record.all_names())
    return names


def find_leftovers(*, spare_running: bool = False, state_dir: Path = STATE_DIR) -> Leftovers:
    """Every lab-prefixed namespace, veth and nftables table visible from here.

    With `spare_running`, those of topologies owned by other running processes are left out.
    """
    with IPRoute() as ipr:
        links = _lab_veths(ipr)
    found = Leftovers(
        namespaces=tuple(n for n in list_namespaces() if is_lab_name(n)),
        links=tuple(links),
        nft_tables=tuple(_lab_nft_tables()),
    )
    return found.without(running_owned_names(state_dir)) if spare_running else found


def remove_leftovers(
    leftovers: Leftovers, report: CleanReport | None = None, state_dir: Path = STATE_DIR
) -> CleanReport:
    """Remove exactly the objects in `leftovers` (each checked for the lab prefix again)."""
    report = CleanReport() if report is None else report
    namespaces = [n for n in leftovers.namespaces if is_lab_name(n)]
    for namespace in namespaces:
        with contextlib.suppress(Exception), NetNS(namespace, flags=0) as ns:
            for link in _lab_veths(ns):
                ns.link("del", ifname=link)
                report.links.append(f"{link} (in {namespace})")
    held = _netns.ns_pids()
    for namespace in namespaces:
        with contextlib.suppress(FileNotFoundError):
            _netns.remove(namespace)
            report.namespaces.append(namespace)
        if held.get(namespace):
            report.held_by[namespace] = sorted(held[namespace])
        run_id = _run_id_of(namespace)
        if run_id is not None and state_path(run_id, state_dir).exists():
            state_path(run_id, state_dir).unlink(missing_ok=True)
            report.state_files.append(f"{run_id}.json")

    with IPRoute() as ipr:
        present = set(_lab_veths(ipr))
        for link in leftovers.links:
            if is_lab_name(link) and link in present:
                with contextlib.suppress(Exception):  # deleting its peer may have removed it
                    ipr.link("del", ifname=link)
                    report.links.append(link)

    for family, name in leftovers.nft_tables:
        if not is_lab_name(name):
            continue
        with contextlib.suppress(Exception), NFTables(nfgen_family=family) as nft:
            nft.table("del", name=name)
            report.nft_tables.append(f"{NFT_FAMILIES.get(family, str(family))} {name}")
    return report


def _run_id_of(namespace: str) -> str | None:
    parts = namespace.split("-")
    if len(parts) == 3 and parts[0] == PREFIX and parts[2] in ("srv", "cli"):
        return parts[1]
    return None


def clean(*, everything: bool = False, state_dir: Path = STATE_DIR) -> CleanReport:
    """Remove lab leftovers; spare topologies of other running processes unless `everything`."""
    report = CleanReport()
    spared = set() if everything else running_owned_names(state_dir)
    for path, record in list_states(state_dir).items():
        if record is not None and record.names.server_ns in spared:
            continue
        path.unlink(missing_ok=True)
        report.state_files.append(path.name)
    report.spared = sorted(n for n in spared if n.endswith(("-srv", "-cli")))
    remove_leftovers(find_leftovers().without(spared), report, state_dir)
    return report
