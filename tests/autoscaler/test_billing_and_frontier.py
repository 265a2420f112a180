"""Billing as OVHcloud bills (every commenced hour of each instance), which instance retires, and
the verdict against a baseline frontier, on small hand-made cases whose answers are worked out in
the comments."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.core.billing import billed_periods, choose_retirees, paid_until
from autoscaler.sim.engine import billed_hours, instance_ledger, ready_counts
from autoscaler.sim.frontier import Point, judge_frontier

H = 3600.0


@pytest.mark.parametrize(
    ("lifetime_s", "granularity_s", "periods"),
    [(1.0, H, 1), (600.0, H, 1), (H, H, 1), (H + 1, H, 2), (0.0, H, 1), (90.0, 1.0, 90), (2.5 * H, H, 3)],
    ids=[
        "a-second",
        "ten-minutes",
        "exactly-an-hour",
        "an-hour-and-a-second",
        "cancelled-at-once",
        "per-second",
        "two-and-a-half-hours",
    ],
)
def test_every_commenced_period_is_billed(lifetime_s: float, granularity_s: float, periods: int) -> None:
    assert billed_periods(lifetime_s, granularity_s) == periods


def test_paid_until_is_the_end_of_the_period_now_falls_in() -> None:
    assert paid_until(0.0, 10.0) == H
    assert paid_until(0.0, H + 10.0) == 2 * H
    assert paid_until(100.0, 100.0 + 3 * H - 1) == 100.0 + 3 * H


@pytest.mark.parametrize(
    ("mode", "count", "expected"),
    [
        # Started at 0 (paid to 1 h), 40 min (paid to 1 h 40), 50 min (paid to 1 h 50); now 55 min.
        ("newest", 1, [2]),
        ("newest", 2, [2, 1]),
        ("paid-hour", 1, [0]),  # its hour ends in 5 minutes: the others keep 45 and 55 paid minutes
        ("paid-hour", 2, [0, 1]),
        ("paid-hour", 0, []),
    ],
    ids=["newest-one", "newest-two", "paid-hour-one", "paid-hour-two", "none"],
)
def test_which_instance_retires(mode: str, count: int, expected: list[int]) -> None:
    assert choose_retirees([0.0, 40 * 60.0, 50 * 60.0], count, 55 * 60.0, mode) == expected


def test_an_unknown_retirement_mode_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="oldest"):
        choose_retirees([0.0], 1, 1.0, "oldest")


def test_billed_hours_follow_each_instance() -> None:
    """Ticks of 15 min, no lead time: 2 instances for 2 h, a third from 0:30 to 1:00, then back to 2.
    Each of the first two lives 2 h (2 periods each); the third lives 30 min (1 period): 5 h."""
    requested = np.array([2, 2, 3, 2, 2, 2, 2, 2])
    assert billed_hours(requested, lead=0, tick_s=900.0, mode="newest", granularity_s=H) == pytest.approx(5.0)
    # Billed per second it is just the instance-hours: 2 x 2 h + 0.25 h.
    assert billed_hours(requested, 0, 900.0, "newest", 1.0) == pytest.approx(float(requested.sum()) * 0.25)


def test_retiring_the_instance_nearest_its_paid_hour_costs_less_than_the_newest() -> None:
    """Ticks of 10 min. One instance from 0:00; a second from 0:40; at 0:50 one leaves; at 1:30 the
    other leaves too. Newest first: the 0:40 one goes at 0:50 (1 period), the first stays to 1:30 (2
    periods): 3. Paid hour first: the first goes at 0:50 (its hour ends at 1:00; 1 period), the 0:40
    one stays to 1:30 (50 minutes: 1 period): 2."""
    requested = np.array([1, 1, 1, 1, 2, 1, 1, 1, 1, 0, 0, 0])
    assert billed_hours(requested, 0, 600.0, "newest", H) == pytest.approx(3.0)
    assert billed_hours(requested, 0, 600.0, "paid-hour", H) == pytest.approx(2.0)


def test_pending_instances_are_cancelled_before_ready_ones_retire() -> None:
    """Lead of 2 ticks: asked for at tick 2, cancelled at tick 3 while still pending; with the
    paid-hour choice a ready instance would have been the cheaper one to retire, but the ready count
    the metrics use assumes the pending one goes first."""
    requested = np.array([1, 1, 2, 1, 1, 1])
    # Ticks of 30 min: the first instance, created a lead time (1 h) before the run so that it serves
    # from its start, lives 4 h (4 periods); the pending one 30 min (1).
    assert billed_hours(requested, 2, 1800.0, "paid-hour", H) == pytest.approx(5.0)


@pytest.mark.parametrize("mode", ["newest", "paid-hour"])
@pytest.mark.parametrize("lead", [0, 1, 12])
def test_the_ledger_serves_exactly_what_the_ready_count_formula_says(lead: int, mode: str) -> None:
    """Two derivations of supply agree: instance by instance, and min(requested over a lead time)."""
    rng = np.random.default_rng(lead)
    requested = np.maximum(1, 20 + np.cumsum(rng.integers(-3, 4, size=600)))
    ledger = instance_ledger(requested, lead, 15.0, mode, H)
    assert np.array_equal(ledger.ready, ready_counts(requested, lead, int(requested[0])))


def test_an_instance_kept_to_its_hour_end_serves_and_comes_back_for_free() -> None:
    """Ticks of 10 min, no lead, one hour. Two instances; one leaves at 0:20, one is needed again at
    0:30. Retired at once: a third instance is created at 0:30: 3 instances, 3 periods, and supply
    dips to 1 for ten minutes. Kept to its hour end: it serves on, is taken back at 0:30: 2 periods,
    no dip."""
    requested = np.array([2, 2, 1, 2, 2, 2])
    now = instance_ledger(requested, 0, 600.0, "paid-hour", H)
    kept = instance_ledger(requested, 0, 600.0, "hour-end", H)
    assert list(now.ready) == [2, 2, 1, 2, 2, 2]
    assert list(kept.ready) == [2, 2, 2, 2, 2, 2]
    assert now.billed_hours == pytest.approx(3.0)
    assert kept.billed_hours == pytest.approx(2.0)


def test_a_kept_instance_leaves_when_its_paid_hour_ends() -> None:
    """Ticks of 10 min: down from 2 to 1 at 0:20; the kept one serves until 1:00, then goes."""
    requested = np.array([2, 2, 1, 1, 1, 1, 1, 1, 1])
    kept = instance_ledger(requested, 0, 600.0, "hour-end", H)
    assert list(kept.ready) == [2, 2, 2, 2, 2, 2, 1, 1, 1]
    assert kept.billed_hours == pytest.approx(
        1.0 + 2.0
    )  # one hour for the kept one, 1.5 h -> 2 for the other


def pt(policy: str, target: float, theta_u: float, cost: float) -> Point:
    return Point(policy, {"target_utilization": target}, theta_u, 0.0, cost * 10, cost * 10, cost, 0)


# A hand-made frontier: theta_U falls as cost rises.
FRONTIER = [
    pt("keda", 0.9, 1.00, 80.0),
    pt("keda", 0.7, 0.40, 100.0),
    pt("keda", 0.5, 0.10, 140.0),
    pt("hpa", 0.8, 0.60, 95.0),
    pt("hpa", 0.6, 0.05, 180.0),
]


@pytest.mark.parametrize(
    ("swell_theta", "swell_cost", "a", "b", "passed", "note"),
    [
        # Costs 100: affordable points keda 0.9 (1.00), keda 0.7 (0.40), hpa 0.8 (0.60): A = 0.40,
        # limit 0.10. As safe as 0.08: only hpa 0.6 (0.05, cost 180): B = 180, limit 153. Pass.
        (0.08, 100.0, 0.40, 180.0, True, ""),
        # theta 0.12 > 0.40 / 4: fails on theta; as safe: keda 0.5 (0.10) at 140, hpa 0.6 at 180: B = 140.
        (0.12, 100.0, 0.40, 140.0, False, ""),
        # Costs 130: keda 0.7 at 100 is affordable, keda 0.5 (140) is not: A = 0.40. As safe as 0.10:
        # keda 0.5 at 140 and hpa 0.6 at 180: B = 140, limit 119 < 130: fails on cost.
        (0.10, 130.0, 0.40, 140.0, False, ""),
        # Cheaper than every point: A from the cheapest (keda 0.9: 1.00), limit 0.25; B = keda 0.5 at 140.
        (0.20, 50.0, 1.00, 140.0, True, "no baseline setting costs as little as swell"),
        # Safer than every point: B from the safest (hpa 0.6 at 180).
        (0.01, 150.0, 0.10, 180.0, True, "no baseline setting is as safe as swell"),
    ],
    ids=["passes", "theta-too-high", "too-expensive", "cheaper-than-all", "safer-than-all"],
)
def test_verdict_arithmetic_on_a_hand_made_frontier(
    swell_theta: float, swell_cost: float, a: float, b: float, passed: bool, note: str
) -> None:
    verdict = judge_frontier(FRONTIER, Point("swell", {}, swell_theta, 0.0, 0.0, 0.0, swell_cost, 0))
    assert verdict.a == pytest.approx(a)
    assert verdict.b == pytest.approx(b)
    assert verdict.theta_limit == pytest.approx(a / 4)
    assert verdict.cost_limit == pytest.approx(0.85 * b)
    assert verdict.passed is passed
    assert note in verdict.note
    assert verdict.as_dict()["pass"] is passed


def test_where_the_baselines_are_safe_swell_is_held_to_a_hundredth_of_a_percent() -> None:
    safe = [pt("keda", 0.7, 0.004, 100.0), pt("keda", 0.9, 0.02, 60.0)]
    verdict = judge_frontier(safe, Point("swell", {}, 0.009, 0.0, 0.0, 0.0, 80.0, 0))
    assert verdict.a == pytest.approx(0.02)  # only keda 0.9 costs no more than 80
    assert verdict.theta_limit == pytest.approx(0.005)
    assert not verdict.theta_ok
    verdict = judge_frontier(safe, Point("swell", {}, 0.009, 0.0, 0.0, 0.0, 120.0, 0))
    assert verdict.a == pytest.approx(0.004) and verdict.theta_limit == pytest.approx(0.01)
    assert verdict.theta_ok and "held to 0.01%" in verdict.note
