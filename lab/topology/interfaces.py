"""Details of a host interface (MAC, IPv4 addresses, default gateway), read through netifaces.

Used by `--iface` mode, where the lab stack runs on a real interface instead of the veth topology:
it needs a MAC to put in frames, the addresses the kernel already uses there (the stack must take
a different one, or the kernel will answer our peers with RST), and the gateway to ARP for.
Read-only: nothing here changes the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import netifaces


class InterfaceNotFoundError(LookupError):
    """The named interface does not exist in this namespace."""


@dataclass(frozen=True, slots=True)
class Ipv4Address:
    address: str
    netmask: str


@dataclass(frozen=True, slots=True)
class InterfaceDetails:
    name: str
    mac: str | None  # None for interfaces without a link-layer address (tunnels)
    ipv4: tuple[Ipv4Address, ...]
    gateway: str | None  # the IPv4 default gateway, when it is reached through this interface


def interface_names() -> list[str]:
    return sorted(netifaces.interfaces())


def default_gateway() -> tuple[str, str] | None:
    """(gateway address, interface) of the IPv4 default route, or None."""
    default = netifaces.gateways().get("default", {})
    entry = default.get(netifaces.AF_INET) if isinstance(default, dict) else None
    if not entry:
        return None
    return str(entry[0]), str(entry[1])


def interface_details(name: str) -> InterfaceDetails:
    """MAC, IPv4 addresses and (if it goes through `name`) the default gateway of `name`."""
    if name not in netifaces.interfaces():
        raise InterfaceNotFoundError(name)
    addresses = netifaces.ifaddresses(name)
    links = addresses.get(netifaces.AF_LINK, [])
    mac = links[0].get("addr") if links else None
    ipv4 = tuple(
        Ipv4Address(str(entry["addr"]), str(entry.get("netmask", "255.255.255.255")))
        for entry in addresses.get(netifaces.AF_INET, [])
    )
    default = default_gateway()
    gateway = default[0] if default is not None and default[1] == name else None
    return InterfaceDetails(name=name, mac=str(mac) if mac else None, ipv4=ipv4, gateway=gateway)
