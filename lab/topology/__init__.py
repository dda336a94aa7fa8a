"""Network namespaces, veth and cleanup for the live lab (see topology.py for the picture)."""

from __future__ import annotations

from lab.topology.clean import CleanReport, Leftovers, clean, find_leftovers
from lab.topology.netns import list_namespaces, popen_in_namespace, run_in_namespace
from lab.topology.privileges import PrivilegeError, require_privileges
from lab.topology.state import TopologyInfo, TopologyNames, is_lab_name
from lab.topology.topology import Topology, TopologyError, remove_topology

__all__ = [
    "CleanReport",
    "Leftovers",
    "PrivilegeError",
    "Topology",
    "TopologyError",
    "TopologyInfo",
    "TopologyNames",
    "clean",
    "find_leftovers",
    "is_lab_name",
    "list_namespaces",
    "popen_in_namespace",
    "remove_topology",
    "require_privileges",
    "run_in_namespace",
]
