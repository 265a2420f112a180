"""The autoscaler service's configuration: one YAML file, validated with pydantic at start-up.

Layers, last wins: the defaults here, the file, then the environment for secrets (a token or a
password is never written in the file: the file names the environment variable or the file that
holds it, as a Kubernetes Secret provides them). Errors name the key and what was expected; a
misspelled key is an error, not silently ignored. See `autoscaler.example.yaml` for every key.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    from autoscaler.core.schedule import Schedule

TIER_NAME = r"^[a-z][a-z0-9-]{0,31}$"


class _Strict(BaseModel):
    # NaN and infinities are refused everywhere: `capacity_per_instance: .inf` would size every
    # tier at its minimum, and NaN passes every bound check.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SecretRef(_Strict):
    """Where a secret lives: an environment variable or a file (a mounted Kubernetes Secret)."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env` or `file`")
        return self

    def resolve(self, what: str) -> str:
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"{what}: environment variable {self.env} is not set")
            return value
        assert self.file is not None
        try:
            return self.file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {self.file}: {exc.strerror}") from None


class BasicAuth(_Strict):
    username: str
    password: SecretRef


class PrometheusConfig(_Strict):
    url: str = Field(pattern=r"^https?://", description="base URL of the Prometheus HTTP API")
    bearer_token: SecretRef | None = None
    basic_auth: BasicAuth | None = None
    ca_file: Path | None = None
    timeout_s: float = Field(5.0, gt=0, le=60)


class PulumiActuatorConfig(_Strict):
    kind: Literal["pulumi"]
    work_dir: Path = Path(".")
    stack: str = Field(min_length=1)
    lock_attempts: int = Field(5, ge=1, le=20)
    # `pulumi up --parallel`: OVHcloud allows 20 Nova/Neutron API requests/s per project
    # (docs/autoscaler.md, "Actuation"); 10 resource operations at once stays under it.
    parallel: int = Field(10, ge=1, le=20)
    # One update may take this long; then it is cancelled (SIGINT, SIGKILL after cancel_grace_s).
    update_timeout_s: float = Field(1800.0, gt=0)
    cancel_grace_s: float = Field(30.0, gt=0, le=600)
    # Run on every automated update (`pulumi up --policy-pack`); relative to work_dir.
    policy_pack: Path | None = Path("stacks/policy")
    policy_pack_config: Path | None = None


class KubernetesActuatorConfig(_Strict):
    kind: Literal["kubernetes"]
    namespace: str = Field(min_length=1)
    deployment: str = Field(min_length=1)


class LocalActuatorConfig(_Strict):
    """Local processes of the reference tier service, for the drill (loadtests/)."""

    kind: Literal["local"]
    boot_delay_s: float = Field(20.0, ge=0)


ActuatorConfig = Annotated[
    PulumiActuatorConfig | KubernetesActuatorConfig | LocalActuatorConfig, Field(discriminator="kind")
]


class WarmPoolConfig(_Strict):
    """A tier's warm pool (issue 15): instances created, configured, then shelved
    (`shelved_offloaded`: CPU and RAM freed, the configured disk kept), which a scale-up unshelves
    within `warm_lead_s` instead of creating new ones (`cold_lead_s`). Disabled (the default): no
    pool, the autoscaler behaves as without this block. See docs/autoscaler.md, "Warm pools"."""

    enabled: bool = False
    # Create, boot and configure (cloud-init, ansible-pull): the horizon the pool covers, since a
    # refill takes this long. 600 s is issue 15's default, the figure the simulator's benchmark uses.
    cold_lead_s: float = Field(600.0, gt=0)
    # Unshelve and boot, no configuration again. 120 s is issue 15's default, not a measurement:
    # it needs measuring on OVHcloud (unshelve of a shelved_offloaded instance plus boot).
    warm_lead_s: float = Field(120.0, gt=0)
    # A fixed pool (AWS's warm pool sized by hand). Required for a policy other than swell; with
    # swell, unset means swell sizes the pool from what it measures (`warm_pool_target`).
    size: int | None = Field(None, ge=0)
    # Hysteresis: the pool keeps the largest size asked for over this long before it deletes what
    # it no longer needs. A refill costs a commenced running hour (OVHcloud bills each commenced
    # hour) and the cold lead time; at a shelved price of 10% of the running one (not confirmed by
    # OVHcloud, see docs/BENCHMARKS.md), ten hours shelved cost as much: the simulator's rule.
    shrink_after_s: float = Field(36000.0, ge=0)

    @model_validator(mode="after")
    def _leads(self) -> WarmPoolConfig:
        if self.warm_lead_s >= self.cold_lead_s:
            raise ValueError(
                f"warm_lead_s ({self.warm_lead_s:g}) must be shorter than cold_lead_s "
                f"({self.cold_lead_s:g}): unshelving skips the configuration a new instance needs"
            )
        return self


