"""The tier catalog: what each tier of the platform is, as data (swell/data/tiers.yaml).

Every area derives its tiers from here: the stack (instances, security group rules, load balancer,
cloud-init variables), the monitoring mixin (recording rules, scrape jobs, dashboard), the stack
outputs contract of `swell configure`, and the drill (plans, reference services, Locust users,
report). Code branches on a tier's properties (its kind of traffic, `balanced`, `public`, its
exporters), never on its name, so adding a tier is one catalog entry plus its Ansible role
(ARCHITECTURE.md, "Adding a tier").

Besides the tiers (autoscaled), the catalog's `fixed` section lists the fixed groups: instances the
tiers need but that are never autoscaled (chat's Redis store, Jitsi's signalling shards). A fixed
group has its own security group, whose ports admit named tiers only (by security group, not by
network), and its count is one (or a stack config key: `swell:shards`). Readers of `tiers` never see
a fixed group; code that needs both reads `fixed` explicitly (stacks/fixed.py, stacks/program.py).

`load()` reads the catalog named by `SWELL_TIERS` (a YAML file), else the packaged one; it is cheap
(pydantic and PyYAML only, both core dependencies) and cached per file, so every area can call it
where it needs the tiers instead of copying the list at import time.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_VAR = "SWELL_TIERS"
DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "tiers.yaml"

# How demand is counted (ARCHITECTURE.md, "The demand signal"): requests per second sent to the load
# balancer's pool, sessions the pool holds, participants a media server reports.
Traffic = Literal["requests", "sessions", "participants"]
TRAFFIC_KINDS: tuple[Traffic, ...] = ("requests", "sessions", "participants")
# The stack-wide variables a tier's role may be handed (stacks/bootstrap.py, Endpoints).
EndpointVar = Literal[
    "swell_xmpp_domain",
    "swell_xmpp_port",
    "swell_jitsi_shards",
    "swell_turn_host",
    "swell_turn_port",
    "swell_chat_store_address",
    "swell_chat_store_port",
]
# The `swell:secrets` fields (stacks/config.py, SecretsConfig) a role variable may take.
SecretField = Literal[
    "xmpp_bridge_password", "turn_secret", "xmpp_tls_certificate", "xmpp_tls_key", "chat_store_password"
]
# Stack config keys a fixed group may take its count from (stacks/config.py, StackConfig).
CountKey = Literal["shards"]
# Listeners a balancer may carry besides its HTTPS/HTTP/PROMETHEUS ones (stacks/listeners.py).
ExtraListener = Literal["xmpp"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Exporter(_Model):
    """A metrics endpoint a tier's instances serve, scraped from the private network."""

    port: int = Field(ge=1, le=65535)
    description: str = Field(min_length=1)


class Port(_Model):
    """One ingress port of the tier's security group: from the private network, or the world (both
    address families)."""

    protocol: Literal["tcp", "udp"]
    port: int = Field(ge=1, le=65535)
    source: Literal["private", "world"]
    description: str = Field(min_length=1)


class Balancer(_Model):
    """The inputs of the tier's Octavia load balancer spec (stacks/listeners.py): its pool's method
    and persistence, the traffic listeners' inactivity timeout, and any extra listener."""

    lb_method: Literal["LEAST_CONNECTIONS", "ROUND_ROBIN", "SOURCE_IP"] = "LEAST_CONNECTIONS"
    persistence: Literal["HTTP_COOKIE", "SOURCE_IP"] | None = None
    # Octavia's default inactivity timeout (50 s); long sessions need more.
    data_timeout_ms: int = Field(default=50_000, ge=1000)
    extra_listeners: tuple[ExtraListener, ...] = ()


class Bootstrap(_Model):
    """What cloud-init hands the tier's role besides the base variables (stacks/bootstrap.py)."""

    vars: tuple[EndpointVar, ...] = ()
    # role variable -> `swell:secrets` field; least privilege: only what the role uses.
    secrets: dict[str, SecretField] = Field(default_factory=dict)


