"""The stack program: validated config in, OpenStack resources and the stack outputs out.

`main()` is what `pulumi up` runs (through stacks/__main__.py) and what `swell preview` and the tests
run under Pulumi's mocks; the outputs follow ARCHITECTURE.md, "Stack outputs".
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import pulumi
import pulumi_openstack as openstack

from stacks import bootstrap, config, listeners
from stacks.bootstrap import Bootstrap, Endpoints, render_user_data, secret_vars
from stacks.listeners import XMPP_PORT
from stacks.loadbalancer import TlsCertificate, TlsCertificateArgs
from stacks.network import PrivateNetwork, PrivateNetworkArgs
from stacks.rules import TURN_TLS_PORT
from stacks.tier import BalancerSettings, Tier, TierArgs
from swell import tiers as tier_catalog


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
    # The VIP of the load balancer with the `xmpp` listener (chat's), known once that tier is declared
    # (the catalog declares it before the tiers that need it): their user_data names it as the
    # bridges' XMPP address.
    xmpp_vip: pulumi.Output[str] | None = None
    tier_vars: dict[str, Any] = {}
    for name, tier in cfg.tiers.items():
        entry = tier_catalog.load().get(name)
        base = Bootstrap(
            tier=name,
            stack=cfg.stack,
            private_network_cidr=cfg.private_network.cidr,
            admin_cidrs=cfg.admin_cidrs,
            playbooks_repo=cfg.playbooks.repo,
            playbooks_ref=cfg.playbooks.ref,
            secrets=secret_vars(name, cfg.secrets),
        )
        found: pulumi.Input[dict[str, object]]
        user_data: pulumi.Input[str]
        if "swell_xmpp_address" in bootstrap.tier_var_names(name):
            if xmpp_vip is None:
                raise RuntimeError(f"{name}'s user_data needs the XMPP load balancer, declared before it")
            found_later = xmpp_vip.apply(functools.partial(_tier_vars, cfg, name))
            found, user_data = found_later, found_later.apply(functools.partial(_user_data, base))
        else:
            found = _tier_vars(cfg, name, None)
            user_data = _user_data(base, found)
        # The same variables as a stack output, so `swell configure` gives the roles what ansible-pull does.
        tier_vars[name] = found
        component = Tier(
            name,
            TierArgs(
                tier=name,
                stack=cfg.stack,
                flavor=tier.flavor,
                image=tier.image,
                serving=tier.serving,
                retiring=tier.retiring,
                warm=tier.warm,
                filling=tier.filling,
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
                        public_host=cfg.tls.hosts[name],
                        monitoring_cidrs=cfg.metrics_allowed_cidrs,
                    )
                    if entry.balanced
                    else None
                ),
                public=entry.public,
            ),
        )
        tiers[name] = {"instances": component.instances, "load_balancer": component.load_balancer}
        if entry.balancer is not None and listeners.XMPP.name in entry.balancer.extra_listeners:
            xmpp_vip = component.vip_address
    return {
        "stack": cfg.stack,
        "region": cfg.region,
        "private_network": {"cidr": cfg.private_network.cidr},
        # `swell configure` opens the hosts' firewalls to the same admin networks as the security groups.
        "admin_cidrs": list(cfg.admin_cidrs),
        "tiers": tiers,
        "tier_vars": tier_vars,
    }


def _tier_vars(cfg: config.StackConfig, tier: str, xmpp_address: str | None) -> dict[str, object]:
    """Where `tier` finds the others (stacks/bootstrap.py, tier_var_names), from swell:xmpp and the VIP."""
    endpoints = Endpoints(
        xmpp_domain=cfg.xmpp.domain,
        xmpp_address=xmpp_address,
        xmpp_port=XMPP_PORT,
        turn_host=cfg.xmpp.turn_host,
        turn_port=TURN_TLS_PORT,
    )
    return bootstrap.tier_vars(tier, endpoints)


def _user_data(base: Bootstrap, tier_vars: dict[str, object]) -> str:
    """The tier's cloud-init document, with where it finds the other tiers."""
    return render_user_data(replace(base, tier_vars=tier_vars))


def main() -> dict[str, Any]:
    outputs = build(config.load())
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
