"""The stack configuration: the only place that reads `pulumi.Config`, and where every key is validated.

Keys (documented for operators in Pulumi.yaml):

- `openstack:region`             the OpenStack region (GRA11, SBG5, ...): never hard-coded here
- `swell:tiers`                  object keyed by tier (every tier of the catalog, swell/data/tiers.yaml):
                                 flavor, count, min, max, image,
                                 and the autoscaler's `instances` (serving indices, default 0..count-1),
                                 `retiring` (indices being drained: weight 0, removed once empty),
                                 `warm` (shelved, configured, no member) and `filling` (being
                                 configured for the warm pool, no member); the four sets disjoint,
                                 serving + warm + filling <= max. The autoscaler writes count,
                                 instances, retiring, warm and filling (docs/stacks.md, "During a
                                 surge", "Warm pool"); min and max are its limits too.
- `swell:adminCidrs`             list of CIDRs allowed to reach SSH (never 0.0.0.0/0 or ::/0)
- `swell:sshPublicKey`           the admins' SSH public key, installed on every instance
- `swell:externalNetwork`        the public network (default Ext-Net, OVHcloud's)
- `swell:privateNetwork`         {cidr, vlanId} of the private (vRack) network
- `swell:playbooks`              {repo, ref, allowUnpinnedRef}: what ansible-pull runs at first boot
                                 (playbooks/pull.yml); ref must be a full commit SHA unless
                                 allowUnpinnedRef is true (a dev stack following a branch)
- `swell:secrets`                {xmppBridgePassword, turnSecret, xmppTlsCertificate, xmppTlsKey,
                                 chatStorePassword}: per-deployment service secrets, set with `pulumi
                                 config set --secret`, delivered in their user_data to the instances
                                 whose catalog entry names them (chat, video, the shards, the chat
                                 store). Optional: without it those get none, bridges cannot join and
                                 the chat store refuses to start.
- `swell:shards`                 how many Jitsi signalling shards (Prosody + Jicofo) to run, default 1:
                                 a fixed group, never autoscaled (stacks/fixed.py)
- `swell:quota`                  an OVHcloud quota tier name (10-vms ... 200-vms) or {instances, vcpus, ramGb}
- `swell:tls`                    the balanced tiers' load balancers' certificate: {certificate, privateKey,
                                 chain?} in PEM, which the stack stores in the Key Manager (Barbican), the
                                 private key set with `pulumi config set --secret`; or {containerRef} of a
                                 certificate already there; and `hosts` {<balanced tier>: name}, the
                                 public names that plain-HTTP requests are redirected to
- `swell:monitoringCidrs`        IPv4 CIDRs allowed to scrape the load balancers' PROMETHEUS listeners
                                 (default: the private network; never 0.0.0.0/0)
- `swell:xmpp`                   {domain, turnHost}: the XMPP domain the shards serve (the bridges log
                                 in to auth.<domain>) and the public DNS name of the TURN service that
                                 the shards advertise to clients (coturn on the video bridges); both are
                                 delivered to the instances in their user_data (stacks/bootstrap.py)

`parse` is the pure core (a mapping of config keys to values -> StackConfig or ConfigError whose lines
name the key and the allowed values); `load` feeds it from `pulumi.Config`. No secret value is ever part
of an error message or of a StackConfig's repr: private keys are `SecretStr`s, and a problem under
`swell:tls` or `swell:secrets` never quotes what was given: its line says what is expected, nothing more.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from stacks import catalog
from swell import tiers as tier_catalog
from swell.configure.admin_networks import admin_network

PROJECT = "swell"
REGION_KEY = "openstack:region"


class ConfigError(ValueError):
    """A stack configuration that cannot be deployed; each problem names its key and what is expected."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{value!r} is not a CIDR like 203.0.113.0/24 or 2001:db8::/48 ({e})") from None


