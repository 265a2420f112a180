"""Exact reasons for representative decisions (as nomad-autoscaler tests its strategies' reasons):
what on-call reads in `swell status` and the decision log is pinned here, word for word, so a
change to it is a decision, not an accident."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.core.registry import POLICIES
from autoscaler.core.types import Decision, Limits, Override
from tests.autoscaler.policy_helpers import drive, observe, params_for

NOW = 60 * 15.0  # after 60 calm samples, one every 15 s


def calm(limits: Limits) -> tuple[Any, Any, int]:
    params = params_for("swell", limits=limits)
    _, state, current = drive("swell", [100.0] * 60, 12, params)
    return params, state, current


def decide(case: str) -> Decision:
    limits = Limits(2, 20) if case == "capped-by-max" else Limits(2, 100)
    params, state, current = calm(limits)
    obs = {
        "steady": observe(100.0, current),
        "surge-x4": observe(400.0, current),
        "surge-x2": observe(190.0, current),
        "capped-by-max": observe(400.0, current),
        "missing": observe(None, current),
        "stale": observe(100.0, current, age=300.0),
        "override": observe(100.0, current)._replace(
            override=Override(40, NOW + 3600, "override sg-1: keynote at 10:00")
        ),
    }[case]
    decision, _ = POLICIES["swell"].decide(obs, state, params, NOW)
    return decision


@pytest.mark.parametrize(
    ("case", "desired", "reason", "limited_by"),
    [
        ("steady", 14, "forecast 100.0 (level 100.0) +35% headroom -> 14", ()),
        ("surge-x4", 56, "surge: x4 of 14 -> 56; forecast 400.0 (level 115.2) +37% headroom -> 55", ()),
        ("surge-x2", 28, "surge: x2 of 14 -> 28; forecast 190.0 (level 104.6) +37% headroom -> 27", ()),
        (
            "capped-by-max",
            20,
            "surge: x4 of 14 -> 56; forecast 400.0 (level 115.2) +37% headroom -> 55 (limited by max)",
            ("max",),
        ),
        ("missing", 14, "hold: demand missing", ()),
        ("stale", 14, "hold: demand 300 s old", ()),
        (
            "override",
            40,
            "forecast 100.0 (level 100.0) +35% headroom -> 14; override sg-1: keynote at 10:00: floor 40 "
            "until 4500 (limited by override)",
            ("override",),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else None,
)
def test_swell_says_exactly_why(case: str, desired: int, reason: str, limited_by: tuple[str, ...]) -> None:
    decision = decide(case)
    assert (decision.desired, decision.reason, decision.limited_by) == (desired, reason, limited_by)


def test_a_scale_down_says_what_held_it() -> None:
    params, state, current = calm(Limits(2, 100))
    decisions = []
    for i in range(4):  # demand halves: the stabilization window keeps the count for now
        decision, state = POLICIES["swell"].decide(observe(50.0, current), state, params, NOW + 15.0 * i)
        decisions.append(decision)
        current = decision.desired
    assert decisions[-1].desired == 14
    assert decisions[-1].reason == "forecast 90.6 (level 90.6) +39% headroom -> 13 (limited by stabilization)"
    assert decisions[-1].limited_by == ("stabilization",)