class TierConfig(_Strict):
    capacity_per_instance: float = Field(
        gt=0, description="offered demand one instance serves within its SLO"
    )
    # Optional for a tier on a Pulumi stack: the stack's own min and max are the limits, and these
    # may only narrow them. Required otherwise (max; min defaults to 1).
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=1)
    quota: int | None = Field(None, ge=0, description="instances the OpenStack quota leaves for this tier")
    lead_time_s: float = Field(180.0, ge=0, description="request to ready: VM boot plus configuration")
    policy: str = "swell"
    policy_params: dict[str, Any] = Field(default_factory=dict)
    actuator: ActuatorConfig
    # Scale-down drains (actuators that name instances: pulumi, local): the longest a retiring
    # instance keeps its open sessions before it is removed anyway.
    drain_timeout_s: float = Field(900.0, ge=0)
    # Which instances retire: `paid-hour` (nearest the end of their paid hour) or `newest`.
    retire: Literal["paid-hour", "newest"] = "paid-hour"
    # PromQL giving the open sessions of each instance, labelled `instance` with its Nova name
    # (swell-<stack>-<tier>-<i>): a drain ends when its instance reaches 0. Without it, a drain
    # lasts drain_timeout_s.
    sessions_query: str | None = None
    warm_pool: WarmPoolConfig = Field(default_factory=WarmPoolConfig)

    @model_validator(mode="after")
    def _bounds(self) -> TierConfig:
        if self.max is None and not isinstance(self.actuator, PulumiActuatorConfig):
            raise ValueError(
                f"max is required for a {self.actuator.kind} actuator "
                "(only a Pulumi stack has limits of its own)"
            )
        if self.max is not None and self.min is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        if self.warm_pool.enabled and isinstance(self.actuator, KubernetesActuatorConfig):
            raise ValueError(
                "warm_pool.enabled: a Kubernetes Deployment has no warm pool (its pods start in "
                "seconds); expected false, or a pulumi or local actuator"
            )
        if self.warm_pool.enabled and self.policy != "swell" and self.warm_pool.size is None:
            raise ValueError(
                f"warm_pool.size: required for policy {self.policy!r} (only swell sizes its pool from "
                "what it measures); expected a count of instances"
            )
        return self

    def limits(self, stack: tuple[int, int] | None = None) -> tuple[int, int]:
        """(min, max): the stack's limits narrowed by this tier's own, else this tier's. Raises
        ConfigError, naming the key, when this tier's would widen the stack's."""
        if stack is None:
            if self.max is None:
                raise ConfigError("max: required (the stack's limits are not known here)")
            return (1 if self.min is None else self.min), self.max
        lo, hi = stack
        if self.min is not None and self.min < lo:
            raise ConfigError(
                f"min: {self.min} is below the stack's min ({lo}); it may only narrow the stack's limits"
            )
        if self.max is not None and self.max > hi:
            raise ConfigError(
                f"max: {self.max} is above the stack's max ({hi}); it may only narrow the stack's limits"
            )
        narrowed = (lo if self.min is None else self.min, hi if self.max is None else self.max)
        if narrowed[0] > narrowed[1]:
            raise ConfigError(f"min: {narrowed[0]} is above the max in force ({narrowed[1]})")
        return narrowed


