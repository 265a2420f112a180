"""The normalization chain every policy's raw proposal goes through, as small pure functions.

Order (each step sees the previous step's output; `limited_by` names every step that changed it):

1. tolerance      ignore changes within a relative band around `current` (anti-flapping);
2. rate_limit     at most x`max_up_factor` (4) up and at most halving down in one decision;
3. stabilization  on the way down, the highest recommendation of the window (policy state);
4. min, max, quota  the configured bounds, then the OpenStack quota left for the tier;
5. override       a manual floor with an expiry, itself capped by max and quota;
6. stale_data     never scale down on stale or missing data (policies propose `current` then,
                  so only the min and override floors can still raise a tier without data).

Each step returns (value, tag) where tag is None when the step changed nothing, so the chain
costs a handful of function calls per decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from autoscaler.core.types import Decision, Limits, Observation, direction_of


@dataclass(frozen=True)
class Guards:
    """The chain's parameters: shared caps plus the rate limits a policy runs under."""

    limits: Limits = field(default_factory=Limits)
    max_up_factor: float = 4.0  # the mission: quadruple at most, in one decision
    max_down_factor: float = 0.5  # at most halving per decision
    # From 0 instances x4 is still 0: allow this many in one decision.
    up_from_zero: int = 4

    def __post_init__(self) -> None:
        if self.max_up_factor < 1:
            raise ValueError(f"max_up_factor must be >= 1, got {self.max_up_factor}")
        if not 0 <= self.max_down_factor <= 1:
            raise ValueError(f"max_down_factor must be in [0, 1], got {self.max_down_factor}")


def tolerance(proposed: int, current: int, up_tol: float, down_tol: float) -> tuple[int, str | None]:
    """Keep `current` when the proposal is within the tolerance band (as the HPA's 0.1)."""
    if proposed > current and proposed <= current * (1 + up_tol):
        return current, "tolerance"
    if proposed < current and proposed >= current * (1 - down_tol):
        return current, "tolerance"
    return proposed, None


def rate_limit(proposed: int, current: int, guards: Guards) -> tuple[int, str | None]:
    if proposed > current:
        cap = max(
            math.floor(current * guards.max_up_factor), guards.up_from_zero if current == 0 else current
        )
        if proposed > cap:
            return cap, "rate_limit"
    elif proposed < current:
        floor = math.ceil(current * guards.max_down_factor)
        if proposed < floor:
            return floor, "rate_limit"
    return proposed, None


def stabilization(proposed: int, current: int, window: Sequence[int]) -> tuple[int, str | None]:
    """On the way down, take the highest recommendation still inside the window (HPA-style)."""
    if proposed < current and window:
        top = max(window)
        if top > proposed:
            top = min(top, current)
            return top, "stabilization"
    return proposed, None


def finish(
    proposed: int,
    obs: Observation,
    guards: Guards,
    now: float,
    reason: str,
    limited: list[str],
    fresh: bool,
) -> Decision:
    """Steps 4-6 of the chain, then the Decision with its direction and reason."""
    limits = guards.limits
    desired = proposed
    if desired < limits.min:
        desired = limits.min
        limited.append("min")
    if desired > limits.max:
        desired = limits.max
        limited.append("max")
    if limits.quota is not None and desired > limits.quota:
        desired = limits.quota
        limited.append("quota")
    ov = obs.override
    if ov is not None and ov.active(now) and desired < ov.floor:
        floor = min(ov.floor, limits.max, limits.quota if limits.quota is not None else ov.floor)
        if floor > desired:
            desired = floor
            limited.append("override")
            reason = f"{reason}; {ov.reason}: floor {ov.floor} until {ov.expires_at:.0f}"
    current = obs.current
    if not fresh and desired < current:
        desired = current
        limited.append("stale_data")
    if "tolerance" in limited:
        limited.remove("tolerance")  # not a cap the operator can change: the reason says it
    if limited:
        reason = f"{reason} (limited by {', '.join(limited)})"
    return Decision(desired, direction_of(desired, current), reason, tuple(limited))
