"""The normalization chain: each step caps what it should, says so with a tag and a sentence, in
the order the chain's docstring states; the reason keeps its history; and a policy added with one
registry entry gets the whole chain."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from autoscaler.core.chain import (
    Guards,
    Proposal,
    bounds,
    history,
    override,
    rate_limit,
    safety_net,
    stabilization,
    stale_data,
    tolerance,
)
from autoscaler.core.registry import POLICIES, PolicySpec, build_params
from autoscaler.core.types import LIMITS, Clamp, Limits, Observation, Override

NOW = 1000.0


def obs(current: int, override: Override | None = None, **kw: Any) -> Observation:
    return Observation("web", 100.0, 15.0, current, current, 0, 0.5, override)._replace(**kw)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (lambda: tolerance(19, 20, 0.0, 0.05), (20, Clamp("tolerance", "19 is within 5% below 20: kept 20"))),
        (lambda: tolerance(21, 20, 0.1, 0.0), (20, Clamp("tolerance", "21 is within 10% above 20: kept 20"))),
        (lambda: tolerance(21, 20, 0.0, 0.05), (21, None)),
        (
            lambda: rate_limit(41, 10, Guards()),
            (40, Clamp("rate_limit", "at most x4 per decision (40 from 10)")),
        ),
        (lambda: rate_limit(40, 10, Guards()), (40, None)),
        (lambda: rate_limit(9, 0, Guards()), (4, Clamp("rate_limit", "at most x4 per decision (4 from 0)"))),
        (
            lambda: rate_limit(4, 10, Guards()),
            (5, Clamp("rate_limit", "at most 50% down per decision (5 from 10)")),
        ),
        (
            lambda: rate_limit(30, 10, Guards(), policy_cap=20),
            (20, Clamp("rate_limit", "the policy's scale-up rate allows 20 from 10")),
        ),
        (lambda: rate_limit(10**6, 10, Guards(max_up_factor=math.inf)), (10**6, None)),
        (
            lambda: stabilization(5, 10, (7, 6)),
            (7, Clamp("stabilization", "the window's highest recommendation keeps 7, not 5")),
        ),
        (lambda: stabilization(12, 10, (20,)), (12, None)),
        (
            lambda: override(10, obs(10, Override(40, 2000.0, "surge x4")), Limits(2, 30), NOW),
            (30, Clamp("override", "surge x4: floor 40 until 2000")),
        ),
        (
            lambda: stale_data(5, 20, fresh=False),
            (20, Clamp("stale_data", "no scale-down on stale or missing data: kept 20")),
        ),
        (lambda: stale_data(5, 20, fresh=True), (5, None)),
    ],
    ids=[
        "tolerance-down",
        "tolerance-up",
        "tolerance-outside-band",
        "rate-above-x4",
        "rate-x4-allowed",
        "rate-from-zero",
        "rate-below-half",
        "rate-policy-cap",
        "rate-infinite-factor",
        "stabilization",
        "stabilization-never-raises",
        "override-capped-by-max",
        "stale-no-down",
        "fresh-down",
    ],
)
def test_each_step_returns_its_tag_and_sentence(step: Any, expected: tuple[int, Clamp | None]) -> None:
    assert step() == expected


@pytest.mark.parametrize(
    ("proposed", "limits", "desired", "clamps"),
    [
        (0, Limits(2, 50), 2, [Clamp("min", "raised to the tier's minimum 2")]),
        (80, Limits(2, 50), 50, [Clamp("max", "capped at the tier's maximum 50")]),
        (40, Limits(2, 50, quota=30), 30, [Clamp("quota", "capped at the 30 instances the quota leaves")]),
        (10, Limits(2, 50), 10, []),
    ],
    ids=["min", "max", "quota", "within"],
)
def test_bounds(proposed: int, limits: Limits, desired: int, clamps: list[Clamp]) -> None:
    assert bounds(proposed, limits) == (desired, clamps)


@pytest.mark.parametrize(
    ("desired", "current", "fresh", "floor", "expected", "tags"),
    [
        (100, 4, True, 0, 16, ["rate_limit"]),
        (2, 8, False, 0, 8, ["stale_data"]),
        (2, 8, True, 0, 2, []),
        (80, 40, True, 0, 64, ["max"]),
        (0, 0, True, 0, 2, ["min"]),
        (30, 4, True, 30, 30, []),
        (4, 0, True, 0, 2, ["rate_limit"]),
    ],
    ids=[
        "at-most-x4",
        "no-scale-down-on-stale",
        "fresh-scale-down-allowed",
        "max",
        "min",
        "override-floor-beyond-x4",
        "from-zero-only-to-min",
    ],
)
def test_the_safety_net(
    desired: int, current: int, fresh: bool, floor: int, expected: int, tags: list[str]
) -> None:
    value, clamps = safety_net(desired, current, fresh, floor, Limits(2, 64), 4.0)
    assert (value, [c.tag for c in clamps]) == (expected, tags)
    assert all(c.sentence.startswith("safety net: ") for c in clamps)


def test_history_holds_a_scale_down_and_says_how_long_for_either_way() -> None:
    note = "no scale-down before 600 s of history (300 s left)"
    assert history(5, 10, 300.0, 600.0) == (10, Clamp("stabilization", f"kept 10: {note}"), note)
    assert history(12, 10, 300.0, 600.0) == (12, None, note)
    assert history(5, 10, 600.0, 600.0) == (5, None, "")


# A toy policy: one registry entry, and it gets the whole chain.
@dataclass(frozen=True)
class ToyParams:
    want: int
    stale_after_s: float = 120.0
    stabilization_down_s: float = 300.0
    guards: Guards = field(default_factory=Guards)


class ToyState(NamedTuple):
    calls: int = 0
    never: float = -math.inf


def toy_propose(o: Observation, state: ToyState, params: ToyParams, now: float) -> Proposal:
    window = (o.current,) if state.calls == 0 else ()  # holds its first scale-down, as a window would
    return Proposal(params.want, f"toy wants {params.want}", ToyState(state.calls + 1), window=window)


TOY = PolicySpec(
    "toy",
    toy_propose,
    ToyState,
    lambda t: ToyParams(int(t.capacity_per_instance), guards=Guards(limits=t.limits)),
    "a policy for the tests",
)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> PolicySpec:
    monkeypatch.setitem(POLICIES, "toy", TOY)
    return TOY


def toy_decide(want: int, o: Observation, limits: Limits, state: Any) -> Any:
    params = build_params("toy", capacity_per_instance=want, lead_time_s=0.0, limits=limits)
    return POLICIES["toy"].decide(o, state if state is not None else ToyState(1), params, NOW)


@pytest.mark.parametrize(
    ("case", "desired", "reason", "limited_by"),
    [
        ("as-proposed", 12, "toy wants 12", ()),
        ("x4", 40, "toy wants 400 (limited by rate_limit)", ("rate_limit",)),
        ("halving", 5, "toy wants 1 (limited by rate_limit)", ("rate_limit",)),
        ("window", 10, "toy wants 6 (limited by stabilization)", ("stabilization",)),
        ("max", 50, "toy wants 60 (limited by max)", ("max",)),
        ("quota", 30, "toy wants 35 (limited by quota)", ("quota",)),
        ("override", 40, "toy wants 12; keynote: floor 40 until 2000 (limited by override)", ("override",)),
        ("missing", 10, "hold: demand missing", ()),
        ("stale", 10, "hold: demand 300 s old", ()),
        ("untrusted", 10, "toy wants 6 (limited by stale_data)", ("stale_data",)),
        (
            "no-history",
            10,
            "toy wants 6; no scale-down before 300 s of history (200 s left) (limited by stabilization)",
            ("stabilization",),
        ),
        ("max-then-stale", 50, "hold: demand missing (limited by max, stale_data)", ("max", "stale_data")),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else None,
)
def test_a_policy_registered_with_one_entry_gets_the_whole_chain(
    toy: PolicySpec, case: str, desired: int, reason: str, limited_by: tuple[str, ...]
) -> None:
    want, o, limits, state = {
        "as-proposed": (12, obs(10), Limits(2, 50), None),
        "x4": (400, obs(10), Limits(2, 50), None),
        "halving": (1, obs(10), Limits(1, 50), None),
        "window": (6, obs(10), Limits(2, 50), ToyState()),
        "max": (60, obs(20), Limits(2, 50), None),
        "quota": (35, obs(20), Limits(2, 50, quota=30), None),
        "override": (12, obs(10, Override(40, 2000.0, "keynote")), Limits(2, 50), None),
        "missing": (6, obs(10, demand=None), Limits(2, 50), None),
        "stale": (6, obs(10, sample_age_s=300.0), Limits(2, 50), None),
        "untrusted": (6, obs(10, trusted=False), Limits(2, 50), None),
        "no-history": (6, obs(10, history_s=100.0), Limits(2, 50), None),
        "max-then-stale": (6, obs(60, demand=None), Limits(2, 50), None),
    }[case]
    decision, new_state = toy_decide(want, o, limits, state)
    assert (decision.desired, decision.reason, decision.limited_by) == (desired, reason, limited_by)
    assert [c.tag for c in decision.clamps if c.tag != "tolerance"] == list(
        limited_by
    ) or case == "max-then-stale"
    assert all(c.sentence for c in decision.clamps)
    # On missing or stale data the policy is not asked: its state is kept as it was.
    assert (new_state.calls == (state or ToyState(1)).calls) == (
        case in ("missing", "stale", "max-then-stale")
    )


def test_the_toy_policy_state_round_trips_through_the_entry(toy: PolicySpec) -> None:
    state = ToyState(3)
    text = json.dumps(toy.state_to_dict(state))
    assert text == '{"calls": 3, "never": null}'  # JSON has no infinity
    assert toy.state_from_dict(json.loads(text)) == state
    assert toy.initial_state() == ToyState()


def test_clamps_come_in_chain_order_and_the_reason_keeps_each_note() -> None:
    """Every step acting at once: the clamps come in the order the chain's docstring states."""
    spec = PolicySpec(
        "order",
        lambda o, s, p, now: Proposal(1, "asks 1", s, window=(7,), tolerance=(0.0, 0.05)),
        ToyState,
        lambda t: ToyParams(1, guards=Guards(limits=t.limits)),
        "",
    )
    params = ToyParams(1, guards=Guards(limits=Limits(8, 50)))
    o = obs(10, Override(9, 2000.0, "floor"), trusted=False, history_s=0.0)
    decision, _ = spec.decide(o, ToyState(), params, NOW)
    assert decision.desired == 10
    assert [c.tag for c in decision.clamps] == [
        "rate_limit",
        "stabilization",
        "min",
        "override",
        "stale_data",
    ]
    assert decision.limited_by == tuple(c.tag for c in decision.clamps)
    assert decision.reason == (
        "asks 1; floor: floor 9 until 2000; no scale-down before 300 s of history (300 s left) "
        "(limited by rate_limit, stabilization, min, override, stale_data)"
    )
    assert set(decision.limited_by) <= set(LIMITS)


def test_the_service_appends_a_metrics_failure_to_the_reason(tmp_path: Path) -> None:
    """A metrics failure keeps the core's reason and the history note, and adds the cause (it used
    to replace them all)."""
    from tests.autoscaler.test_service import _loop, _steady

    loop, source, _, clock = _loop(tmp_path, {"web": 8, "video": 2})
    _steady(loop, source, clock, {"web": 380.0, "video": 250.0}, passes=2)
    source.down = True
    decision = {d["tier"]: d for d in loop.run_once().decisions}["web"]
    assert decision["reason"] == (
        "hold: demand missing; no scale-down before 600 s of history (570 s left); metrics unavailable "
        "(Prometheus at http://127.0.0.1:9 is unreachable (ConnectionError))"
    )
    assert decision["direction"] == "hold" and decision["clamps"] == []
