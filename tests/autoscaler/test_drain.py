"""The two-phase scale-down as a pure function (autoscaler/core/drain.py): which instances retire
(billing in mind), when a drain ends, what a scale-up during a drain does, and that nothing with
sessions is ever removed before its deadline."""

from __future__ import annotations

import pytest

from autoscaler.core.billing import HOUR_S
from autoscaler.core.drain import Drain, plan_fleet
from autoscaler.ports import Member

NOW = 1_800_000_000.0
TIMEOUT = 600.0


def members(
    serving: dict[int, float],
    retiring: dict[int, float] | None = None,
    rotating: frozenset[int] = frozenset(),
) -> list[Member]:
    """Members from {index: minutes since start}; `rotating`: retiring ones not yet out of rotation."""
    out = [Member(i, NOW - m * 60, retiring=False, ready=True) for i, m in serving.items()]
    out += [
        Member(i, NOW - m * 60, retiring=True, in_rotation=i in rotating) for i, m in (retiring or {}).items()
    ]
    return out


CASES = [
    # id, desired, serving {index: minutes up}, retiring {index: minutes up}, drains, sessions,
    # expected (serving, retiring indices, retired, taken back, created, removed)
    ("hold", 3, {0: 10, 1: 20, 2: 30}, {}, {}, {}, ([0, 1, 2], [], [], [], [], [])),
    # 0 started 55 min ago (5 min of its hour left), 1 at 10 min (50 left), 2 at 118 min (2 left).
    (
        "retire-near-the-end-of-the-paid-hour",
        2,
        {0: 55, 1: 10, 2: 118},
        {},
        {},
        {},
        ([0, 1], [2], [2], [], [], []),
    ),
    ("retire-two", 1, {0: 55, 1: 10, 2: 118}, {}, {}, {}, ([1], [0, 2], [0, 2], [], [], [])),
    (
        "scale-up-takes-the-busiest-retiree-back-first",
        3,
        {0: 5},
        {1: 5, 2: 5},
        {1: Drain(1, NOW - 60, NOW + 500), 2: Drain(2, NOW - 60, NOW + 500)},
        {1: 2, 2: 9},
        ([0, 1, 2], [], [], [1, 2], [], []),
    ),
    (
        "scale-up-past-the-retirees-creates-the-lowest-free-indices",
        4,
        {0: 5, 3: 5},
        {2: 5},
        {2: Drain(2, NOW - 60, NOW + 500)},
        {2: 1},
        ([0, 1, 2, 3], [], [], [2], [1], []),
    ),
    (
        "a-drained-instance-goes",
        2,
        {0: 5, 1: 5},
        {2: 5},
        {2: Drain(2, NOW - 60, NOW + 500)},
        {2: 0},
        ([0, 1], [], [], [], [], [2]),
    ),
    (
        "sessions-left-keep-it-until-the-deadline",
        2,
        {0: 5, 1: 5},
        {2: 5},
        {2: Drain(2, NOW - 60, NOW + 500)},
        {2: 4},
        ([0, 1], [2], [], [], [], []),
    ),
    (
        "unknown-sessions-wait-for-the-deadline",
        2,
        {0: 5, 1: 5},
        {2: 5},
        {2: Drain(2, NOW - 60, NOW + 500)},
        {2: None},
        ([0, 1], [2], [], [], [], []),
    ),
    (
        "the-deadline-ends-a-drain",
        2,
        {0: 5, 1: 5},
        {2: 5},
        {2: Drain(2, NOW - 700, NOW - 100)},
        {2: 3},
        ([0, 1], [], [], [], [], [2]),
    ),
    (
        "a-drain-lost-from-the-state-restarts-now",
        2,
        {0: 5, 1: 5},
        {2: 5},
        {},
        {2: 3},
        ([0, 1], [2], [], [], [], []),
    ),
]


@pytest.mark.parametrize(
    ("desired", "serving", "retiring", "drains", "sessions", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan(
    desired: int,
    serving: dict[int, float],
    retiring: dict[int, float],
    drains: dict[int, Drain],
    sessions: dict[int, int | None],
    expected: tuple[list[int], ...],
) -> None:
    plan = plan_fleet(desired, members(serving, retiring), drains, sessions, NOW, TIMEOUT)
    got = [
        list(plan.serving),
        [d.index for d in plan.retiring],
        list(plan.retired),
        list(plan.taken_back),
        list(plan.created),
        [d.index for d in plan.removed],
    ]
    assert got == list(expected)
    assert len(plan.serving) == desired
    assert plan.changed == any(expected[2:])


def test_a_new_drain_runs_until_now_plus_the_timeout_and_a_kept_one_keeps_its_deadline() -> None:
    plan = plan_fleet(1, members({0: 5, 1: 50}), {}, {}, NOW, TIMEOUT)
    assert plan.retiring == (Drain(1, NOW, NOW + TIMEOUT, None),)
    later = plan_fleet(1, members({0: 5}, {1: 50}), {1: plan.retiring[0]}, {1: 3}, NOW + 100, TIMEOUT)
    assert later.retiring == (Drain(1, NOW, NOW + TIMEOUT, 3),)
    assert Drain.from_dict(1, later.retiring[0].to_dict()) == later.retiring[0]


def test_a_retiree_still_in_rotation_never_ends_its_drain_even_at_zero_sessions() -> None:
    """The Pulumi update that takes it out of rotation may still be queued: 0 sessions now says
    nothing, new ones may arrive."""
    plan = plan_fleet(
        1,
        members({0: 5}, {1: 5}, rotating=frozenset({1})),
        {1: Drain(1, NOW - 900, NOW - 300)},
        {1: 0},
        NOW,
        TIMEOUT,
    )
    assert [d.index for d in plan.retiring] == [1] and not plan.removed


def test_sessions_cut_at_the_deadline_are_counted() -> None:
    plan = plan_fleet(1, members({0: 5}, {1: 5}), {1: Drain(1, NOW - 900, NOW - 1)}, {1: 7}, NOW, TIMEOUT)
    assert plan.cut_sessions == 7 and plan.notes == ["1: drain timeout, 7 sessions cut"]


def test_newest_mode_retires_the_latest_started() -> None:
    plan = plan_fleet(2, members({0: 55, 1: 10, 2: 118}), {}, {}, NOW, TIMEOUT, mode="newest")
    assert plan.retired == (1,)


def test_with_no_drain_timeout_a_retiree_goes_in_the_same_pass_it_is_chosen_only_if_empty() -> None:
    plan = plan_fleet(1, members({0: 5, 1: HOUR_S / 60 - 1}), {}, {}, NOW, 0.0)
    assert plan.retired == (1,) and [d.index for d in plan.retiring] == [1], "removed on a later pass"