class TierConfig(_Model):
    flavor: str
    # Serving instances: what the autoscaler decides, and what min..max bounds.
    count: int = Field(ge=0)
    min: int = Field(default=0, ge=0)
    max: int = Field(ge=0)
    # OVHcloud's public image name; the playbooks target Debian 12.
    image: str = "Debian 12"
    # Which indices serve (default: 0..count-1). The autoscaler names them once a scale-down has
    # removed an index that is not the highest: indices, and so names, never shift.
    instances: tuple[int, ...] | None = None
    # Indices being drained: they exist and keep their sessions, their load balancer member has
    # weight 0 (no new connections); removing one from this list deletes exactly that instance.
    retiring: tuple[int, ...] = ()
    # The warm pool (docs/stacks.md, "Warm pool"). `warm`: shelved instances (power state
    # shelved_offloaded: CPU and RAM freed on the host, the configured disk kept), no load balancer
    # member; moving one to `instances` unshelves it in place. `filling`: instances created for the
    # pool, running while cloud-init and ansible-pull configure them, no member; moved to `warm`
    # once configured. Both count within `max` and against the quota (docs/ovhcloud.md, "Quota").
    warm: tuple[int, ...] = ()
    filling: tuple[int, ...] = ()

    @field_validator("instances", "retiring", "warm", "filling")
    @classmethod
    def _indices(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if any(i < 0 for i in value):
            raise ValueError(f"indices must be >= 0, got {list(value)}")
        if len(set(value)) != len(value):
            raise ValueError(f"an index appears twice in {list(value)}")
        return tuple(sorted(value))

    @property
    def serving(self) -> tuple[int, ...]:
        """The indices that serve: `instances`, or 0..count-1."""
        return self.instances if self.instances is not None else tuple(range(self.count))

    @property
    def existing(self) -> tuple[int, ...]:
        """Every index that has an instance: serving, retiring, warm and filling."""
        return tuple(sorted({*self.serving, *self.retiring, *self.warm, *self.filling}))

    @property
    def pool(self) -> tuple[int, ...]:
        """The warm pool's indices: warm (shelved) and filling (being configured)."""
        return tuple(sorted({*self.warm, *self.filling}))

    @field_validator("flavor")
    @classmethod
    def _known_flavor(cls, value: str) -> str:
        allowed = catalog.load().flavors
        if value not in allowed:
            raise ValueError(f"unknown flavor {value!r}; allowed: {', '.join(allowed)}")
        return value


def _catalog_keys(kind: str, given: object, expected: tuple[str, ...], what: str) -> list[str]:
    """Problems with the keys of an object keyed by tier (`swell:tiers`, `swell:tls.hosts`): the tiers
    are the catalog's, so pydantic cannot know them; each problem names the key and the allowed ones."""
    if not isinstance(given, Mapping):
        return []
    problems = [
        f"{PROJECT}:{kind}.{name}: unknown key; allowed: {', '.join(expected)}"
        for name in given
        if name not in expected
    ]
    problems += [
        f"{PROJECT}:{kind}.{name}: required key is missing ({what})" for name in expected if name not in given
    ]
    return problems


def _in_catalog_order(value: Mapping[str, Any], expected: tuple[str, ...]) -> dict[str, Any]:
    # Catalog order is declaration order: a tier that needs another's address comes after it.
    if set(value) != set(expected):
        raise ValueError(f"expected exactly the catalog's tiers: {', '.join(expected)}")
    return {name: value[name] for name in expected}


def _tiers(value: dict[str, TierConfig]) -> dict[str, TierConfig]:
    return _in_catalog_order(value, tier_catalog.names())


TiersConfig = Annotated[dict[str, TierConfig], AfterValidator(_tiers)]


class PrivateNetworkConfig(_Model):
    # A /16 leaves room for 4x surges and for Octavia's VIP and amphora ports (OVHcloud: at least a /28).
    cidr: str = "10.42.0.0/16"
    # OVHcloud vRack VLAN; 0 is the vRack's untagged default.
    vlan_id: int = Field(default=0, alias="vlanId", ge=0, le=4000)

    @field_validator("cidr")
    @classmethod
    def _private_v4(cls, value: str) -> str:
        net = ipaddress.ip_network(_cidr(value))
        if not (isinstance(net, ipaddress.IPv4Network) and net.is_private and net.prefixlen <= 28):
            raise ValueError(f"{value!r} must be a private IPv4 CIDR of /28 or larger (e.g. 10.42.0.0/16)")
        return str(net)


# A full commit id (SHA-1, or SHA-256 for repositories in that format): git checks out exactly that
# content, so a moved tag or a pushed branch cannot change what a new instance runs as root.
COMMIT_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


class PlaybooksConfig(_Model):
    repo: str
    ref: str = "main"
    # A branch or tag moves; only a dev stack may follow one (ansible-pull then runs whatever the
    # branch holds when the instance boots).
    allow_unpinned_ref: bool = Field(default=False, alias="allowUnpinnedRef")

    @field_validator("repo")
    @classmethod
    def _git_url(cls, value: str) -> str:
        if not value.startswith(("https://", "ssh://", "git@", "file://")):
            raise ValueError(f"{value!r} is not a git URL; expected https://, ssh://, git@ or file://")
        return value


# Secrets land in Jinja-templated files (jvb.conf, Prosody's Lua, coturn's config) and in Ansible
# extra vars, which Ansible templates: quotes, backslashes, spaces or `{{` would break a file or be
# evaluated. `openssl rand -base64 32` gives 44 characters of exactly this alphabet.
SECRET_ALPHABET = re.compile(r"^[A-Za-z0-9+/=._~-]{24,256}$")
SECRET_EXPECTED = "24 to 256 characters of A-Z a-z 0-9 + / = . _ ~ - (e.g. `openssl rand -base64 32`)"


def _pem(value: SecretStr, kinds: tuple[str, ...], what: str) -> SecretStr:
    text = value.get_secret_value().strip()
    framed = (text.startswith(f"-----BEGIN {k}-----") and text.endswith(f"-----END {k}-----") for k in kinds)
    if not any(framed):
        raise ValueError(f"expected {what} in PEM form (-----BEGIN {kinds[0]}----- ... -----END ...-----)")
    return SecretStr(text + "\n")


class SecretsConfig(_Model):
    """Per-deployment service secrets (not per user). SecretStr keeps them out of reprs and logs."""

    # The video bridges' XMPP account on their shard's Prosody (the brewery MUC login).
    xmpp_bridge_password: SecretStr = Field(alias="xmppBridgePassword")
    # Shared by coturn (video) and Prosody's mod_external_services (shard) to sign TURN credentials.
    turn_secret: SecretStr = Field(alias="turnSecret")
    # Prosody's certificate for the bridges' XMPP domain (auth.<chat domain>) and its key: bridges
    # verify it (video_xmpp_verify_certificate) and trust this certificate for it. Not secret
    # itself, but it travels with its key.
    xmpp_tls_certificate: SecretStr = Field(alias="xmppTlsCertificate")
    xmpp_tls_key: SecretStr = Field(alias="xmppTlsKey")
    # Redis's requirepass on the chat store, which the chat servers log in with (the chat store's
    # port is open to chat's security group only; the password is the second lock). Optional so that
    # stacks set before the chat store keep deploying: without it the chat store refuses to start.
    chat_store_password: SecretStr | None = Field(default=None, alias="chatStorePassword")

    @field_validator("xmpp_bridge_password", "turn_secret", "chat_store_password")
    @classmethod
    def _alphabet(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not SECRET_ALPHABET.match(value.get_secret_value()):
            raise ValueError(f"expected {SECRET_EXPECTED}")
        return value

    @field_validator("xmpp_tls_certificate")
    @classmethod
    def _certificate(cls, value: SecretStr) -> SecretStr:
        return _pem(value, ("CERTIFICATE",), "a certificate")

    @field_validator("xmpp_tls_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        return _pem(value, ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"), "a private key")


class CustomQuota(_Model):
    instances: int = Field(ge=0)
    vcpus: int = Field(ge=0)
    ram_gb: int = Field(alias="ramGb", ge=0)


# PEM blocks (RFC 7468): the label, then base64 lines. Only the form is checked; Octavia parses the rest.
_PEM = r"-----BEGIN {label}-----\s*[A-Za-z0-9+/=\s]+-----END {label}-----"
_CERTIFICATE = re.compile(_PEM.format(label="CERTIFICATE"))
_PRIVATE_KEY = re.compile(_PEM.format(label="((?:RSA |EC )?PRIVATE KEY)"))
# A Barbican certificate container, or a PKCS12 secret, as Octavia's default_tls_container_ref takes.
_BARBICAN_REF = re.compile(r"^https://[^/\s]+(/[^\s]*)?/v1/(containers|secrets)/[0-9a-fA-F-]{36}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _public_host(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError("not a DNS name like meet.example.org (lower case, no scheme, no port)")
    return value


def balanced_tier_names() -> tuple[str, ...]:
    return tuple(t.name for t in tier_catalog.load().balanced)


def _tls_hosts(value: dict[str, str]) -> dict[str, str]:
    return _in_catalog_order(value, balanced_tier_names())


# The public names of the balanced tiers, keyed by tier; plain-HTTP requests are redirected to
# https://<name>.
TlsHosts = Annotated[dict[str, Annotated[str, AfterValidator(_public_host)]], AfterValidator(_tls_hosts)]


class XmppConfig(_Model):
    """The XMPP service's names: what the roles would otherwise leave at a placeholder."""

    # Users log in to <domain>; the bridges to auth.<domain>, the name Prosody's certificate
    # (swell:secrets.xmppTlsCertificate) must carry, since the bridges dial and verify that name.
    domain: str
    # Where Prosody tells clients to use TURN over TLS (XEP-0215): a public DNS name whose
    # records point at the video bridges' public addresses, where coturn listens (ARCHITECTURE.md).
    turn_host: str = Field(alias="turnHost")

    @field_validator("domain", "turn_host")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not _HOSTNAME.match(value) or len(f"auth.{value}") > 253:
            raise ValueError("not a DNS name like meet.example.org (lower case, no scheme, no port)")
        return value

    @property
    def auth_domain(self) -> str:
        """The bridges' XMPP domain, as the jitsi_shard and video roles derive it (`auth.<domain>`)."""
        return f"auth.{self.domain}"


class TlsConfig(_Model):
    """Where the load balancers' certificate comes from: PEM material the stack stores in the Key
    Manager, or a certificate container already there. Never echoed in errors (see `_describe`)."""

    certificate: str | None = None
    private_key: SecretStr | None = Field(default=None, alias="privateKey")
    chain: str | None = None
    container_ref: str | None = Field(default=None, alias="containerRef")
    hosts: TlsHosts

    @field_validator("certificate")
    @classmethod
    def _certificate(cls, value: str | None) -> str | None:
        if value is not None and not _CERTIFICATE.fullmatch(value.strip()):
            raise ValueError("not one PEM certificate (-----BEGIN CERTIFICATE----- ... -----END ...)")
        return value

    @field_validator("private_key")
    @classmethod
    def _private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _PRIVATE_KEY.fullmatch(value.get_secret_value().strip()):
            raise ValueError(
                "not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC); "
                "an encrypted key would need its passphrase, which Octavia cannot be given here"
            )
        return value

    @field_validator("chain")
    @classmethod
    def _chain(cls, value: str | None) -> str | None:
        if value is not None:
            rest = _CERTIFICATE.sub("", value).strip()
            if rest or not _CERTIFICATE.search(value):
                raise ValueError("not a list of PEM certificates (the intermediates, issuer first)")
        return value

    @field_validator("container_ref")
    @classmethod
    def _container_ref(cls, value: str | None) -> str | None:
        if value is not None and not _BARBICAN_REF.match(value):
            raise ValueError(
                "not a Key Manager reference like https://<barbican>/v1/containers/<uuid> "
                "(a certificate container, or a PKCS12 secret under /v1/secrets/)"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> TlsConfig:
        pem = self.certificate is not None or self.private_key is not None or self.chain is not None
        if pem and self.container_ref is not None:
            raise ValueError("give either certificate and privateKey (and chain) or containerRef, not both")
        if not pem and self.container_ref is None:
            raise ValueError("missing the certificate: give certificate and privateKey, or containerRef")
        if pem and (self.certificate is None or self.private_key is None):
            missing = "privateKey" if self.certificate is not None else "certificate"
            raise ValueError(f"{missing} is missing: certificate and privateKey go together")
        return self

    @property
    def stored_by_stack(self) -> bool:
        return self.container_ref is None


class StackConfig(_Model):
    stack: str
    region: str = Field(min_length=1)
    tiers: TiersConfig
    admin_cidrs: tuple[str, ...] = Field(alias="adminCidrs", min_length=1)
    ssh_public_key: str = Field(alias="sshPublicKey")
    external_network: str = Field(default="Ext-Net", alias="externalNetwork", min_length=1)
    private_network: PrivateNetworkConfig = Field(default=PrivateNetworkConfig(), alias="privateNetwork")
    playbooks: PlaybooksConfig
    quota: str | CustomQuota
    tls: TlsConfig
    # None: the private network, where Prometheus runs (ARCHITECTURE.md, Ports).
    monitoring_cidrs: tuple[str, ...] | None = Field(default=None, alias="monitoringCidrs", min_length=1)
    secrets: SecretsConfig | None = None
    xmpp: XmppConfig
    # Jitsi signalling shards (the catalog's fixed group with `count_key: shards`). Only ever grown
    # while bridges run: a bridge keeps the shard it was created in (stacks/fixed.py).
    shards: int = Field(default=1, ge=1, le=64)

    def fixed_count(self, group: tier_catalog.FixedGroup) -> int:
        """How many instances a fixed group has: one, or its stack config key's value."""
        if group.count_key is None:
            return 1
        return int(getattr(self, group.count_key))

    @field_validator("admin_cidrs")
    @classmethod
    def _admin_cidrs(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        # The same rule as `swell configure --admin-cidr` (the hosts' firewall), in one place.
        return tuple(admin_network(value) for value in values)

    @field_validator("monitoring_cidrs")
    @classmethod
    def _monitoring_cidrs(cls, values: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if values is None:
            return None
        out = []
        for value in values:
            net = ipaddress.ip_network(_cidr(value))
            if net.prefixlen == 0:
                raise ValueError(
                    f"{value!r} would open the load balancers' metrics to the whole internet; "
                    "list the monitoring networks"
                )
            if net.version != 4:
                raise ValueError(
                    f"{value!r} is IPv6; the load balancers' addresses are IPv4 and Octavia refuses "
                    "allowed CIDRs of another address family"
                )
            out.append(str(net))
        return tuple(out)

    @property
    def metrics_allowed_cidrs(self) -> tuple[str, ...]:
        """Who may scrape the load balancers' PROMETHEUS listeners."""
        return self.monitoring_cidrs or (self.private_network.cidr,)

    @field_validator("ssh_public_key")
    @classmethod
    def _ssh_key(cls, value: str) -> str:
        kinds = (
            "ssh-ed25519",
            "ssh-rsa",
            "ecdsa-sha2-nistp256",
            "ecdsa-sha2-nistp384",
            "ecdsa-sha2-nistp521",
        )
        if value.split(" ", 1)[0] not in kinds or len(value.split()) < 2:
            raise ValueError(
                "not an OpenSSH public key; expected '<type> <base64> [comment]' "
                f"with type one of: {', '.join(kinds)}"
            )
        return value

    @field_validator("quota")
    @classmethod
    def _known_quota(cls, value: str | CustomQuota) -> str | CustomQuota:
        names = [q.name for q in catalog.load().quota_tiers]
        if isinstance(value, str) and value not in names:
            raise ValueError(
                f"unknown quota tier {value!r}; allowed: {', '.join(names)} or {{instances, vcpus, ramGb}}"
            )
        return value

    @property
    def quota_limits(self) -> catalog.Quota:
        if isinstance(self.quota, str):
            return catalog.load().quota(self.quota)
        return catalog.Quota("custom", self.quota.instances, self.quota.vcpus, self.quota.ram_gb)

    def totals(self) -> tuple[int, int, int]:
        """Instances, vCPUs and GB of RAM that the configured counts ask for."""
        flavors = catalog.load().flavors
        # Retiring instances still run (and are billed) until their drain ends; fixed groups always.
        counted = [(len(t.existing), t.flavor) for t in self.tiers.values()]
        counted += [(self.fixed_count(g), g.flavor) for g in tier_catalog.load().fixed]
        return (
            sum(n for n, _ in counted),
            sum(n * flavors[f].vcpus for n, f in counted),
            sum(n * flavors[f].ram_gb for n, f in counted),
        )


# Config keys (without the `swell:` prefix) that parse() understands, for the unknown-key check.
SWELL_KEYS = tuple(
    (field.alias or name)
    for name, field in StackConfig.model_fields.items()
    if name not in ("stack", "region")
)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the object at `loc` (to turn "extra input" into "allowed: ...")."""
    model: type[BaseModel] = StackConfig
    keyed = False
    for part in loc:
        if keyed:
            keyed = False  # a tier's name in an object keyed by tier: the model stays the same
            continue
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        field = fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        keyed = getattr(annotation, "__origin__", None) is dict
        if keyed:
            annotation = get_args(annotation)[1]
        # An optional object (`SecretsConfig | None`) is looked into like a required one.
        found = [
            a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not found:
            return []
        model = found[0]
    return [(f.alias or n) for n, f in model.model_fields.items()]


def _key(loc: tuple[Any, ...]) -> str:
    if loc and loc[0] == "region":
        return REGION_KEY
    parts = [str(p) for p in loc if p not in ("str", "CustomQuota")]
    return f"{PROJECT}:" + ".".join(parts) if parts else f"{PROJECT}:<config>"


# Config keys whose values may hold secrets: problems with them never quote what was given.
_SECRET_KEYS = ("tls", "secrets")


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    secret = bool(loc) and loc[0] in _SECRET_KEYS
    if secret and kind == "missing" and loc[0] == "secrets":
        return f"{_key(loc)}: required key is missing (set it with `pulumi config set --secret --path`)"
    if kind == "missing":
        allowed = _allowed_keys(loc)
        hint = f" (an object with keys: {', '.join(allowed)})" if allowed else ""
        return f"{_key(loc)}: required key is missing{hint}"
    if kind == "extra_forbidden":
        return f"{_key(loc)}: unknown key; allowed: {', '.join(_allowed_keys(loc[:-1]))}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if secret:
        return f"{_key(loc)}: {msg} (the value is a secret: not shown)"
    return f"{_key(loc)}: {msg} (got {error.get('input')!r})"


def _semantic_problems(cfg: StackConfig) -> list[str]:
    problems = []
    if not cfg.playbooks.allow_unpinned_ref and not COMMIT_SHA.match(cfg.playbooks.ref):
        problems.append(
            f"{PROJECT}:playbooks.ref: {cfg.playbooks.ref!r} is not a full commit SHA; expected the 40 hex "
            "digits of the commit to run (`git rev-parse <tag>^{commit}`), since instances run it as root, "
            f"or set {PROJECT}:playbooks.allowUnpinnedRef: true on a dev stack that follows a branch"
        )
    for name, tier in cfg.tiers.items():
        key = f"{PROJECT}:tiers.{name}"
        if tier.min > tier.max:
            problems.append(f"{key}.min: {tier.min} is above max {tier.max}; expected min <= max")
        elif not tier.min <= tier.count <= tier.max:
            where = "above max" if tier.count > tier.max else "below min"
            problems.append(
                f"{key}.count: {tier.count} is {where}; allowed: {tier.min}..{tier.max} "
                f"(raise {key}.max first to grow further)"
            )
        if tier.instances is not None and len(tier.instances) != tier.count:
            problems.append(
                f"{key}.instances: lists {len(tier.instances)} indices but {key}.count is {tier.count}; "
                "expected one index per serving instance"
            )
        problems += _overlaps(key, tier)
        in_max = len(tier.serving) + len(tier.warm) + len(tier.filling)
        if tier.pool and in_max > tier.max:
            problems.append(
                f"{key}.warm: {len(tier.serving)} serving + {len(tier.warm)} warm + {len(tier.filling)} "
                f"filling is {in_max}, above max {tier.max}; expected serving + warm + filling <= max "
                f"(shrink {key}.warm or {key}.filling, or raise {key}.max)"
            )
    flavors = catalog.load().flavors
    unknown = [
        f"{tier_catalog.path()}: fixed.{group.name}.flavor: unknown flavor {group.flavor!r}; "
        f"allowed: {', '.join(flavors)}"
        for group in tier_catalog.load().fixed
        if group.flavor not in flavors
    ]
    if unknown:
        return problems + unknown  # the totals below need every flavor
    quota = cfg.quota_limits
    instances, vcpus, ram_gb = cfg.totals()
    pooled = sum(len(t.pool) for t in cfg.tiers.values())
    # Warm (shelved) instances count in full: see docs/ovhcloud.md, "Quota", for why.
    counted = (
        f" (including {pooled} warm or filling instances, counted in full: docs/ovhcloud.md, Quota)"
        if pooled
        else ""
    )
    for what, asked, limit in (
        ("instances", instances, quota.instances),
        ("vCPUs", vcpus, quota.vcpus),
        ("GB of RAM", ram_gb, quota.ram_gb),
    ):
        if asked > limit:
            problems.append(
                f"{PROJECT}:quota: the tiers ask for {asked} {what}{counted}, "
                f"above the {limit} of quota {quota.name!r}; "
                "lower a count or raise the quota (OVHcloud quota tiers in stacks/data/ovhcloud.yaml)"
            )
    return problems


# Each index is in exactly one of these sets; the first named is the one it is reported against.
_SETS = ("instances", "retiring", "warm", "filling")


def _overlaps(key: str, tier: TierConfig) -> list[str]:
    """An index in two of a tier's sets (serving, retiring, warm, filling): each such index named,
    under the later key, with the key it is already in."""
    sets = {
        "instances": tier.serving,
        "retiring": tier.retiring,
        "warm": tier.warm,
        "filling": tier.filling,
    }
    problems = []
    for n, later in enumerate(_SETS):
        for earlier in _SETS[:n]:
            both = sorted(set(sets[later]) & set(sets[earlier]))
            if not both:
                continue
            where = f"{key}.instances, or below {key}.count" if earlier == "instances" else f"{key}.{earlier}"
            problems.append(
                f"{key}.{later}: index(es) {both} also in {where}; expected each index in one of "
                f"{', '.join(_SETS)} (serving, draining, shelved, being configured for the pool)"
            )
    return problems


def _tier_keys() -> str:
    return "an object with keys: " + ", ".join((f.alias or n) for n, f in TierConfig.model_fields.items())


def parse(values: Mapping[str, Any], stack: str) -> StackConfig:
    """Validate config values keyed as in Pulumi.<stack>.yaml (`swell:tiers`, `openstack:region`, ...)."""
    problems: list[str] = []
    data: dict[str, Any] = {"stack": stack}
    for full_key, value in values.items():
        namespace, _, key = full_key.partition(":")
        if full_key == REGION_KEY:
            data["region"] = value
        elif namespace == PROJECT:
            if key not in SWELL_KEYS:
                problems.append(
                    f"{full_key}: unknown key; allowed: {', '.join(PROJECT + ':' + k for k in SWELL_KEYS)}"
                )
            data[key] = value
    if "region" not in data:
        problems.append(f"{REGION_KEY}: required key is missing (the OpenStack region, e.g. GRA11)")
        data["region"] = "unset"
    problems += _catalog_keys("tiers", data.get("tiers"), tier_catalog.names(), _tier_keys())
    tls = data.get("tls")
    if isinstance(tls, Mapping):
        problems += _catalog_keys(
            "tls.hosts", tls.get("hosts"), balanced_tier_names(), "the tier's public name"
        )
    if problems:
        raise ConfigError(problems)
    try:
        cfg = StackConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError([_describe(err) for err in e.errors()]) from None
    semantic = _semantic_problems(cfg)
    if semantic:
        raise ConfigError(semantic)
    return cfg


def load() -> StackConfig:
    """Read the running stack's configuration from Pulumi (the CLI, or the mocks' config)."""
    import pulumi

    values: dict[str, Any] = {}
    region = pulumi.Config("openstack").get("region")
    if region is not None:
        values[REGION_KEY] = region
    swell = pulumi.Config(PROJECT)
    for key in SWELL_KEYS:
        raw = swell.get(key)
        if raw is None:
            continue
        try:
            # Structured values (objects, lists) reach the program as JSON text.
            values[f"{PROJECT}:{key}"] = json.loads(raw)
        except ValueError:
            values[f"{PROJECT}:{key}"] = raw
    plaintext = plaintext_secret_problems(values, pulumi.runtime.is_config_secret)
    try:
        cfg = parse(values, pulumi.get_stack())
    except ConfigError as e:
        raise ConfigError(plaintext + e.problems) from None
    if plaintext:
        raise ConfigError(plaintext)
    return cfg


def plaintext_secret_problems(values: Mapping[str, Any], is_secret: Callable[[str], bool]) -> list[str]:
    """A private key or a service secret set without `--secret` sits unencrypted in
    Pulumi.<stack>.yaml: refuse it."""
    problems = []
    tls = values.get(f"{PROJECT}:tls")
    if isinstance(tls, Mapping) and "privateKey" in tls and not is_secret(f"{PROJECT}:tls"):
        problems.append(
            f"{PROJECT}:tls.privateKey: must be a secret, or it is stored in clear in the stack file; "
            f"set it with `pulumi config set --secret --path {PROJECT}:tls.privateKey < key.pem`"
        )
    if values.get(f"{PROJECT}:secrets") is not None and not is_secret(f"{PROJECT}:secrets"):
        problems.append(
            f"{PROJECT}:secrets: must be set with `pulumi config set --secret --path "
            f"{PROJECT}:secrets.<key>`, or the values are stored in clear in the stack file"
        )
    return problems
