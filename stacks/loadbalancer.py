"""The Octavia load balancer component for the web and chat tiers.

One TCP listener on 443 passes TLS through to nginx on each member (certificates stay on the hosts,
as the playbooks manage them); the HTTP health monitor asks each member's port 80 for GET /healthz
(ARCHITECTURE.md, "Ports"). The VIP is on the private subnet; a floating IP from Ext-Net gives it a
public address (pulumi-openstack 5.x: networking.FloatingIp + networking.FloatingIpAssociate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

HTTPS_PORT = 443
HEALTH_PORT = 80
HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class LoadBalancerArgs:
    stack: str
    tier: str
    subnet_id: pulumi.Input[str]
    external_network: str
    # (instance index, private address): members are named by index so scaling keeps existing ones.
    members: Sequence[tuple[int, pulumi.Input[str]]]
    # LEAST_CONNECTIONS suits long-lived connections; the Tier passes SOURCE_IP for chat.
    lb_method: str = "LEAST_CONNECTIONS"


class LoadBalancer(pulumi.ComponentResource):
    vip_address: pulumi.Output[str]
    public_ip: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("swell:openstack:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        lb = openstack.loadbalancer.LoadBalancer(
            f"{name}", name=f"swell-{args.stack}-{args.tier}", vip_subnet_id=args.subnet_id, opts=child
        )
        listener = openstack.loadbalancer.Listener(
            f"{name}-https",
            name=f"swell-{args.stack}-{args.tier}-https",
            loadbalancer_id=lb.id,
            protocol="TCP",
            protocol_port=HTTPS_PORT,
            opts=child,
        )
        pool = openstack.loadbalancer.Pool(
            f"{name}-pool",
            name=f"swell-{args.stack}-{args.tier}",
            listener_id=listener.id,
            protocol="TCP",
            lb_method=args.lb_method,
            opts=child,
        )
        openstack.loadbalancer.Monitor(
            f"{name}-healthz",
            name=f"swell-{args.stack}-{args.tier}-healthz",
            pool_id=pool.id,
            type="HTTP",
            http_method="GET",
            url_path=HEALTH_PATH,
            expected_codes="200",
            delay=5,
            timeout=3,
            max_retries=3,
            max_retries_down=3,
            opts=child,
        )
        for index, address in args.members:
            openstack.loadbalancer.Member(
                f"{name}-member-{index}",
                pool_id=pool.id,
                address=address,
                protocol_port=HTTPS_PORT,
                monitor_port=HEALTH_PORT,
                subnet_id=args.subnet_id,
                opts=child,
            )
        floating_ip = openstack.networking.FloatingIp(
            f"{name}-public-ip",
            pool=args.external_network,
            description=f"swell {args.stack} {args.tier} load balancer",
            opts=child,
        )
        openstack.networking.FloatingIpAssociate(
            f"{name}-public-ip-associate", floating_ip=floating_ip.address, port_id=lb.vip_port_id, opts=child
        )
        self.vip_address = lb.vip_address
        self.public_ip = floating_ip.address
        self.register_outputs({"vip_address": lb.vip_address, "public_ip": floating_ip.address})
