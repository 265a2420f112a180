"""Jinja filters for the swell playbooks: the host firewall's port table from the tier catalog.

The catalog (swell/data/tiers.yaml) is what the stack's security groups are built from
(stacks/rules.py); deriving the host firewall from the same data keeps both layers equal, and a
tier added to the catalog gets its firewall with no edit here. Plain Python over the parsed YAML:
a new instance running ansible-pull has the repository, not the swell package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def swell_port_table(catalog: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One rule per tier and port, shaped as the base role's `base_firewall_port_table`: SSH from the
    admin networks, each exporter from the private network, then the tier's own ports. A balanced
    tier's `private` ports are reached through its load balancer (source `load_balancer`)."""
    exporters = catalog.get("exporters") or {}
    table: list[dict[str, Any]] = []
    for name, tier in (catalog.get("tiers") or {}).items():
        table.append({"port": 22, "protocol": "tcp", "tiers": [name], "source": "admin", "comment": "SSH"})
        for exporter in tier.get("exporters") or ["node"]:
            spec = exporters[exporter]
            table.append(
                {
                    "port": int(spec["port"]),
                    "protocol": "tcp",
                    "tiers": [name],
                    "source": "private",
                    "comment": spec["description"],
                }
            )
        balanced = tier.get("balancer") is not None
        for port in tier.get("ports") or []:
            source = port["source"]
            if source == "private" and balanced:
                source = "load_balancer"
            table.append(
                {
                    "port": int(port["port"]),
                    "protocol": port["protocol"],
                    "tiers": [name],
                    "source": source,
                    "comment": port["description"],
                }
            )
    return table


class FilterModule:
    """Registers the filters with Ansible."""

    def filters(self) -> dict[str, Any]:
        return {"swell_port_table": swell_port_table}
