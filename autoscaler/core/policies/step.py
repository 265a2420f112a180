"""`step`: threshold step scaling on a CPU-like utilization (capped at 100%).

Source: AWS documentation, "Step and simple scaling policies for Amazon EC2 Auto Scaling":
a CloudWatch alarm on 1-minute datapoints triggers step adjustments chosen by how far the metric
is beyond the threshold (PercentChangeInCapacity, at least one instance); instances still
warming up count as capacity, so a breach does not add again until they are in service. The
steps below are a common deployment: out at 80% for 2 minutes (+20%, +50% from 90%, +100% when
saturated), in at 40% for 10 minutes (-20%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from autoscaler.core.chain import Guards, Proposal
from autoscaler.core.types import Observation


@dataclass(frozen=True)
class StepParams:
    scale_out_threshold: float = 0.8
    scale_out_datapoints: int = 2
    # (lower bound of utilization, percent change), highest bound first.
    scale_out_steps: tuple[tuple[float, float], ...] = ((1.0, 100.0), (0.9, 50.0), (0.8, 20.0))
    scale_in_threshold: float = 0.4
    scale_in_datapoints: int = 10
    scale_in_percent: float = 20.0
    sync_period_s: float = 60.0
    stale_after_s: float = 180.0
    guards: Guards = field(default_factory=lambda: Guards(max_down_factor=0.0))


class StepState(NamedTuple):
    above: int = 0
    below: int = 0


def propose(obs: Observation, state: StepState, params: StepParams, now: float) -> Proposal:
    util = obs.utilization
    current = obs.current
    assert util is not None  # the chain asks only with fresh data
    above = state.above + 1 if util >= params.scale_out_threshold else 0
    below = state.below + 1 if util < params.scale_in_threshold else 0
    desired = current
    reason = f"utilization {util:.0%}"
    if above >= params.scale_out_datapoints and obs.pending == 0:
        pct = next(p for lo, p in params.scale_out_steps if util >= lo)
        desired = current + max(1, math.ceil(current * pct / 100))
        reason += f" >= {params.scale_out_threshold:.0%}: +{pct:.0f}%"
    elif below >= params.scale_in_datapoints:
        desired = current - max(1, math.floor(current * params.scale_in_percent / 100))
        below = 0
        reason += f" < {params.scale_in_threshold:.0%}: -{params.scale_in_percent:.0f}%"
    return Proposal(desired, reason, StepState(above, below))
