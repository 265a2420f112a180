"""The stack program: validated config in, OpenStack resources and the stack outputs out.

`main()` is what `pulumi up` runs (through stacks/__main__.py) and what `swell preview` and the tests
run under Pulumi's mocks; the outputs follow ARCHITECTURE.md, "Stack outputs".

The one place that wires: the fixed groups first (their addresses go into the tiers' user_data),
then the tiers, then each fixed group's ports opened to its tiers' security groups (`admit`). A
placed tier's instances (video bridges) get their member (shard) from `stacks/fixed.py`'s `assign`,
fed with the placements of the stack's own last outputs (`previous_outputs`).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import pulumi
import pulumi_openstack as openstack

from stacks import bootstrap, config
from stacks.bootstrap import Bootstrap, Endpoints, render_user_data, secret_vars
from stacks.fixed import FIXED_IMAGE, FixedGroup, FixedGroupArgs, Placement, assign, previous_placements
from stacks.listeners import XMPP_PORT
from stacks.loadbalancer import TlsCertificate, TlsCertificateArgs
from stacks.network import PrivateNetwork, PrivateNetworkArgs
from stacks.rules import TURN_TLS_PORT
from stacks.tier import BalancerSettings, Tier, TierArgs
from swell import chat_store
from swell import tiers as tier_catalog

# The stack output that records each placed tier's placements (tier -> index -> member), read back by
# the next run through a StackReference to the stack itself.
PLACEMENTS = "placements"


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


def build(cfg: config.StackConfig, previous_outputs: pulumi.Input[Any] = None) -> dict[str, Any]:
    """Declare every resource of the stack; return the stack outputs (values or Outputs).

    `previous_outputs` is the stack's own `placements` output of its last update (None for a new
    stack): placed instances keep the member they were created in."""
    catalog = tier_catalog.load()
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
            f"{config.PROJECT}:secrets is not set: chat, video, the shards and the chat store get no bridge "
            "password, TURN secret, XMPP certificate or chat store password, so video bridges cannot join "
            "and the chat store refuses to start (Pulumi.yaml lists the keys)"
        )
    elif cfg.secrets.chat_store_password is None:
        pulumi.log.warn(
            f"{config.PROJECT}:secrets.chatStorePassword is not set: the chat store (Redis) refuses to start "
            "without a password, so the chat servers cannot share rooms"
        )
    fixed: dict[str, FixedGroup] = {}
    fixed_outputs: dict[str, Any] = {}
    for group in catalog.fixed:
        found = _tier_vars(cfg, group.name, {})
        fixed[group.name] = fixed_group = FixedGroup(
            group.name,
            FixedGroupArgs(
                group=group.name,
                stack=cfg.stack,
                flavor=group.flavor,
                image=FIXED_IMAGE,
                count=cfg.fixed_count(group),
                network_id=network.network_id,
                private_cidr=cfg.private_network.cidr,
                admin_cidrs=cfg.admin_cidrs,
                key_pair=key_pair.name,
                user_data=_user_data(_base(cfg, group.name), found),
            ),
        )
        fixed_outputs[group.name] = {"instances": fixed_group.instances, "vars": found}
    # Every fixed group's addresses, by group then index: what the tiers' user_data name.
    addresses: pulumi.Output[dict[str, list[str]]] = pulumi.Output.all(
        **{name: pulumi.Output.all(*g.private_ips) for name, g in fixed.items()}
    ).apply(lambda found: {name: list(ips) for name, ips in found.items()})
    tiers: dict[str, Any] = {}
    tier_vars: dict[str, Any] = {}
    placements: dict[str, Any] = {}
    security_groups: dict[str, pulumi.Output[str]] = {}
    for name, tier in cfg.tiers.items():
        entry = catalog.get(name)
        base = _base(cfg, name)
        found_vars: pulumi.Input[dict[str, object]]
        user_data: pulumi.Input[str]
        if set(bootstrap.tier_var_names(name)) & ADDRESS_VARS:
            found_later = addresses.apply(functools.partial(_tier_vars, cfg, name))
            found_vars, user_data = found_later, found_later.apply(functools.partial(_user_data, base))
        else:
            found_vars = _tier_vars(cfg, name, {})
            user_data = _user_data(base, found_vars)
        # The same variables as a stack output, so `swell configure` gives the roles what ansible-pull does.
        tier_vars[name] = found_vars
        placement = None
        if entry.placed_in is not None:
            members = cfg.fixed_count(catalog.fixed_group(entry.placed_in))
            chosen = pulumi.Output.from_input(previous_outputs).apply(
                functools.partial(_placements, name, tier.existing, members)
            )
            placement = Placement(entry.placed_in, chosen)
            placements[name] = chosen.apply(lambda found: {str(i): m for i, m in found.items()})
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
                placement=placement,
            ),
        )
        tiers[name] = {"instances": component.instances, "load_balancer": component.load_balancer}
        security_groups[name] = component.security_group_id
    # Last: a fixed group's ports open to its tiers' security groups, which exist only now.
    for fixed_group in fixed.values():
        fixed_group.admit(security_groups)
    return {
        "stack": cfg.stack,
        "region": cfg.region,
        "private_network": {"cidr": cfg.private_network.cidr},
        # `swell configure` opens the hosts' firewalls to the same admin networks as the security groups.
        "admin_cidrs": list(cfg.admin_cidrs),
        "tiers": tiers,
        "tier_vars": tier_vars,
        "fixed": fixed_outputs,
        PLACEMENTS: placements,
    }


# The variables whose values are fixed groups' addresses (known once those instances exist).
ADDRESS_VARS = frozenset({"swell_jitsi_shards", "swell_chat_store_address"})


def _base(cfg: config.StackConfig, name: str) -> Bootstrap:
    return Bootstrap(
        tier=name,
        stack=cfg.stack,
        private_network_cidr=cfg.private_network.cidr,
        admin_cidrs=cfg.admin_cidrs,
        playbooks_repo=cfg.playbooks.repo,
        playbooks_ref=cfg.playbooks.ref,
        secrets=secret_vars(name, cfg.secrets),
    )


def _placements(tier: str, indices: tuple[int, ...], members: int, previous: Any) -> dict[int, int]:
    """Each instance's member: the one the last update gave it, else the least populated."""
    found = previous.get(PLACEMENTS) if isinstance(previous, dict) else None
    return assign(indices, members, previous_placements(found, tier), what=f"{config.PROJECT}:tiers.{tier}")


