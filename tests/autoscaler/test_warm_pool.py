"""Warm pools in the simulator: instances unshelved from the pool serve after the warm lead time,
the rest after the cold one; the pool refills, costs its shelved hours, and swell sizes it from
what it measured."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import yaml

from autoscaler.core.policies import swell
from autoscaler.core.registry import POLICIES
from autoscaler.sim.engine import SimParams, WarmPoolParams, resample, run_policy
from autoscaler.sim.trace import Trace
from tests.autoscaler.policy_helpers import observe, params_for

START = 1_767_225_600.0


def step_trace(before: float, after: float, at_min: int, total_min: int) -> Trace:
    t = START + 60.0 * np.arange(total_min)
    return Trace("step", t, np.where(np.arange(total_min) < at_min, before, after))


PARAMS = SimParams(capacity_per_instance=10.0, lead_time_s=600.0, metric_lag_s=0.0)
WARM = WarmPoolParams(warm_lead_time_s=120.0, shelved_price_fraction=0.10)


def first_tick_with(ready: np.ndarray, count: int, after: int) -> int:
    return int(np.flatnonzero(ready[after:] >= count)[0])


def test_a_pool_serves_a_step_in_the_warm_lead_time_instead_of_the_cold_one() -> None:
    """x3 at minute 120: target-tracking with the AWS pool (the peak count minus the active one)
    has the step's instances ready two minutes after it asks, not ten."""
    replay = resample(step_trace(100.0, 300.0, 300, 380), PARAMS)  # the pool waits five hours
    at = 300 * 4  # ticks of 15 s
    cold = run_policy("target-tracking", replay, PARAMS)
    warm = run_policy("target-tracking", replay, replace(PARAMS, warm_pool=WARM))
    asked = int(np.flatnonzero(cold.requested[at:] > cold.requested[at - 1])[0])
    assert first_tick_with(cold.ready, 30, at) - asked >= 600 / 15  # created cold: 10 minutes
    assert first_tick_with(warm.ready, 30, at) - asked <= 120 / 15 + 4  # unshelved: 2 minutes
    assert warm.metrics["theta_u"] < cold.metrics["theta_u"] / 2
    assert warm.metrics["shelved_hours"] > 0


@pytest.mark.parametrize("price", [0.0, 0.10, 0.25], ids=["free", "10pct", "25pct"])
def test_shelved_hours_are_billed_at_their_price(price: float) -> None:
    replay = resample(step_trace(100.0, 300.0, 200, 240), PARAMS)  # the pool holds the peak's count
    run = run_policy("target-tracking", replay, replace(PARAMS, warm_pool=WarmPoolParams(120.0, price)))
    free = run_policy("target-tracking", replay, replace(PARAMS, warm_pool=WarmPoolParams(120.0, 0.0)))
    shelved = run.metrics["shelved_hours"]
    assert shelved > 0
    assert run.metrics["billed_hours"] == pytest.approx(free.metrics["billed_hours"] + price * shelved)


def test_swell_sizes_no_pool_before_it_has_measured_demand_and_a_minimum_rise_after() -> None:
    params = params_for("swell")
    assert swell.warm_pool_target(swell.SwellState(), params, 5, 600.0, 100, 0.0)[0] == 0
    state = swell.SwellState()
    current = 12
    for i in range(200):  # flat at 100: level 100, capacity 10
        decision, state = POLICIES["swell"].decide(observe(100.0, current), state, params, i * 15.0)
        current = decision.desired
    size, why = swell.warm_pool_target(state, params, current, 600.0, 1000, 200 * 15.0)
    # No growth seen: the minimum rise (x1.25) of the level's count, about a quarter of it.
    assert 2 <= size <= 5, why
    assert "x1.25" in why


def test_after_a_surge_swell_keeps_the_peak_within_reach_for_a_day() -> None:
    params = params_for("swell")
    state, current = swell.SwellState(), 12
    demands = [100.0] * 200 + [400.0] * 80 + [100.0] * 400
    for i, d in enumerate(demands):
        decision, state = POLICIES["swell"].decide(observe(d, current), state, params, i * 15.0)
        current = decision.desired
    now = len(demands) * 15.0
    size, why = swell.warm_pool_target(state, params, current, 600.0, 1000, now)
    assert current + size >= 40, why  # the surge needed about 40-60: most of it stays warm
    later, _ = swell.warm_pool_target(state, params, current, 600.0, 1000, now + 3 * 86400.0)
    assert later < size  # three days later the memory has faded
    capped, _ = swell.warm_pool_target(state, params, current, 600.0, current + 5, now)
    assert capped == 5  # never beyond max


def test_the_simulator_assumes_and_the_benchmark_shows_the_dated_shelved_prices() -> None:
    """OVHcloud's price for a shelved instance is unconfirmed: stacks/data/ovhcloud.yaml dates the
    assumption, and the simulator's default and the benchmark's table must be the ones it names."""
    from autoscaler.sim.bench import SHELVED_PRICES
    from stacks.catalog import DATA_FILE

    shelved = yaml.safe_load(DATA_FILE.read_text())["shelved_instances"]
    assert shelved["confirmed"] is False, "a confirmed price needs its source and the docs updated"
    assert WarmPoolParams().shelved_price_fraction == shelved["assumed_fraction"]
    assert tuple(shelved["fractions_shown"]) == SHELVED_PRICES
