"""The policies of swell's pack as plain functions: resource properties in, violation messages out.

Properties are keyed as the Pulumi engine sends them (camelCase: `remoteIpPrefix`, `flavorName`), which
is also what the offline engine records, so the same functions run in CrossGuard, in `swell preview`
and in the tests. Only `__main__.py` wraps them into a PolicyPack (building one starts a gRPC server).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stacks import catalog
from swell import tiers

INSTANCE = "openstack:compute/instance:Instance"
SEC_GROUP_RULE = "openstack:networking/secGroupRule:SecGroupRule"
SERVER_GROUP = "openstack:compute/serverGroup:ServerGroup"

ANTI_AFFINITY = ("anti-affinity", "soft-anti-affinity")
# Ports that administer or observe a host: never reachable from the whole internet.
MANAGEMENT_PORTS = {
    22: "SSH",
    3389: "RDP",
    5985: "WinRM",
    5986: "WinRM",
    8080: "Jitsi Videobridge private HTTP interface",
    9090: "Prometheus",
    9100: "node exporter",
}


def _is_world(props: Mapping[str, Any]) -> bool:
    prefix = props.get("remoteIpPrefix")
    if not prefix:
        # Neither a prefix nor a remote group: OpenStack then admits every source.
        return not props.get("remoteGroupId") and not props.get("remoteAddressGroupId")
    return ipaddress.ip_network(str(prefix), strict=False).prefixlen == 0


def world_open_management_port(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No ingress rule opens SSH or another management port to 0.0.0.0/0 or ::/0."""
    if resource_type != SEC_GROUP_RULE or props.get("direction") != "ingress" or not _is_world(props):
        return []
    protocol = props.get("protocol")
    if protocol not in (None, "", "tcp", "udp", "any"):
        return []
    low = int(props.get("portRangeMin") or 1)
    high = int(props.get("portRangeMax") or 65535)
    exposed = [f"{port} ({what})" for port, what in MANAGEMENT_PORTS.items() if low <= port <= high]
    if not exposed:
        return []
    source = props.get("remoteIpPrefix") or "any source"
    return [
        f"ingress from {source} opens management port(s) {', '.join(exposed)}; allow the admin CIDRs only"
    ]


def flavor_allowed(resource_type: str, props: Mapping[str, Any], allowed: Collection[str]) -> list[str]:
    """Every instance uses a flavor from the allow-list (the dated OVHcloud table)."""
    if resource_type != INSTANCE:
        return []
    flavor = props.get("flavorName")
    if flavor in allowed:
        return []
    if not flavor:
        return [
            f"instance has no flavorName (flavorId {props.get('flavorId')!r}); "
            f"name one of: {', '.join(allowed)}"
        ]
    return [f"flavor {flavor!r} is not allowed; allowed: {', '.join(allowed)}"]


