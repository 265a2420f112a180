"""The stack program: validated config in, OpenStack resources and the stack outputs out.

`main()` is what `pulumi up` runs (through stacks/__main__.py) and what `swell preview` and the tests
run under Pulumi's mocks; the outputs follow ARCHITECTURE.md, "Stack outputs".
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_openstack as openstack

from stacks import config
from stacks.bootstrap import Bootstrap, render_user_data, secret_vars
from stacks.loadbalancer import TlsCertificate, TlsCertificateArgs
from stacks.network import PrivateNetwork, PrivateNetworkArgs
from stacks.tier import BalancerSettings, Tier, TierArgs


def tls_container_ref(cfg: config.StackConfig) -> pulumi.Input[str]:
    """The certificate the load balancers terminate TLS with: stored by this stack in the Key Manager
    from its secret config, or a container already there."""
    tls = cfg.tls
    if tls.container_ref is not None:
        return tls.container_ref
    assert tls.certificate is not None and tls.private_key is not None  # checked by config.TlsConfig
    certificate = TlsCertificate(
        "tls",
        TlsCertificateArgs(
            stack=cfg.stack,
            certificate=tls.certificate,
            private_key=tls.private_key.get_secret_value(),  # a Pulumi secret from here on
            chain=tls.chain,
        ),
    )
    return certificate.container_ref


def build(cfg: config.StackConfig) -> dict[str, Any]:
    """Declare every resource of the stack; return the stack outputs (values or Outputs)."""
    network = PrivateNetwork(
        "private",
        PrivateNetworkArgs(
            stack=cfg.stack,
            cidr=cfg.private_network.cidr,
            vlan_id=cfg.private_network.vlan_id,
            external_network=cfg.external_network,
        ),
    )
    key_pair = openstack.compute.Keypair(
        "admins", name=f"swell-{cfg.stack}-admins", public_key=cfg.ssh_public_key
    )
    certificate_ref = tls_container_ref(cfg)
    if cfg.secrets is None:
        # Deployable (the offline previews of the shipped stacks have none), but not useful.
        pulumi.log.warn(
            f"{config.PROJECT}:secrets is not set: chat and video instances get no bridge password, TURN "
            "secret or XMPP certificate, so video bridges cannot join (Pulumi.yaml lists the keys)"
        )
    tiers: dict[str, Any] = {}
    for name, tier in cfg.tiers.items():
        user_data = render_user_data(
            Bootstrap(
                tier=name,
                stack=cfg.stack,
                private_network_cidr=cfg.private_network.cidr,
                admin_cidrs=cfg.admin_cidrs,
                playbooks_repo=cfg.playbooks.repo,
                playbooks_ref=cfg.playbooks.ref,
                secrets=secret_vars(name, cfg.secrets),
            )
        )
        component = Tier(
            name,
            TierArgs(
                tier=name,
                stack=cfg.stack,
                flavor=tier.flavor,
                image=tier.image,
                serving=tier.serving,
                retiring=tier.retiring,
                network_id=network.network_id,
                subnet_id=network.subnet_id,
                private_cidr=cfg.private_network.cidr,
                admin_cidrs=cfg.admin_cidrs,
                external_network=cfg.external_network,
                key_pair=key_pair.name,
                user_data=user_data,
                balancer=(
                    BalancerSettings(
                        tls_container_ref=certificate_ref,
                        public_host=getattr(cfg.tls.hosts, name),
                        monitoring_cidrs=cfg.metrics_allowed_cidrs,
                    )
                    if name in config.BALANCED_TIERS
                    else None
                ),
                public=name in config.PUBLIC_TIERS,
            ),
        )
        tiers[name] = {"instances": component.instances, "load_balancer": component.load_balancer}
    return {
        "stack": cfg.stack,
        "region": cfg.region,
        "private_network": {"cidr": cfg.private_network.cidr},
        # `swell configure` opens the hosts' firewalls to the same admin networks as the security groups.
        "admin_cidrs": list(cfg.admin_cidrs),
        "tiers": tiers,
    }


def main() -> dict[str, Any]:
    outputs = build(config.load())
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
