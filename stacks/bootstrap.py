"""Cloud-init user_data that brings a fresh instance to its role without a human.

It follows ARCHITECTURE.md, "Instance bootstrap": write /etc/swell/ansible-vars.json (and, for the
tiers and fixed groups that need them, the service secrets in /etc/swell/secrets.json, root-only),
install ansible and git from Debian, then run ansible-pull on playbooks/pull.yml at the configured
commit. The text depends only on the tier (or fixed group) and on stack-wide settings, never on the
count or the instance's index, so scaling never changes the user_data of an instance that already
exists; what differs per instance (a bridge's shard) is in its Nova metadata instead
(stacks/fixed.py), which the role reads from the metadata service.

The vars file also says where each tier finds the others (`tier_vars`): chat gets the chat store's
private address and port (Redis); video gets the XMPP domain, every shard's Prosody private address
(`swell_jitsi_shards`, shard -> address: the role keeps its own shard's, named in the instance
metadata), the XMPP port and the TURN host and port its coturn serves; a shard gets the domain and
the TURN host and port its Prosody advertises.

The document carries secrets for chat, video, the shards and the chat store: the Tier and FixedGroup
components pass it to Nova as a Pulumi secret (encrypted in the state, `[secret]` in previews);
ARCHITECTURE.md, "Secrets", says who can still read it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from stacks.config import SecretsConfig
from swell import tiers

VARS_FILE = "/etc/swell/ansible-vars.json"
SECRETS_FILE = "/etc/swell/secrets.json"
CHECKOUT_DIR = "/opt/swell"
PLAYBOOK = "playbooks/pull.yml"


def _bootstrap(name: str) -> tiers.Bootstrap:
    """The catalog's bootstrap entry of a tier or of a fixed group."""
    catalog = tiers.load()
    if name in catalog.fixed_names:
        return catalog.fixed_group(name).bootstrap
    return catalog.get(name).bootstrap


def tier_secrets(tier: str) -> Mapping[str, str]:
    """Which role variables `tier` (or a fixed group) gets from `swell:secrets` (role variable ->
    SecretsConfig field), from the tier catalog: least privilege, only what its role uses (video gets
    the XMPP certificate as its trust anchor for Prosody, never the key)."""
    return dict(_bootstrap(tier).secrets)


def tier_var_names(tier: str) -> tuple[str, ...]:
    """Which stack-wide, non-secret variables `tier` gets in its vars file (ARCHITECTURE.md, "Instance
    bootstrap"), from the tier catalog; the roles' defaults read them (jitsi_shard_xmpp_domain from
    swell_xmpp_domain, ...)."""
    return tuple(_bootstrap(tier).vars)


@dataclass(frozen=True)
class Endpoints:
    """Where the tiers find each other: the shards' Prosody for the bridges, the chat store for the
    chat servers, TURN for the clients. Addresses are None until known (the program resolves the
    fixed groups' addresses before rendering the user_data that names them)."""

    xmpp_domain: str
    xmpp_port: int
    turn_host: str
    turn_port: int
    # Each shard's Prosody private address, by shard number as a string (JSON object keys).
    jitsi_shards: Mapping[str, str] | None = None
    chat_store_address: str | None = None
    chat_store_port: int | None = None


def tier_vars(tier: str, endpoints: Endpoints) -> dict[str, object]:
    """The variables of `tier` (`tier_var_names`), with their values."""
    every: dict[str, object] = {
        "swell_xmpp_domain": endpoints.xmpp_domain,
        "swell_xmpp_port": endpoints.xmpp_port,
        "swell_jitsi_shards": None if endpoints.jitsi_shards is None else dict(endpoints.jitsi_shards),
        "swell_turn_host": endpoints.turn_host,
        "swell_turn_port": endpoints.turn_port,
        "swell_chat_store_address": endpoints.chat_store_address,
        "swell_chat_store_port": endpoints.chat_store_port,
    }
    wanted = {name: every[name] for name in tier_var_names(tier)}
    missing = [name for name, value in wanted.items() if value is None]
    if missing:
        raise ValueError(f"{tier}: no value for {', '.join(missing)}")
    return wanted


def secret_vars(tier: str, secrets: SecretsConfig | None) -> dict[str, str]:
    """The role variables of `tier` that come from `swell:secrets` (empty without secrets)."""
    if secrets is None:
        return {}
    found = {var: getattr(secrets, name) for var, name in tier_secrets(tier).items()}
    # An optional secret left unset (chatStorePassword) is left out: the role refuses to run without it.
    return {var: value.get_secret_value() for var, value in found.items() if value is not None}


@dataclass(frozen=True)
class Bootstrap:
    tier: str
    stack: str
    private_network_cidr: str
    admin_cidrs: Sequence[str]
    playbooks_repo: str
    playbooks_ref: str
    # Role variables from `swell:secrets` for this tier (secret_vars); written apart, root-only.
    secrets: Mapping[str, str] = field(default_factory=dict)
    # Where this tier finds the others (tier_vars): in the vars file, nothing secret.
    tier_vars: Mapping[str, object] = field(default_factory=dict)

    def __repr__(self) -> str:
        # The dataclass repr would print the secrets; an error or a debug line must not.
        return f"Bootstrap(tier={self.tier!r}, stack={self.stack!r}, secrets={sorted(self.secrets)})"


def ansible_vars(b: Bootstrap) -> dict[str, object]:
    base: dict[str, object] = {
        "swell_tier": b.tier,
        "swell_stack": b.stack,
        "swell_private_network_cidr": b.private_network_cidr,
        "swell_admin_cidrs": list(b.admin_cidrs),
    }
    clash = sorted(base.keys() & b.tier_vars.keys())
    if clash:
        raise ValueError(f"tier_vars may not redefine {', '.join(clash)}")
    return base | dict(b.tier_vars)


def ansible_pull_command(b: Bootstrap) -> list[str]:
    # An argv list, not a shell string: cloud-init then runs it without a shell, so no quoting issues.
    argv = [
        "ansible-pull",
        "--url",
        b.playbooks_repo,
        "--checkout",
        b.playbooks_ref,
        # A full clone: git fetches an arbitrary commit (the pinned ref) only that way; a shallow
        # clone has just the default branch's tip, and the git module would ignore the depth anyway.
        "--full",
        "--directory",
        CHECKOUT_DIR,
        "--inventory",
        "localhost,",
        "--extra-vars",
        f"@{VARS_FILE}",
    ]
    if b.secrets:
        # The secrets go by file name only: never on a command line (the process list shows those).
        argv += ["--extra-vars", f"@{SECRETS_FILE}"]
    return [*argv, PLAYBOOK]


def _root_only_file(path: str, content: str) -> dict[str, str]:
    return {"path": path, "owner": "root:root", "permissions": "0600", "content": content}


def render_user_data(b: Bootstrap) -> str:
    """The `#cloud-config` document for an instance of tier `b.tier`."""
    files = [_root_only_file(VARS_FILE, json.dumps(ansible_vars(b), sort_keys=True) + "\n")]
    if b.secrets:
        files.append(_root_only_file(SECRETS_FILE, json.dumps(dict(b.secrets), sort_keys=True) + "\n"))
    document = {
        "write_files": files,
        "package_update": True,
        "packages": ["ansible", "git"],
        "runcmd": [ansible_pull_command(b)],
    }
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
