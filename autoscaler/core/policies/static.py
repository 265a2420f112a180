"""`static`: a fixed size, the capacity plan without an autoscaler (provisioned for the peak)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from autoscaler.core.chain import Guards, Proposal
from autoscaler.core.types import Observation


@dataclass(frozen=True)
class StaticParams:
    count: int
    sync_period_s: float = 15.0
    stale_after_s: float = 120.0
    guards: Guards = field(default_factory=Guards)


class StaticState(NamedTuple):
    pass


def propose(obs: Observation, state: StaticState, params: StaticParams, now: float) -> Proposal:
    # The size needs no data (the registry says so), but the chain's rule holds for every policy:
    # no scale-down while the data is stale (the fixed size is reached again once it is fresh).
    return Proposal(params.count, f"fixed size {params.count}", state)
