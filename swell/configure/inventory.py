"""Ansible inventory from the stack outputs: one group per tier, one host per instance.

The inventory is plain data (the YAML/JSON inventory format as a dict), which ansible-runner
writes out as is. Group variables carry the bootstrap contract's variables (swell_tier,
swell_stack, swell_private_network_cidr, swell_admin_cidrs, and each tier's `tier_vars` from the
stack outputs: the XMPP domain, the chat VIP, the TURN host), so `swell configure` and
ansible-pull give the roles the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from swell import tiers as tier_catalog
from swell.configure.admin_networks import admin_network
from swell.configure.outputs import Instance, StackOutputs, StackOutputsError

AddressChoice = Literal["private", "public"]


@dataclass(frozen=True)
class InventorySettings:
    """How Ansible reaches the hosts, beyond what the stack outputs say."""

    # OVHcloud's Debian images log in as `debian`, with sudo.
    ssh_user: str = "debian"
    # private: reach instances on the vRack (from a bastion or VPN); public: on Ext-Net.
    address: AddressChoice = "private"
    # user@host of a bastion, for `ssh -J` (ProxyJump), when the controller is outside the vRack.
    ssh_jump: str | None = None
    # Where SSH may come from (the firewall's admin rule), added to the stack outputs' own.
    admin_cidrs: tuple[str, ...] = ()
    # Only these tiers (None: all).
    tiers: tuple[str, ...] | None = None
    extra_host_vars: dict[str, Any] = field(default_factory=dict)


def _ansible_host(instance: Instance, choice: AddressChoice) -> str:
    if choice == "private":
        return str(instance.private_ip)
    public = instance.public_ipv4 or instance.public_ipv6
    if public is None:
        raise StackOutputsError(
            f"instance {instance.name}: --address public, but its public_ipv4 and public_ipv6 are null"
        )
    return str(public)


def admin_cidrs(outputs: StackOutputs, settings: InventorySettings) -> list[str]:
    """The admin networks from the outputs and the settings, validated, without duplicates.

    Same rule as the stack's `swell:adminCidrs` (swell/configure/admin_networks.py): the world
    (0.0.0.0/0, ::/0) is refused, since the firewall would open SSH to everyone.
    """
    found: list[str] = [str(c) for c in outputs.admin_cidrs]
    for raw in settings.admin_cidrs:
        try:
            cidr = admin_network(raw, strict=False)
        except ValueError as exc:
            raise StackOutputsError(f"--admin-cidr: {exc}") from exc
        if cidr not in found:
            found.append(cidr)
    return found


def build_inventory(outputs: StackOutputs, settings: InventorySettings) -> dict[str, Any]:
    """The inventory for site.yml: a group per tier (web, chat, video) and per fixed group
    (chat_store, shard), hosts named like the instances; a placed instance (a bridge) gets its
    member as `swell_shard`, as the video role would read it from its Nova metadata."""
    catalog = tier_catalog.load()
    known = (*catalog.names, *catalog.fixed_names)
    # By default every tier, and the fixed groups the stack has (older stacks have none).
    tiers = settings.tiers or (*catalog.names, *(g for g in catalog.fixed_names if g in outputs.fixed))
    unknown = [t for t in tiers if t not in known]
    if unknown:
        raise StackOutputsError(f"unknown tier(s) {', '.join(unknown)}; tiers are {', '.join(known)}")
    cidrs = admin_cidrs(outputs, settings)
    if not cidrs:
        raise StackOutputsError(
            "no admin networks: the host firewall would close SSH to everyone. Give --admin-cidr "
            "(repeatable) or an `admin_cidrs` list in the stack outputs."
        )
    ssh_args = ["-o", "StrictHostKeyChecking=accept-new"]
    if settings.ssh_jump:
        ssh_args += ["-J", settings.ssh_jump]

    children: dict[str, Any] = {}
    for tier in tiers:
        hosts: dict[str, Any] = {}
        for instance in outputs.instances(tier):
            if instance.pool == "warm":
                continue  # shelved: unreachable; it was configured before it was shelved
            hosts[instance.name] = {
                "ansible_host": _ansible_host(instance, settings.address),
                "swell_private_ip": str(instance.private_ip),
                **settings.extra_host_vars,
            }
            member = outputs.placement(tier, instance)
            if member is not None:
                hosts[instance.name]["swell_shard"] = str(member)
        # The tier's stack variables as group vars: `-e` still overrides them (extra vars win).
        children[tier] = {"hosts": hosts, "vars": {"swell_tier": tier, **outputs.variables(tier)}}
    if not any(group["hosts"] for group in children.values()):
        raise StackOutputsError(
            f"stack {outputs.stack}: no instances in tier(s) {', '.join(tiers)}; nothing to configure"
        )
    return {
        "all": {
            "vars": {
                "ansible_user": settings.ssh_user,
                # accept-new: the first contact with a new instance records its key, later
                # contacts still refuse a changed key.
                "ansible_ssh_common_args": " ".join(ssh_args),
                "swell_stack": outputs.stack,
                "swell_region": outputs.region,
                "swell_private_network_cidr": str(outputs.private_network.cidr),
                "swell_admin_cidrs": cidrs,
                # The catalog the tiers were read from: the base role derives the host firewall
                # from it, as the stack derived the security groups.
                "swell_tier_catalog": str(tier_catalog.path().resolve()),
            },
            "children": children,
        }
    }


def hosts_by_tier(inventory: dict[str, Any]) -> dict[str, list[str]]:
    """Tier -> host names of an inventory built above (for display)."""
    children = inventory["all"]["children"]
    return {tier: list(group["hosts"]) for tier, group in children.items()}
