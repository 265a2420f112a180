"""Jinja filters for the swell playbooks: the host firewall's port table from the tier catalog.

The catalog (swell/data/tiers.yaml) is what the stack's security groups are built from
(stacks/rules.py); deriving the host firewall from the same data keeps both layers equal, and a
tier added to the catalog gets its firewall with no edit here. Plain Python over the parsed YAML:
a new instance running ansible-pull has the repository, not the swell package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def swell_groups(catalog: Mapping[str, Any]) -> list[str]:
    """Every host group the catalog defines: the tiers, then the fixed groups (chat store, shards)."""
    return [*(catalog.get("tiers") or {}), *(catalog.get("fixed") or {})]


def swell_port_table(catalog: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One rule per tier (or fixed group) and port, shaped as the base role's
    `base_firewall_port_table`: SSH from the admin networks, each exporter from the private network,
    then the tier's own ports. A balanced tier's `private` ports are reached through its load
    balancer (source `load_balancer`). A fixed group's ports are open to one tier's security group
    (`from_tier`); a host firewall knows no security groups, so it opens them to the private network
    and the security group narrows that to the tier (source `private`)."""
    exporters = catalog.get("exporters") or {}
    table: list[dict[str, Any]] = []
    for name, group in (catalog.get("fixed") or {}).items():
        table += _common(name, group, exporters)
        table += [
            {
                "port": int(port["port"]),
                "protocol": port["protocol"],
                "tiers": [name],
                "source": "private",
                "comment": port["description"],
            }
            for port in group.get("ports") or []
        ]
    for name, tier in (catalog.get("tiers") or {}).items():
        table += _common(name, tier, exporters)
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


def _common(name: str, entry: Mapping[str, Any], exporters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """SSH from the admin networks and each exporter from the private network."""
    rules = [{"port": 22, "protocol": "tcp", "tiers": [name], "source": "admin", "comment": "SSH"}]
    for exporter in entry.get("exporters") or ["node"]:
        spec = exporters[exporter]
        rules.append(
            {
                "port": int(spec["port"]),
                "protocol": "tcp",
                "tiers": [name],
                "source": "private",
                "comment": spec["description"],
            }
        )
    return rules


class FilterModule:
    """Registers the filters with Ansible."""

    def filters(self) -> dict[str, Any]:
        return {"swell_port_table": swell_port_table, "swell_groups": swell_groups}
