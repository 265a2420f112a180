"""`static`: a fixed size, the capacity plan without an autoscaler (provisioned for the peak)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from autoscaler.core.chain import Guards, finish, rate_limit
from autoscaler.core.state import state_from_dict, state_to_dict
from autoscaler.core.types import Decision, Observation, is_missing


@dataclass(frozen=True)
class StaticParams:
    count: int
    sync_period_s: float = 15.0
    stale_after_s: float = 120.0
    guards: Guards = field(default_factory=Guards)


class StaticState(NamedTuple):
    def to_dict(self) -> dict[str, Any]:
        return state_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StaticState:
        return state_from_dict(cls, data)


def decide(
    obs: Observation, state: StaticState, params: StaticParams, now: float
) -> tuple[Decision, StaticState]:
    # The size needs no data, but the platform rule holds for every policy: no scale-down while
    # the data is stale (the fixed size is reached again once it is fresh).
    fresh = not is_missing(obs.demand) and obs.sample_age_s <= params.stale_after_s
    desired, tag = rate_limit(params.count, obs.current, params.guards)
    limited = [tag] if tag else []
    return finish(desired, obs, params.guards, now, f"fixed size {params.count}", limited, fresh), state
