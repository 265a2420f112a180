"""Drive a policy through a demand sequence the way the simulator does, for tests."""

from __future__ import annotations

from typing import Any

from autoscaler.core.registry import POLICIES, build_params
from autoscaler.core.types import Decision, Limits, Observation

CAP = 10.0


def params_for(name: str, lead: float = 180.0, limits: Limits | None = None, **overrides: Any) -> Any:
    return build_params(
        name,
        capacity_per_instance=CAP,
        lead_time_s=lead,
        limits=limits or Limits(1, 1000),
        static_count=10,
        overrides=overrides or None,
    )


def observe(demand: float | None, current: int, ready: int | None = None, age: float = 30.0) -> Observation:
    ready = current if ready is None else ready
    util = None if demand is None else (min(1.0, demand / (ready * CAP)) if ready else 1.0)
    return Observation("web", demand, age, current, ready, current - ready, util)


def drive(
    name: str, demands: list[float], current: int, params: Any, t0: float = 0.0, step: float = 15.0
) -> tuple[list[Decision], Any, int]:
    """Feed demands every `step` seconds with instantly-ready instances; return decisions, state, count."""
    spec = POLICIES[name]
    state = spec.initial_state()
    decisions = []
    for i, d in enumerate(demands):
        decision, state = spec.decide(observe(d, current), state, params, t0 + i * step)
        decisions.append(decision)
        current = decision.desired
    return decisions, state, current
