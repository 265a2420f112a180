"""What one drill runs: the profile and its speed, the faults, the SLO limits and each tier's plan.
Plain data, validated once; the profile's length comes from its curve (`loadtests/curves.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autoscaler.config import WarmPoolConfig
from loadtests.curves import nominal_length_s
from loadtests.faults import Fault
from swell import tiers

# The profiles a drill runs, at their default speed (a few minutes of load each).
DEFAULT_SPEED = {"surge400": 20.0, "daily": 360.0, "spike": 7.5, "flash": 5.0}
# A tier's nominal delays (before compression): the defaults of the autoscaler configuration's
# `warm_pool` block (issue 15: 600 s and 120 s), one definition for production and the drill.
# Cold = create, boot and configure (cloud-init, ansible-pull) a new instance, or fill a pool
# instance; warm = unshelve a configured one and boot it (an assumption to measure on OVHcloud).
# The drill's actuator waits these, and its autoscaler plans across them (`loadtests/wiring.py`).
NOMINAL_COLD_BOOT_S: float = WarmPoolConfig.model_fields["cold_lead_s"].default
NOMINAL_WARM_BOOT_S: float = WarmPoolConfig.model_fields["warm_lead_s"].default
# Drains are not compressed: the drill's sessions last 10-25 real seconds (Locust's users send one
# message a second), so a retiring instance gets real time for them to end.
DRILL_DRAIN_TIMEOUT_S = 60.0
# A drill that would run longer is a mistake in --speed, not a rehearsal anyone waits for.
MAX_LOAD_S = 3600.0


@dataclass(frozen=True)
class TierPlan:
    """One tier in the drill: instance limits, what one instance serves (the autoscaler's
    `capacity_per_instance`, below the service's hard limits so that the SLO holds at it), and its
    nominal cold and warm delays (see `NOMINAL_COLD_BOOT_S`)."""

    min: int
    max: int
    capacity_per_instance: float
    unit: str
    cold_boot_s: float = NOMINAL_COLD_BOOT_S
    warm_boot_s: float = NOMINAL_WARM_BOOT_S


def catalog_plans() -> dict[str, TierPlan]:
    """Each tier's plan, from the tier catalog's `drill.plan` (swell/data/tiers.yaml)."""
    return {
        t.name: TierPlan(
            min=t.drill.plan.min,
            max=t.drill.plan.max,
            capacity_per_instance=t.drill.plan.capacity_per_instance,
            unit=t.unit,
        )
        for t in tiers.load().tiers
    }


@dataclass(frozen=True)
class DrillOptions:
    out: Path
    profile: str = "surge400"
    speed: float | None = None
    autoscale: bool = True
    # The warm pool (issue 15): each tier's autoscaler keeps one (`warm_pool.enabled`).
    warm_pool: bool = True
    # swell starts remembering the profile's steepest rise (`growth_memory`), as after a day like
    # this one; False: a first surge ever (see `profile_growth_per_s`).
    memory: bool = True
    faults: tuple[Fault, ...] = ()
    base_users: int = 30
    interval_s: float = 2.0
    warmup_s: float = 15.0
    p95_limit_ms: float = 500.0
    error_rate_limit: float = 0.01
    plans: dict[str, TierPlan] = field(default_factory=catalog_plans)

    @property
    def effective_speed(self) -> float:
        return self.speed if self.speed is not None else DEFAULT_SPEED[self.profile]

    @property
    def load_s(self) -> float:
        """Real seconds of load: the profile's curve, compressed."""
        return nominal_length_s(self.profile) / self.effective_speed

    def cold_delay_s(self, tier: str) -> float:
        """Real seconds from asking for a new instance (or a pool instance) to its being ready."""
        return self.plans[tier].cold_boot_s / self.effective_speed

    def warm_delay_s(self, tier: str) -> float:
        """Real seconds from unshelving a warm instance to its being ready."""
        return self.plans[tier].warm_boot_s / self.effective_speed

    @property
    def boot_delay_s(self) -> float:
        """The longest cold delay of the drill's tiers (real seconds), for the report's summary."""
        return max(self.cold_delay_s(t) for t in self.plans)

    def validate(self) -> None:
        if self.profile not in DEFAULT_SPEED:
            raise ValueError(f"--profile {self.profile!r}: expected one of {', '.join(DEFAULT_SPEED)}")
        if not self.effective_speed > 0:
            raise ValueError(f"--speed must be > 0, got {self.speed}")
        for name, plan in self.plans.items():
            if not 0 < plan.warm_boot_s < plan.cold_boot_s:
                raise ValueError(
                    f"tier {name}: warm_boot_s ({plan.warm_boot_s:g}) must be > 0 and shorter than "
                    f"cold_boot_s ({plan.cold_boot_s:g}): unshelving skips the configuration"
                )
        if self.load_s > MAX_LOAD_S:
            raise ValueError(f"--speed {self.speed}: the load would run {self.load_s:.0f} s (more than 1 h)")
