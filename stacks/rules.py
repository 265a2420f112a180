"""Which ports each tier opens, to whom: the security group rules as data (ARCHITECTURE.md, "Ports").

A pure function of the tier's catalog entry (swell/data/tiers.yaml: its ports and exporters), so the
table is tested without Pulumi and the Tier component only turns it into SecGroupRule resources.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from swell import tiers

WORLD = ("0.0.0.0/0", "::/0")
# coturn's TURN over TLS on the video bridges: the port Prosody advertises to clients with the TURN
# host (stacks/bootstrap.py delivers both to chat and video), and the one the security group opens.
TURN_TLS_PORT = 443


@dataclass(frozen=True)
class Rule:
    protocol: str
    port: int
    remote: str
    description: str

    @property
    def ethertype(self) -> str:
        return "IPv6" if ipaddress.ip_network(self.remote).version == 6 else "IPv4"

    @property
    def slug(self) -> str:
        """A stable, readable piece of the rule's logical name: `tcp-22-203.0.113.0-24`."""
        where = {"0.0.0.0/0": "world-ipv4", "::/0": "world-ipv6"}.get(self.remote)
        if where is None:
            where = self.remote.replace("/", "-").replace(":", ".")
        return f"{self.protocol}-{self.port}-{where}"


def ingress_rules(tier: str, admin_cidrs: Sequence[str], private_cidr: str) -> list[Rule]:
    """SSH from the admin networks, each exporter from the private network (where Prometheus runs),
    then the tier's own ports. A balanced tier's ports come from the private network only: the
    Octavia VIP and its amphorae sit on the private subnet and source-NAT clients to the amphora's
    address, so backends never face the internet. A `world` port is opened over IPv4 and IPv6."""
    catalog = tiers.load()
    entry = catalog.get(tier)
    rules = [Rule("tcp", 22, cidr, "SSH from the admin networks only") for cidr in admin_cidrs]
    for name in entry.exporters:
        exporter = catalog.exporters[name]
        rules.append(Rule("tcp", exporter.port, private_cidr, exporter.description))
    private = [p for p in entry.ports if p.source == "private"]
    world = [p for p in entry.ports if p.source == "world"]
    rules += [Rule(p.protocol, p.port, private_cidr, p.description) for p in private]
    rules += [Rule(p.protocol, p.port, remote, p.description) for remote in WORLD for p in world]
    return rules


def fixed_ingress_rules(group: str, admin_cidrs: Sequence[str], private_cidr: str) -> list[Rule]:
    """A fixed group's rules by address: SSH from the admin networks and each exporter from the
    private network. Its own ports are open to named tiers' security groups only, not to addresses
    (FixedGroup.admit): a Redis or a Prosody answers those tiers and nobody else on the network."""
    catalog = tiers.load()
    entry = catalog.fixed_group(group)
    rules = [Rule("tcp", 22, cidr, "SSH from the admin networks only") for cidr in admin_cidrs]
    for name in entry.exporters:
        exporter = catalog.exporters[name]
        rules.append(Rule("tcp", exporter.port, private_cidr, exporter.description))
    return rules
