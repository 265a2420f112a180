"""Fixed groups: the instances the tiers need that the autoscaler never scales (the tier catalog's
`fixed` section: chat's Redis store, Jitsi's signalling shards), and where a placed tier's instances
belong (a video bridge's shard).

`FixedGroup` is a security group (SSH from the admin networks, exporters from the private network,
and each of the group's ports open to one tier's security group only, added by `admit` once that
tier exists), a soft-anti-affinity server group and one instance per index, `<group>-<i>`; its
count is one or a stack config key (`swell:shards`). As for tiers, an instance's inputs depend on
the group and its index only, and later user_data changes are ignored (Nova would replace it).

Placement (`assign`): a bridge registers with one shard's Prosody (the brewery MUC); which one is
chosen once, when the bridge is created, and kept in its Nova metadata (`shard`), which the Tier
ignores changes of afterwards. The program reads the placements it made before from the stack's own
last outputs (`placements`, through a StackReference to the stack itself, pulumi/pulumi#3722),
keeps them, and puts each new bridge on the shard with the fewest bridges. Why not `index modulo
shard count`: adding a shard would give most existing indices another shard, so the program's view
(and any bridge replaced later) would move bridges between shards, and the new shard would get only
its modulo share of the new bridges instead of filling first.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_openstack as openstack

from stacks.rules import Rule, fixed_ingress_rules
from stacks.tier import SERVER_GROUP_POLICY
from swell import tiers as tier_catalog

# OVHcloud's public image name: the playbooks target Debian 12 (as the tiers' default image).
FIXED_IMAGE = "Debian 12"


class PlacementError(ValueError):
    """An instance belongs to a fixed-group member that the configuration no longer has."""


def assign(
    indices: Sequence[int], members: int, previous: Mapping[int, int], what: str = ""
) -> dict[int, int]:
    """Each index's member (0..members-1): the one it had (`previous`), else, in index order, the
    member with the fewest instances so far (the lowest on a tie). Pure; the same inputs always give
    the same answer, and no index that had a member gets another."""
    if members < 1:
        raise ValueError(f"{what}: at least one member is needed, got {members}")
    kept = {i: previous[i] for i in indices if i in previous}
    orphans = sorted(i for i, m in kept.items() if not 0 <= m < members)
    if orphans:
        raise PlacementError(
            f"{what}: instance(s) {orphans} belong to member(s) {sorted({kept[i] for i in orphans})}, "
            f"beyond the {members} configured; remove those instances (drain them) before the member"
        )
    load = Counter(kept.values())
    out = dict(kept)
    for index in sorted(set(indices) - kept.keys()):
        member = min(range(members), key=lambda m: (load[m], m))
        out[index] = member
        load[member] += 1
    return {i: out[i] for i in sorted(out)}


def previous_placements(outputs: Any, tier: str) -> dict[int, int]:
    """The placements of `tier` in the stack's last outputs (`placements`: tier -> index -> member),
    as JSON keeps them (string keys); nothing for a stack that never ran or predates placements."""
    if not isinstance(outputs, Mapping):
        return {}
    found = outputs.get(tier) or {}
    return {int(index): int(member) for index, member in found.items()}


@dataclass(frozen=True)
class Placement:
    """Where a placed tier's instances belong: the Nova metadata key (the fixed group's name) and,
    per index, the member (an Output: it comes from the stack's last outputs)."""

    key: str
    members: pulumi.Output[dict[int, int]]


@dataclass(frozen=True)
class FixedGroupArgs:
    group: str
    stack: str
    flavor: str
    image: str
    count: int
    network_id: pulumi.Input[str]
    private_cidr: str
    admin_cidrs: tuple[str, ...]
    key_pair: pulumi.Input[str]
    # The cloud-init document (stacks/bootstrap.py), always sent as a Pulumi secret.
    user_data: pulumi.Input[str]


def _entry(name: str, index: int, networks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"name": name, "index": index, "private_ip": str(networks[-1]["fixed_ip_v4"])}


class FixedGroup(pulumi.ComponentResource):
    instances: pulumi.Output[list[dict[str, Any]]]
    # Each member's private address, by index: where the tiers reach it.
    private_ips: list[pulumi.Output[str]]
    security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: FixedGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("swell:openstack:FixedGroup", name, None, opts)
        self._name = name
        self._group = tier_catalog.load().fixed_group(args.group)
        child = pulumi.ResourceOptions(parent=self)
        slug = self._group.slug
        group = openstack.networking.SecGroup(
            f"{name}-secgroup",
            name=f"swell-{args.stack}-{slug}",
            description=f"swell {args.group} (fixed group; ARCHITECTURE.md, Ports)",
            opts=child,
        )
        self.security_group_id = group.id
        for rule in fixed_ingress_rules(args.group, args.admin_cidrs, args.private_cidr):
            self._rule(rule.slug, rule, remote_ip_prefix=rule.remote)
        server_group = openstack.compute.ServerGroup(
            f"{name}-servers", name=f"swell-{args.stack}-{slug}", policies=SERVER_GROUP_POLICY, opts=child
        )
        # As for tiers: a new user_data would replace the instance; it carries secrets.
        instance_opts = pulumi.ResourceOptions(
            parent=self, ignore_changes=["userData"], additional_secret_outputs=["userData"]
        )
        user_data = pulumi.Output.secret(args.user_data)
        instances = [
            openstack.compute.Instance(
                f"{name}-{index}",
                name=f"swell-{args.stack}-{slug}-{index}",
                flavor_name=args.flavor,
                image_name=args.image,
                key_pair=args.key_pair,
                security_groups=[group.name],
                scheduler_hints=[openstack.compute.InstanceSchedulerHintArgs(group=server_group.id)],
                # `group`, not `tier`: nothing that counts a tier's instances (scrape jobs, the policy
                # pack's tiers, the inventory's tier groups) takes a fixed group for one.
                metadata={"group": args.group, "stack": args.stack, "index": str(index)},
                networks=[openstack.compute.InstanceNetworkArgs(uuid=args.network_id)],
                user_data=user_data,
                opts=instance_opts,
            )
            for index in range(args.count)
        ]
        self.private_ips = [i.networks.apply(lambda n: str(n[-1]["fixed_ip_v4"])) for i in instances]
        entries = [
            i.networks.apply(functools.partial(_entry, f"swell-{args.stack}-{slug}-{index}", index))
            for index, i in enumerate(instances)
        ]
        self.instances = pulumi.Output.all(*entries).apply(list) if entries else pulumi.Output.from_input([])
        self.register_outputs({"instances": self.instances})

    def _rule(self, slug: str, rule: Rule, **remote: pulumi.Input[str]) -> None:
        openstack.networking.SecGroupRule(
            f"{self._name}-in-{slug}",
            security_group_id=self.security_group_id,
            direction="ingress",
            ethertype=rule.ethertype if "remote_ip_prefix" in remote else "IPv4",
            protocol=rule.protocol,
            port_range_min=rule.port,
            port_range_max=rule.port,
            description=rule.description,
            opts=pulumi.ResourceOptions(parent=self),
            **remote,
        )

    def admit(self, security_groups: Mapping[str, pulumi.Input[str]]) -> None:
        """Open each of the group's ports to its tier's security group (`from_tier`) only. Called
        once the tiers exist: their user_data needs this group's addresses first."""
        for port in self._group.ports:
            if port.from_tier not in security_groups:
                raise KeyError(f"fixed {self._group.name}: no security group for tier {port.from_tier!r}")
            rule = Rule(port.protocol, port.port, "0.0.0.0/0", port.description)
            self._rule(
                f"{port.protocol}-{port.port}-{port.from_tier}",
                rule,
                remote_group_id=security_groups[port.from_tier],
            )
