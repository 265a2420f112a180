"""The tier catalog: what each tier of the platform is, as data (swell/data/tiers.yaml).

Every area derives its tiers from here: the stack (instances, security group rules, load balancer,
cloud-init variables), the monitoring mixin (recording rules, scrape jobs, dashboard), the stack
outputs contract of `swell configure`, and the drill (plans, reference services, Locust users,
report). Code branches on a tier's properties (its kind of traffic, `balanced`, `public`, its
exporters), never on its name, so adding a tier is one catalog entry plus its Ansible role
(ARCHITECTURE.md, "Adding a tier").

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
    "swell_xmpp_domain", "swell_xmpp_address", "swell_xmpp_port", "swell_turn_host", "swell_turn_port"
]
# The `swell:secrets` fields (stacks/config.py, SecretsConfig) a role variable may take.
SecretField = Literal["xmpp_bridge_password", "turn_secret", "xmpp_tls_certificate", "xmpp_tls_key"]
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


class Catalog(_Model):
    exporters: dict[str, Exporter]
    tiers: tuple[Tier, ...] = Field(min_length=1)

    @field_validator("tiers", mode="before")
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
        for tier in self.tiers:
            unknown = [e for e in tier.exporters if e not in self.exporters]
            if unknown:
                known = ", ".join(self.exporters)
                raise ValueError(f"{tier.name}: unknown exporter(s) {', '.join(unknown)}; known: {known}")
        # `swell_xmpp_address` is the VIP of the tier whose balancer carries the xmpp listener: it
        # must be declared before the tiers that need it (the program resolves the VIP first).
        providers = [t.name for t in self.tiers if t.balancer and "xmpp" in t.balancer.extra_listeners]
        for i, tier in enumerate(self.tiers):
            if "swell_xmpp_address" in tier.bootstrap.vars:
                earlier = [p for p in providers if names.index(p) < i]
                if len(providers) != 1 or not earlier:
                    raise ValueError(
                        f"{tier.name}: swell_xmpp_address needs exactly one tier with the xmpp listener "
                        "declared before it"
                    )
        return self

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
