"""The namespace topology: names, addresses, offloads, teardown in every way a run can end."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.cli import EXIT_NO_PRIVILEGES
from lab.cli import main as lab_main
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


def test_only_names_starting_with_lab_count_as_lab_names() -> None:
    assert is_lab_name("lab-123456-srv")
    assert is_lab_name("lab0")
    for other in ("eth0", "xlab-1", "la", "", "LAB-1", "veth-lab"):
        assert not is_lab_name(other)


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
    assert lab_main([command]) == EXIT_NO_PRIVILEGES
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert "CAP_NET_ADMIN" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_interface_details_of_loopback_come_from_netifaces() -> None:
    details = interface_details("lo")
    assert any(a.address == "127.0.0.1" for a in details.ipv4)
    assert details.gateway is None
    with pytest.raises(InterfaceNotFoundError):
        interface_details("no-such-if0")


# -- privileged ----------------------------------------------------------------------------------


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
        assert server[topo.names.server_if] == ["198.18.0.1/24"]
        assert client[topo.names.client_if] == []  # no IPv4, and no IPv6 link-local either
        assert topo.info.client_ip == "198.18.0.2"


@privileged
def test_addresses_are_configurable() -> None:
    from lab.topology import Topology

    with Topology(server_ip="198.19.7.1", client_ip="198.19.7.9", prefixlen=28) as topo:
        assert _links(topo.names.server_ns)[topo.names.server_if] == ["198.19.7.1/28"]
        assert topo.info.client_ip == "198.19.7.9"


@privileged
def test_ipv6_is_disabled_and_offloads_are_off_on_both_ends() -> None:
    from lab.topology import Topology
    from lab.topology.offload import CHECKED_FEATURES, read_offloads
    from lab.topology.topology import ipv6_disabled

    with Topology() as topo:
        n = topo.names
        for namespace, ifname in ((n.server_ns, n.server_if), (n.client_ns, n.client_if)):
            assert ipv6_disabled(namespace, ifname)
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
