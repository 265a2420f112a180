"""Which ports each tier opens, to whom: the security group rules as data (ARCHITECTURE.md, "Ports").

A pure function, so the table is tested without Pulumi and the Tier component only turns it into
SecGroupRule resources.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from stacks.listeners import MEMBER_PORT, XMPP_PORT

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
    rules = [Rule("tcp", 22, cidr, "SSH from the admin networks only") for cidr in admin_cidrs]
    rules.append(
        Rule("tcp", 9100, private_cidr, "node exporter, scraped by Prometheus on the private network")
    )
    if tier in ("web", "chat"):
        # The Octavia VIP and its amphorae sit on the private subnet: backends never face the internet.
        # TLS ends at the load balancer, which source-NATs clients to the amphora's private address,
        # so the members' HTTP port and the health monitor need the private network and nothing else.
        rules.append(
            Rule("tcp", MEMBER_PORT, private_cidr, "nginx: the app in plain HTTP and /healthz, from the LB")
        )
    if tier == "chat":
        # The bridges' XMPP logins, passed through by the load balancer's private TCP listener (whose
        # amphora connects from the private subnet), and its health check.
        rules.append(Rule("tcp", XMPP_PORT, private_cidr, "Prosody c2s for the video bridges, from the LB"))
    if tier == "video":
        # Jitsi Videobridge media must be reachable by every participant, over IPv4 and IPv6.
        for world in WORLD:
            rules.append(Rule("udp", 10000, world, "Jitsi Videobridge media"))
            rules.append(Rule("tcp", TURN_TLS_PORT, world, "TURN over TLS (coturn), the TCP fallback"))
        rules.append(Rule("tcp", 8080, private_cidr, "Jitsi Videobridge private HTTP interface (/metrics)"))
    return rules
