"""The values that cross the decision core's boundary: observation in, decision and state out.

The autoscaler service calls a policy every sync period per tier and persists the returned state
(SQLite or a ConfigMap) between calls, so every state is plain data (JSON through the registry:
`PolicySpec.state_to_dict` / `state_from_dict`).
Observations, decisions and states are `NamedTuple`s rather than dataclasses: immutable like
frozen dataclasses, but about three times cheaper to build, and the simulator builds a few
million of them per benchmark. Parameters, built once, are frozen dataclasses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

# What may have limited a decision, in the order the normalization chain applies them.
LIMITS = ("rate_limit", "stabilization", "min", "max", "quota", "override", "stale_data")

UP, DOWN, HOLD = "up", "down", "hold"


class Override(NamedTuple):
    """A manual floor (`swell surge --tier video --factor 4 --for 2h`), entering the core as data.

    The service turns "factor 4" into a floor count when the override is created (4 x the count
    at that moment), so the floor does not grow with the tier it raised.
    """

    floor: int
    expires_at: float  # unix seconds
    reason: str = "manual override"

    def active(self, now: float) -> bool:
        return now < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {"floor": self.floor, "expires_at": self.expires_at, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Override:
        return cls(int(data["floor"]), float(data["expires_at"]), str(data.get("reason", "manual override")))


class Observation(NamedTuple):
    """What a policy sees of one tier at one decision.

    `demand` is offered load (requests, sessions or participants *asked for*, in the same unit as
    the policy's `capacity_per_instance`), or None when the sample is missing or NaN.
    `utilization` is a CPU-like busy fraction in [0, 1], used only by the `hpa` and `step`
    baselines: a saturated tier cannot report more than 100% (the simulator derives it as
    min(1, demand / (ready x capacity_per_instance))).
    """

    tier: str
    demand: float | None
    sample_age_s: float
    current: int  # instances requested (ready + pending): what the actuator last set
    ready: int
    pending: int
    utilization: float | None = None
    override: Override | None = None
    # The caller's own verdict on the sample: False when the service's staleness limit finds it too
    # old though the policy's own limit does not; the chain then holds scale-downs all the same.
    trusted: bool = True
    # Seconds of history behind the policy state (the service knows when it began): with less than
    # one stabilization window, the chain holds scale-downs. Infinite in the simulator.
    history_s: float = math.inf


class Clamp(NamedTuple):
    """What one step of the normalization chain did: the tag `limited_by` lists, and a sentence."""

    tag: str  # one of LIMITS, or "tolerance"
    sentence: str


class Decision(NamedTuple):
    """The chain's answer: the desired count, its direction against `current`, why, what capped it
    (`limited_by`, one tag per kind, in chain order), and each step that changed the count
    (`clamps`, with its sentence)."""

    desired: int
    direction: str  # "up", "down" or "hold"
    reason: str
    limited_by: tuple[str, ...] = ()
    clamps: tuple[Clamp, ...] = ()


@dataclass(frozen=True)
class Limits:
    """Caps every policy honours. `quota` is the instances the project's OpenStack quota leaves for
    this tier (OVHcloud quota tiers: 10, 20, 50, 100, 200 VMs); None means no quota beyond `max`."""

    min: int = 1
    max: int = 1000
    quota: int | None = None

    def __post_init__(self) -> None:
        if self.min < 0:
            raise ValueError(f"limits.min must be >= 0, got {self.min}")
        if self.max < max(self.min, 1):
            raise ValueError(f"limits.max must be >= max(min, 1), got min={self.min} max={self.max}")
        if self.quota is not None and self.quota < 0:
            raise ValueError(f"limits.quota must be >= 0 or None, got {self.quota}")


def is_missing(demand: float | None) -> bool:
    return demand is None or math.isnan(demand)


def direction_of(desired: int, current: int) -> str:
    if desired > current:
        return UP
    if desired < current:
        return DOWN
    return HOLD
