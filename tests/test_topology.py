"""The namespace topology: names, addresses, offloads, teardown in every way a run can end."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.cli.errors import ExitCode
from lab.cli.main import main as lab_main
from lab.topology import privileges
from lab.topology.interfaces import InterfaceNotFoundError, interface_details
from lab.topology.state import TopologyNames, is_lab_name, read_state, state_path

privileged = pytest.mark.privileged


# -- pure ----------------------------------------------------------------------------------------


def test_names_of_a_run_carry_the_prefix_and_fit_in_ifnamsiz() -> None:
    names = TopologyNames.for_run("a1b2c3")
    assert names.server_ns == "lab-a1b2c3-srv"
    assert names.client_ns == "lab-a1b2c3-cli"
    assert (names.server_if, names.client_if) == ("laba1b2c3s", "laba1b2c3c")
    assert all(is_lab_name(n) for n in names.all())
    assert all(len(n) <= 15 for n in (names.server_if, names.client_if))


def test_a_record_from_another_version_still_names_its_owner(tmp_path: Path) -> None:
    """A live topology of a newer (or older) lab writes info fields this version does not know:
    its names and owner must still be read, or `lab clean` and the leak check remove it."""
    import os

    from lab.topology.state import Owner, StateRecord, TopologyInfo, write_state

    names = TopologyNames.for_run("0a1b2c")
    info = TopologyInfo(names, server_mac="02:00:00:00:00:01", client_mac="02:00:00:00:00:02")
    path = write_state(StateRecord(names, Owner.current(), info), tmp_path)
    data = json.loads(path.read_text())
    data["info"]["server_ip7"] = "some future address"  # a field this version does not know
    del data["info"]["prefixlen"]  # and one it has a default for
    path.write_text(json.dumps(data))
    record = read_state(path)
    assert record is not None
    assert record.names == names
    assert record.owner == Owner.current()
    assert record.owner.pid == os.getpid()
    assert record.info == info  # the known fields kept, the unknown one ignored
    data["info"] = {"client_mac": 7}  # unusable info: still the names and the owner
    path.write_text(json.dumps(data))
    broken = read_state(path)
    assert broken is not None
    assert broken.owner == Owner.current()
    assert broken.info is None
    path.write_text("{not json")
    assert read_state(path) is None


def test_only_the_names_the_lab_gives_count_as_lab_names() -> None:
    for ours in ("lab-123456-srv", "lab-a1b2c3-cli", "lab-a1b2c3-atk", "laba1b2c3s", "lab0f0f0fg"):
        assert is_lab_name(ours)
    # Anything else, even with the prefix, may be the user's own: `lab clean` must not touch it.
    for other in ("eth0", "xlab-1", "la", "", "LAB-1", "veth-lab", "lab0", "labnet0", "lab-test"):
        assert not is_lab_name(other)
    for near_miss in (
        "lab-12345-srv",
        "lab-123456-",
        "lab-123456-toolongsx",
        "lab123456",
        "labA1B2C3s",
    ):
        assert not is_lab_name(near_miss)


def test_privilege_check_names_each_missing_capability() -> None:
    with pytest.raises(privileges.PrivilegeError) as excinfo:
        privileges.require_privileges(mask=1 << privileges.CAP_SYS_ADMIN)
    message = str(excinfo.value)
    assert "CAP_NET_ADMIN, CAP_NET_RAW)" in message
    assert "\n" not in message
    privileges.require_privileges(
        mask=(1 << privileges.CAP_SYS_ADMIN)
        | (1 << privileges.CAP_NET_ADMIN)
        | (1 << privileges.CAP_NET_RAW)
    )


@pytest.mark.parametrize("command", ["up", "down", "clean"])
def test_cli_without_capabilities_prints_one_line_and_exits_77(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(privileges, "effective_capabilities", lambda: 0)
    assert lab_main([command]) == ExitCode.NO_PRIVILEGES
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert "CAP_NET_ADMIN" in captured.err
    assert "Traceback" not in captured.err + captured.out


@privileged
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
@pytest.mark.parametrize(
    ("argv", "dropped"),
    [
        (["up"], "-net_admin,-net_raw"),
        (["clean"], "-net_admin"),
        (["ping", "198.18.0.1", "-c", "1"], "-net_raw"),
        (["connect", "198.18.0.1", "7"], "-sys_admin"),
    ],
)
def test_a_process_really_without_the_capabilities_exits_77_with_one_line(
    argv: list[str], dropped: str
) -> None:
    """Not a monkeypatched check: the kernel itself withholds the capabilities (bounding set)."""
    result = subprocess.run(
        ["setpriv", f"--bounding-set={dropped}", "--", sys.executable, "-m", "lab", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == ExitCode.NO_PRIVILEGES, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    missing = result.stderr.split("missing: ")[1]
    for cap in dropped.split(","):
        assert "CAP_" + cap[1:].upper() in missing


def test_interface_details_of_loopback_come_from_netifaces() -> None:
    details = interface_details("lo")
    assert any(a.address == "127.0.0.1" for a in details.ipv4)
    assert details.gateway is None
    with pytest.raises(InterfaceNotFoundError):
        interface_details("no-such-if0")


# -- privileged ----------------------------------------------------------------------------------


@privileged
def test_interface_details_read_mac_address_and_gateway_of_a_namespace_interface() -> None:
    """In a process inside the server namespace (as `--iface` runs): what netifaces reports."""
    from pyroute2 import NetNS

    from lab.topology import Topology

    with Topology() as topo:
        info = topo.info
        with NetNS(topo.names.server_ns, flags=0) as ns:
            index = ns.link_lookup(ifname=topo.names.server_if)[0]
            ns.route("add", dst="0.0.0.0/0", gateway="198.18.0.254", oif=index)
        script = (
            "import json, sys\n"
            "from dataclasses import asdict\n"
            "from lab.topology.interfaces import interface_details\n"
            "print(json.dumps(asdict(interface_details(sys.argv[1]))))\n"
        )
        child = topo.popen_server(
            [sys.executable, "-c", script, topo.names.server_if], stdout=subprocess.PIPE, text=True
        )
        out, _ = child.communicate(timeout=30)
    details = json.loads(out)
    assert details["mac"] == info.server_mac
    assert details["ipv4"] == [{"address": info.server_ip, "netmask": "255.255.255.0"}]
    assert details["gateway"] == "198.18.0.254"


def _links(namespace: str) -> dict[str, list[str]]:
    """ifname -> addresses (both families) inside `namespace`."""
    from pyroute2 import NetNS

    with NetNS(namespace, flags=0) as ns:
        names = {link["index"]: link.get("IFLA_IFNAME") for link in ns.get_links()}
        result: dict[str, list[str]] = {name: [] for name in names.values()}
        for addr in ns.get_addr():
            result[names[addr["index"]]].append(f"{addr.get('IFA_ADDRESS')}/{addr['prefixlen']}")
    return result


def _host_links() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {str(link.get("IFLA_IFNAME")) for link in ipr.get_links()}


@privileged
def test_topology_builds_prefixed_namespaces_joined_by_a_veth() -> None:
    from lab.topology import Topology, list_namespaces

    host_before = _host_links()
    with Topology() as topo:
        names = topo.names
        assert {names.server_ns, names.client_ns} <= set(list_namespaces())
        assert names.server_if in _links(names.server_ns)
        assert names.client_if in _links(names.client_ns)
        assert _host_links() == host_before  # nothing appears in the host's namespace
        info = topo.info
        assert info.server_mac != info.client_mac
        assert len(bytes.fromhex(info.client_mac.replace(":", ""))) == 6


@privileged
def test_only_the_server_side_kernel_has_an_address() -> None:
    from lab.topology import Topology

    with Topology() as topo:
        server = _links(topo.names.server_ns)
        client = _links(topo.names.client_ns)
        # dual stack: 2001:2::1 beside 198.18.0.1 (and the kernel's own fe80:: link-local)
        assert sorted(a for a in server[topo.names.server_if] if not a.startswith("fe80:")) == [
            "198.18.0.1/24",
            "2001:2::1/64",
        ]
        assert client[topo.names.client_if] == []  # no IPv4, and no IPv6 link-local either
        assert topo.info.client_ip6 == "2001:2::2"
        assert topo.info.client_ip == "198.18.0.2"


@privileged
def test_addresses_are_configurable() -> None:
    from lab.topology import Topology

    with Topology(
        server_ip="198.19.7.1",
        client_ip="198.19.7.9",
        prefixlen=28,
        server_ip6="2001:2:0:7::1",
        client_ip6="2001:2:0:7::9",
        prefixlen6=80,
    ) as topo:
        addresses = _links(topo.names.server_ns)[topo.names.server_if]
        assert sorted(a for a in addresses if not a.startswith("fe80:")) == [
            "198.19.7.1/28",
            "2001:2:0:7::1/80",
        ]
        assert topo.info.client_ip == "198.19.7.9"
        assert (topo.info.client_ip6, topo.info.prefixlen6) == ("2001:2:0:7::9", 80)


@privileged
def test_ipv6_is_off_for_the_client_kernel_and_quiet_on_the_server_and_offloads_are_off() -> None:
    from lab.topology import Topology
    from lab.topology.offload import CHECKED_FEATURES, read_offloads
    from lab.topology.topology import ipv6_disabled

    with Topology() as topo:
        n = topo.names
        assert ipv6_disabled(n.client_ns, n.client_if)
        assert not ipv6_disabled(n.server_ns, n.server_if)

        def conf() -> dict[str, str]:
            return {
                key: Path(f"/proc/sys/net/ipv6/conf/{n.server_if}/{key}").read_text().strip()
                for key in ("accept_ra", "autoconf", "router_solicitations")
            }

        assert topo.run_in_server(conf) == {
            "accept_ra": "0",
            "autoconf": "0",
            "router_solicitations": "0",
        }
        for namespace, ifname in ((n.server_ns, n.server_if), (n.client_ns, n.client_if)):
            offloads = read_offloads(ifname, namespace)
            assert set(offloads) == set(CHECKED_FEATURES)
            assert not any(offloads.values()), offloads


@privileged
def test_processes_and_threads_run_inside_the_chosen_namespace() -> None:
    from lab.topology import Topology

    with Topology() as topo:
        in_server = topo.run_in_server(lambda: [name for _, name in socket.if_nameindex()])
        assert topo.names.server_if in in_server
        assert topo.names.server_if not in [name for _, name in socket.if_nameindex()]
        child = topo.popen_server(
            [sys.executable, "-c", "import socket; print(socket.if_nameindex())"],
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = child.communicate(timeout=10)
        assert topo.names.server_if in out
        assert topo.names.client_if not in out


@privileged
def test_teardown_leaves_nothing_and_is_idempotent() -> None:
    from lab.topology import Topology, find_leftovers

    topo = Topology()
    with topo:
        names = topo.names
        assert read_state(state_path(names.run_id)) is not None
        sleeper = topo.popen_server(["sleep", "30"])
    assert sleeper.poll() is not None  # children started in the namespace are stopped
    leftovers = find_leftovers()
    assert not set(names.all()) & set(leftovers.namespaces + leftovers.links)
    assert not state_path(names.run_id).exists()
    assert topo.down() == []


@privileged
def test_exception_inside_the_with_block_still_tears_down() -> None:
    from lab.topology import Topology, list_namespaces

    class BoomError(Exception):
        pass

    topo = Topology()
    with pytest.raises(BoomError), topo:
        raise BoomError
    assert not {topo.names.server_ns, topo.names.client_ns} & set(list_namespaces())


@privileged
def test_a_failed_build_raises_topology_error_and_leaves_nothing() -> None:
    import signal as signal_module

    from lab.topology import Topology, TopologyError, find_leftovers

    handler_before = signal_module.getsignal(signal_module.SIGTERM)
    topo = Topology(server_ip="198.18.0.300")  # not an address: fails half-way through the build
    with pytest.raises(TopologyError, match=r"^building topology"):
        topo.up()
    leftovers = find_leftovers()
    assert not set(topo.names.all()) & set(leftovers.namespaces + leftovers.links)
    assert not state_path(topo.names.run_id).exists()
    assert signal_module.getsignal(signal_module.SIGTERM) == handler_before


_CHILD = """
import contextlib, json, sys, os, signal
from lab.topology import Topology
mode = sys.argv[1]
try:
    with contextlib.ExitStack() as stack:
        count = 2 if mode == "nested" else 1
        topologies = [stack.enter_context(Topology()) for _ in range(count)]
        print(json.dumps([n for t in topologies for n in t.names.all()]), flush=True)
        if mode == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        sys.stdin.readline()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