def default_state_path() -> Path:
    """`$XDG_STATE_HOME/swell/autoscaler.db`, or `~/.local/state/swell/autoscaler.db` when that is unset
    or not absolute (the XDG Base Directory specification: state that survives restarts and is not
    configuration). Never the working directory: on-call's `swell status` and the service, run by
    the same user, find the same file wherever they are started."""
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "swell" / "autoscaler.db"


class SQLiteStateConfig(_Strict):
    kind: Literal["sqlite"] = "sqlite"
    path: Path = Field(default_factory=default_state_path)


class ConfigMapStateConfig(_Strict):
    kind: Literal["configmap"]
    namespace: str
    name: str = "swell-autoscaler-state"


class KubernetesAccess(_Strict):
    """How to reach the cluster: in-cluster from a pod, else a kubeconfig (the on-call laptop)."""

    kubeconfig: Path | None = None
    context: str | None = None


# client-go's leaderelection.LeaderElectionConfig validates RenewDeadline > JitterFactor x RetryPeriod.
JITTER_FACTOR = 1.2


class LeaderElectionConfig(_Strict):
    """client-go's leader election timing (the defaults are its usual 15 s / 10 s / 2 s)."""

    namespace: str
    lease_name: str = "swell-autoscaler"
    # How long a follower waits after the holder's last renewal before taking the Lease.
    lease_duration_s: int = Field(15, ge=1)
    # How long the leader keeps acting without a successful renewal (API errors); shorter than the
    # lease, so a leader that cannot renew stops before anyone else may take over.
    renew_deadline_s: float = Field(10.0, gt=0)
    # How often every replica tries to acquire or renew, between passes too.
    retry_period_s: float = Field(2.0, gt=0)
    identity: str | None = Field(
        None, description="defaults to POD_NAME (or the host name) plus a random suffix"
    )

    @model_validator(mode="after")
    def _timing(self) -> LeaderElectionConfig:
        if not self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                f"renew_deadline_s ({self.renew_deadline_s:g}) must be shorter than lease_duration_s "
                f"({self.lease_duration_s}): a leader that cannot renew must stop before the Lease expires"
            )
        if not self.renew_deadline_s > JITTER_FACTOR * self.retry_period_s:
            raise ValueError(
                f"renew_deadline_s ({self.renew_deadline_s:g}) must be longer than {JITTER_FACTOR:g} x "
                f"retry_period_s ({self.retry_period_s:g}), as client-go requires"
            )
        return self


class ServeConfig(_Strict):
    listen: str = Field("127.0.0.1:9180", pattern=r"^[^:]+:\d{1,5}$")
    # /healthz (liveness) fails once one pass has run this long: the loop is stuck. Above the
    # longest actuation (a `pulumi up` adding VMs takes minutes), or the kubelet kills a slow one.
    stuck_after_s: float = Field(900.0, gt=0)


class DemandTargetsConfig(_Strict):
    """Two queries answering, per tier (label `tier`), how many scrape targets fed its demand sum
    and how many should have: a tier whose sum lacks targets holds (a partial scrape is not a fall
    in demand)."""

    up: str = Field(min_length=1)
    expected: str = Field(min_length=1)


