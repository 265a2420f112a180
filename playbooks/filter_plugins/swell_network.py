"""Jinja filters for the swell playbooks: pick this host's address inside a network.

Kept in plain Python (the `ipaddress` module) so neither the controller nor a new instance
running ansible-pull needs netaddr, which `ansible.utils.ipaddr` would require.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def swell_addresses_in(addresses: Iterable[str], cidr: str) -> list[str]:
    """Return the addresses (strings) that lie inside `cidr`, in their original order."""
    network = ipaddress.ip_network(str(cidr), strict=False)
    found = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(str(address).split("%")[0])
        except ValueError:
            continue
        if ip.version == network.version and ip in network:
            found.append(str(address))
    return found


def swell_ip_version(cidr: str) -> int:
    """4 or 6: which nftables family (`ip` or `ip6`) a source network belongs to."""
    return ipaddress.ip_network(str(cidr), strict=False).version


def swell_cidrs_of_version(cidrs: Iterable[str], version: int) -> list[str]:
    """The networks of one IP version: nftables writes IPv4 (`ip saddr`) and IPv6 (`ip6 saddr`)
    sources in separate rules."""
    return [str(cidr) for cidr in cidrs if swell_ip_version(cidr) == int(version)]


class FilterModule:
    """Registers the filters with Ansible."""

    def filters(self) -> dict[str, object]:
        return {
            "swell_addresses_in": swell_addresses_in,
            "swell_ip_version": swell_ip_version,
            "swell_cidrs_of_version": swell_cidrs_of_version,
        }
