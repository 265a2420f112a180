"""The knee rule, the step plan and the step measurement (loadtests/knee.py), on data: which step is
the knee, what a broken step the next one contradicts counts for, the finer grid, the windows."""

from __future__ import annotations

import math

import pytest

from loadtests.knee import (
    SLO,
    STEP_PREFIX,
    Snapshot,
    StepMeasure,
    StepPlan,
    confirmed_break,
    find_knee,
    grid,
    measure,
    parse_step_lines,
    percentile,
    refine,
)

SLO_500 = SLO(p95_ms=500.0, error_rate=0.01)


def step(users: int, p95: float | None, errors: float = 0.0, requests: int = 100) -> StepMeasure:
    return StepMeasure(users, users, float(users), 5.0, requests, round(errors * requests), 50.0, p95, p95)


# (p95 per step at 10, 20, ... users; error rate per step), knee users, first break users, isolated
@pytest.mark.parametrize(
    ("p95s", "errors", "knee", "broken", "isolated"),
    [
        ([200, 250, 300, 700, 900], None, 30, 40, []),
        ([200, 650, 300, 700, 900], None, 30, 40, [20]),  # one broken step, the next held: noise
        ([200, 250, 300, 400, 900], None, 40, 50, []),  # a broken last step counts: nothing follows
        ([200, 250, 300, 400, 450], None, 50, None, []),  # held everywhere: no knee bracketed
        ([800, 900, 950, 990, 999], None, None, 10, []),  # broken at once
        ([200, 250, 300, 350, 400], [0, 0, 0.02, 0.05, 0.2], 20, 30, []),  # errors break it too
        ([200, 250, 300, 700, 300, 800, 900], None, 50, 60, [40]),  # 40 broke, 50 held, 60 and 70 broke
    ],
    ids=[
        "monotone",
        "noise-below",
        "last-step",
        "never-broke",
        "broke-at-once",
        "errors",
        "noise-then-break",
    ],
)
def test_the_knee_is_the_last_held_step_below_a_confirmed_break(
    p95s: list[float], errors: list[float] | None, knee: int | None, broken: int | None, isolated: list[int]
) -> None:
    steps = [step(10 * (i + 1), p, (errors or [0.0] * len(p95s))[i]) for i, p in enumerate(p95s)]
    found = find_knee(reversed(steps), SLO_500)  # any order
    assert (found.knee.users if found.knee else None) == knee
    assert (found.broken.users if found.broken else None) == broken
    assert [s.users for s in found.isolated] == isolated
    assert found.bracketed == (knee is not None and broken is not None)


@pytest.mark.parametrize(
    ("p95", "errors", "requests", "held"),
    [(500.0, 0.01, 100, True), (501.0, 0.0, 100, False), (100.0, 0.02, 100, False), (None, 0.0, 0, False)],
    ids=["at-the-limits", "p95-over", "errors-over", "no-request-is-no-proof"],
)
def test_a_step_holds_only_within_both_limits(
    p95: float | None, errors: float, requests: int, held: bool
) -> None:
    assert step(10, p95, errors, requests).held(SLO_500) is held


def test_a_pass_stops_after_two_broken_steps_in_a_row() -> None:
    assert not confirmed_break([step(10, 200), step(20, 700)], SLO_500)
    assert confirmed_break([step(10, 200), step(20, 700), step(30, 800)], SLO_500)
    assert not confirmed_break([step(20, 700), step(30, 300)], SLO_500)


@pytest.mark.parametrize(
    ("good", "bad", "substeps", "expected"),
    [
        (28, 32, 6, (28, 29, 30, 31, 32)),
        (20, 40, 4, (20, 25, 30, 35, 40)),
        (20, 24, 2, (20, 22, 24)),
        (5, 6, 6, ()),
    ],
)
def test_the_finer_pass_measures_between_the_last_good_and_first_bad_step(
    good: int, bad: int, substeps: int, expected: tuple[int, ...]
) -> None:
    assert refine(good, bad, substeps) == expected


def test_the_coarse_grid() -> None:
    assert grid(4, 4, 3) == (4, 8, 12)
    with pytest.raises(ValueError):
        grid(0, 4, 3)


