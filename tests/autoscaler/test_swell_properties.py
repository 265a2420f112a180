"""Property tests of the `swell` policy's steps (hypothesis), on the pure core.

Whatever the demand did before, the forecast is never below the level it is sized from, the
recommendation before the chain is at least what the level plus headroom needs, and while demand
rises monotonically the desired count never falls. Demand is drawn as runs of flat segments and
jumps (a fast surge past x4 within minutes is a jump of a few segments), which is where a cap on the
30-minute EWMA used to clip the forecast below the level (issue 17).
"""

from __future__ import annotations

import math
from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.policies import swell
from autoscaler.core.registry import POLICIES
from autoscaler.core.types import Limits
from tests.autoscaler.policy_helpers import CAP, observe, params_for

STEP_S = 15.0
LIMITS = Limits(1, 1_000_000)

# Lengths in samples (15 s each): a few samples, or as long as the windows that matter (the 4-minute
# slow EWMA, the 10-minute stabilization window, longer).
lengths = st.one_of(st.sampled_from([16, 30, 45, 80]), st.integers(1, 80))
# Demand as flat segments joined by jumps of x0.1 to x100 (log10 of the jump from -1 to 2).
segments = st.tuples(
    st.floats(min_value=0.1, max_value=1e4),
    st.lists(st.tuples(st.floats(min_value=-1.0, max_value=2.0), lengths), min_size=1, max_size=5),
)
leads = st.sampled_from([0.0, 180.0, 600.0])


def expand(parts: tuple[float, list[tuple[float, int]]]) -> list[float]:
    start, jumps = parts
    demands: list[float] = []
    value = start
    for log_jump, n in jumps:
        value *= 10.0**log_jump
        demands.extend([value] * n)
    return demands


@settings(max_examples=200, deadline=None)
@given(segments, leads, st.integers(1, 500))
def test_the_forecast_is_never_below_the_level_and_the_count_covers_level_plus_headroom(
    parts: tuple[float, list[tuple[float, int]]], lead: float, start: int
) -> None:
    params = params_for("swell", lead=lead, limits=LIMITS)
    state = swell.SwellState()
    current = start
    for i, d in enumerate(expand(parts)):
        now = i * STEP_S
        obs = observe(d, current)
        tracked = swell.track(state, params, d, now)
        forecast = swell.forecast_demand(tracked, state, params, obs.sample_age_s, now)
        rec = swell.recommend(tracked, forecast, state, params, current, now)
        assert forecast.value >= tracked.level, (i, d, forecast, tracked)
        needed = math.ceil(tracked.level * (1.0 + rec.headroom) / CAP - 1e-9)
        assert rec.instances >= needed, (i, d, rec, tracked)
        decision, state = POLICIES["swell"].decide(obs, state, params, now)
        current = decision.desired


# A monotone rise: a starting level, then runs of samples each growing by a rate drawn per run,
# from 0.01% to x1.5 per sample.
rises = st.tuples(
    st.floats(min_value=0.1, max_value=1e4, allow_nan=False),
    st.lists(st.tuples(st.floats(min_value=1e-4, max_value=0.5), lengths), min_size=1, max_size=6),
)


@settings(max_examples=200, deadline=None)
@given(rises, leads, st.integers(1, 500))
def test_under_a_monotone_rise_the_desired_count_never_falls(
    rise: tuple[float, list[tuple[float, int]]], lead: float, start: int
) -> None:
    first, steps = rise
    demands = [first]
    for rate, n in steps:
        for _ in range(n):
            demands.append(demands[-1] * (1.0 + rate))
    params = params_for("swell", lead=lead, limits=LIMITS)
    spec = POLICIES["swell"]
    state = spec.initial_state()
    current = start
    previous = None
    for i, d in enumerate(demands):
        decision, state = spec.decide(observe(d, current), state, params, i * STEP_S)
        if previous is not None:
            assert decision.desired >= previous, (i, d, decision)
        previous = current = decision.desired


def test_every_duration_of_the_policy_is_a_time_constant_or_the_services_timing() -> None:
    durations = {f.name for f in fields(swell.SwellParams) if f.name.endswith("_s")}
    assert set(swell.compress_time(5.0)) | swell.SERVICE_TIMING == durations
    assert swell.compress_time(5.0)["glacial_halflife_s"] == 1800.0 / 5.0


@settings(max_examples=60, deadline=None)
@given(segments, leads, st.sampled_from([4.0, 16.0, 256.0]))
def test_compressed_time_gives_the_same_decisions_on_a_series_replayed_faster(
    parts: tuple[float, list[tuple[float, int]]], lead: float, speed: float
) -> None:
    """What lets a drill at `speed` x stand for production: every time constant divided by the speed
    (powers of two, so the arithmetic is exact), the same decisions."""
    demands = expand(parts)
    nominal = params_for("swell", lead=lead, limits=LIMITS)
    fast = params_for(
        "swell",
        lead=lead / speed,
        limits=LIMITS,
        sync_period_s=nominal.sync_period_s / speed,
        stale_after_s=nominal.stale_after_s / speed,
        **swell.compress_time(speed),
    )
    runs = []
    for params, scale in ((nominal, 1.0), (fast, speed)):
        state, current, counts = swell.SwellState(), 5, []
        for i, d in enumerate(demands):
            decision, state = POLICIES["swell"].decide(
                observe(d, current, age=30.0 / scale), state, params, i * STEP_S / scale
            )
            counts.append(decision.desired)
            current = decision.desired
        runs.append(counts)
    assert runs[0] == runs[1]