class ScheduleConfig(_Strict):
    """A known event planned, not detected: a floor of `instances` for `tier` from each time `cron`
    names (in `timezone`) for `duration_s`; it rises one lead time early and ends on a ramp
    (autoscaler/core/schedule.py)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    tier: str
    cron: str = Field(description="minute hour day-of-month month day-of-week, as crontab(5)")
    timezone: str = "UTC"
    duration_s: float = Field(gt=0)
    instances: int = Field(ge=1)
    reason: str = ""

    @model_validator(mode="after")
    def _evaluable(self) -> ScheduleConfig:
        from autoscaler.core.schedule import ScheduleError

        try:
            self.to_core()
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return self

    def to_core(self) -> Schedule:
        from autoscaler.core.schedule import Schedule

        return Schedule(
            self.name, self.tier, self.cron, self.timezone, self.duration_s, self.instances, self.reason
        )


class AutoscalerConfig(_Strict):
    prometheus: PrometheusConfig
    demand_query: str = "tier:swell_offered_demand:current"
    demand_targets: DemandTargetsConfig | None = None
    interval_s: float = Field(15.0, ge=1, le=600)
    state: Annotated[SQLiteStateConfig | ConfigMapStateConfig, Field(discriminator="kind")] = Field(
        default_factory=SQLiteStateConfig
    )
    kubernetes: KubernetesAccess = Field(default_factory=KubernetesAccess)
    leader_election: LeaderElectionConfig | None = None
    serve: ServeConfig = Field(default_factory=ServeConfig)
    tiers: dict[str, TierConfig] = Field(min_length=1)
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    # Past a scheduled window the floor falls linearly to nothing over this long (no cliff).
    schedule_ramp_down_s: float = Field(1800.0, ge=0)

    @model_validator(mode="after")
    def _tier_names(self) -> AutoscalerConfig:
        for name in self.tiers:
            if not re.match(TIER_NAME, name):
                raise ValueError(f"tier name {name!r} must match {TIER_NAME}")
        names = [s.name for s in self.schedules]
        for i, schedule in enumerate(self.schedules):
            if schedule.tier not in self.tiers:
                known = ", ".join(self.tiers)
                raise ValueError(f"schedules.{i}.tier: unknown tier {schedule.tier!r}; expected {known}")
            if names.count(schedule.name) > 1:
                raise ValueError(f"schedules.{i}.name: {schedule.name!r} is used twice")
        if self.serve.stuck_after_s <= 2 * self.interval_s:
            raise ValueError(
                f"serve.stuck_after_s ({self.serve.stuck_after_s:g}) must be longer than two intervals "
                f"({2 * self.interval_s:g} s): a loop that waits between passes is not stuck"
            )
        return self

    @property
    def stale_after_s(self) -> float:
        """Samples older than three intervals are stale: hold."""
        return 3 * self.interval_s

    def secret_values(self) -> list[str]:
        """Every secret this configuration resolves to, for redaction (unresolvable ones skipped)."""
        refs = [
            self.prometheus.bearer_token,
            self.prometheus.basic_auth and self.prometheus.basic_auth.password,
        ]
        found = []
        for ref in refs:
            if isinstance(ref, SecretRef):
                with contextlib.suppress(ConfigError):
                    found.append(ref.resolve("secret"))
        return found


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key and what was expected."""


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid autoscaler configuration"]
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (misspelled?)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "value_error":
            message = message.removeprefix("Value error, ")  # our own message names what to fix
        elif item["type"] == "union_tag_invalid":
            message = f"unknown kind; expected one of {item['ctx']['expected_tags']}"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config") -> AutoscalerConfig:
    try:
        cfg = AutoscalerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    # The core says which policies exist and which the service can run (one registry entry each).
    from autoscaler.core.registry import POLICIES, service_policies

    expected = ", ".join(service_policies())
    for name, tier in cfg.tiers.items():
        if tier.policy not in POLICIES:
            raise ConfigError(
                f"{source}: tiers.{name}.policy: unknown policy {tier.policy!r}; expected one of {expected}"
            )
        why_not = POLICIES[tier.policy].not_in_service
        if why_not:
            raise ConfigError(
                f"{source}: tiers.{name}.policy: {tier.policy!r} {why_not}; expected one of {expected}"
            )
    return cfg


def load_config(path: Path) -> AutoscalerConfig:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys prometheus, tiers, ...")
    return parse_config(data, str(path))
