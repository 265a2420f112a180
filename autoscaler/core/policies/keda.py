"""`keda`: KEDA's Prometheus scaler feeding the HPA an external metric as AverageValue.

Source: KEDA documentation, "Scalers: Prometheus" (metricType AverageValue is the default;
pollingInterval 30 s) and the Kubernetes HPA external-metric algorithm
(replica_calculator.go GetExternalPerPodMetricReplicas): usage ratio = value / (target x
current replicas); within tolerance 0.1 keep current, else desired = ceil(value / target).
The HPA default behavior then applies (see `hpa`). The target per instance is 0.7 x the
instance capacity, the same 70% margin as the `hpa` baseline. A failed query leaves the
HPA's last replica count untouched: the policy holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from autoscaler.core.chain import Guards, Proposal
from autoscaler.core.policies.hpa import HPA_GUARDS, HpaState, hpa_behavior
from autoscaler.core.types import Observation

KedaState = HpaState


@dataclass(frozen=True)
class KedaParams:
    capacity_per_instance: float
    target_utilization: float = 0.7
    tolerance: float = 0.1
    stabilization_down_s: float = 300.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    sync_period_s: float = 30.0  # KEDA pollingInterval default
    stale_after_s: float = 120.0
    guards: Guards = field(default_factory=lambda: HPA_GUARDS)

    def __post_init__(self) -> None:
        if not self.capacity_per_instance > 0:
            raise ValueError(f"capacity_per_instance must be > 0, got {self.capacity_per_instance}")


def propose(obs: Observation, state: HpaState, params: KedaParams, now: float) -> Proposal:
    demand = obs.demand
    current = obs.current
    assert demand is not None  # the chain asks only with fresh data (a failed query holds there)
    target = params.target_utilization * params.capacity_per_instance
    ratio = demand / (target * current) if current > 0 else math.inf
    rec = current if abs(ratio - 1) <= params.tolerance else math.ceil(demand / target)
    behavior = hpa_behavior(
        rec, current, state, params.stabilization_down_s, params.scale_up_percent, params.scale_up_pods, now
    )
    reason = f"demand {demand:.1f} / target {target:.1f} per instance -> {rec}"
    return Proposal(
        rec, reason, behavior.state, window=behavior.window, scale_up_limit=behavior.scale_up_limit
    )
