"""Exercise `ndp`: resolve the server's MAC address for its IPv6 address, by hand with Scapy.

IPv6's counterpart of the `arp` exercise (RFC 4861 instead of RFC 826). The checker builds a
fresh dual-stack topology, captures the server's end of the veth, runs the student's `resolve` in
the client namespace, and grades from the capture: a Neighbor Solicitation for the server's
address crossed the wire and was valid (hop limit 255, which the codec checks: an invalid one is
decoded as `Dropped(BAD_NDP)` and reported with the codec's reason), went to the solicited-node
group at its multicast MAC, and carried the client's own addresses in its source link-layer
option; the server's kernel advertised itself in answer; and the address returned is the
server's real MAC (from netlink, not from the capture). Offline, the lab's own Host (its
Neighbor Discovery) plays the server on the in-memory wire.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from lab.exercises import CheckResult, Exercise
from lab.exercises.harness import (
    LiveAttempt,
    WireFrame,
    grade_mac_answer,
    live_attempt,
    read_capture,
)
from lab.exercises.offline import offline_info, offline_lab_info, run_offline
from lab.wire.fast_ipv6 import ipv6_multicast_mac, solicited_node_multicast
from lab.wire.frame import Dropped, DropReason, NeighborAdvertisement, NeighborSolicitation


def drive(module: ModuleType, task: dict[str, Any]) -> str:
    return str(module.resolve(SimpleNamespace(**task["lab"])))


def check_offline(student_file: Path, workdir: Path) -> CheckResult:
    """The same check against the lab's own host on the offline wire (lab.exercises.offline)."""
    return check(student_file, workdir, offline=True)


def _v6_addresses(info: Any) -> dict[str, str]:
    return {"client_ip6": info.client_ip6, "server_ip6": info.server_ip6}


def check(student_file: Path, workdir: Path, *, offline: bool = False) -> CheckResult:
    result = CheckResult("ndp")
    workdir.mkdir(parents=True, exist_ok=True)
    capture = workdir / "ndp.pcapng"
    result.capture = capture
    if offline:
        info: Any = offline_info()
        plan = {"capture": str(capture), "ipv6": True}
        task = {"lab": {**offline_lab_info(), **_v6_addresses(info)}}
        run = run_offline("ndp", student_file, task, workdir, plan, timeout=30)
    else:
        attempt: LiveAttempt[None] = live_attempt(
            "ndp", student_file, workdir, lambda topo: _v6_addresses(topo.info), timeout=30
        )
        info, run = attempt.info, attempt.run
    frames = read_capture(capture)
    grade(result, frames, info)
    grade_mac_answer(result, run, info.server_mac)
    return result


def grade(result: CheckResult, frames: list[WireFrame], info: Any) -> None:
    """The wire criteria: a solicitation sent, well-formed, and answered."""
    target = info.server_ip6
    solicitations = [
        (wf, f)
        for wf in frames
        if wf.from_client and isinstance(f := wf.frame, NeighborSolicitation) and f.target == target
    ]
    invalid = [
        (wf, f)
        for wf in frames
        if wf.from_client and isinstance(f := wf.frame, Dropped) and f.reason is DropReason.BAD_NDP
    ]
    if solicitations:
        first = solicitations[0]
        reason = f"frame #{first[0].number}: who has {target} tell {first[1].ip.src}"
    elif invalid:
        wf, drop = invalid[0]
        reason = (
            f"frame #{wf.number} was a Neighbor Discovery message no host accepts: {drop.detail} "
            "(RFC 4861 7.1.1)"
        )
    else:
        reason = (
            f"no Neighbor Solicitation for {target} crossed the wire ({len(frames)} frames "
            f"captured); did you send on {info.names.client_if}?"
        )
    if result.add("Neighbor Solicitation on the wire", bool(solicitations), reason):
        ns = solicitations[0][1]
        group = solicited_node_multicast(target)
        problems = []
        if ns.ip.dst != group:
            problems.append(f"sent to {ns.ip.dst}, not to {target}'s solicited-node group {group}")
        elif ns.eth_dst != (group_mac := ipv6_multicast_mac(group)):
            problems.append(f"Ethernet destination {ns.eth_dst}, not the group's MAC {group_mac}")
        if ns.eth_src != info.client_mac:
            problems.append(f"Ethernet source {ns.eth_src} is not yours ({info.client_mac})")
        if ns.ip.src != info.client_ip6:
            problems.append(f"source address {ns.ip.src} is not yours ({info.client_ip6})")
        if ns.source_lladdr != info.client_mac:
            said = ns.source_lladdr or "no source link-layer address option"
            problems.append(f"{said}: the server needs your MAC ({info.client_mac}) to answer")
        result.add(
            "solicitation well-formed",
            not problems,
            "; ".join(problems)
            or "to the solicited-node group, hop limit 255, with your MAC in its option",
        )
    answers = [
        (wf, f)
        for wf in frames
        if not wf.from_client
        and isinstance(f := wf.frame, NeighborAdvertisement)
        and f.target == target
        and f.solicited
    ]
    result.add(
        "the server answered",
        bool(answers),
        f"frame #{answers[0][0].number}: {target} is at {answers[0][1].target_lladdr}"
        if answers
        else "the server sent no Neighbor Advertisement: was the solicitation well-formed?",
    )


EXERCISE = Exercise(
    name="ndp",
    title="NDP: who has 2001:2::1?",
    goal=(
        "Find the server's MAC address for its IPv6 address by sending a Neighbor Solicitation "
        "by hand and reading the Neighbor Advertisement."
    ),
    background=(
        "IPv6 has no ARP and no broadcast. Neighbor Discovery (RFC 4861) asks with ICMPv6: a "
        "Neighbor Solicitation goes to the target's solicited-node multicast group, which only "
        "hosts whose addresses end in the same 24 bits listen to, and carries the sender's MAC "
        "in an option; the owner answers with a Neighbor Advertisement. Both are sent with hop "
        "limit 255 and dropped with anything less, which proves they were not forwarded by a "
        "router. The lab's client namespace has no kernel IPv6 address on its interface: nobody "
        "there does Neighbor Discovery for you."
    ),
    steps=(
        "sudo lab exercise start ndp [DIR]   (copies ndp.py and brings up a topology to play with)",
        "Complete resolve() in DIR/ndp.py, with Scapy.",
        "sudo lab exercise check ndp [DIR]",
    ),
    hints=(
        "The solicited-node group of 2001:2::1 is ff02::1:ff00:1; its MAC is 33:33:ff:00:00:01.",
        "Ether(dst=...) / IPv6(src=..., dst=..., hlim=255) / ICMPv6ND_NS(tgt=...) / "
        "ICMPv6NDOptSrcLLAddr(lladdr=...)",
        "Scapy sets the hop limit of an ND message to 255 unless you set hlim yourself; a host "
        "silently drops a solicitation with anything less.",
        "srp() sends at layer 2 and returns (answered, unanswered); pass iface=lab.iface and a "
        "timeout. The answer's ICMPv6NDOptDstLLAddr holds the MAC.",
    ),
    starter="ndp.py",
    privileged=True,
    check=check,
    check_offline=check_offline,
)
