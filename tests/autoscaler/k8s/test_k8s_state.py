"""The ConfigMap state store: the leader's saves and on-call's surges interleave without losing data."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from k8s_standin import StandInApiServer
from kubernetes import client

from autoscaler.adapters.k8s import ConfigMapStateSettings, ConfigMapStateStore
from autoscaler.adapters.k8s.state import LOOP_STATE_KEY, OVERRIDES_KEY
from autoscaler.ports import LoopState, Override, StateFenceError, StateStoreError

SETTINGS = ConfigMapStateSettings(name="swell-state", namespace="ops", max_attempts=3, retry_delay_s=0)
CM = "/configmaps/swell-state"
NOW = 1_790_000_000.0

StoreFactory = Callable[..., ConfigMapStateStore]


@pytest.fixture
def new_store(make_client: Callable[..., client.ApiClient]) -> StoreFactory:
    """Each call is another process (the leader, a laptop, the next leader) with its own client."""
    return lambda name="swell-test": ConfigMapStateStore(make_client(name), SETTINGS)


def surge(id_: str, tier: str = "video", floor: int = 8) -> Override:
    return Override(
        id=id_, tier=tier, factor=4.0, floor=floor, created_at=NOW, expires_at=NOW + 7200, reason="keynote"
    )


def loop_state(desired: int) -> LoopState:
    return LoopState(
        policy_state={"video": {"history": [[NOW - 15, 4], [NOW, desired]], "last_scale_up": NOW}},
        last_desired={"video": desired, "chat": 3},
        recent_decisions={"video": [{"at": NOW, "desired": desired, "reason": "surge x2"}]},
    )


def test_loop_state_round_trips_and_an_empty_store_reads_empty(new_store: StoreFactory) -> None:
    store = new_store()
    assert store.load_loop_state() == LoopState()
    assert store.overrides() == []
    store.save_loop_state(loop_state(8))
    assert store.load_loop_state() == loop_state(8)
    store.save_loop_state(loop_state(16))
    assert store.load_loop_state() == loop_state(16)


def test_a_new_leader_reads_the_old_leaders_state_and_overrides(new_store: StoreFactory) -> None:
    old_leader, laptop = new_store(), new_store()
    old_leader.save_loop_state(loop_state(16))
    laptop.add_override(surge("s1"))
    new_leader = new_store()
    assert new_leader.load_loop_state().last_desired == {"video": 16, "chat": 3}
    assert new_leader.load_loop_state() == loop_state(16)
    assert [o.id for o in new_leader.overrides()] == ["s1"]


# Each case: what the store under test does, and the other writer's act that lands between its read
# and its write (a hook on the store's own PUT or POST). Both must be in the ConfigMap afterwards.
Act = Callable[[ConfigMapStateStore], object]
CASES: list[tuple[str, Act, Act, str, bool]] = [
    (
        "PUT",
        lambda leader: leader.save_loop_state(loop_state(16)),
        lambda laptop: laptop.add_override(surge("s2")),
        "leader-save-meets-laptop-surge",
        True,
    ),
    (
        "PUT",
        lambda laptop: laptop.add_override(surge("s2")),
        lambda leader: leader.save_loop_state(loop_state(16)),
        "laptop-surge-meets-leader-save",
        True,
    ),
    (
        "PUT",
        lambda laptop: laptop.cancel_override("s1"),
        lambda leader: leader.save_loop_state(loop_state(16)),
        "laptop-cancel-meets-leader-save",
        True,
    ),
    (
        "POST",
        lambda leader: leader.save_loop_state(loop_state(16)),
        lambda laptop: laptop.add_override(surge("s2")),
        "both-create-the-configmap",
        False,
    ),
]


@pytest.mark.parametrize(
    ("method", "act", "other", "case", "existing"),
    CASES,
    ids=[c[3] for c in CASES],
)
def test_interleaved_writers_conflict_and_lose_nothing(
    standin: StandInApiServer,
    new_store: StoreFactory,
    method: str,
    act: Act,
    other: Act,
    case: str,
    existing: bool,
) -> None:
    if existing:
        seed = new_store()
        seed.save_loop_state(loop_state(8))
        seed.add_override(surge("s1"))
    mine, theirs = new_store("mine"), new_store("theirs")
    path = CM if method == "PUT" else "/configmaps"
    standin.before(method, path, lambda: other(theirs), user_agent="mine")

    act(mine)

    # The interleaving really happened: our first write was refused, and redone on a fresh read.
    assert standin.count(method, path, status=409) == 1
    assert mine.conflicts == 1
    final = new_store()
    ids = {o.id for o in final.overrides()}
    assert final.load_loop_state() == loop_state(16)
    if case.startswith("laptop-cancel"):
        assert ids == set()
    else:
        assert "s2" in ids
        assert ids == ({"s1", "s2"} if existing else {"s2"})


def test_a_write_storm_gives_up_after_the_bounded_retries_and_writes_nothing(
    standin: StandInApiServer, new_store: StoreFactory
) -> None:
    leader, laptop = new_store("leader"), new_store("laptop")
    leader.save_loop_state(loop_state(8))
    counter = iter(range(100))
    # Someone else writes before every one of the leader's attempts.
    standin.before(
        "PUT",
        CM,
        lambda: laptop.add_override(surge(f"x{next(counter)}")),
        times=SETTINGS.max_attempts,
        user_agent="leader",
    )
    with pytest.raises(StateStoreError, match=r"gave up after 3 conflicting writes; nothing was written"):
        leader.save_loop_state(loop_state(16))
    assert leader.conflicts == 3
    final = new_store()
    assert final.load_loop_state() == loop_state(8)
    assert {o.id for o in final.overrides()} == {"x0", "x1", "x2"}


def test_cancel_returns_whether_an_override_had_that_id(
    standin: StandInApiServer, new_store: StoreFactory
) -> None:
    store = new_store()
    store.add_override(surge("s1"))
    store.add_override(surge("s2", tier="chat", floor=12))
    writes = standin.count("PUT", CM)
    assert store.cancel_override("nope") is False
    assert standin.count("PUT", CM) == writes  # nothing to remove, nothing written
    assert store.cancel_override("s1") is True
    assert [(o.id, o.tier, o.floor) for o in store.overrides()] == [("s2", "chat", 12)]


def test_adding_an_override_twice_keeps_one(new_store: StoreFactory) -> None:
    store = new_store()
    store.add_override(surge("s1", floor=8))
    store.add_override(surge("s1", floor=9))
    assert [(o.id, o.floor) for o in store.overrides()] == [("s1", 9)]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (OVERRIDES_KEY, "not json", "key overrides.json is not JSON"),
        (OVERRIDES_KEY, '{"id": "s1"}', "key overrides.json should hold a JSON list"),
        (OVERRIDES_KEY, '[{"id": "s1"}]', "key overrides.json: an override lacks or mangles 'tier'"),
        (LOOP_STATE_KEY, "[1, 2]", "key loop-state.json should hold a JSON dict"),
    ],
    ids=["overrides-not-json", "overrides-not-a-list", "override-missing-field", "loop-state-not-an-object"],
)
def test_a_damaged_key_is_reported_by_name_and_left_as_it_was(
    standin: StandInApiServer, new_store: StoreFactory, key: str, value: str, message: str
) -> None:
    store = new_store()
    store.save_loop_state(loop_state(8))
    standin.edit_configmap("ops", "swell-state", key, value)

    with pytest.raises(StateStoreError, match="ConfigMap ops/swell-state: " + message.replace("'", ".")):
        if key == OVERRIDES_KEY:
            store.add_override(surge("s9"))
        else:
            store.load_loop_state()
    after = standin.get_object("configmaps", "ops", "swell-state")
    assert after is not None and after["data"][key] == value


def test_what_is_stored_is_plain_json_an_operator_can_read(
    standin: StandInApiServer, new_store: StoreFactory
) -> None:
    store = new_store()
    store.save_loop_state(loop_state(8))
    store.add_override(surge("s1"))
    cm = standin.get_object("configmaps", "ops", "swell-state")
    assert cm is not None
    assert json.loads(cm["data"][LOOP_STATE_KEY])["last_desired"] == {"video": 8, "chat": 3}
    assert json.loads(cm["data"][OVERRIDES_KEY])[0]["reason"] == "keynote"


def test_an_api_failure_is_a_state_store_error_naming_the_configmap(
    standin: StandInApiServer, new_store: StoreFactory
) -> None:
    store = new_store()
    standin.fail_next("GET", CM, 403)
    with pytest.raises(StateStoreError, match=r"reading ConfigMap ops/swell-state: API server answered 403"):
        store.overrides()
    store.save_loop_state(loop_state(8))
    standin.fail_next("PUT", CM, 500)
    with pytest.raises(StateStoreError, match=r"saving the loop state in ConfigMap ops/swell-state: .*500"):
        store.save_loop_state(loop_state(16))
    assert store.load_loop_state() == loop_state(8)


def test_state_too_large_for_a_configmap_is_refused_before_writing(
    standin: StandInApiServer, new_store: StoreFactory
) -> None:
    store = new_store()
    store.save_loop_state(loop_state(8))
    huge = loop_state(16)
    huge.recent_decisions["video"] = [{"reason": "x" * 1000, "at": NOW + i} for i in range(1100)]
    writes = standin.count("PUT", CM)
    with pytest.raises(StateStoreError, match=r"over the 1000000 a ConfigMap may hold; nothing was written"):
        store.save_loop_state(huge)
    assert standin.count("PUT", CM) == writes
    assert store.load_loop_state() == loop_state(8)


def test_a_deposed_leaders_save_is_fenced_off(new_store: StoreFactory, standin: StandInApiServer) -> None:
    """a read the state, then paused; b took over, claimed the state and saved. a's save, however
    its resourceVersion was obtained, must not overwrite b's."""
    a, b = new_store("pod-a"), new_store("pod-b")
    a.save_loop_state(loop_state(8))
    assert a.load_loop_state() == loop_state(8)
    taken = b.load_loop_state()
    taken.writer = "pod-b"
    b.save_loop_state(taken)
    with pytest.raises(StateFenceError, match="written by pod-b since this replica read it"):
        a.save_loop_state(loop_state(4))
    stored = json.loads(standin.get_object("configmaps", "ops", "swell-state")["data"][LOOP_STATE_KEY])
    assert stored["writer"] == "pod-b" and stored["last_desired"]["video"] == 8
    b.save_loop_state(loop_state(16))  # the leader itself goes on saving