class Plan(_Model):
    """The drill's limits for the tier and what one instance serves (the autoscaler's
    `capacity_per_instance`, below the reference service's hard limits so the SLO holds at it)."""

    min: int = Field(ge=0)
    max: int = Field(ge=1)
    capacity_per_instance: float = Field(gt=0)


class Service(_Model):
    """The reference service model of one drill instance (loadtests/tier_service.py, TierSpec)."""

    capacity: int = Field(ge=1)
    service_time_s: float = Field(default=0.1, gt=0)
    queue_timeout_s: float = Field(default=1.0, gt=0)
    max_queue: int = Field(default=40, ge=1)
    base_delay_s: float = Field(default=0.02, ge=0)
    hard_cap: float = Field(default=2.0, ge=1)
    bitrate_kbps: int = Field(default=2500, ge=0)


class Drill(_Model):
    plan: Plan
    # Locust's weight for this tier's users (users of every tier share the profile's user count).
    users_weight: int = Field(default=1, ge=1)
    service: Service


class Tier(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,15}$")
    traffic: Traffic
    unit: str = Field(min_length=1)
    role: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    public: bool = False
    balancer: Balancer | None = None
    ports: tuple[Port, ...] = ()
    # Names from the catalog's `exporters`: `node` everywhere, `jvb` on Jitsi Videobridges.
    exporters: tuple[str, ...] = ("node",)
    bootstrap: Bootstrap = Bootstrap()
    # A fixed group each instance belongs to one member of (video: its bridges' shard), chosen at
    # creation, kept in the instance's Nova metadata under the group's name (stacks/fixed.py).
    placed_in: str | None = None
    drill: Drill

    @property
    def balanced(self) -> bool:
        """Reached through an Octavia load balancer (else directly, like the video bridges)."""
        return self.balancer is not None

    @property
    def users_host_env(self) -> str:
        """Where the drill's Locust users of this tier find their host (loadtests/users.py)."""
        return f"SWELL_{self.name.upper()}_HOST"

    @property
    def bridge_metrics(self) -> bool:
        """Its instances export Jitsi Videobridge metrics (participants, stress level)."""
        return "jvb" in self.exporters

    @model_validator(mode="after")
    def _demand_is_measurable(self) -> Tier:
        # Demand is counted where it arrives: at the load balancer for requests and sessions, on the
        # media servers' exporter for participants (dashboards/mixin.py).
        if self.traffic in ("requests", "sessions") and self.balancer is None:
            raise ValueError(f"{self.traffic} are counted at a load balancer: give the tier a `balancer`")
        if self.traffic == "participants" and not self.bridge_metrics:
            raise ValueError("participants are counted by the bridges' exporter: list `jvb` in `exporters`")
        if "node" not in self.exporters:
            raise ValueError("every tier runs the node exporter (ready instances are counted from it)")
        if self.drill.plan.min > self.drill.plan.max:
            raise ValueError(f"drill.plan.min {self.drill.plan.min} is above max {self.drill.plan.max}")
        return self


class FixedPort(_Model):
    """One ingress port of a fixed group's security group, open to one tier's security group only."""

    protocol: Literal["tcp", "udp"]
    port: int = Field(ge=1, le=65535)
    # The tier whose instances may connect (its security group is the rule's remote group).
    from_tier: str
    description: str = Field(min_length=1)


class FixedGroup(_Model):
    """Instances the tiers need that are not autoscaled: a count (one, or the stack config key
    `count_key`), a flavor, a role, ports open to named tiers only, exporters, bootstrap."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,15}$")
    role: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    # An OVHcloud flavor of stacks/data/ovhcloud.yaml (checked by stacks/config.py).
    flavor: str = Field(min_length=1)
    # None: exactly one instance.
    count_key: CountKey | None = None
    ports: tuple[FixedPort, ...] = ()
    exporters: tuple[str, ...] = ("node",)
    bootstrap: Bootstrap = Bootstrap()

    @property
    def slug(self) -> str:
        """The group's name in Nova names and hostnames (no underscore there): `chat-store`."""
        return self.name.replace("_", "-")


