"""The warm pool in the stack program, under Pulumi's mocks: warm instances are declared shelved
(`power_state = "shelved_offloaded"`) with no load balancer member, filling ones active with no member;
moving an index between serving, retiring, warm and filling changes only its instance's `powerState`
and its member, never another input (so Pulumi updates it in place, never replaces it), and a refill
in the same update creates the new index active, without a member."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stacks import engine
from stacks.policy import checks
from tests.stacks.stack_fixtures import stack_values, with_tiers


@dataclass(frozen=True)
class Layout:
    serving: list[int]
    retiring: list[int] = field(default_factory=list)
    warm: list[int] = field(default_factory=list)
    filling: list[int] = field(default_factory=list)

    def pools(self) -> dict[int, str]:
        return {**dict.fromkeys(self.filling, "filling"), **dict.fromkeys(self.warm, "warm")}


def _values(tier: str, layout: Layout) -> dict:
    out = with_tiers(stack_values("dev"), **{tier: len(layout.serving)})
    spec = out["swell:tiers"][tier]
    spec.update(
        instances=layout.serving, retiring=layout.retiring, warm=layout.warm, filling=layout.filling, max=16
    )
    return out


def _index(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def _instances(rec: engine.Recording, tier: str) -> dict[int, engine.Recorded]:
    return {_index(n): r for n, r in rec.named(engine.INSTANCE).items() if n.startswith(f"{tier}-")}


def _members(rec: engine.Recording, tier: str) -> dict[int, engine.Recorded]:
    return {_index(n): m for n, m in rec.named(engine.MEMBER).items() if n.startswith(f"{tier}-lb-member-")}


def _changed(old: engine.Recorded, new: engine.Recorded) -> set[str]:
    return {k for k in old.inputs.keys() | new.inputs.keys() if old.inputs.get(k) != new.inputs.get(k)}


def test_warm_instances_are_shelved_without_a_member_and_filling_ones_run_without_one() -> None:
    layout = Layout(serving=[0, 1], retiring=[2], warm=[3, 5], filling=[4])
    rec = engine.run(_values("web", layout), "dev")
    instances = _instances(rec, "web")
    assert sorted(instances) == [0, 1, 2, 3, 4, 5]
    states = {i: r.inputs["powerState"] for i, r in instances.items()}
    assert states == {
        0: "active",
        1: "active",
        2: "active",
        3: "shelved_offloaded",
        4: "active",
        5: "shelved_offloaded",
    }
    weights = {i: m.inputs["weight"] for i, m in _members(rec, "web").items()}
    assert weights == {0: 1, 1: 1, 2: 0}, "members for serving (1) and retiring (0) only"
    entries = {e["index"]: e for e in rec.outputs["tiers"]["web"]["instances"]}
    assert {i: e["pool"] for i, e in entries.items()} == {
        0: "",
        1: "",
        2: "",
        3: "warm",
        4: "filling",
        5: "warm",
    }
    assert {i for i, e in entries.items() if e["retiring"]} == {2}
    for inst in instances.values():
        assert inst.ignore_changes == ("userData",), "user_data never replaces a pool instance either"


# (before) -> (after), and what must happen: index -> (powerState before, after) for the instances
# whose state changes, members added and removed, instances created (with their state) and deleted.
@dataclass(frozen=True)
class Move:
    before: Layout
    after: Layout
    power: dict[int, tuple[str, str]] = field(default_factory=dict)
    members_added: set[int] = field(default_factory=set)
    members_removed: set[int] = field(default_factory=set)
    created: dict[int, str] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)


MOVES = [
    (
        "activate-a-warm-one",
        Move(
            Layout([0], warm=[1, 2]),
            Layout([0, 1], warm=[2]),
            power={1: ("shelved_offloaded", "active")},
            members_added={1},
        ),
    ),
    (
        "activate-and-refill-in-one-update",
        Move(
            Layout([0], warm=[1, 2]),
            Layout([0, 1, 2], filling=[3, 4]),
            power={1: ("shelved_offloaded", "active"), 2: ("shelved_offloaded", "active")},
            members_added={1, 2},
            created={3: "active", 4: "active"},
        ),
    ),
    (
        "refill-creates-active-without-a-member",
        Move(Layout([0, 1], warm=[2]), Layout([0, 1], warm=[2], filling=[3]), created={3: "active"}),
    ),
    (
        "configured-filling-one-is-shelved",
        Move(
            Layout([0], filling=[3]),
            Layout([0], warm=[3]),
            power={3: ("active", "shelved_offloaded")},
        ),
    ),
    ("filling-one-serves-at-once", Move(Layout([0], filling=[3]), Layout([0, 3]), members_added={3})),
    (
        "drained-one-refills-the-pool",
        Move(
            Layout([0], retiring=[1]),
            Layout([0], warm=[1]),
            power={1: ("active", "shelved_offloaded")},
            members_removed={1},
        ),
    ),
    ("excess-warm-one-is-deleted", Move(Layout([0], warm=[1, 2]), Layout([0], warm=[1]), deleted={2})),
]


@pytest.mark.parametrize("move", [m[1] for m in MOVES], ids=[m[0] for m in MOVES])
def test_moving_an_index_between_sets_changes_only_its_power_state_and_its_member(move: Move) -> None:
    old = engine.run(_values("web", move.before), "dev")
    new = engine.run(_values("web", move.after), "dev")
    old_i, new_i = _instances(old, "web"), _instances(new, "web")
    assert set(old_i) - set(new_i) == move.deleted
    assert {i: new_i[i].inputs["powerState"] for i in set(new_i) - set(old_i)} == move.created
    power = {}
    for i in set(old_i) & set(new_i):
        changed = _changed(old_i[i], new_i[i])
        assert changed <= {"powerState"}, f"instance {i}: {changed} changed; it would not stay in place"
        if changed:
            power[i] = (old_i[i].inputs["powerState"], new_i[i].inputs["powerState"])
    assert power == move.power
    old_m, new_m = _members(old, "web"), _members(new, "web")
    assert set(new_m) - set(old_m) == move.members_added
    assert set(old_m) - set(new_m) == move.members_removed
    for i in set(old_m) & set(new_m):
        assert old_m[i].inputs == new_m[i].inputs
    assert set(new_m) == {*move.after.serving, *move.after.retiring}
    entries = {e["index"]: e["pool"] for e in new.outputs["tiers"]["web"]["instances"]}
    assert {i: p for i, p in entries.items() if p} == move.after.pools()
    # Nothing that is not per instance changes with the pool.
    per_instance = (engine.INSTANCE, engine.MEMBER)
    assert {(r.type, r.name): r.inputs for r in old.resources if r.type not in per_instance} == {
        (r.type, r.name): r.inputs for r in new.resources if r.type not in per_instance
    }


def test_an_instance_keeps_its_inputs_whatever_set_it_is_in_but_its_power_state() -> None:
    """The same index in each of the four sets: every input but powerState is the same."""
    layouts = [Layout([0, 1]), Layout([0], retiring=[1]), Layout([0], warm=[1]), Layout([0], filling=[1])]
    seen = [_instances(engine.run(_values("video", layout), "dev"), "video")[1] for layout in layouts]
    for other in seen[1:]:
        assert _changed(seen[0], other) <= {"powerState"}


def test_the_quota_policy_counts_warm_and_filling_instances_in_full() -> None:
    """Conservative on purpose (docs/ovhcloud.md, Quota): a shelved instance counts against the
    instance quota always, and against cores and RAM unless Nova counts usage from placement, where
    unshelving it then needs that room anyway."""
    rec = engine.run(_values("web", Layout([0], warm=[1, 2, 3], filling=[4])), "dev")
    cat = checks.catalog.load()
    flavors = [str(r.inputs["flavorName"]) for r in rec.of_type(engine.INSTANCE)]
    # chat and video one each, web 1 serving + 4 in the pool, the chat store and one shard
    assert len(flavors) == 2 + 5 + 2
    room = checks.catalog.Quota("custom", instances=8, vcpus=1000, ram_gb=1000)
    policies = checks.check_all([(r.type, r.inputs, r.id) for r in rec.resources], room, cat)
    [violation] = policies["counts-within-quota"]
    assert "9 instances (including 3 shelved warm-pool instances" in violation
    assert all(not found for name, found in policies.items() if name != "counts-within-quota")