"""


def _start_child(mode: str) -> tuple[subprocess.Popen[str], list[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CHILD), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    return child, json.loads(line)


@privileged
@pytest.mark.parametrize("mode", ["wait", "nested"])
@pytest.mark.parametrize(
    ("signum", "expected_code"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 3)]
)
def test_a_signal_tears_down_then_takes_its_usual_effect(
    signum: signal.Signals, expected_code: int, mode: str
) -> None:
    from lab.topology import find_leftovers

    child, names = _start_child(mode)
    try:
        leftovers = find_leftovers()
        assert names[0] in leftovers.namespaces
        child.send_signal(signum)
        assert child.wait(timeout=20) == expected_code
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    leftovers = find_leftovers()
    assert not set(names) & set(leftovers.namespaces + leftovers.links)


@privileged
def test_lab_clean_removes_a_crashed_run_and_spares_a_running_one() -> None:
    from lab.topology import clean, find_leftovers

    host_before = _host_links()
    crashed, crashed_names = _start_child("crash")
    assert crashed.wait(timeout=20) == -signal.SIGKILL
    running, running_names = _start_child("wait")
    try:
        assert crashed_names[0] in find_leftovers().namespaces  # the crash left it behind
        report = clean()
        assert set(crashed_names[:2]) <= set(report.namespaces)
        assert not set(running_names) & set(report.namespaces + report.links)
        leftovers = find_leftovers()
        assert not set(crashed_names) & set(leftovers.namespaces)
        assert set(running_names[:2]) <= set(leftovers.namespaces)
        assert _host_links() == host_before
        assert all(name.startswith("lab") for name in report.namespaces + report.links)
    finally:
        assert running.stdin is not None
        running.stdin.close()  # lets the running owner leave its with-block
        running.wait(timeout=20)
    assert not set(running_names) & set(find_leftovers().namespaces)


@privileged
def test_lab_up_leaves_a_topology_that_lab_down_removes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lab.topology import list_namespaces

    assert lab_main(["up"]) == 0
    out = capsys.readouterr().out
    run_id = out.split()[1]
    names = TopologyNames.for_run(run_id)
    try:
        assert {names.server_ns, names.client_ns} <= set(list_namespaces())
        record = read_state(state_path(run_id))
        assert record is not None
        assert record.owner is None
        assert record.info is not None
        assert record.info.client_mac in out
    finally:
        assert lab_main(["down", run_id]) == 0
    assert not {names.server_ns, names.client_ns} & set(list_namespaces())
    assert not Path(state_path(run_id)).exists()
    assert lab_main(["clean"]) == 0


@privileged
def test_topology_goes_up_and_down_inside_a_running_event_loop_as_in_jupyter() -> None:
    """A notebook cell runs in a running asyncio loop; pyroute2 cannot start its own there."""
    import asyncio

    from lab.notebook import off_the_event_loop
    from lab.topology import Topology, list_namespaces

    async def cell() -> tuple[set[str], str, set[str]]:
        topo = Topology()
        with topo:  # synchronous calls, as a notebook cell makes them
            names = {topo.names.server_ns, topo.names.client_ns}
            present = names & set(list_namespaces())
            mac = topo.info.client_mac
        return present, mac, names & set(list_namespaces())

    present, mac, after = asyncio.run(cell())
    assert len(present) == 2
    assert len(bytes.fromhex(mac.replace(":", ""))) == 6
    assert after == set()

    async def older_cell() -> tuple[bool, bool]:
        # The work-around notebooks used so far still works (other notebooks use it).
        topo = Topology()
        off_the_event_loop(topo.up)
        up = topo.names.server_ns in list_namespaces()
        off_the_event_loop(topo.down)
        return up, topo.names.server_ns in list_namespaces()

    assert asyncio.run(older_cell()) == (True, False)


# -- extra namespaces owned by a topology (Topology.add_namespace) -------------------------------


def test_extra_namespace_names_carry_the_run_and_refuse_bad_suffixes() -> None:
    from lab.topology.state import extra_namespace_name

    assert extra_namespace_name("a1b2c3", "atk") == "lab-a1b2c3-atk"
    for bad in ("", "srv", "cli", "ATK", "a-b", "../x", "toolongname", "a b"):
        with pytest.raises(ValueError, match="suffix"):
            extra_namespace_name("a1b2c3", bad)


def test_state_file_keeps_extra_namespaces_and_reads_older_files_without_them(
    tmp_path: Path,
) -> None:
    from lab.topology.state import Owner, StateRecord, write_state

    names = TopologyNames.for_run("a1b2c3")
    record = StateRecord(names, Owner.current(), None, ("lab-a1b2c3-atk",))
    path = write_state(record, tmp_path)
    assert read_state(path) == record
    assert read_state(path).all_names()[-1] == "lab-a1b2c3-atk"  # type: ignore[union-attr]
    data = json.loads(path.read_text())
    del data["extra_namespaces"]
    path.write_text(json.dumps(data))
    older = read_state(path)
    assert older is not None
    assert older.extra_namespaces == ()


def test_extra_namespaces_of_another_live_owner_are_spared(tmp_path: Path) -> None:
    import os

    from lab.topology.clean import running_owned_names
    from lab.topology.state import Owner, StateRecord, process_start_time, write_state

    parent = Owner(os.getppid(), process_start_time(os.getppid()) or 0)  # alive, not us
    live = StateRecord(TopologyNames.for_run("aaaaaa"), parent, None, ("lab-aaaaaa-atk",))
    dead = StateRecord(
        TopologyNames.for_run("bbbbbb"), Owner(parent.pid, -1), None, ("lab-bbbbbb-atk",)
    )
    write_state(live, tmp_path)
    write_state(dead, tmp_path)
    spared = running_owned_names(tmp_path)
    assert "lab-aaaaaa-atk" in spared
    assert "lab-bbbbbb-atk" not in spared


_EXTRA_CHILD = """
import json, os, signal, sys
from lab.topology import Topology
mode = sys.argv[1]
with Topology() as topo:
    extra = topo.add_namespace("atk")
    print(json.dumps([topo.names.run_id, extra]), flush=True)
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()
"""


def _start_extra_child(mode: str) -> tuple[subprocess.Popen[str], str, str]:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_EXTRA_CHILD), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    run_id, extra = json.loads(child.stdout.readline())
    return child, run_id, extra


@privileged
def test_add_namespace_is_recorded_and_removed_at_teardown_with_its_links() -> None:
    from pyroute2 import NetNS

    from lab.topology import Topology, list_namespaces

    topo = Topology()
    with topo:
        extra = topo.add_namespace("atk")
        assert extra == f"lab-{topo.names.run_id}-atk"
        assert extra in list_namespaces()
        record = read_state(state_path(topo.names.run_id))
        assert record is not None
        assert record.extra_namespaces == (extra,)
        with pytest.raises(FileExistsError):
            topo.add_namespace("atk")
        gw, atk = f"lab{topo.names.run_id}g", f"lab{topo.names.run_id}a"
        with NetNS(topo.names.server_ns, flags=0) as ns:  # wired as an exercise would wire it
            ns.link("add", ifname=gw, kind="veth", peer={"ifname": atk, "net_ns_fd": extra})
        with NetNS(extra, flags=0) as ns:
            assert ns.link_lookup(ifname=atk)
            assert ns.get_links(ns.link_lookup(ifname="lo")[0])[0].get("IFLA_OPERSTATE") in (
                "UNKNOWN",
                "UP",
            )
        assert topo.extra_namespaces == (extra,)
    assert extra not in list_namespaces()
    assert not state_path(topo.names.run_id).exists()
    with pytest.raises(RuntimeError, match="up"):
        topo.add_namespace("two")


@privileged
def test_a_concurrent_sessions_leak_check_spares_a_running_owners_extra_namespace() -> None:
    from lab.topology import find_leftovers

    child, _, extra = _start_extra_child("wait")
    try:
        assert extra in find_leftovers().namespaces
        assert extra not in find_leftovers(spare_running=True).namespaces  # what conftest uses
    finally:
        assert child.stdin is not None
        child.stdin.close()
        assert child.wait(timeout=20) == 0
    assert extra not in find_leftovers().namespaces


@privileged
def test_lab_clean_removes_the_extra_namespace_of_a_crashed_run() -> None:
    from lab.topology import clean, find_leftovers

    child, run_id, extra = _start_extra_child("crash")
    assert child.wait(timeout=20) == -signal.SIGKILL
    assert extra in find_leftovers().namespaces
    report = clean()
    assert extra in report.namespaces
    assert extra not in find_leftovers().namespaces
    assert not state_path(run_id).exists()
