"""The fixed groups under Pulumi's mocks: the chat store and the Jitsi shards exist, are reachable
only from the tier that needs them, and the video bridges are placed in shards once, at creation.

Placement is tested across updates the way it runs: each run gets the previous run's outputs as the
stack's own last outputs (what the program's StackReference to itself reads after `pulumi up`)."""

from __future__ import annotations

import pytest

from stacks import engine
from stacks.fixed import PlacementError, assign
from swell import chat_store
from tests.stacks.stack_fixtures import stack_values, with_tiers

PRIVATE = "10.42.0.0/16"


def _run(video: int, shards: int, previous: engine.Recording | None = None) -> engine.Recording:
    values = with_tiers(stack_values("prod-gra11"), video=video)
    values["swell:shards"] = shards
    return engine.run(values, "prod-gra11", previous_outputs=previous.outputs if previous else None)


def _rules(rec: engine.Recording, group: str) -> set[tuple[str, int, str]]:
    return {
        (
            r.inputs["protocol"],
            int(r.inputs["portRangeMin"]),
            r.inputs.get("remoteIpPrefix") or r.inputs["remoteGroupId"],
        )
        for r in rec.of_type(engine.SEC_GROUP_RULE)
        if r.name.startswith(f"{group}-in-")
    }


def _shards(rec: engine.Recording) -> dict[int, str]:
    """Each bridge's shard, as its Nova metadata says."""
    return {
        int(r.inputs["metadata"]["index"]): r.inputs["metadata"]["shard"]
        for r in rec.of_type(engine.INSTANCE)
        if r.inputs["metadata"].get("tier") == "video"
    }


def test_the_chat_store_takes_redis_from_chats_security_group_only_and_the_shards_xmpp_from_videos() -> None:
    rec = _run(video=2, shards=2)
    groups = {r.name: r.id for r in rec.of_type(engine.SEC_GROUP)}
    admins = {("tcp", 22, "198.51.100.0/24"), ("tcp", 22, "2001:db8:100::/48"), ("tcp", 9100, PRIVATE)}
    assert _rules(rec, "chat_store") == admins | {("tcp", chat_store.PORT, groups["chat-secgroup"])}
    assert _rules(rec, "shard") == admins | {("tcp", 5222, groups["video-secgroup"])}
    # Nothing else anywhere opens Redis or XMPP: not chat's own group, not a network.
    others = [
        r.name
        for r in rec.of_type(engine.SEC_GROUP_RULE)
        if r.inputs["portRangeMin"] in (chat_store.PORT, 5222)
        and not r.name.startswith(("chat_store-", "shard-"))
    ]
    assert others == []
    # Each fixed group's rules belong to its own security group.
    for group in ("chat_store", "shard"):
        assert {
            r.inputs["securityGroupId"]
            for r in rec.of_type(engine.SEC_GROUP_RULE)
            if r.name.startswith(f"{group}-in-")
        } == {groups[f"{group}-secgroup"]}


@pytest.mark.parametrize("shards", [1, 3])
def test_shards_are_a_config_count_and_the_chat_store_is_one_each_in_a_soft_anti_affinity_group(
    shards: int,
) -> None:
    rec = _run(video=1, shards=shards)
    instances = rec.named(engine.INSTANCE)
    server_groups = rec.named(engine.SERVER_GROUP)
    for group, count, slug in (("shard", shards, "shard"), ("chat_store", 1, "chat-store")):
        mine = {n: r for n, r in instances.items() if n.startswith(f"{group}-")}
        assert sorted(mine) == [f"{group}-{i}" for i in range(count)]
        for i, r in enumerate(sorted(mine.values(), key=lambda r: r.name)):
            assert r.inputs["name"] == f"swell-prod-gra11-{slug}-{i}"
            # `group`, never `tier`: no tier rule or scrape job counts them as a tier's instances.
            assert r.inputs["metadata"] == {"group": group, "stack": "prod-gra11", "index": str(i)}
            assert r.inputs["schedulerHints"] == [{"group": server_groups[f"{group}-servers"].id}]
            assert len(r.inputs["networks"]) == 1 and "uuid" in r.inputs["networks"][0]  # private only
        assert server_groups[f"{group}-servers"].inputs["policies"] == "soft-anti-affinity"
        assert [i["name"] for i in rec.outputs["fixed"][group]["instances"]] == [
            f"swell-prod-gra11-{slug}-{i}" for i in range(count)
        ]