def tier_metadata(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every instance carries Nova metadata `tier` naming a tier (openstack_sd and the inventory select
    on it), or `group` naming a fixed group of the catalog (chat store, shards), never both."""
    if resource_type != INSTANCE:
        return []
    metadata = props.get("metadata") or {}
    tier, group = metadata.get("tier"), metadata.get("group")
    catalog = tiers.load()
    if tier in catalog.names and group is None:
        return []
    if group in catalog.fixed_names and tier is None:
        return []
    return [
        f"instance metadata tier is {tier!r} and group {group!r}; expected a tier (one of: "
        f"{', '.join(catalog.names)}) or a fixed group (one of: {', '.join(catalog.fixed_names)})"
    ]


@dataclass(frozen=True)
class InstanceRef:
    """An instance and the server groups its scheduler hints point at (by id, URN, any stable key)."""

    name: str
    groups: tuple[str, ...]


def _policies(value: Any) -> list[str]:
    # pulumi-openstack 5.x takes one policy string; older versions a list.
    return [value] if isinstance(value, str) else list(value or [])


def anti_affinity(instances: Sequence[InstanceRef], server_groups: Mapping[str, Any]) -> list[str]:
    """Every instance is in a server group whose policy is (soft-)anti-affinity.

    `server_groups` maps the same keys as InstanceRef.groups to each group's `policies` property.
    """
    violations = []
    for instance in instances:
        if not instance.groups:
            violations.append(f"instance {instance.name} has no server group in its scheduler hints")
            continue
        policies = [p for key in instance.groups for p in _policies(server_groups.get(key))]
        if not any(p in ANTI_AFFINITY for p in policies):
            violations.append(
                f"instance {instance.name} is in server group(s) with policies {policies}; "
                f"expected one of: {', '.join(ANTI_AFFINITY)}"
            )
    return violations


# pulumi-openstack compute.Instance `powerState` of a warm-pool instance (stacks/tier.py).
SHELVED = "shelved_offloaded"


def within_quota(
    flavors: Sequence[str], quota: catalog.Quota, table: Mapping[str, catalog.Flavor], shelved: int = 0
) -> list[str]:
    """The stack's instances, vCPUs and RAM stay within the project's quota, shelved (warm-pool)
    instances counted in full; `shelved` says how many of `flavors` are shelved, for the message.

    Why in full (docs/ovhcloud.md, "Quota"): a shelved_offloaded server always counts against the
    `instances` quota. Against `cores` and `ram` it counts when Nova counts usage from its cell
    databases, the default (`[quota] count_usage_from_placement = False`); counted from placement
    (that option, or the unified limits driver) it holds no allocation and does not, but unshelving
    it is then refused unless the project has room for its cores and RAM. Either way the pool needs
    that room to be of use. Source: OpenStack Nova, "Manage quotas", section "Quota usage from
    placement", https://docs.openstack.org/nova/latest/admin/quotas.html#quota-usage-from-placement
    """
    known = [table[f] for f in flavors if f in table]
    asked = {
        "instances": len(flavors),
        "vCPUs": sum(f.vcpus for f in known),
        "GB of RAM": sum(f.ram_gb for f in known),
    }
    limits = {"instances": quota.instances, "vCPUs": quota.vcpus, "GB of RAM": quota.ram_gb}
    counted = (
        f" (including {shelved} shelved warm-pool instances, counted in full: unshelving needs the room)"
        if shelved
        else ""
    )
    return [
        f"the stack asks for {asked[what]} {what}{counted}, above the {limits[what]} of quota {quota.name!r}"
        for what in asked
        if asked[what] > limits[what]
    ]


def quota_from_config(config: Mapping[str, Any], cat: catalog.Catalog) -> catalog.Quota:
    """The policy's `quota` setting: an OVHcloud quota tier name, or {instances, vcpus, ramGb}."""
    value = config.get("quota", cat.quota_tiers[-1].name)
    if isinstance(value, str):
        try:
            return cat.quota(value)
        except KeyError:
            names = ", ".join(q.name for q in cat.quota_tiers)
            raise ValueError(f"policy config quota: unknown tier {value!r}; allowed: {names}") from None
    return catalog.Quota("custom", int(value["instances"]), int(value["vcpus"]), int(value["ramGb"]))


def check_all(
    resources: Sequence[tuple[str, Mapping[str, Any], str]], quota: catalog.Quota, cat: catalog.Catalog
) -> dict[str, list[str]]:
    """Every policy over declared resources given as (type, properties, id): what `swell preview`
    and the tests use. Instances reach their server group by the id in their scheduler hints."""
    by_policy: dict[str, list[str]] = {
        "no-management-port-open-to-the-world": [],
        "flavor-in-allow-list": [],
        "instance-has-tier-metadata": [],
        "instance-in-anti-affinity-group": [],
        "counts-within-quota": [],
    }
    instances = [(props, rid) for type_, props, rid in resources if type_ == INSTANCE]
    for type_, props, _ in resources:
        by_policy["no-management-port-open-to-the-world"] += world_open_management_port(type_, props)
        by_policy["flavor-in-allow-list"] += flavor_allowed(type_, props, cat.flavors)
        by_policy["instance-has-tier-metadata"] += tier_metadata(type_, props)
    groups = {rid: props.get("policies") for type_, props, rid in resources if type_ == SERVER_GROUP}
    refs = [
        InstanceRef(
            str(props.get("name") or rid),
            tuple(str(h["group"]) for h in props.get("schedulerHints") or [] if h.get("group")),
        )
        for props, rid in instances
    ]
    by_policy["instance-in-anti-affinity-group"] += anti_affinity(refs, groups)
    by_policy["counts-within-quota"] += within_quota(
        [str(props.get("flavorName")) for props, _ in instances],
        quota,
        cat.flavors,
        shelved=sum(1 for props, _ in instances if props.get("powerState") == SHELVED),
    )
    return by_policy
