"""The private network component: a vRack network, its subnet, and a router whose gateway is Ext-Net.

OVHcloud: floating IPs (the load balancers' public addresses) need a private network and a router with
Ext-Net as gateway; private networks sit on the vRack (docs/ovhcloud.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack


@dataclass(frozen=True)
class PrivateNetworkArgs:
    stack: str
    cidr: str
    vlan_id: int
    external_network: str


class PrivateNetwork(pulumi.ComponentResource):
    network_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    router_id: pulumi.Output[str]

    def __init__(self, name: str, args: PrivateNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("swell:openstack:PrivateNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.cidr = args.cidr
        network = openstack.networking.Network(
            f"{name}-network",
            name=f"swell-{args.stack}",
            admin_state_up=True,
            segments=[
                openstack.networking.NetworkSegmentArgs(network_type="vrack", segmentation_id=args.vlan_id)
            ],
            opts=child,
        )
        net = ipaddress.ip_network(args.cidr)
        subnet = openstack.networking.Subnet(
            f"{name}-subnet",
            name=f"swell-{args.stack}",
            network_id=network.id,
            cidr=args.cidr,
            ip_version=4,
            enable_dhcp=True,
            # The first address is the router's; DHCP hands out the rest.
            gateway_ip=str(net[1]),
            allocation_pools=[
                openstack.networking.SubnetAllocationPoolArgs(start=str(net[2]), end=str(net[-2]))
            ],
            opts=child,
        )
        external = openstack.networking.get_network_output(
            name=args.external_network, opts=pulumi.InvokeOptions(parent=self)
        )
        router = openstack.networking.Router(
            f"{name}-router",
            name=f"swell-{args.stack}",
            admin_state_up=True,
            external_network_id=external.id,
            opts=child,
        )
        openstack.networking.RouterInterface(
            f"{name}-router-interface", router_id=router.id, subnet_id=subnet.id, opts=child
        )
        self.network_id = network.id
        self.subnet_id = subnet.id
        self.router_id = router.id
        self.register_outputs({"network_id": network.id, "subnet_id": subnet.id, "router_id": router.id})
