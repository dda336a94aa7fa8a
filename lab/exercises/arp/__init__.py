"""Exercise `arp`: resolve the server's MAC address by hand with Scapy on the lab link.

The checker builds a fresh topology, captures the server's end of the veth, runs the student's
`resolve` in the client namespace, and grades from the capture: an ARP request for the server's
address crossed the wire, well-formed (sender fields that are really the client's, so that the
server can answer and cache them), the server's kernel answered it, and the address returned is
the server's real MAC (read from the kernel through netlink, not from the capture).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from lab.exercises import CheckResult, Exercise
from lab.exercises.harness import (
    LiveAttempt,
    arp_frames,
    grade_mac_answer,
    live_attempt,
    read_capture,
)
from lab.exercises.offline import offline_info, offline_lab_info, run_offline
from lab.wire.frame import BROADCAST_MAC


def drive(module: ModuleType, task: dict[str, Any]) -> str:
    return str(module.resolve(SimpleNamespace(**task["lab"])))


def check_offline(student_file: Path, workdir: Path) -> CheckResult:
    """The same check against the lab's own host on the offline wire (lab.exercises.offline)."""
    return check(student_file, workdir, offline=True)


def check(student_file: Path, workdir: Path, *, offline: bool = False) -> CheckResult:
    result = CheckResult("arp")
    workdir.mkdir(parents=True, exist_ok=True)
    capture = workdir / "arp.pcapng"
    result.capture = capture
    if offline:
        info: Any = offline_info()
        plan = {"capture": str(capture)}
        task = {"lab": offline_lab_info()}
        run = run_offline("arp", student_file, task, workdir, plan, timeout=30)
    else:
        attempt: LiveAttempt[None] = live_attempt(
            "arp", student_file, workdir, lambda topo: {}, timeout=30
        )
        info, run = attempt.info, attempt.run
    frames = read_capture(capture)
    requests = [
        (wf, a)
        for wf, a in arp_frames(frames)
        if wf.from_client and a.op == 1 and a.target_ip == info.server_ip
    ]
    replies = [
        (wf, a)
        for wf, a in arp_frames(frames)
        if not wf.from_client and a.op == 2 and a.sender_ip == info.server_ip
    ]
    if result.add(
        "ARP request on the wire",
        bool(requests),
        f"frame #{requests[0][0].number}: who-has {info.server_ip}"
        if requests
        else f"no ARP request for {info.server_ip} crossed the wire "
        f"({len(frames)} frames captured); did you send on {info.names.client_if}?",
    ):
        a = requests[0][1]
        problems = []
        if a.eth_dst not in (BROADCAST_MAC, info.server_mac):
            problems.append(f"sent to {a.eth_dst}, which is neither broadcast nor the server")
        if a.sender_mac != info.client_mac or a.eth_src != info.client_mac:
            problems.append(
                f"sender MAC {a.sender_mac} (Ethernet source {a.eth_src}) is not yours "
                f"({info.client_mac})"
            )
        if a.sender_ip != info.client_ip:
            problems.append(f"sender IP {a.sender_ip} is not yours ({info.client_ip})")
        result.add(
            "request well-formed",
            not problems,
            "; ".join(problems) or "broadcast, with your MAC and IP as the sender",
        )
    result.add(
        "the server answered",
        bool(replies),
        f"frame #{replies[0][0].number}: {info.server_ip} is-at {replies[0][1].sender_mac}"
        if replies
        else "the server's kernel sent no ARP reply: was the request well-formed?",
    )
    grade_mac_answer(result, run, info.server_mac)
    return result


EXERCISE = Exercise(
    name="arp",
    title="ARP: who has 198.18.0.1?",
    goal="Find the server's MAC address by sending an ARP request by hand and reading the reply.",
    background=(
        "Before two IPv4 hosts on one Ethernet can exchange a single IP packet, the sender needs "
        "the receiver's MAC address. ARP (RFC 826) asks the whole link, in a broadcast frame, "
        "'who has this IP? tell this MAC', and the owner answers in a unicast reply. The lab's "
        "client namespace has no kernel address on its interface: nobody there does ARP for you."
    ),
    steps=(
        "sudo lab exercise start arp [DIR]   (copies arp.py and brings up a topology to play with)",
        "Complete resolve() in DIR/arp.py, with Scapy.",
        "sudo lab exercise check arp [DIR]",
    ),
    hints=(
        "Ether(dst='ff:ff:ff:ff:ff:ff') / ARP(op=1, hwsrc=..., psrc=..., pdst=...)",
        "srp() sends at layer 2 and returns (answered, unanswered); pass iface=lab.iface and a "
        "timeout, or it waits for ever.",
        "The reply's hwsrc field is the answer.",
    ),
    starter="arp.py",
    privileged=True,
    check=check,
    check_offline=check_offline,
)
