"""`target-tracking`: AWS EC2 Auto Scaling target tracking on request count per target.

Source: AWS documentation, "Target tracking scaling policies for Amazon EC2 Auto Scaling" and
"Set the default instance warmup": the policy keeps a metric at a target with two CloudWatch
alarms on 1-minute datapoints: scale out after 3 consecutive datapoints above the target, scale in
after 15 consecutive datapoints below it (here: below 90% of it, as the scale-in alarm sits just
under the target). The new capacity is proportional: ceil(metric x in-service / target), which for
ALBRequestCountPerTarget is ceil(requests / target). Instances still warming up (pending, or
launched less than the warmup ago) do not count in the metric and block scale-in; scale-in then
waits a 300 s cooldown. The target per instance is 0.7 x capacity, like the other baselines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from autoscaler.core.chain import Guards, Proposal
from autoscaler.core.types import Observation


@dataclass(frozen=True)
class TargetTrackingParams:
    capacity_per_instance: float
    target_utilization: float = 0.7
    scale_out_datapoints: int = 3
    scale_in_datapoints: int = 15
    scale_in_fraction: float = 0.9
    warmup_s: float = 300.0
    scale_in_cooldown_s: float = 300.0
    sync_period_s: float = 60.0  # one CloudWatch datapoint per minute
    stale_after_s: float = 180.0
    guards: Guards = field(default_factory=lambda: Guards(max_down_factor=0.0))

    def __post_init__(self) -> None:
        if not self.capacity_per_instance > 0:
            raise ValueError(f"capacity_per_instance must be > 0, got {self.capacity_per_instance}")


class TargetTrackingState(NamedTuple):
    above: int = 0  # consecutive datapoints above the target
    below: int = 0  # consecutive datapoints below the scale-in threshold
    last_scale_out: float = -math.inf
    last_scale_in: float = -math.inf  # "never" (null in JSON: autoscaler/core/state.py)


def propose(
    obs: Observation, state: TargetTrackingState, params: TargetTrackingParams, now: float
) -> Proposal:
    # Not asked on missing data: CloudWatch treats it as "missing", the alarms keep their state,
    # and so does the chain's hold.
    demand = obs.demand
    current = obs.current
    assert demand is not None
    target = params.target_utilization * params.capacity_per_instance
    per_target = demand / obs.ready if obs.ready > 0 else math.inf
    above = state.above + 1 if per_target > target else 0
    below = state.below + 1 if per_target < target * params.scale_in_fraction else 0
    proportional = math.ceil(demand / target)
    desired = current
    last_out, last_in = state.last_scale_out, state.last_scale_in
    reason = f"{per_target:.1f} per target vs {target:.1f}"
    if above >= params.scale_out_datapoints and proportional > current:
        desired = proportional
        last_out = now
        reason += f": {above} datapoints above -> {proportional}"
    elif below >= params.scale_in_datapoints and proportional < current:
        warming = obs.pending > 0 or now - state.last_scale_out < params.warmup_s
        cooling = now - state.last_scale_in < params.scale_in_cooldown_s
        if not warming and not cooling:
            desired = proportional
            last_in = now
            below = 0
            reason += f": {params.scale_in_datapoints} datapoints below -> {proportional}"
    return Proposal(desired, reason, TargetTrackingState(above, below, last_out, last_in))
