"""`lab doctor [--json]`: what this machine allows the lab to do, and what to do about the rest.

Each check is a `Check` with a status ("ok", "missing", "warning"), whether the lab cannot work
without it (`required`), what was found, and one sentence of advice when it is not ok. Exit status:
0 when every required check passes, or when an ordinary user has rootless mode (which grants the
missing privileges: `ready_rootless`), 1 otherwise (2 for a usage error, from argparse).

The kernel features (network namespaces, veth, AF_PACKET, nftables) are probed for real, not
guessed from capabilities: a container may grant CAP_NET_ADMIN and still forbid `unshare`, and a
kernel may lack veth or nf_tables. The probe runs in a forked child that first moves into a new,
private network namespace (unshare(CLONE_NEWNET)); everything it creates lives and dies with that
namespace, so the doctor never touches the host's interfaces, addresses or firewall, and leaves
nothing behind even if it is killed. When the child cannot unshare, only harmless probes run
(opening an AF_PACKET socket creates nothing).

Nothing here may raise at a user: a probe that fails in an unexpected way becomes a "missing"
or "warning" line with the error text, never a traceback.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TextIO

from lab.cli.errors import ExitCode
from lab.topology.privileges import (
    CAP_NET_ADMIN,
    CAP_NET_RAW,
    CAP_SYS_ADMIN,
    effective_capabilities,
)

Status = Literal["ok", "missing", "warning"]
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # not on a normal user's PATH
SUDO_ADVICE = "run lab as root: sudo lab ..., or sudo -E env PATH=$PATH lab ... from a venv"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    required: bool
    detail: str
    advice: str = ""


CLONE_NEWNET = 0x40000000
PROBES = ("netns", "af_packet", "veth", "nftables")
ProbeResult = dict[str, tuple[bool | None, str]]


def _probe() -> ProbeResult:
    """The kernel probes; runs in a forked child, whose unshare() cannot affect this process.

    (A fork rather than `python -c`: an unprivileged user may not even be allowed to execute
    the interpreter of a root-owned virtualenv, which is one of the things we are diagnosing.)"""
    out: ProbeResult = {}
    libc = ctypes.CDLL(None, use_errno=True)
    private = libc.unshare(CLONE_NEWNET) == 0
    out["netns"] = (
        (True, "created a private network namespace")
        if private
        else (False, "unshare(CLONE_NEWNET): " + os.strerror(ctypes.get_errno()))
    )
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
        out["af_packet"] = (True, "opened an AF_PACKET raw socket")
    except OSError as exc:
        out["af_packet"] = (False, f"socket(AF_PACKET, SOCK_RAW): {exc.strerror}")
    if not private:
        out["veth"] = (None, "not probed: no private namespace to try it in")
        out["nftables"] = (None, "not probed: no private namespace to try it in")
        return out
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ip:
            ip.link("add", ifname="labdoc0", kind="veth", peer={"ifname": "labdoc1"})
            ok = bool(ip.link_lookup(ifname="labdoc0"))
            ip.link("del", ifname="labdoc0")
        out["veth"] = (ok, "created and deleted a veth pair in a private namespace")
    except ImportError:
        out["veth"] = (None, "pyroute2 is not installed: veth not probed")
    except Exception as exc:  # any netlink error is the answer we are looking for
        code = getattr(exc, "code", None)  # pyroute2's NetlinkError carries the errno
        text = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
        out["veth"] = (False, f"creating a veth pair: {text}")
    nft = find_program("nft")
    if nft is None:
        out["nftables"] = (None, "the nft command is not installed: nftables not probed")
    else:
        result = subprocess.run(
            [nft, "add", "table", "inet", "labdoctor"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        out["nftables"] = (
            (True, "added a table in a private namespace")
            if result.returncode == 0
            # nft's first line says why; the next ones echo the command with a caret underline.
            else (False, "nft: " + ((result.stderr.strip().splitlines() or ["failed"])[0]))
        )
    return out


def run_probe() -> ProbeResult:
    """Run `_probe` in a forked child; failures become entries, never exceptions."""
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError as exc:
        return dict.fromkeys(PROBES, (False, f"the probe could not start: {exc}"))
    if pid == 0:  # the child: probe, report, and leave without running any cleanup of ours
        code = 0
        try:
            os.close(read_end)
            data = json.dumps(_probe()).encode()
            os.write(write_end, data)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    try:
        data = json.loads(b"".join(chunks))
        return {name: (value[0], str(value[1])) for name, value in data.items()}
    except (ValueError, TypeError, IndexError) as exc:
        return dict.fromkeys(PROBES, (False, f"the probe failed: {exc}"))


def find_program(name: str) -> str | None:
    """`name` on PATH, or in an sbin directory (daemons and admin tools live there)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _capability_checks(caps: int) -> list[Check]:
    wanted = (
        (CAP_NET_ADMIN, "CAP_NET_ADMIN", "links, addresses, offloads and nftables"),
        (CAP_NET_RAW, "CAP_NET_RAW", "AF_PACKET sockets, the lab stack's link"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "creating and entering network namespaces"),
    )
    checks = []
    for bit, name, why in wanted:
        present = bool(caps >> bit & 1)
        checks.append(
            Check(
                name,
                "ok" if present else "missing",
                True,
                f"{'present' if present else 'absent'} in CapEff (needed for {why})",
                "" if present else f"{SUDO_ADVICE}; in a container, grant {name}",
            )
        )
    return checks


