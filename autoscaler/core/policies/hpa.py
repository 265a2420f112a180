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

The policy proposes the recommendation with its window and scale-up rate; the shared chain
applies them (stabilization, rate limit), then what the platform imposes on every policy: min,
max, quota, the override floor, and the x4 cap per decision (which binds the HPA only when going
from 1 to 5). Missing or stale utilization holds in the chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from autoscaler.core.chain import Guards, Proposal
from autoscaler.core.types import Observation

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


class Behavior(NamedTuple):
    """The HPA's default behavior as the chain takes it: the stabilization window's recommendations
    (stabilizeRecommendationWithBehaviors) and the scale-up rate as a count
    (convertDesiredReplicasWithBehaviorRate); the chain applies both, in its own order."""

    window: tuple[int, ...]
    scale_up_limit: int
    state: HpaState


def hpa_behavior(
    recommendation: int,
    current: int,
    state: HpaState,
    window_s: float,
    up_percent: float,
    up_pods: int,
    now: float,
) -> Behavior:
    """Remember `recommendation` for `window_s`; scale up by at most max(`up_percent`, `up_pods`)."""
    cutoff = now - window_s
    recs = (*(r for r in state.recommendations if r[0] > cutoff), (now, recommendation))
    cap = max(math.ceil(current * (1 + up_percent / 100)), current + up_pods)
    # Only a scale-down consults the window, and only its highest recommendation: that alone is
    # handed over, and only then (the simulator's hot loop).
    window = (max(r[1] for r in recs),) if recommendation < current else ()
    return Behavior(window, cap, HpaState(recs))


def propose(obs: Observation, state: HpaState, params: HpaParams, now: float) -> Proposal:
    util = obs.utilization
    current = obs.current
    assert util is not None  # the chain asks only with fresh data: no scale-down on an invalid metric
    # The tolerance is on the usage ratio, as the replica calculator applies it before any
    # normalization; the chain's count tolerance would round differently.
    ratio = util / params.target_utilization
    if abs(ratio - 1) <= params.tolerance:
        rec = current
    else:
        rec = math.ceil(obs.ready * ratio)
        # Unready (pending) pods count as 0% on the way up: a flipped direction keeps current.
        if (ratio > 1 and rec <= current) or (ratio < 1 and rec >= current):
            rec = current
    behavior = hpa_behavior(
        rec, current, state, params.stabilization_down_s, params.scale_up_percent, params.scale_up_pods, now
    )
    reason = f"utilization {util:.0%} vs target {params.target_utilization:.0%} on {obs.ready} ready -> {rec}"
    return Proposal(
        rec, reason, behavior.state, window=behavior.window, scale_up_limit=behavior.scale_up_limit
    )