def _tier_vars(cfg: config.StackConfig, tier: str, addresses: dict[str, list[str]]) -> dict[str, object]:
    """Where `tier` finds the others (stacks/bootstrap.py, tier_var_names), from swell:xmpp and the
    fixed groups' addresses (group -> addresses by index; empty before they are known)."""
    shards = addresses.get("shard")
    stores = addresses.get("chat_store")
    endpoints = Endpoints(
        xmpp_domain=cfg.xmpp.domain,
        xmpp_port=XMPP_PORT,
        turn_host=cfg.xmpp.turn_host,
        turn_port=TURN_TLS_PORT,
        jitsi_shards=None if shards is None else {str(i): ip for i, ip in enumerate(shards)},
        chat_store_address=stores[0] if stores else None,
        chat_store_port=chat_store.PORT,
    )
    return bootstrap.tier_vars(tier, endpoints)


def _user_data(base: Bootstrap, tier_vars: dict[str, object]) -> str:
    """The tier's cloud-init document, with where it finds the other tiers."""
    return render_user_data(replace(base, tier_vars=tier_vars))


def own_last_outputs(cfg: config.StackConfig) -> pulumi.Output[Any]:
    """The stack's own outputs as its last update left them, through a StackReference to itself
    (pulumi/pulumi#3722: a stack may read back its earlier outputs this way); empty for a new stack."""
    name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{cfg.stack}"
    return pulumi.StackReference("own-last-outputs", stack_name=name).outputs


def main() -> dict[str, Any]:
    cfg = config.load()
    outputs = build(cfg, own_last_outputs(cfg))
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