_PROBE_ADVICE = {
    "netns": "run as root; in a container, allow unshare (e.g. docker run --privileged, or "
    "--cap-add SYS_ADMIN with a seccomp profile that permits unshare)",
    "af_packet": "needs CAP_NET_RAW: run as root (sudo)",
    "veth": "load the veth module (modprobe veth) or use a kernel built with CONFIG_VETH",
    "nftables": "install nftables (apt install nftables) and load nf_tables (modprobe nf_tables)",
}
# A probe refused for want of a privilege needs the privilege, not a module or a package.
_DENIED = ("Operation not permitted", "Permission denied")
_DENIED_ADVICE = {
    "netns": _PROBE_ADVICE["netns"],
    "af_packet": _PROBE_ADVICE["af_packet"],
    "veth": f"needs CAP_NET_ADMIN: {SUDO_ADVICE}; in a container, grant CAP_NET_ADMIN",
    "nftables": f"needs CAP_NET_ADMIN: {SUDO_ADVICE}; in a container, grant CAP_NET_ADMIN",
}
_NOT_PROBED_ADVICE = "fix the items above, then run `lab doctor` again"
_PROBE_REQUIRED = {"netns": True, "af_packet": True, "veth": True, "nftables": False}
_PROBE_TITLES = {
    "netns": "network namespaces",
    "af_packet": "AF_PACKET",
    "veth": "veth",
    "nftables": "nftables",
}


def _probe_checks(probe: ProbeResult) -> list[Check]:
    checks = []
    for key, title in _PROBE_TITLES.items():
        ok, detail = probe.get(key, (None, "not probed"))
        required = _PROBE_REQUIRED[key]
        if ok:
            checks.append(Check(title, "ok", required, detail))
        else:
            status: Status = "missing" if required or ok is False else "warning"
            if ok is None:
                advice = _NOT_PROBED_ADVICE
            elif any(word in detail for word in _DENIED):
                advice = _DENIED_ADVICE[key]
            else:
                advice = _PROBE_ADVICE[key]
            checks.append(Check(title, status, required, detail, advice))
    return checks


_TOOLS = (
    # name, required, what it is for, advice
    ("tshark", False, "reading captures in exercises and tests", "apt install tshark"),
    ("tcpdump", False, "watching the lab link by hand", "apt install tcpdump"),
    ("vsftpd", False, "a real FTP server for FTP exercises", "apt install vsftpd"),
    ("proftpd", False, "a real FTP server for FTP exercises", "apt install proftpd-basic"),
    ("ethtool", False, "checking that offloads are off", "apt install ethtool"),
)
_MODULES = (
    ("scapy", "the teaching codec and the exercises", "pip install scapy"),
    ("pyroute2", "building namespaces and veth", "pip install pyroute2"),
)


def _find_tool(name: str) -> str | None:
    """Where `name` is; vsftpd also where the set-up unpacks it (/opt/lab-vsftpd, since its
    package conflicts with proftpd's), which is the copy the lab's tests and exercises run."""
    if name == "vsftpd":
        from lab.ftp.servers import find_vsftpd

        found = find_vsftpd()
        return str(found) if found else None
    return find_program(name)


def _tool_checks() -> list[Check]:
    checks = []
    for name, required, why, advice in _TOOLS:
        path = _find_tool(name)
        if path:
            checks.append(Check(name, "ok", required, f"{path} ({why})"))
        else:
            checks.append(Check(name, "warning", required, f"not found ({why})", advice))
    ftp_servers = [c for c in checks if c.name in ("vsftpd", "proftpd") and c.status == "ok"]
    if ftp_servers:  # one real FTP server is enough; the other is not worth a warning
        checks = [
            Check(c.name, "ok", c.required, "not installed; the other FTP server will do")
            if c.name in ("vsftpd", "proftpd") and c.status != "ok"
            else c
            for c in checks
        ]
    for module, why, advice in _MODULES:
        found = importlib.util.find_spec(module) is not None
        checks.append(
            Check(
                f"python: {module}",
                "ok" if found else "missing",
                True,
                f"{'importable' if found else 'not importable'} ({why})",
                "" if found else advice,
            )
        )
    netem = _netem_available()
    checks.append(
        Check(
            "sch_netem",
            "ok",
            False,
            "available"
            if netem
            else "absent: not needed, lab injects faults in user space "
            "(--loss, --reorder, --dup, --corrupt, --delay, --rate)",
        )
    )
    return checks


def _netem_available() -> bool:
    try:
        with open("/proc/modules") as f:
            if any(line.startswith("sch_netem ") for line in f):
                return True
    except OSError:
        pass
    release = os.uname().release
    return os.path.exists(f"/lib/modules/{release}/kernel/net/sched/sch_netem.ko") or any(
        os.path.exists(f"/lib/modules/{release}/kernel/net/sched/sch_netem.ko{ext}")
        for ext in (".xz", ".zst", ".gz")
    )