def test_the_fence_lets_on_calls_surges_and_a_recreated_configmap_through(
    new_store: StoreFactory, standin: StandInApiServer
) -> None:
    leader, laptop = new_store("pod-a"), new_store("laptop")
    leader.save_loop_state(loop_state(8))
    laptop.add_override(surge("s1"))  # changes the resourceVersion, not the loop state
    leader.save_loop_state(loop_state(12))
    assert [o.id for o in leader.overrides()] == ["s1"]
    standin.edit_configmap("ops", "swell-state", LOOP_STATE_KEY, "")  # emptied by hand
    with pytest.raises(StateFenceError):
        leader.save_loop_state(loop_state(12))
    with standin.state.lock:  # deleted by hand: a lost store, not a competitor
        del standin.state.objects[("configmaps", "ops", "swell-state")]
    leader.save_loop_state(loop_state(12))
    assert new_store().load_loop_state() == loop_state(12)


def test_drains_and_the_actuation_report_survive_a_new_leader(new_store: StoreFactory) -> None:
    """The two-phase scale-down resumes where it was: which instances drain, since and until when."""
    state = loop_state(8)
    state.drains = {"video": {"3": {"since": NOW, "deadline": NOW + 900, "sessions": 12}}}
    state.actuation = {"prod-gra11": {"stack": "prod-gra11", "in_flight": None, "queued": {}, "last": None}}
    new_store("leader").save_loop_state(state)
    assert new_store("next-leader").load_loop_state() == state
