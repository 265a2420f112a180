"""The normalization chain: each step caps what it should and says so in `limited_by`."""

from __future__ import annotations

import pytest

from autoscaler.core.chain import Guards, finish, rate_limit, stabilization, tolerance
from autoscaler.core.types import Limits, Observation, Override


def obs(current: int, override: Override | None = None) -> Observation:
    return Observation("web", 100.0, 15.0, current, current, 0, 0.5, override)


@pytest.mark.parametrize(
    ("proposed", "current", "expected", "tag"),
    [
        (40, 10, 40, None),
        (41, 10, 40, "rate_limit"),
        (5, 10, 5, None),
        (4, 10, 5, "rate_limit"),
        (3, 0, 3, None),
        (9, 0, 4, "rate_limit"),
    ],
    ids=[
        "x4-allowed",
        "above-x4-capped",
        "halving-allowed",
        "below-half-capped",
        "from-zero",
        "from-zero-capped",
    ],
)
def test_rate_limit_quadruples_at_most_and_halves_at_most(
    proposed: int, current: int, expected: int, tag: str | None
) -> None:
    assert rate_limit(proposed, current, Guards()) == (expected, tag)


@pytest.mark.parametrize(
    ("proposed", "current", "expected"),
    [(10, 10, 10), (11, 10, 11), (9, 10, 10), (8, 10, 8)],
    ids=["same", "up-not-tolerated", "down-within-band", "down-outside-band"],
)
def test_tolerance_band_only_on_the_way_down(proposed: int, current: int, expected: int) -> None:
    assert tolerance(proposed, current, 0.0, 0.1)[0] == expected


def test_stabilization_keeps_the_highest_recent_recommendation_but_never_raises() -> None:
    assert stabilization(5, 10, [7, 12, 6]) == (10, "stabilization")
    assert stabilization(5, 10, [7, 6]) == (7, "stabilization")
    assert stabilization(12, 10, [20]) == (12, None)


@pytest.mark.parametrize(
    ("proposed", "limits", "override", "fresh", "desired", "limited"),
    [
        (0, Limits(2, 50), None, True, 2, ("min",)),
        (80, Limits(2, 50), None, True, 50, ("max",)),
        (40, Limits(2, 50, quota=30), None, True, 30, ("quota",)),
        (10, Limits(2, 50), Override(40, 2000.0, "surge x4"), True, 40, ("override",)),
        (10, Limits(2, 50), Override(40, 500.0, "expired"), True, 10, ()),
        (10, Limits(2, 30), Override(40, 2000.0, "surge x4"), True, 30, ("override",)),
        (5, Limits(2, 50), None, False, 20, ("stale_data",)),
    ],
    ids=[
        "min",
        "max",
        "quota",
        "override-floor",
        "override-expired",
        "override-capped-by-max",
        "stale-no-down",
    ],
)
def test_finish_applies_caps_override_and_stale_hold(
    proposed: int,
    limits: Limits,
    override: Override | None,
    fresh: bool,
    desired: int,
    limited: tuple[str, ...],
) -> None:
    decision = finish(proposed, obs(20, override), Guards(limits=limits), 1000.0, "r", [], fresh)
    assert decision.desired == desired
    assert decision.limited_by == limited
    assert decision.direction == ("up" if desired > 20 else "down" if desired < 20 else "hold")


def test_limits_refuse_nonsense_with_the_key_named() -> None:
    with pytest.raises(ValueError, match=r"limits\.max"):
        Limits(min=5, max=3)
