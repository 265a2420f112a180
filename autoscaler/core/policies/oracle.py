"""`oracle`: knows the future; the bound no real policy can beat.

An instance requested now is ready one lead time later, and one removed now cannot come back
sooner, so the cheapest plan that never under-provisions requests, at every moment, what the
highest demand of the coming lead time needs: desired(t) = ceil(max demand over [t, t + lead] /
capacity). The caller (the simulator) passes that future peak as `observation.demand`; there is
no rate limit, only min, max and quota.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from autoscaler.core.chain import Guards, finish
from autoscaler.core.state import state_from_dict, state_to_dict
from autoscaler.core.types import Decision, Observation, is_missing


@dataclass(frozen=True)
class OracleParams:
    capacity_per_instance: float
    sync_period_s: float = 15.0
    stale_after_s: float = 120.0  # the platform's rule holds for the bound too
    guards: Guards = field(default_factory=lambda: Guards(max_up_factor=math.inf, max_down_factor=0.0))


class OracleState(NamedTuple):
    def to_dict(self) -> dict[str, Any]:
        return state_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OracleState:
        return state_from_dict(cls, data)


def decide(
    obs: Observation, state: OracleState, params: OracleParams, now: float
) -> tuple[Decision, OracleState]:
    if is_missing(obs.demand) or obs.sample_age_s > params.stale_after_s:
        return finish(obs.current, obs, params.guards, now, "hold: future unknown here", [], False), state
    assert obs.demand is not None
    need = math.ceil(obs.demand / params.capacity_per_instance - 1e-9)
    return finish(
        need, obs, params.guards, now, f"future peak {obs.demand:.1f} needs {need}", [], True
    ), state
