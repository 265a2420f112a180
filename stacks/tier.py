"""The tier component: a security group, a soft-anti-affinity server group, one instance per index
(serving, retiring, warm and filling) and, for a balanced tier (the catalog's `balancer`), an Octavia
load balancer with one member per serving or retiring instance.

Scaling is configuration alone: instance i is named `<tier>-<i>` and its inputs depend on the tier
and on i only, never on the count or on the other indices, so the indices that appear or disappear
are exactly the ones created or deleted and the others are never replaced. Which indices exist is
data (`serving` and `retiring`, from `swell:tiers.<tier>.instances` and `.retiring`): a scale-down
first moves the chosen indices to `retiring` (their member gets weight 0: no new connections, the
open ones kept), then removes exactly those once drained, whatever their place in the order.

The warm pool (`warm` and `filling`, docs/stacks.md, "Warm pool") is the same instances in other
states: a warm index is declared with `power_state="shelved_offloaded"` (Nova shelves it: CPU and RAM
freed, the configured disk kept), a filling one active while it is configured, and neither has a load
balancer member. Only `power_state` and membership depend on the set an index is in; every other
input depends on the tier and the index alone, so moving an index between sets is an update in place
(pulumi-openstack's `power_state` is not a replacing property: the provider shelves or unshelves the
server), never a replacement. Nothing else may change with the set either: Nova refuses most
updates (metadata, for one) of a shelved_offloaded server, and the provider applies them after the
shelve (terraform-provider-openstack issue #1749).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_openstack as openstack

from stacks import listeners
from stacks.loadbalancer import LoadBalancer, LoadBalancerArgs
from stacks.rules import ingress_rules

if TYPE_CHECKING:
    from stacks.fixed import Placement

# Soft anti-affinity: hard anti-affinity fails to schedule once members outnumber hypervisors
# (docs/ovhcloud.md), which is exactly when a surge needs more instances.
SERVER_GROUP_POLICY = "soft-anti-affinity"

# pulumi-openstack compute.Instance `power_state` values (the provider also accepts shutoff, paused).
# "active" is the provider's default (terraform-provider-openstack compute_instance_v2 schema:
# Optional, Default "active", not ForceNew), so instances deployed before it was declared see no diff.
ACTIVE, SHELVED = "active", "shelved_offloaded"
# Stack output `pool` of an instance entry: "" serving or retiring, else the pool state it is in.
POOL_NONE, POOL_WARM, POOL_FILLING = "", "warm", "filling"


@dataclass(frozen=True)
class TierArgs:
    tier: str
    stack: str
    flavor: str
    image: str
    # Indices of the instances that serve, and of those being drained (disjoint).
    serving: tuple[int, ...]
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    private_cidr: str
    admin_cidrs: tuple[str, ...]
    external_network: str
    key_pair: pulumi.Input[str]
    # The cloud-init document (stacks/bootstrap.py); it may carry secrets, so it is always sent as a
    # Pulumi secret. An Output for video: it names the chat load balancer's VIP.
    user_data: pulumi.Input[str]
    # Balanced tiers sit behind Octavia (None otherwise: video bridges take public addresses on Ext-Net).
    balancer: BalancerSettings | None
    public: bool
    retiring: tuple[int, ...] = ()
    # The warm pool: shelved instances, and instances being configured for it (no members).
    warm: tuple[int, ...] = ()
    filling: tuple[int, ...] = ()
    # The fixed-group member each instance belongs to (video: its shard), in its Nova metadata under
    # the group's name; chosen once at creation (stacks/fixed.py, assign), never changed after.
    placement: Placement | None = None


@dataclass(frozen=True)
class BalancerSettings:
    """What a balanced tier's load balancer takes from the stack: the certificate, the tier's
    public name, and who may scrape its metrics (the rest is the tier's spec, stacks/listeners.py)."""

    tls_container_ref: pulumi.Input[str]
    public_host: str
    monitoring_cidrs: tuple[str, ...]


def _private_ip(networks: Sequence[Mapping[str, Any]]) -> str:
    # The private network is always the last one attached; public tiers have Ext-Net first.
    return str(networks[-1]["fixed_ip_v4"])


def _addresses(networks: Sequence[Mapping[str, Any]], public: bool) -> dict[str, str | None]:
    # Networks arrive as InstanceNetwork (a dict keyed by Python names) or, nested in Output.all,
    # as plain dicts with the same keys: index them, don't use attributes.
    outside = networks[0] if public else {}
    return {
        "private_ip": _private_ip(networks),
        "public_ipv4": outside.get("fixed_ip_v4") or None,
        "public_ipv6": outside.get("fixed_ip_v6") or None,
    }


def _entry(
    name: str, index: int, retiring: bool, pool: str, public: bool, values: Sequence[Any]
) -> dict[str, str | int | bool | None]:
    networks, created = values
    return {
        "name": name,
        "index": index,
        "retiring": retiring,
        "pool": pool,
        "created": created,
        **_addresses(networks, public),
    }


def _member(index: int, members: Mapping[int, int]) -> str:
    return str(members[index])


class Tier(pulumi.ComponentResource):
    instances: pulumi.Output[list[dict[str, str | None]]]
    load_balancer: pulumi.Output[dict[str, str | int]] | None
    # The load balancer's private VIP (None without one).
    vip_address: pulumi.Output[str] | None
    # Fixed groups open their ports to this security group (stacks/fixed.py, FixedGroup.admit).
    security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: TierArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("swell:openstack:Tier", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        public = args.public
        group = openstack.networking.SecGroup(
            f"{name}-secgroup",
            name=f"swell-{args.stack}-{args.tier}",
            description=f"swell {args.tier} instances (ARCHITECTURE.md, Ports)",
            opts=child,
        )
        self.security_group_id = group.id
        for rule in ingress_rules(args.tier, args.admin_cidrs, args.private_cidr):
            openstack.networking.SecGroupRule(
                f"{name}-in-{rule.slug}",
                security_group_id=group.id,
                direction="ingress",
                ethertype=rule.ethertype,
                protocol=rule.protocol,
                port_range_min=rule.port,
                port_range_max=rule.port,
                remote_ip_prefix=rule.remote,
                description=rule.description,
                opts=child,
            )
        server_group = openstack.compute.ServerGroup(
            f"{name}-servers",
            name=f"swell-{args.stack}-{args.tier}",
            policies=SERVER_GROUP_POLICY,
            opts=child,
        )
        networks = [openstack.compute.InstanceNetworkArgs(uuid=args.network_id)]
        if public:
            # Ext-Net gives the bridge a public IPv4 and IPv6 (docs/ovhcloud.md).
            networks.insert(0, openstack.compute.InstanceNetworkArgs(name=args.external_network))
        # A new user_data would replace the instance (Nova cannot change it in place): a new playbooks
        # ref must reach running hosts through `swell configure`, not by rebuilding the fleet.
        # user_data carries the tier's service secrets: a secret input is encrypted in the state and
        # shown as [secret] by `pulumi preview`; additional_secret_outputs keeps the provider's
        # echo of it secret too. Every tier's is secret, so a secret added later cannot leak.
        # An instance's placement (metadata `shard`) is chosen once: a bridge never changes shard.
        ignored = ["userData"] + ([f"metadata.{args.placement.key}"] if args.placement else [])
        instance_opts = pulumi.ResourceOptions(
            parent=self, ignore_changes=ignored, additional_secret_outputs=["userData"]
        )
        user_data = pulumi.Output.secret(args.user_data)
        retiring = set(args.retiring)
        pool = {**dict.fromkeys(args.filling, POOL_FILLING), **dict.fromkeys(args.warm, POOL_WARM)}
        indices = sorted({*args.serving, *retiring, *pool})
        instances = []
        for index in indices:
            # A filling instance runs (it is being configured; it is shelved once configured, so an
            # unshelved one serves without running Ansible again). Nova's shelve keeps the disk.
            power_state = SHELVED if pool.get(index) == POOL_WARM else ACTIVE
            metadata: dict[str, pulumi.Input[str]] = {
                "tier": args.tier,
                "stack": args.stack,
                "index": str(index),
            }
            if args.placement is not None:
                metadata[args.placement.key] = args.placement.members.apply(functools.partial(_member, index))
            instances.append(
                openstack.compute.Instance(
                    f"{name}-{index}",
                    name=f"swell-{args.stack}-{args.tier}-{index}",
                    flavor_name=args.flavor,
                    image_name=args.image,
                    key_pair=args.key_pair,
                    security_groups=[group.name],
                    scheduler_hints=[openstack.compute.InstanceSchedulerHintArgs(group=server_group.id)],
                    # Prometheus openstack_sd selects on Nova metadata `tier` (not on tags), and
                    # turns `shard` into a label (__meta_openstack_tag_shard).
                    metadata=metadata,
                    networks=networks,
                    user_data=user_data,
                    power_state=power_state,
                    opts=instance_opts,
                )
            )
        # The Nova names are known here; `created` (Nova's creation time) is what the autoscaler's
        # choice of retirees reads: OVHcloud bills each commenced hour from it.
        entries = [
            pulumi.Output.all(i.networks, i.created).apply(
                functools.partial(
                    _entry,
                    f"swell-{args.stack}-{args.tier}-{index}",
                    index,
                    index in retiring,
                    pool.get(index, POOL_NONE),
                    public,
                )
            )
            for index, i in zip(indices, instances, strict=True)
        ]
        self.instances = pulumi.Output.all(*entries).apply(list) if entries else pulumi.Output.from_input([])
        self.load_balancer = None
        self.vip_address = None
        if args.balancer is not None:
            lb = LoadBalancer(
                f"{name}-lb",
                LoadBalancerArgs(
                    stack=args.stack,
                    tier=args.tier,
                    subnet_id=args.subnet_id,
                    external_network=args.external_network,
                    # Serving and retiring instances only: a warm one is shelved, a filling one
                    # not configured yet; activation adds its member in the same update.
                    members=[
                        (index, i.networks.apply(_private_ip), index in retiring)
                        for index, i in zip(indices, instances, strict=True)
                        if index not in pool
                    ],
                    spec=listeners.spec(args.tier),
                    tls_container_ref=args.balancer.tls_container_ref,
                    public_host=args.balancer.public_host,
                    monitoring_cidrs=args.balancer.monitoring_cidrs,
                    private_cidrs=(args.private_cidr,),
                ),
                opts=child,
            )
            self.vip_address = lb.vip_address
            port = lb.prometheus_port
            self.load_balancer = pulumi.Output.all(lb.vip_address, lb.public_ip).apply(
                lambda v: {"vip_address": v[0], "public_ip": v[1], "prometheus_port": port}
            )
        self.register_outputs({"instances": self.instances, "load_balancer": self.load_balancer})