def test_adding_a_shard_keeps_every_bridges_shard_and_new_bridges_fill_the_new_shard_first() -> None:
    one = _run(video=4, shards=1)
    assert _shards(one) == {0: "0", 1: "0", 2: "0", 3: "0"}
    assert one.outputs["placements"] == {"video": {"0": 0, "1": 0, "2": 0, "3": 0}}
    # A shard is added, and the bridges doubled (the autoscaler's x2) in the same update.
    two = _run(video=8, shards=2, previous=one)
    assert _shards(two) == {0: "0", 1: "0", 2: "0", 3: "0", 4: "1", 5: "1", 6: "1", 7: "1"}
    # A third shard, three more bridges: all to the emptiest; the others stay where they are.
    three = _run(video=11, shards=3, previous=two)
    assert _shards(three) == {**_shards(two), 8: "2", 9: "2", 10: "2"}
    # With no new shard, new bridges spread over the least populated, the lowest first on a tie.
    four = _run(video=14, shards=3, previous=three)
    assert [_shards(four)[i] for i in (11, 12, 13)] == ["2", "0", "1"]
    # The placement is Nova metadata the stack never changes afterwards (ignore_changes).
    for r in four.of_type(engine.INSTANCE):
        if r.name.startswith("video-"):
            assert "metadata.shard" in r.ignore_changes


def test_a_scale_down_frees_places_and_the_next_bridges_refill_the_emptiest_shard() -> None:
    before = _run(video=4, shards=2)
    assert _shards(before) == {0: "0", 1: "1", 2: "0", 3: "1"}
    values = with_tiers(stack_values("prod-gra11"), video=2)
    values["swell:shards"] = 2
    values["swell:tiers"]["video"]["instances"] = [1, 3]  # the autoscaler removed 0 and 2 (shard 0)
    after = engine.run(values, "prod-gra11", previous_outputs=before.outputs)
    assert _shards(after) == {1: "1", 3: "1"}
    regrown = _run(video=4, shards=2, previous=after)
    assert _shards(regrown) == {0: "0", 1: "1", 2: "0", 3: "1"}


def test_removing_a_shard_that_still_has_bridges_is_refused_naming_them() -> None:
    two = _run(video=4, shards=2)
    with pytest.raises(
        Exception, match=r"instance\(s\) \[1, 3\] belong to member\(s\) \[1\], beyond the 1 configured"
    ):
        _run(video=4, shards=1, previous=two)


def test_the_program_reads_its_placements_back_from_its_own_stack() -> None:
    rec = _run(video=1, shards=1)
    (ref,) = rec.of_type(engine.STACK_REFERENCE)
    assert ref.inputs["name"].endswith("/swell/prod-gra11")


ASSIGN: list[tuple[str, list[int], int, dict[int, int], dict[int, int]]] = [
    ("first-update", [0, 1, 2], 2, {}, {0: 0, 1: 1, 2: 0}),
    ("kept-and-new", [0, 1, 2, 3], 2, {0: 1, 1: 1}, {0: 1, 1: 1, 2: 0, 3: 0}),
    ("removed-indices-forgotten", [2], 2, {0: 0, 1: 1, 2: 1}, {2: 1}),
    ("a-new-member-fills-first", [0, 1, 2, 3, 4], 3, {0: 0, 1: 1, 2: 0}, {0: 0, 1: 1, 2: 0, 3: 2, 4: 1}),
    ("one-member", [5, 9], 1, {}, {5: 0, 9: 0}),
]


@pytest.mark.parametrize(
    ("indices", "members", "previous", "expected"), [a[1:] for a in ASSIGN], ids=[a[0] for a in ASSIGN]
)
def test_assign_keeps_what_was_placed_and_puts_the_rest_on_the_least_populated(
    indices: list[int], members: int, previous: dict[int, int], expected: dict[int, int]
) -> None:
    assert assign(indices, members, previous) == expected


def test_assign_refuses_an_orphan_and_no_members() -> None:
    with pytest.raises(PlacementError, match=r"swell:tiers\.video: instance"):
        assign([0], 1, {0: 3}, what="swell:tiers.video")
    with pytest.raises(ValueError, match="at least one member"):
        assign([0], 0, {})