def diagnose() -> list[Check]:
    """Every check, in the order they are printed."""
    uid = os.geteuid()
    caps = effective_capabilities()
    if uid == 0 and caps:
        root = Check("root", "ok", False, "running as root (uid 0)")
    elif uid == 0:
        root = Check(
            "root",
            "warning",
            False,
            "uid 0 but no effective capabilities (dropped by a container, setpriv or capsh)",
            "run from a root shell that keeps its capabilities",
        )
    else:
        root = Check(
            "root",
            "warning",
            False,
            f"running as uid {uid}",
            f"the capabilities below matter, not the uid; usually: {SUDO_ADVICE}",
        )
    checks = [root, *_capability_checks(caps)]
    checks += _probe_checks(run_probe())
    checks.append(_rootless_check())
    checks.append(_ipv6_check())
    checks += _tool_checks()
    return checks


def _ipv6_check(proc: Path = Path("/proc/sys/net/ipv6")) -> Check:
    """IPv6 in the kernel: the topology gives the server 2001:2::1 and the lab stack 2001:2::2.
    Not required: without it (booted with ipv6.disable=1) the v4 lab works as before."""
    if proc.is_dir():
        return Check("IPv6", "ok", False, "the kernel has IPv6 (2001:2::/48 lessons and tests)")
    return Check(
        "IPv6",
        "warning",
        False,
        f"{proc} is missing: the kernel runs without IPv6 (ipv6.disable=1?)",
        "boot without ipv6.disable=1 for the IPv6 lessons; IPv4 works as it is",
    )


ROOTLESS = "rootless mode"


def _rootless_check() -> Check:
    """Whether an ordinary user's live commands can run in a private user namespace here."""
    from lab.topology.userns import is_rootless, probe

    if is_rootless():
        return Check(ROOTLESS, "ok", False, "in use: this process is root in a user namespace")
    ok, detail = probe()
    if ok:
        return Check(
            ROOTLESS,
            "ok",
            False,
            "available: as an ordinary user, live commands run in a private user namespace",
        )
    found, _, fix = detail.partition("; fix: ")
    return Check(ROOTLESS, "warning", False, found, fix or "run lab as root")


# What rootless mode gives an ordinary user's live commands inside their user namespace: the
# capabilities, and so the kernel features the probe (run without them) could not use.
GRANTED_BY_ROOTLESS = frozenset(
    {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", *_PROBE_TITLES.values()}
)


def all_required_ok(checks: list[Check]) -> bool:
    return all(c.status == "ok" for c in checks if c.required)


def ready_rootless(checks: list[Check], uid: int) -> bool:
    """An ordinary user (`uid` not 0) on a machine that allows rootless mode has the live lab:
    its live commands get the missing privileges in their own user namespace. That is the
    doctor's verdict then (exit 0), not an error; as root, rootless mode is never used."""
    if uid == 0 or not any(c.name == ROOTLESS and c.status == "ok" for c in checks):
        return False
    return all(c.status == "ok" for c in checks if c.required and c.name not in GRANTED_BY_ROOTLESS)


def print_report(checks: list[Check], out: TextIO, uid: int | None = None) -> None:
    """The table, then the verdict for `uid` (default: this process's)."""
    uid = os.geteuid() if uid is None else uid
    width = max(len(c.name) for c in checks)
    marks = {"ok": "ok  ", "missing": "MISS", "warning": "warn"}
    for c in checks:
        need = "required" if c.required else "optional"
        out.write(f"{marks[c.status]}  {c.name:<{width}}  {need}  {c.detail}\n")
        if c.advice:
            out.write(f"{'':6}{'':<{width}}  -> {c.advice}\n")
    if all_required_ok(checks):
        out.write("\nThis machine can run the live lab.\n")
    elif ready_rootless(checks, uid):
        out.write(
            "\nThis machine can run the live lab in rootless mode: as an ordinary user, live "
            "commands enter a private user namespace by themselves and have what is missing "
            "above there.\n"
        )
    else:
        missing = ", ".join(c.name for c in checks if c.required and c.status != "ok")
        out.write(
            f"\nThe live lab cannot run here (missing: {missing}). Offline parts still work: "
            "lab demo, lab replay, lab exercise show, and the reassembly and forensics exercises.\n"
        )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Report what this machine allows the lab to do (privileges, namespaces, AF_PACKET, veth, "
        "nftables, tools) and what to do about anything missing. Exit status: 0 when everything "
        "required is present (or, for an ordinary user, rootless mode is available), 1 otherwise."
    )
    parser.epilog = "examples:\n  lab doctor\n  sudo lab doctor --json"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def run(args: argparse.Namespace) -> int:
    checks = diagnose()
    rootless = ready_rootless(checks, os.geteuid())
    ok = all_required_ok(checks) or rootless
    if args.json:
        report = {"ok": ok, "rootless": rootless, "checks": [asdict(c) for c in checks]}
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(checks, sys.stdout)
    return ExitCode.OK if ok else ExitCode.FAILURE
