"""`hpa`: the Kubernetes HorizontalPodAutoscaler v2 with its default behavior, on a CPU-like
utilization capped at 100% with target 0.7, as commonly deployed.

Source: Kubernetes documentation, "Horizontal Pod Autoscaling" (algorithm details, default
behavior) and pkg/controller/podautoscaler/{replica_calculator.go,horizontal.go}:

- desired = ceil(ready x utilization / target); within the tolerance (0.1) of the target ratio,
  keep the current replicas;
- pods not yet ready count as 0% on the way up: if that flips the direction, keep current;
- no scale-down while the metric is missing or invalid;
- default behavior: scale up by at most max(100%, 4 pods) per 15 s, no up-stabilization;
  scale down by up to 100% per 15 s after a 300 s stabilization window (the highest
  recommendation of the last 5 minutes);
- the controller syncs every 15 s (--horizontal-pod-autoscaler-sync-period).

The shared chain adds only what the platform imposes on every policy: min, max, quota, the
override floor, and the x4 cap per decision (which binds the HPA only when going from 1 to 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from autoscaler.core.chain import Guards, finish, rate_limit
from autoscaler.core.state import state_from_dict, state_to_dict
from autoscaler.core.types import Decision, Observation, is_missing

HPA_GUARDS = Guards(max_down_factor=0.0)  # the HPA itself may remove 100% per period


@dataclass(frozen=True)
class HpaParams:
    target_utilization: float = 0.7
    tolerance: float = 0.1
    stabilization_down_s: float = 300.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    sync_period_s: float = 15.0
    stale_after_s: float = 120.0
    guards: Guards = field(default_factory=lambda: HPA_GUARDS)


class HpaState(NamedTuple):
    # (time, recommendation) of the last stabilization window, oldest first.
    recommendations: tuple[tuple[float, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return state_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HpaState:
        return state_from_dict(cls, data)


def hpa_behavior(
    recommendation: int,
    obs: Observation,
    state: HpaState,
    window_s: float,
    up_percent: float,
    up_pods: int,
    now: float,
) -> tuple[int, list[str], HpaState]:
    """The HPA's stabilizeRecommendationWithBehaviors + convertDesiredReplicasWithBehaviorRate."""
    cutoff = now - window_s
    recs = (*(r for r in state.recommendations if r[0] > cutoff), (now, recommendation))
    current = obs.current
    limited: list[str] = []
    desired = recommendation
    if desired < current:
        top = max(r[1] for r in recs)
        stabilized = min(top, current)
        if stabilized > desired:
            desired = stabilized
            limited.append("stabilization")
    elif desired > current:
        cap = max(math.ceil(current * (1 + up_percent / 100)), current + up_pods)
        if desired > cap:
            desired = cap
            limited.append("rate_limit")
    return desired, limited, HpaState(recs)


def decide(obs: Observation, state: HpaState, params: HpaParams, now: float) -> tuple[Decision, HpaState]:
    util = obs.utilization
    current = obs.current
    if is_missing(util) or obs.sample_age_s > params.stale_after_s:
        reason = "hold: utilization missing or stale (no scale-down on an invalid metric)"
        return finish(current, obs, params.guards, now, reason, [], False), state
    assert util is not None
    ratio = util / params.target_utilization
    if abs(ratio - 1) <= params.tolerance:
        rec = current
    else:
        rec = math.ceil(obs.ready * ratio)
        # Unready (pending) pods count as 0% on the way up: a flipped direction keeps current.
        if (ratio > 1 and rec <= current) or (ratio < 1 and rec >= current):
            rec = current
    desired, limited, new_state = hpa_behavior(
        rec, obs, state, params.stabilization_down_s, params.scale_up_percent, params.scale_up_pods, now
    )
    desired, tag = rate_limit(desired, current, params.guards)
    if tag:
        limited.append(tag)
    reason = f"utilization {util:.0%} vs target {params.target_utilization:.0%} on {obs.ready} ready -> {rec}"
    return finish(desired, obs, params.guards, now, reason, limited, True), new_state
