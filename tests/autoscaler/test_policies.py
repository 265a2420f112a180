"""What an SRE notices of each policy: surges met in one decision, slow careful scale-down,
holds on stale data, overrides obeyed, state that survives a restart as JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from autoscaler.core.registry import POLICIES
from autoscaler.core.types import Limits, Override
from tests.autoscaler.policy_helpers import CAP, drive, observe, params_for

STEADY = [100.0 + (i % 3) for i in range(80)]  # 20 minutes around 100: 10 instances' worth


def test_swell_doubles_or_quadruples_in_one_decision_when_a_surge_arrives() -> None:
    params = params_for("swell")
    _, state, current = drive("swell", STEADY, 12, params)
    decision, _ = POLICIES["swell"].decide(observe(400.0, current), state, params, 80 * 15.0)
    assert decision.desired >= 2 * current
    assert decision.desired <= 4 * current
    assert "surge" in decision.reason


def test_hpa_on_saturated_utilization_cannot_ask_for_more_than_its_target_ratio() -> None:
    params = params_for("hpa")
    _, state, current = drive("hpa", STEADY, 15, params)
    decision, _ = POLICIES["hpa"].decide(observe(400.0, current), state, params, 80 * 15.0)
    # 100% busy / 0.7 target: at most x1.43, however large the real demand.
    assert current < decision.desired <= -(-current * 10 // 7)


@pytest.mark.parametrize("name", ["swell", "keda"], ids=["swell", "keda"])
def test_demand_sized_policies_size_from_offered_load(name: str) -> None:
    params = params_for(name)
    _, _, current = drive(name, [300.0] * 40, 10, params)
    assert current >= 300.0 / CAP  # never below what the offered load needs


def test_swell_scales_down_slowly_and_never_more_than_halving() -> None:
    params = params_for("swell")
    _, state, current = drive("swell", [400.0] * 80, 40, params)
    high = current
    counts = []
    limited = []
    for i in range(80):
        decision, state = POLICIES["swell"].decide(observe(50.0, current), state, params, (80 + i) * 15.0)
        assert decision.desired >= (current + 1) // 2
        current = decision.desired
        counts.append(current)
        limited.append(decision.limited_by)
    assert counts[0] >= 0.9 * high  # the stabilization window holds the first minutes
    assert any("stabilization" in tags for tags in limited[:40])
    assert counts[-1] < high  # and it does come down eventually
    assert counts[-1] >= 50.0 / CAP


@pytest.mark.parametrize(
    ("window_s", "step_s"),
    [(600.0, 15.0), (30.0, 0.75), (60.0, 1.5)],
    ids=["production-10min", "drill-x20", "drill-x10"],
)
def test_swell_holds_a_scale_down_for_its_stabilization_window_whatever_its_length(
    window_s: float, step_s: float
) -> None:
    """A drill compresses time (the window becomes 30 s at x20): the window must still hold for
    its own length, not for whatever is left of the current minute."""
    scale = window_s / 600.0
    compressed: dict[str, Any] = {
        k: v * scale
        for k, v in {
            "fast_halflife_s": 45.0,
            "level_halflife_s": 200.0,
            "slow_halflife_s": 240.0,
            "volatility_halflife_s": 1800.0,
            "ramp_min_s": 60.0,
        }.items()
    }
    params = params_for(
        "swell", lead=180.0 * scale, stabilization_down_s=window_s, sync_period_s=step_s, **compressed
    )
    _, state, current = drive("swell", [400.0] * 80, 40, params, step=step_s)
    high = current
    t = 80 * step_s
    held_until = None
    for i in range(200):
        now = t + i * step_s
        decision, state = POLICIES["swell"].decide(observe(100.0, current), state, params, now)
        if decision.desired <= 0.6 * high and held_until is None:
            held_until = now - t
        current = decision.desired
    assert held_until is not None, "never scaled down"
    # Held for the whole window after the last high recommendation, which comes as the level (an
    # EWMA) decays: the first real step down is between one window and one window plus two of
    # the level's half-lives after the drop.
    assert window_s <= held_until <= window_s + 2 * compressed["level_halflife_s"]


@pytest.mark.parametrize("name", list(POLICIES), ids=list(POLICIES))
@pytest.mark.parametrize(
    "demand,age", [(None, 30.0), (float("nan"), 30.0), (5.0, 3600.0)], ids=["missing", "nan", "stale"]
)
def test_no_policy_scales_down_on_missing_or_stale_data(name: str, demand: float | None, age: float) -> None:
    params = params_for(name)
    _, state, current = drive(name, [300.0] * 40, 30, params)
    decision, _ = POLICIES[name].decide(observe(demand, current, age=age), state, params, 40 * 15.0)
    assert decision.desired >= current


def test_override_floor_holds_until_it_expires() -> None:
    params = params_for("swell")
    _, state, current = drive("swell", STEADY, 12, params)
    floor = Override(48, expires_at=80 * 15.0 + 7200, reason="surge --factor 4 --for 2h")
    o = observe(100.0, current)._replace(override=floor)
    decision, state = POLICIES["swell"].decide(o, state, params, 80 * 15.0)
    assert decision.desired == 48
    assert decision.limited_by == ("override",)
    later = observe(100.0, 48)._replace(override=floor)
    after, _ = POLICIES["swell"].decide(later, state, params, 80 * 15.0 + 7201)
    assert after.desired < 48  # expired: back to sizing from demand (halving at most)


def test_quota_caps_swell_and_says_so() -> None:
    params = params_for("swell", limits=Limits(1, 1000, quota=20))
    _, state, current = drive("swell", STEADY, 12, params)
    decision, _ = POLICIES["swell"].decide(observe(400.0, current), state, params, 80 * 15.0)
    assert decision.desired == 20
    assert "quota" in decision.limited_by


def test_swell_prescales_ahead_of_the_daily_rise_once_it_has_seen_two_days() -> None:
    params = params_for("swell")
    day = 86400.0
    # Low (100) until 08:00, high (300) after, for three days, sampled every 60 s.
    demands = [100.0 if (i * 60.0) % day < 8 * 3600 else 300.0 for i in range(int(3 * day / 60))]
    spec = POLICIES["swell"]
    state = spec.initial_state()
    current = 10
    before_rise: list[int] = []
    for i, d in enumerate(demands):
        now = i * 60.0
        decision, state = spec.decide(observe(d, current), state, params, now)
        current = decision.desired
        if (now % day) == 8 * 3600 - 300:  # five minutes before the rise
            before_rise.append(current)
    assert before_rise[2] > before_rise[0] * 1.3  # day 3 is getting ready for it; day 1 was not


@pytest.mark.parametrize("name", list(POLICIES), ids=list(POLICIES))
def test_state_survives_a_json_round_trip_and_stays_bounded(name: str) -> None:
    params = params_for(name)
    demands = [100.0 * (1 + (i % 50) / 10) for i in range(5000)]
    _, state, _ = drive(name, demands, 10, params)
    text = json.dumps(POLICIES[name].state_to_dict(state))
    restored = POLICIES[name].state_from_dict(json.loads(text))
    assert restored == state
    assert len(text) < 8000  # a ConfigMap value, not a history dump


def test_state_from_dict_names_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        POLICIES["swell"].state_from_dict({"bogus": 1})


def test_surge_memory_keeps_extra_headroom_after_a_surge_only_when_asked() -> None:
    # 20 minutes steady, a surge to x4, back to steady for an hour.
    demands = STEADY + [400.0] * 40 + [100.0] * 240
    _, _, without = drive("swell", demands, 12, params_for("swell"))
    _, _, with_memory = drive("swell", demands, 12, params_for("swell", surge_memory_headroom=0.5))
    assert with_memory > without


# Two hours of demand around 100 with +-10% deterministic per-minute noise, at 15 s samples.
NOISY = [100.0 * (1.0 + 0.1 * math.sin(i * 2.399)) for i in range(480) for _ in range(4)]
BURST = [200.0] * 8  # two minutes at x2, then back
RISE = [100.0 + 300.0 * min(1.0, i / 40) for i in range(80)]  # x4 within 10 minutes, held


@pytest.mark.parametrize(
    "after,overrides,released",
    [
        (BURST, {}, True),
        (BURST, {"release_refuted": False}, False),
        (RISE, {}, False),
    ],
    ids=["burst-over-released", "burst-held-without-release", "real-surge-kept"],
)
def test_swell_cancels_what_it_bought_for_a_burst_that_is_over(
    after: list[float], overrides: dict[str, Any], released: bool
) -> None:
    params = params_for("swell", **overrides)
    _, state, before = drive("swell", NOISY, 12, params)
    spec = POLICIES["swell"]
    now = len(NOISY) * 15.0
    current = before
    peak = before
    demands = after + NOISY[: 4 * 6]  # then six minutes of the old demand
    for d in demands:
        decision, state = spec.decide(observe(d, current), state, params, now)
        current = decision.desired
        peak = max(peak, current)
        now += 15.0
    assert peak >= 2 * before  # the burst or the surge was met at once
    # Six minutes on, well inside the 10-minute stabilization window: released, the count is back
    # to what the level asks for (the burst raised the level and the volatility a little); held,
    # it stays at the jump.
    assert (current < 1.5 * before) is released
