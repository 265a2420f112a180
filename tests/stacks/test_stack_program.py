"""The stack program under Pulumi's mocks: instances, scaling stability, ports, load balancers, outputs,
and the cloud-init user_data checked by cloud-init's own schema validation."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import types
from pathlib import Path

import pytest

from stacks import engine
from tests.stacks.stack_fixtures import ROOT, assert_no_locust, stack_values, with_tiers

CLOUD_INIT = "/usr/bin/cloud-init"


def _instances(rec: engine.Recording, tier: str) -> dict[str, engine.Recorded]:
    return {n: r for n, r in rec.named(engine.INSTANCE).items() if n.startswith(f"{tier}-")}


COUNTS = [
    ("dev-like", {"web": 1, "chat": 1, "video": 1}),
    ("video-only", {"web": 0, "chat": 0, "video": 3}),
    ("surge", {"web": 8, "chat": 2, "video": 12}),
]


@pytest.mark.parametrize("counts", [c[1] for c in COUNTS], ids=[c[0] for c in COUNTS])
def test_each_tier_gets_count_instances_with_tier_metadata_in_its_server_group(
    counts: dict[str, int],
) -> None:
    rec = engine.run(with_tiers(stack_values("dev"), **counts), "dev")
    groups = rec.named(engine.SERVER_GROUP)
    for tier, count in counts.items():
        instances = _instances(rec, tier)
        assert sorted(instances) == sorted(f"{tier}-{i}" for i in range(count))
        assert groups[f"{tier}-servers"].inputs["policies"] == "soft-anti-affinity"
        for inst in instances.values():
            assert inst.inputs["metadata"]["tier"] == tier
            assert inst.inputs["schedulerHints"] == [{"group": groups[f"{tier}-servers"].id}]
            assert inst.inputs["name"] == f"swell-dev-{inst.name}"
    assert len(rec.outputs["tiers"]["video"]["instances"]) == counts["video"]


SCALES = [(1, 3), (3, 1), (2, 8), (8, 2), (0, 2), (4, 0), (5, 5)]


@pytest.mark.parametrize(("before", "after"), SCALES, ids=[f"{a}-to-{b}" for a, b in SCALES])
def test_a_count_change_alone_adds_or_removes_only_the_highest_indices_and_keeps_the_rest_unchanged(
    before: int, after: int
) -> None:
    base = stack_values("dev")
    old = engine.run(with_tiers(base, web=before, video=before), "dev")
    new = engine.run(with_tiers(base, web=after, video=after), "dev")
    for type_ in (engine.INSTANCE, engine.MEMBER):
        old_named, new_named = old.named(type_), new.named(type_)
        kept = old_named.keys() & new_named.keys()
        changed = old_named.keys() ^ new_named.keys()
        # Every name that appears or disappears has index >= min(before, after) ...
        assert all(int(name.rsplit("-", 1)[1]) >= min(before, after) for name in changed), changed
        # ... and every instance or member that stays has exactly the same inputs, so no replacement.
        for name in kept:
            assert old_named[name].inputs == new_named[name].inputs, name
    assert len(_instances(new, "web")) == after
    _assert_nothing_else_changed(old, new)


def _assert_nothing_else_changed(old: engine.Recording, new: engine.Recording) -> None:
    """Everything that is not per-instance is untouched by a change of which instances exist."""
    fixed = {
        (r.type, r.name): r.inputs for r in old.resources if r.type not in (engine.INSTANCE, engine.MEMBER)
    }
    assert fixed == {
        (r.type, r.name): r.inputs for r in new.resources if r.type not in (engine.INSTANCE, engine.MEMBER)
    }


def _layout(values: dict, tier: str, serving: list[int], retiring: list[int]) -> dict:
    out = with_tiers(values, **{tier: len(serving)})
    out["swell:tiers"][tier].update(instances=serving, retiring=retiring)
    return out


# (before: serving, retiring) -> (after: serving, retiring), and what must happen to which index.
DRAINS = [
    ("retire-the-middle-one", ([0, 1, 2], []), ([0, 2], [1]), {"weight0": {1}}),
    ("remove-it-once-drained", ([0, 2], [1]), ([0, 2], []), {"deleted": {1}}),
    ("retire-two-low-ones", ([0, 1, 2, 3], []), ([2, 3], [0, 1]), {"weight0": {0, 1}}),
    ("take-one-back", ([0, 2], [1]), ([0, 1, 2], []), {"weight1": {1}}),
    ("grow-into-a-hole", ([0, 2], []), ([0, 1, 2], []), {"created": {1}}),
    ("grow-past-a-retiree", ([0], [1]), ([0, 2], [1]), {"created": {2}}),
]


@pytest.mark.parametrize(("before", "after", "expect"), [d[1:] for d in DRAINS], ids=[d[0] for d in DRAINS])
def test_which_instances_exist_is_data_and_only_the_named_ones_change(
    before: tuple[list[int], list[int]], after: tuple[list[int], list[int]], expect: dict[str, set[int]]
) -> None:
    """The two phases of a scale-down: the chosen instances (any index) keep running with their
    members at weight 0, then exactly those are deleted; every other instance and member keeps its
    inputs. Taking a retiring instance back only restores its weight."""
    base = stack_values("dev")
    old = engine.run(_layout(base, "web", *before), "dev")
    new = engine.run(_layout(base, "web", *after), "dev")
    index = lambda name: int(name.rsplit("-", 1)[1])  # noqa: E731
    old_i, new_i = _instances(old, "web"), _instances(new, "web")
    assert {index(n) for n in old_i.keys() - new_i.keys()} == expect.get("deleted", set())
    assert {index(n) for n in new_i.keys() - old_i.keys()} == expect.get("created", set())
    for name in old_i.keys() & new_i.keys():
        assert old_i[name].inputs == new_i[name].inputs, f"{name} would be replaced"
    old_m = {index(n): m for n, m in old.named(engine.MEMBER).items() if n.startswith("web-")}
    new_m = {index(n): m for n, m in new.named(engine.MEMBER).items() if n.startswith("web-")}
    assert set(new_m) == set(after[0]) | set(after[1]), "one member per existing instance"
    for i in set(old_m) & set(new_m):
        weight = 0 if i in after[1] else 1
        assert new_m[i].inputs["weight"] == weight
        changed = {
            k
            for k in old_m[i].inputs.keys() | new_m[i].inputs.keys()
            if old_m[i].inputs.get(k) != new_m[i].inputs.get(k)
        }
        assert changed <= {"weight"}, f"member {i}: {changed} changed (only its weight may)"
        if i in expect.get("weight0", set()) | expect.get("weight1", set()):
            assert changed == {"weight"}
    entries = {e["index"]: e for e in new.outputs["tiers"]["web"]["instances"]}
    assert sorted(entries) == sorted({*after[0], *after[1]})
    assert {i for i, e in entries.items() if e["retiring"]} == set(after[1])
    _assert_nothing_else_changed(old, new)


def _rules(rec: engine.Recording, tier: str) -> set[tuple[str, int, str]]:
    return {
        (
            r.inputs["protocol"],
            int(r.inputs["portRangeMin"]),
            r.inputs.get("remoteIpPrefix") or r.inputs["remoteGroupId"],
        )
        for r in rec.of_type(engine.SEC_GROUP_RULE)
        if r.name.startswith(f"{tier}-")
    }


def test_security_groups_open_exactly_the_contract_ports() -> None:
    rec = engine.run(stack_values("prod-gra11"), "prod-gra11")
    admins = {("tcp", 22, "198.51.100.0/24"), ("tcp", 22, "2001:db8:100::/48")}
    private = "10.42.0.0/16"
    balanced = admins | {("tcp", 9100, private), ("tcp", 80, private)}  # TLS ends at the load balancer
    assert _rules(rec, "web") == balanced
    # Chat takes only HTTP from its load balancer: Prosody is on the shards (test_stack_fixed.py).
    assert _rules(rec, "chat") == balanced
    assert _rules(rec, "video") == admins | {
        ("tcp", 9100, private),
        ("tcp", 8080, private),
        ("udp", 10000, "0.0.0.0/0"),
        ("udp", 10000, "::/0"),
        ("tcp", 443, "0.0.0.0/0"),
        ("tcp", 443, "::/0"),
    }
    for r in rec.of_type(engine.SEC_GROUP_RULE):
        assert r.inputs["portRangeMin"] == r.inputs["portRangeMax"]
        remote = r.inputs.get("remoteIpPrefix") or ""  # none: a remote security group (IPv4)
        assert r.inputs["ethertype"] == ("IPv6" if ":" in remote else "IPv4")


def test_web_and_chat_have_a_load_balancer_with_one_member_per_instance_and_video_none() -> None:
    rec = engine.run(with_tiers(stack_values("dev"), web=4, chat=2, video=3), "dev")
    private_ip = {i["name"]: i["private_ip"] for t in rec.outputs["tiers"].values() for i in t["instances"]}
    members = rec.named(engine.MEMBER)
    for tier, count in (("web", 4), ("chat", 2)):
        mine = {n: m for n, m in members.items() if n.startswith(f"{tier}-lb-member-")}
        assert len(mine) == count
        for i in range(count):
            member = mine[f"{tier}-lb-member-{i}"]
            assert member.inputs["address"] == private_ip[f"swell-dev-{tier}-{i}"]
            # TLS ends at the load balancer: members serve plain HTTP on 80, checked there too.
            assert (member.inputs["protocolPort"], member.inputs["monitorPort"]) == (80, 80)
    monitors = rec.of_type("openstack:loadbalancer/monitor:Monitor")
    assert {(m.inputs["type"], m.inputs.get("httpMethod"), m.inputs.get("urlPath")) for m in monitors} == {
        ("HTTP", "GET", "/healthz"),
    }
    assert sorted(r.name for r in rec.of_type(engine.LOAD_BALANCER)) == ["chat-lb", "web-lb"]
    assert {r.inputs["pool"] for r in rec.of_type(engine.FLOATING_IP)} == {"Ext-Net"}
    # Video bridges sit on Ext-Net (public IPv4 and IPv6) and on the private network.
    for video in _instances(rec, "video").values():
        assert [n.get("name") for n in video.inputs["networks"]] == ["Ext-Net", None]
    for web in _instances(rec, "web").values():
        assert len(web.inputs["networks"]) == 1 and "uuid" in web.inputs["networks"][0]


def test_outputs_follow_the_architecture_contract() -> None:
    rec = engine.run(stack_values("dev"), "dev")
    out = rec.outputs
    assert out["stack"] == "dev" and out["region"] == "GRA11"
    assert out["private_network"] == {"cidr": "10.42.0.0/16"}
    assert out["admin_cidrs"] == stack_values("dev")["swell:adminCidrs"]
    assert set(out["tiers"]) == {"web", "chat", "video"}
    for tier, data in out["tiers"].items():
        for inst in data["instances"]:
            assert set(inst) == {
                "name",
                "index",
                "retiring",
                "pool",
                "created",
                "private_ip",
                "public_ipv4",
                "public_ipv6",
            }
            assert inst["name"] == f"swell-dev-{tier}-{inst['index']}" and inst["retiring"] is False
            assert inst["pool"] == ""
            assert inst["created"] == engine.MOCK_CREATED
            assert inst["private_ip"].startswith("10.42.")
            assert (inst["public_ipv4"] is not None) == (tier == "video")
            assert (inst["public_ipv6"] is not None) == (tier == "video")
        if tier == "video":
            assert data["load_balancer"] is None
        else:
            assert set(data["load_balancer"]) == {"vip_address", "public_ip", "prometheus_port"}
            assert data["load_balancer"]["prometheus_port"] == 8088
    json.dumps(out)  # what `pulumi stack output --json` prints must be plain JSON


def test_running_the_program_twice_in_one_process_does_not_mix_runs() -> None:
    big = engine.run(with_tiers(stack_values("dev"), web=6), "dev")
    small = engine.run(stack_values("dev"), "dev")
    again = engine.run(stack_values("dev"), "dev")
    assert len(_instances(big, "web")) == 6 and len(_instances(small, "web")) == 1
    # Registration order follows asyncio scheduling; the set of resources and their inputs must not vary.
    assert sorted((r.type, r.name, repr(r.inputs)) for r in small.resources) == sorted(
        (r.type, r.name, repr(r.inputs)) for r in again.resources
    )
    assert small.outputs == again.outputs


def test_the_locust_guard_fails_a_test_when_locust_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_no_locust()  # not loaded here: the Makefile runs tests/stacks in its own process
    monkeypatch.setitem(sys.modules, "locust", types.ModuleType("locust"))
    with pytest.raises(pytest.fail.Exception, match="own pytest process"):
        assert_no_locust()


def test_stacks_main_runs_the_program_the_way_pulumi_runs_the_directory() -> None:
    # Pulumi's python host runs `main: stacks/` as a directory: its __main__.py, with stacks/ on sys.path.
    values = stack_values("dev")
    via_main = engine.run(
        values, "dev", entry=lambda: runpy.run_path(str(ROOT / "stacks"), run_name="__main__")
    )
    direct = engine.run(values, "dev")
    assert sorted((r.type, r.name) for r in via_main.resources) == sorted(
        (r.type, r.name) for r in direct.resources
    )
    assert via_main.outputs == direct.outputs and via_main.outputs["tiers"]["web"]["instances"]


def test_a_failing_program_does_not_poison_the_next_run() -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        engine.run(stack_values("dev"), "dev", entry=broken)
    assert len(_instances(engine.run(stack_values("dev"), "dev"), "web")) == 1


def test_every_resource_is_a_child_of_its_component_and_instances_ignore_user_data_changes() -> None:
    rec = engine.run(with_tiers(stack_values("dev"), web=2), "dev")
    component_of = {r.urn: r for r in rec.resources if r.type.startswith("swell:")}
    for r in rec.resources:
        # The key pair is the stack's; the StackReference is the program reading its own last outputs.
        if r.type.startswith("swell:") or r.name == "admins" or r.type == engine.STACK_REFERENCE:
            continue
        parent = component_of.get(r.parent)
        assert parent is not None, f"{r.name} is not inside a swell component"
        assert r.name.startswith(parent.name), (r.name, parent.name)
    for inst in rec.of_type(engine.INSTANCE):
        kind = component_of[inst.parent].type
        assert kind in ("swell:openstack:Tier", "swell:openstack:FixedGroup")
        # A bridge's shard is chosen once too (tests/stacks/test_stack_fixed.py).
        placed = inst.name.startswith("video-")
        assert inst.ignore_changes == (("userData", "metadata.shard") if placed else ("userData",))
    for member in rec.of_type(engine.MEMBER):
        assert component_of[member.parent].type == "swell:openstack:LoadBalancer"


# The user_data contract (cloud-init schema, files, ansible-pull command, secrets) is tested in
# test_stack_bootstrap.py.


@pytest.mark.skipif(not Path(CLOUD_INIT).exists(), reason="Debian's cloud-init package is not installed")
def test_cloud_init_schema_check_rejects_a_broken_document(tmp_path: Path) -> None:
    # The check above can fail: a document whose runcmd is not a list is refused.
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\nruncmd: {ansible-pull: now}\n")
    result = subprocess.run(
        [CLOUD_INIT, "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


def test_cloud_init_is_a_debian_package_the_makefile_installs() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "cloud-init" in makefile.split("DEB_PACKAGES", 1)[1].splitlines()[0]
