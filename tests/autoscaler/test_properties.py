"""Property tests of the decision core (hypothesis): whatever the inputs, every policy stays in
[min, max], never more than quadruples, never scales down on stale or missing data, and gives the
same decision for the same inputs."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.registry import POLICIES
from autoscaler.core.types import Decision, Limits, Observation
from tests.autoscaler.policy_helpers import CAP, params_for

REAL_POLICIES = [p for p in POLICIES if p != "oracle"]  # the oracle is a bound, not rate-limited

demand_values = st.one_of(
    st.none(), st.just(math.nan), st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, Limits, list[tuple[float | None, float]], int, int]:
    name = draw(st.sampled_from(REAL_POLICIES))
    lo = draw(st.integers(1, 20))
    hi = draw(st.integers(lo, 400))
    history = draw(
        st.lists(
            st.tuples(demand_values, st.floats(min_value=0, max_value=600, allow_nan=False)),
            min_size=1,
            max_size=40,
        )
    )
    current = draw(st.integers(lo, hi))
    ready = draw(st.integers(0, current))
    return name, Limits(lo, hi), history, current, ready


def run(
    name: str, limits: Limits, history: list[tuple[float | None, float]], current: int, ready: int
) -> list[tuple[Observation, Decision]]:
    params = params_for(name, limits=limits)
    spec = POLICIES[name]
    state = spec.initial_state()
    decisions = []
    for i, (demand, age) in enumerate(history):
        util = (
            None
            if demand is None or math.isnan(demand)
            else (min(1.0, demand / (ready * CAP)) if ready else 1.0)
        )
        obs = Observation("web", demand, age, current, ready, current - ready, util)
        decision, state = spec.decide(obs, state, params, 1_700_000_000.0 + 15.0 * i)
        decisions.append((obs, decision))
        current = decision.desired
        ready = min(ready, current)
    return decisions


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_decisions_stay_in_bounds_quadruple_at_most_and_hold_on_stale_data(
    case: tuple[str, Limits, list[tuple[float | None, float]], int, int],
) -> None:
    name, limits, history, current, ready = case
    stale_after = params_for(name).stale_after_s
    for obs, decision in run(name, limits, history, current, ready):
        assert limits.min <= decision.desired <= limits.max
        assert decision.desired <= 4 * obs.current
        missing = obs.demand is None or math.isnan(obs.demand)
        if missing or obs.sample_age_s > stale_after:
            assert decision.desired >= obs.current, decision
        assert set(decision.limited_by) <= {
            "min",
            "max",
            "quota",
            "rate_limit",
            "stabilization",
            "stale_data",
            "override",
        }
        assert decision.direction == (
            "up" if decision.desired > obs.current else "down" if decision.desired < obs.current else "hold"
        )


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_the_same_inputs_give_the_same_decisions(
    case: tuple[str, Limits, list[tuple[float | None, float]], int, int],
) -> None:
    assert run(*case) == run(*case)
