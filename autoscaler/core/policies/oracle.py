"""`oracle`: knows the future; the bound no real policy can beat.

An instance requested now is ready one lead time later, and one removed now cannot come back
sooner, so the cheapest plan that never under-provisions requests, at every moment, what the
highest demand of the coming lead time needs: desired(t) = ceil(max demand over [t, t + lead] /
capacity). The caller (the simulator) passes that future peak as `observation.demand`; there is
no rate limit (not even the chain's safety net), only min, max and quota.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from autoscaler.core.chain import Guards, Proposal
from autoscaler.core.types import Observation


@dataclass(frozen=True)
class OracleParams:
    capacity_per_instance: float
    sync_period_s: float = 15.0
    stale_after_s: float = 120.0  # the platform's rule holds for the bound too
    guards: Guards = field(
        default_factory=lambda: Guards(max_up_factor=math.inf, max_down_factor=0.0, safety_up_factor=math.inf)
    )


class OracleState(NamedTuple):
    pass


def propose(obs: Observation, state: OracleState, params: OracleParams, now: float) -> Proposal:
    assert obs.demand is not None  # the chain asks only with fresh data
    need = math.ceil(obs.demand / params.capacity_per_instance - 1e-9)
    return Proposal(need, f"future peak {obs.demand:.1f} needs {need}", state)
