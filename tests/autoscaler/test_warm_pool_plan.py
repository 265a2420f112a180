"""The warm pool in the fleet plan (autoscaler/core/drain.py) and its hysteresis
(autoscaler/core/warm_pool.py): what a scale-up activates first, that the pool refills in the same
pass, that a drained instance is shelved instead of deleted when the pool is short, that the pool
shrinks only after its target has been lower for a while, and that without a pool nothing changed."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.billing import RETIRE_PAID_HOUR, choose_retirees
from autoscaler.core.drain import Drain, FleetPlan, plan_fleet
from autoscaler.core.warm_pool import pool_keep
from autoscaler.ports import POOL_FILLING, POOL_WARM, LoopState, Member
from tests.autoscaler.test_drain import CASES, NOW, TIMEOUT, members

Layout = dict[str, list[int]]


def fleet(
    serving: Sequence[int],
    retiring: Sequence[int] = (),
    warm: Sequence[int] = (),
    filling: Sequence[int] = (),
    configured: Sequence[int] = (),
) -> list[Member]:
    """Members started 10 minutes ago; `configured`: the filling ones whose bootstrap finished."""
    at = NOW - 600
    return (
        [Member(i, at, ready=True) for i in serving]
        + [Member(i, at, retiring=True) for i in retiring]
        + [Member(i, at, ready=True, pool=POOL_WARM) for i in warm]
        + [Member(i, at, ready=i in configured, pool=POOL_FILLING) for i in filling]
    )


def outcome(plan: FleetPlan) -> Layout:
    found: Layout = {
        "serving": list(plan.serving),
        "retiring": [d.index for d in plan.retiring],
        "retired": list(plan.retired),
        "warm": list(plan.warm),
        "filling": list(plan.filling),
        "taken_back": list(plan.taken_back),
        "activated": list(plan.activated),
        "created": list(plan.created),
        "refilled": list(plan.refilled),
        "shelved": list(plan.shelved),
        "trimmed": list(plan.trimmed),
        "deleted": list(plan.deleted),
    }
    return {k: v for k, v in found.items() if v or k in ("serving", "warm", "filling")}


DRAINED = {2: Drain(2, NOW - 60, NOW + 500)}

POOL_CASES: list[tuple[str, int, dict[str, object], int, int | None, Layout]] = [
    # id, desired, layout (serving, retiring, warm, filling, configured, sessions), pool target,
    # pool keep, expected (empty change lists left out)
    (
        "retiring-taken-back-before-warm",
        3,
        {"serving": [0], "retiring": [1], "warm": [2, 3], "sessions": {1: 2}},
        2,
        None,
        {
            "serving": [0, 1, 2],
            "warm": [3],
            "filling": [4],
            "taken_back": [1],
            "activated": [2],
            "refilled": [4],
        },
    ),
    (
        "warm-before-filling-and-configured-filling-before-unconfigured",
        3,
        {"serving": [0], "warm": [3], "filling": [1, 2], "configured": [2]},
        0,
        3,
        {"serving": [0, 2, 3], "warm": [], "filling": [1], "activated": [2, 3]},
    ),
    (
        "new-indices-only-after-the-pool-is-used-up",
        5,
        {"serving": [0], "warm": [1], "filling": [2]},
        2,
        None,
        {
            "serving": [0, 1, 2, 3, 4],
            "warm": [],
            "filling": [5, 6],
            "activated": [1, 2],
            "created": [3, 4],
            "refilled": [5, 6],
        },
    ),
    (
        "a-surge-unshelves-and-refills-in-the-same-pass",
        4,
        {"serving": [0, 1], "warm": [2, 3]},
        2,
        None,
        {"serving": [0, 1, 2, 3], "warm": [], "filling": [4, 5], "activated": [2, 3], "refilled": [4, 5]},
    ),
    (
        "a-refill-takes-the-lowest-free-indices",
        2,
        {"serving": [1, 4], "warm": [3]},
        3,
        None,
        {"serving": [1, 4], "warm": [3], "filling": [0, 2], "refilled": [0, 2]},
    ),
    (
        "configured-filling-ones-are-shelved",
        2,
        {"serving": [0, 1], "filling": [2, 3], "configured": [2]},
        2,
        None,
        {"serving": [0, 1], "warm": [2], "filling": [3], "shelved": [2]},
    ),
    (
        "a-drained-instance-is-shelved-when-the-pool-is-short",
        2,
        {"serving": [0, 1], "retiring": [2], "sessions": {2: 0}},
        1,
        None,
        {"serving": [0, 1], "warm": [2], "filling": [], "shelved": [2]},
    ),
    (
        "a-drained-instance-is-deleted-when-the-pool-is-full",
        2,
        {"serving": [0, 1], "retiring": [2], "warm": [3], "sessions": {2: 0}},
        1,
        None,
        {"serving": [0, 1], "warm": [3], "filling": [], "deleted": [2]},
    ),
    (
        "a-draining-retiree-counts-towards-the-pool-nothing-is-created-for-it",
        2,
        {"serving": [0, 1], "retiring": [2], "sessions": {2: 4}},
        1,
        None,
        {"serving": [0, 1], "retiring": [2], "warm": [], "filling": []},
    ),
    (
        "beyond-the-draining-ones-the-pool-refills",
        2,
        {"serving": [0, 1], "retiring": [2], "sessions": {2: 4}},
        2,
        None,
        {"serving": [0, 1], "retiring": [2], "warm": [], "filling": [3], "refilled": [3]},
    ),
    (
        "a-scale-down-retires-and-creates-nothing-for-the-pool",
        1,
        {"serving": [0, 1]},
        1,
        None,
        {"serving": [1], "retiring": [0], "warm": [], "filling": [], "retired": [0]},
    ),
    (
        "excess-within-what-the-pool-keeps-stays",
        2,
        {"serving": [0, 1], "warm": [2, 3, 4]},
        1,
        3,
        {"serving": [0, 1], "warm": [2, 3, 4], "filling": []},
    ),
    (
        "excess-beyond-keep-goes-unconfigured-filling-first-then-the-highest-warm",
        2,
        {"serving": [0, 1], "warm": [2, 3, 4], "filling": [5]},
        1,
        2,
        {"serving": [0, 1], "warm": [2, 3], "filling": [], "trimmed": [4, 5], "deleted": [4, 5]},
    ),
    (
        "without-a-pool-what-is-left-of-one-is-deleted",
        2,
        {"serving": [0, 1], "warm": [2], "filling": [3, 4], "configured": [3]},
        0,
        None,
        {"serving": [0, 1], "warm": [], "filling": [], "trimmed": [2, 3, 4], "deleted": [2, 3, 4]},
    ),
    (
        "without-a-pool-a-scale-up-still-uses-what-is-left-of-one",
        3,
        {"serving": [0, 1], "warm": [2], "filling": [3]},
        0,
        None,
        {"serving": [0, 1, 2], "warm": [], "filling": [], "activated": [2], "trimmed": [3], "deleted": [3]},
    ),
    (
        "a-drained-instance-completes-the-pool-without-a-refill",
        2,
        {"serving": [0, 1], "retiring": [2], "sessions": {2: 0}, "warm": [3, 4]},
        3,
        None,
        {"serving": [0, 1], "warm": [2, 3, 4], "filling": [], "shelved": [2]},
    ),
]


@pytest.mark.parametrize(
    ("desired", "layout", "target", "keep", "expected"),
    [c[1:] for c in POOL_CASES],
    ids=[c[0] for c in POOL_CASES],
)
def test_pool_plan(
    desired: int, layout: dict[str, object], target: int, keep: int | None, expected: Layout
) -> None:
    def ints(key: str) -> list[int]:
        return list(layout.get(key, []))  # type: ignore[call-overload]

    sessions: Mapping[int, int | None] = layout.get("sessions", {})  # type: ignore[assignment]
    found = fleet(ints("serving"), ints("retiring"), ints("warm"), ints("filling"), ints("configured"))
    drains = {i: Drain(i, NOW - 60, NOW + 500) for i in ints("retiring")}
    plan = plan_fleet(desired, found, drains, sessions, NOW, TIMEOUT, pool_target=target, pool_keep=keep)
    assert outcome(plan) == expected
    assert len(plan.serving) == desired
    sets = [set(plan.serving), {d.index for d in plan.retiring}, set(plan.warm), set(plan.filling)]
    assert sum(len(s) for s in sets) == len(set().union(*sets)), "an index is in one set at most"
    assert plan.changed == any(
        v for k, v in expected.items() if k not in ("serving", "warm", "filling", "retiring")
    )


def test_a_plan_applied_twice_changes_nothing_the_second_time() -> None:
    """What a pass asked for, the next pass finds (filling ones not configured yet): no churn."""
    plan = plan_fleet(4, fleet([0, 1], warm=[2, 3]), {}, {}, NOW, TIMEOUT, pool_target=2)
    again = plan_fleet(
        4, fleet(plan.serving, warm=plan.warm, filling=plan.filling), {}, {}, NOW + 15, TIMEOUT, pool_target=2
    )
    assert not again.changed and again.serving == plan.serving and again.filling == plan.filling


def _plan_without_pool(
    desired: int,
    members: Sequence[Member],
    drains: Mapping[int, Drain],
    sessions: Mapping[int, int | None],
    now: float,
    drain_timeout_s: float,
    mode: str = RETIRE_PAID_HOUR,
) -> tuple[list[int], list[Drain], list[int], list[int], list[int], list[Drain], bool, list[str]]:
    """The reference: `plan_fleet` as it was before the warm pool (commit 5526ca9), kept verbatim
    but for its return type, so that a plan without a pool can be compared field for field."""
    serving = sorted(m.index for m in members if not m.retiring)
    started = {m.index: m.started_at for m in members}
    rotating = {m.index for m in members if m.retiring and m.in_rotation}
    retiring: dict[int, Drain] = {}
    for m in members:
        if m.retiring:
            known = drains.get(m.index) or Drain(m.index, now, now + drain_timeout_s)
            seen = sessions.get(m.index, known.sessions)
            retiring[m.index] = Drain(m.index, known.since, known.deadline, seen)
    retired: list[int] = []
    taken_back: list[int] = []
    created: list[int] = []
    removed: list[Drain] = []
    notes: list[str] = []
    want = max(0, desired)
    if want > len(serving):
        for d in sorted(retiring.values(), key=lambda d: (-(d.sessions or 0), -d.deadline)):
            if len(serving) >= want:
                break
            serving.append(d.index)
            taken_back.append(d.index)
            del retiring[d.index]
        used = set(serving) | set(retiring)
        index = 0
        while len(serving) < want:
            while index in used:
                index += 1
            serving.append(index)
            created.append(index)
            used.add(index)
    elif want < len(serving):
        picks = choose_retirees([started[i] for i in serving], len(serving) - want, now, mode)
        for i in sorted(serving[p] for p in picks):
            serving.remove(i)
            retired.append(i)
            retiring[i] = Drain(i, now, now + drain_timeout_s, None)
    for d in sorted(retiring.values(), key=lambda d: d.index):
        if d.index in retired or d.index in rotating:
            continue
        if d.sessions == 0 or now >= d.deadline:
            removed.append(d)
            del retiring[d.index]
            if d.sessions:
                notes.append(f"{d.index}: drain timeout, {d.sessions} sessions cut")
    changed = bool(retired or taken_back or created or removed)
    return (
        sorted(serving),
        sorted(retiring.values(), key=lambda d: d.index),
        retired,
        sorted(taken_back),
        created,
        removed,
        changed,
        notes,
    )


def _old_fields(plan: FleetPlan) -> tuple[object, ...]:
    return (
        list(plan.serving),
        list(plan.retiring),
        list(plan.retired),
        list(plan.taken_back),
        list(plan.created),
        list(plan.removed),
        plan.changed,
        plan.notes,
    )


@pytest.mark.parametrize(("desired", "serving", "retiring", "drains", "sessions"), [c[1:6] for c in CASES])
def test_without_a_pool_the_drain_table_plans_as_before(
    desired: int,
    serving: dict[int, float],
    retiring: dict[int, float],
    drains: dict[int, Drain],
    sessions: dict[int, int | None],
) -> None:
    found = members(serving, retiring)
    plan = plan_fleet(desired, found, drains, sessions, NOW, TIMEOUT, pool_target=0)
    assert _old_fields(plan) == _plan_without_pool(desired, found, drains, sessions, NOW, TIMEOUT)
    assert plan.warm == plan.filling == plan.activated == plan.refilled == plan.shelved == plan.trimmed == ()


def test_without_a_pool_random_fleets_plan_as_before() -> None:
    rng = random.Random(15)
    for _ in range(400):
        indices = rng.sample(range(12), rng.randint(0, 10))
        cut = rng.randint(0, len(indices))
        found = [Member(i, NOW - rng.uniform(0, 7200), ready=True) for i in indices[:cut]] + [
            Member(i, NOW - rng.uniform(0, 7200), retiring=True, in_rotation=rng.random() < 0.2)
            for i in indices[cut:]
        ]
        drains = {
            m.index: Drain(m.index, NOW - 300, NOW + rng.choice([-1.0, 300.0])) for m in found if m.retiring
        }
        sessions = {m.index: rng.choice([None, 0, 3]) for m in found if m.retiring}
        desired = rng.randint(0, 12)
        mode = rng.choice([RETIRE_PAID_HOUR, "newest"])
        plan = plan_fleet(desired, found, drains, sessions, NOW, TIMEOUT, mode)
        assert _old_fields(plan) == _plan_without_pool(desired, found, drains, sessions, NOW, TIMEOUT, mode)


SHRINK = 3600.0


def test_the_pool_keeps_its_largest_recent_target_until_the_target_was_lower_for_the_whole_window() -> None:
    window: list[list[float]] = []
    steps = [(0.0, 3, 3), (60.0, 1, 3), (SHRINK - 1, 2, 3), (SHRINK + 1, 1, 2), (SHRINK + 59, 1, 2)]
    steps += [(2 * SHRINK, 1, 1), (2 * SHRINK + 15, 4, 4)]
    for at, target, keep in steps:
        got, window = pool_keep(window, target, NOW + at, SHRINK)
        assert got == keep, f"at +{at:.0f} s, target {target}"


def test_the_pool_window_survives_a_restart_through_the_loop_state() -> None:
    _, window = pool_keep([], 5, NOW, SHRINK)
    _, window = pool_keep(window, 2, NOW + 60, SHRINK)
    state = LoopState.from_dict(LoopState(pools={"web": window}).to_dict())
    assert pool_keep(state.pools["web"], 1, NOW + 120, SHRINK)[0] == 5


def test_a_pool_window_from_the_future_is_not_trusted() -> None:
    """A clock set back must not hold a large pool for ever."""
    assert pool_keep([[NOW + 86400, 9]], 1, NOW, SHRINK)[0] == 1


@st.composite
def pooled_fleets(draw: st.DrawFn) -> tuple[list[Member], dict[int, Drain], dict[int, int | None]]:
    indices = draw(st.lists(st.integers(0, 15), unique=True, max_size=12))
    kinds = draw(
        st.lists(
            st.sampled_from(["serving", "retiring", "warm", "filling"]),
            min_size=len(indices),
            max_size=len(indices),
        )
    )
    found: list[Member] = []
    drains: dict[int, Drain] = {}
    sessions: dict[int, int | None] = {}
    for i, kind in zip(indices, kinds, strict=True):
        at = NOW - draw(st.floats(0, 7200))
        if kind == "serving":
            found.append(Member(i, at, ready=True))
        elif kind == "retiring":
            found.append(Member(i, at, retiring=True, in_rotation=draw(st.booleans())))
            drains[i] = Drain(i, NOW - 300, NOW + draw(st.sampled_from([-1.0, 300.0])))
            sessions[i] = draw(st.sampled_from([None, 0, 2]))
        else:
            pool = POOL_WARM if kind == "warm" else POOL_FILLING
            found.append(Member(i, at, ready=kind == "warm" or draw(st.booleans()), pool=pool))
    return found, drains, sessions


@settings(max_examples=300, deadline=None)
@given(pooled_fleets(), st.integers(0, 14), st.integers(0, 6), st.integers(0, 4))
def test_whatever_the_fleet_a_pool_plan_keeps_its_promises(
    fleet_: tuple[list[Member], dict[int, Drain], dict[int, int | None]],
    desired: int,
    target: int,
    extra: int,
) -> None:
    found, drains, sessions = fleet_
    plan = plan_fleet(
        desired, found, drains, sessions, NOW, TIMEOUT, pool_target=target, pool_keep=target + extra
    )
    by_index = {m.index: m for m in found}
    sets = [set(plan.serving), {d.index for d in plan.retiring}, set(plan.warm), set(plan.filling)]
    assert sum(map(len, sets)) == len(set().union(*sets)), "an index is in one set at most"
    assert len(plan.serving) == desired
    pool = len(plan.warm) + len(plan.filling)
    assert pool <= target + extra, "never beyond what the pool keeps"
    assert pool + len(plan.retiring) >= target, "refilled up to the target, drains counted"
    if plan.created:
        unused = [m.index for m in found if m.pool == POOL_WARM and m.index not in plan.serving]
        assert not unused, "nothing is created while a warm instance waits"
    for i in plan.filling:
        assert i not in by_index or not by_index[i].ready, "a configured filling instance is shelved"
    for i in plan.warm:
        m = by_index.get(i)
        configured = m is not None and (
            m.pool == POOL_WARM or m.retiring or (m.pool == POOL_FILLING and m.ready)
        )
        assert configured, "only configured instances are shelved: warm, drained, or filling and ready"
    for i in plan.deleted:
        m = by_index[i]
        if m.retiring:
            d = next(x for x in plan.removed if x.index == i)
            assert d.sessions == 0 or d.deadline <= NOW, "nothing with sessions goes before its deadline"
        else:
            assert m.pool, "a serving instance is never deleted at once"
