"""What one drill runs: the profile and its speed, the faults, the SLO limits and each tier's plan.
Plain data, validated once; the profile's length comes from its curve (`loadtests/curves.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loadtests.curves import nominal_length_s
from loadtests.faults import Fault
from swell import tiers

# The profiles a drill runs, at their default speed (a few minutes of load each).
DEFAULT_SPEED = {"surge400": 20.0, "daily": 360.0, "spike": 7.5, "flash": 5.0}
NOMINAL_BOOT_S = 180.0  # VM boot plus cloud-init configuration
# Drains are not compressed: the drill's sessions last 10-25 real seconds (Locust's users send one
# message a second), so a retiring instance gets real time for them to end.
DRILL_DRAIN_TIMEOUT_S = 60.0
# A drill that would run longer is a mistake in --speed, not a rehearsal anyone waits for.
MAX_LOAD_S = 3600.0


@dataclass(frozen=True)
class TierPlan:
    """One tier in the drill: instance limits and what one instance serves (the autoscaler's
    `capacity_per_instance`, below the service's hard limits so that the SLO holds at it)."""

    min: int
    max: int
    capacity_per_instance: float
    unit: str


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

    @property
    def boot_delay_s(self) -> float:
        return NOMINAL_BOOT_S / self.effective_speed

    def validate(self) -> None:
        if self.profile not in DEFAULT_SPEED:
            raise ValueError(f"--profile {self.profile!r}: expected one of {', '.join(DEFAULT_SPEED)}")
        if not self.effective_speed > 0:
            raise ValueError(f"--speed must be > 0, got {self.speed}")
        if self.load_s > MAX_LOAD_S:
            raise ValueError(f"--speed {self.speed}: the load would run {self.load_s:.0f} s (more than 1 h)")