class Catalog(_Model):
    exporters: dict[str, Exporter]
    tiers: tuple[Tier, ...] = Field(min_length=1)
    fixed: tuple[FixedGroup, ...] = ()

    @field_validator("tiers", "fixed", mode="before")
    @classmethod
    def _named(cls, value: object) -> object:
        # The file is keyed by name (readable, unique by construction); the model keeps the order.
        if isinstance(value, dict):
            return [{"name": name, **(body or {})} for name, body in value.items()]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"a tier appears twice in {list(names)}")
        fixed = self.fixed_names
        clash = sorted(set(names) & set(fixed)) or sorted({n for n in fixed if fixed.count(n) > 1})
        if clash:
            raise ValueError(f"{', '.join(clash)}: a name appears twice among the tiers and fixed groups")
        exporters_of = [(t.name, t.exporters) for t in self.tiers]
        exporters_of += [(g.name, g.exporters) for g in self.fixed]
        for name, exporters in exporters_of:
            unknown = [e for e in exporters if e not in self.exporters]
            if unknown:
                known = ", ".join(self.exporters)
                raise ValueError(f"{name}: unknown exporter(s) {', '.join(unknown)}; known: {known}")
        for group in self.fixed:
            for port in group.ports:
                if port.from_tier not in names:
                    raise ValueError(
                        f"fixed {group.name}: port {port.port} is open to unknown tier {port.from_tier!r}; "
                        f"tiers: {', '.join(names)}"
                    )
        for tier in self.tiers:
            if tier.placed_in is not None and tier.placed_in not in fixed:
                raise ValueError(
                    f"{tier.name}: placed_in names unknown fixed group {tier.placed_in!r}; "
                    f"fixed groups: {', '.join(fixed) or 'none'}"
                )
        # A placed tier finds its group's members through `swell_jitsi_shards`, and only a placed
        # tier can tell which one is its own.
        for tier in self.tiers:
            if "swell_jitsi_shards" in tier.bootstrap.vars and tier.placed_in is None:
                raise ValueError(
                    f"{tier.name}: swell_jitsi_shards needs `placed_in` (which shard is its own)"
                )
        return self

    @property
    def fixed_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.fixed)

    def fixed_group(self, name: str) -> FixedGroup:
        for group in self.fixed:
            if group.name == name:
                return group
        raise KeyError(f"unknown fixed group {name!r}; fixed groups: {', '.join(self.fixed_names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    def get(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(f"unknown tier {name!r}; tiers: {', '.join(self.names)}")

    def with_traffic(self, traffic: str) -> tuple[Tier, ...]:
        return tuple(t for t in self.tiers if t.traffic == traffic)

    @property
    def balanced(self) -> tuple[Tier, ...]:
        return tuple(t for t in self.tiers if t.balanced)


class CatalogError(ValueError):
    """The tier catalog cannot be used; the message names the file and the key."""


def path() -> Path:
    """The catalog in use: `$SWELL_TIERS`, else the one packaged with swell."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


@functools.lru_cache(maxsize=8)
def _read(file: str, mtime_ns: int) -> Catalog:
    try:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise CatalogError(f"{file}: cannot read the tier catalog: {e}") from None
    try:
        return Catalog.model_validate(data)
    except ValidationError as e:
        where = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {str(err['msg']).removeprefix('Value error, ')}"
            for err in e.errors()
        )
        raise CatalogError(f"{file}: not a tier catalog ({where})") from None


def load(file: Path | str | None = None) -> Catalog:
    """The tier catalog from `file`, else `path()`. Cached per file and modification time."""
    chosen = Path(file) if file is not None else path()
    try:
        mtime = chosen.stat().st_mtime_ns
    except OSError as e:
        raise CatalogError(f"{chosen}: cannot read the tier catalog: {e.strerror}") from None
    return _read(str(chosen), mtime)


def names() -> tuple[str, ...]:
    """The tiers of the catalog in use, in catalog order."""
    return load().names
