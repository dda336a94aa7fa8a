"""Turning segmentation, receive-coalescing and checksum offloads off on a veth end.

With offloads on, a veth hands the kernel's 64 KB "super-segments" (TSO/GSO) and partial
checksums (CHECKSUM_PARTIAL) to whoever reads the other end, and merges received segments (GRO).
Our AF_PACKET link would then see frames no real wire carries and checksums our decoder must
reject. With them off, the kernel cuts MSS-sized segments and computes every checksum in software,
and it verifies the checksums *we* send (rx-checksum off), as with a real wire.

pyroute2's ethtool support (the SIOCETHTOOL ioctl on an AF_INET socket) works here (checked on
kernel 6.18; the `ethtool` binary is not needed). The ioctl acts on the namespace of the socket it
is issued on, so the `Ethtool` object is created inside the namespace and used from anywhere.
Scatter-gather goes too: without it the kernel cannot build GSO super-packets at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyroute2.ethtool import Ethtool

from lab.topology.netns import run_in_namespace

# Features switched off, by ethtool name prefix/suffix (the exact set depends on the kernel).
_OFF_PREFIXES = ("tx-checksum", "rx-checksum", "rx-gro", "rx-lro", "tx-scatter-gather", "tx-gso")
_OFF_SUFFIXES = ("-segmentation",)

# What tests and `lab up` read back: the classic ethtool names for the offloads we care about.
CHECKED_FEATURES = (
    "tx-tcp-segmentation",  # TSO
    "tx-generic-segmentation",  # GSO
    "rx-gro",  # GRO
    "tx-checksum-ip-generic",  # transmit checksum offload
    "rx-checksum",  # receive checksum offload
)


def _should_disable(name: str) -> bool:
    return name.startswith(_OFF_PREFIXES) or name.endswith(_OFF_SUFFIXES)


def _open_ethtool(namespace: str | None) -> Ethtool:
    if namespace is None:
        return Ethtool()
    return run_in_namespace(namespace, Ethtool)


def disable_offloads(ifname: str, namespace: str | None = None) -> dict[str, bool]:
    """Switch every segmentation/GRO/checksum offload off on `ifname`; return the features after."""
    ethtool = _open_ethtool(namespace)
    try:
        features = ethtool.get_features(ifname)
        changed = False
        for name, feature in features.features.items():
            if feature.available and feature.enable and _should_disable(name):
                feature.enable = False
                changed = True
        if changed:
            ethtool.set_features(ifname, features)
        return _read(ethtool, ifname, features_of_interest=None)
    finally:
        ethtool.close()


# What `enable_receive_offloads` turns back on: what a NIC gives a kernel on receive.
_RECEIVE_OFFLOADS = ("rx-gro", "rx-checksum")


def enable_receive_offloads(ifname: str, namespace: str | None = None) -> dict[str, bool]:
    """GRO and receive checksumming on `ifname` (the lab's offload mode); return the features after.

    The kernel then merges in-order segments of a flow into one frame of up to 64 KB before
    AF_PACKET sees it (as a NIC driver's GRO does), and vouches for the checksums it verified
    (PACKET_AUXDATA's TP_STATUS_CSUM_VALID). A merged frame's TCP checksum field is the first
    segment's and does not cover the merged payload: the link must trust the kernel's verdict.
    Transmit offloads stay off, so what we send is still MSS-sized and checksummed by us.
    """
    ethtool = _open_ethtool(namespace)
    try:
        features = ethtool.get_features(ifname)
        for name in _RECEIVE_OFFLOADS:
            feature = features.features.get(name)
            if feature is not None and feature.available:
                feature.enable = True
        ethtool.set_features(ifname, features)
        return _read(ethtool, ifname, features_of_interest=CHECKED_FEATURES)
    finally:
        ethtool.close()


def read_offloads(
    ifname: str, namespace: str | None = None, names: Iterable[str] | None = CHECKED_FEATURES
) -> dict[str, bool]:
    """Current state (enabled or not) of the named features of `ifname` (all when names is None)."""
    ethtool = _open_ethtool(namespace)
    try:
        return _read(ethtool, ifname, features_of_interest=names)
    finally:
        ethtool.close()


def _read(
    ethtool: Ethtool, ifname: str, features_of_interest: Iterable[str] | None
) -> dict[str, bool]:
    features = ethtool.get_features(ifname).features
    if features_of_interest is None:
        return {name: bool(f.enable) for name, f in features.items()}
    return {name: bool(features[name].enable) for name in features_of_interest if name in features}