def test_a_step_plan_spreads_each_steps_new_users_and_ends() -> None:
    plan = StepPlan((10, 30, 35), step_s=6.0, settle_s=1.5, lag_s=1.0, tail_s=1.0, spread_s=1.0)
    assert plan.users_at(0.0) == (10, 10.0)
    assert plan.users_at(6.5) == (30, 20.0)  # 20 new users over one second
    assert plan.users_at(12.0) == (35, 5.0)
    assert plan.users_at(18.5) == (35, 5.0)  # the last window, shifted by the lag, still runs
    assert plan.users_at(plan.duration_s) is None
    assert plan.window(1) == (6.0 + 1.5 + 1.0, 12.0 + 1.0)
    assert plan.duration_s == 18.0 + 1.0 + 1.0


def test_a_step_plan_travels_through_the_environment() -> None:
    plan = StepPlan((5, 10), step_s=60.0, settle_s=15.0, lag_s=1.5, spread_s=2.0)
    assert StepPlan.from_env(plan.to_env()) == plan
    with pytest.raises(ValueError, match="SWELL_CALIBRATE_USERS"):
        StepPlan.from_env({})
    with pytest.raises(ValueError, match="settle_s"):
        StepPlan((5,), step_s=5.0, settle_s=5.0)


def test_a_step_is_the_difference_of_two_snapshots() -> None:
    before = Snapshot(100, 1, {60: 50, 120: 40, 240: 10})
    after = Snapshot(300, 4, {60: 150, 120: 100, 240: 30, 900: 20})
    s = measure(3, 40, 40.0, 5.0, before, after)
    assert (s.requests, s.failures) == (200, 3)
    assert s.throughput == 40.0 and s.served == pytest.approx(197 / 5)
    # 200 requests this step: 100 at 60 ms, 60 at 120, 20 at 240, 20 at 900 -> p95 is the 190th: 900
    assert (s.p50_ms, s.p95_ms) == (60.0, 900.0)


def test_percentile_is_nearest_rank() -> None:
    hist = {10: 94, 20: 5, 30: 1}
    assert percentile(hist, 95) == 20.0
    assert percentile(hist, 94) == 10.0
    assert percentile(hist, 100) == 30.0
    assert percentile({}, 95) is None


def test_step_lines_are_read_back_from_a_log() -> None:
    record = step(10, 200).to_dict() | {"tier": "web"}
    import json

    text = "\n".join(
        [
            "[2026-11-30 10:00:00] INFO/locust.main: Starting Locust 2.47.0",
            f"2026-11-30T10:00:05Z {STEP_PREFIX}{json.dumps(record)}",
            json.dumps(record | {"users": 20, "offered": 20.0}),
        ]
    )
    found = parse_step_lines(text)
    assert [r["users"] for r in found] == [10, 20]
    with pytest.raises(ValueError, match="line 1"):
        parse_step_lines(STEP_PREFIX + '{"users": 1}')


def test_the_reference_service_states_its_designed_capacity() -> None:
    """What `swell calibrate` compares its knee with: computed here by hand from the parameters."""
    from loadtests.tier_service import catalog_spec

    web, chat, video = catalog_spec("web"), catalog_spec("chat"), catalog_spec("video")
    # 3 slots, 120 ms a page; the mix page:api:upload 3:6:1 costs (3 x 1 + 6 x 0.5 + 1 x 2) / 10 = 0.8:
    # the slots saturate at 3 / (0.12 x 0.8) = 31.25 requests/s.
    assert web.designed_capacity(0.5) == pytest.approx(3 / (0.12 * 0.8))
    # 10 sessions, refused past 2 x 10; the fan-out delay at 20 (0.02 x 2^3 = 0.16 s) is within 0.5 s
    assert chat.designed_capacity(0.5) == pytest.approx(20.0)
    # heartbeats take 0.02 x (n / 8)^3 s: 0.5 s at n = 8 x 25^(1/3), before the 3 x 8 refusal
    assert video.designed_capacity(0.5) == pytest.approx(8 * 25 ** (1 / 3))
    assert video.designed_capacity(2.0) == pytest.approx(24.0)  # a looser limit: the hard cap binds
    assert math.isclose(chat.designed_capacity(0.01), 0.0)
