"""The policy pack's checks, called directly: each catches a seeded violation and passes the real stacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from stacks import catalog, engine
from stacks.policy import checks, pack
from tests.stacks.stack_fixtures import ROOT, stack_values, with_tiers

CAT = catalog.load()
RULE = checks.SEC_GROUP_RULE


def _rule(**props: Any) -> dict[str, Any]:
    base = {
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": "tcp",
        "remoteIpPrefix": "203.0.113.0/24",
    }
    return base | props


PORT_CASES = [
    ("ssh-world-v4", _rule(portRangeMin=22, portRangeMax=22, remoteIpPrefix="0.0.0.0/0"), 1),
    ("ssh-world-v6", _rule(portRangeMin=22, portRangeMax=22, remoteIpPrefix="::/0", ethertype="IPv6"), 1),
    ("range-covering-ssh", _rule(portRangeMin=1, portRangeMax=1024, remoteIpPrefix="0.0.0.0/0"), 1),
    ("any-protocol-any-port", _rule(protocol=None, remoteIpPrefix="0.0.0.0/0"), 1),
    ("no-remote-at-all", _rule(portRangeMin=9100, portRangeMax=9100, remoteIpPrefix=None), 1),
    ("node-exporter-world", _rule(portRangeMin=9100, portRangeMax=9100, remoteIpPrefix="0.0.0.0/0"), 1),
    ("ssh-from-admins", _rule(portRangeMin=22, portRangeMax=22), 0),
    (
        "jvb-media-world",
        _rule(protocol="udp", portRangeMin=10000, portRangeMax=10000, remoteIpPrefix="0.0.0.0/0"),
        0,
    ),
    ("https-world", _rule(portRangeMin=443, portRangeMax=443, remoteIpPrefix="::/0"), 0),
    (
        "egress-ssh-world",
        _rule(direction="egress", portRangeMin=22, portRangeMax=22, remoteIpPrefix="0.0.0.0/0"),
        0,
    ),
    ("icmp-world", _rule(protocol="icmp", remoteIpPrefix="0.0.0.0/0"), 0),
]


@pytest.mark.parametrize(("props", "violations"), [c[1:] for c in PORT_CASES], ids=[c[0] for c in PORT_CASES])
def test_management_ports_are_never_open_to_the_world(props: dict[str, Any], violations: int) -> None:
    assert len(checks.world_open_management_port(RULE, props)) == violations


FLAVOR_CASES = [
    ("allowed", {"flavorName": "b3-8"}, 0),
    ("not-listed", {"flavorName": "t1-180"}, 1),
    ("by-id", {"flavorId": "x"}, 1),
]


@pytest.mark.parametrize(
    ("props", "violations"), [c[1:] for c in FLAVOR_CASES], ids=[c[0] for c in FLAVOR_CASES]
)
def test_flavors_come_from_the_allow_list(props: dict[str, Any], violations: int) -> None:
    assert len(checks.flavor_allowed(checks.INSTANCE, props, CAT.flavors)) == violations


TIER_CASES = [
    ("web", {"tier": "web"}, 0),
    ("missing", {}, 1),
    ("unknown", {"tier": "db"}, 1),
    ("none", None, 1),
]


@pytest.mark.parametrize(
    ("metadata", "violations"), [c[1:] for c in TIER_CASES], ids=[c[0] for c in TIER_CASES]
)
def test_every_instance_carries_tier_metadata(metadata: dict[str, str] | None, violations: int) -> None:
    assert len(checks.tier_metadata(checks.INSTANCE, {"metadata": metadata})) == violations


AFFINITY_CASES = [
    ("soft-anti-affinity", ("g1",), {"g1": "soft-anti-affinity"}, 0),
    ("anti-affinity-list", ("g1",), {"g1": ["anti-affinity"]}, 0),
    ("affinity", ("g1",), {"g1": "affinity"}, 1),
    ("no-group", (), {"g1": "soft-anti-affinity"}, 1),
    ("unknown-group", ("g2",), {"g1": "soft-anti-affinity"}, 1),
]


@pytest.mark.parametrize(
    ("groups", "server_groups", "violations"),
    [c[1:] for c in AFFINITY_CASES],
    ids=[c[0] for c in AFFINITY_CASES],
)
def test_every_instance_is_in_an_anti_affinity_group(
    groups: tuple[str, ...], server_groups: dict[str, Any], violations: int
) -> None:
    assert len(checks.anti_affinity([checks.InstanceRef("web-0", groups)], server_groups)) == violations


QUOTA = catalog.Quota("10-vms", 10, 20, 40)
QUOTA_CASES = [
    ("fits", ["b3-8"] * 5, []),
    ("too-many-instances", ["b3-8"] * 11, ["instances", "vCPUs", "GB of RAM"]),  # 11 VMs, 22 vCPU, 88 GB
    ("too-many-vcpus", ["c3-16"] * 3, ["vCPUs", "GB of RAM"]),  # 24 vCPU, 48 GB
    ("too-much-ram", ["r3-32"] * 2, ["GB of RAM"]),  # 8 vCPU, 64 GB
]


@pytest.mark.parametrize(
    ("flavors", "exceeded"), [c[1:] for c in QUOTA_CASES], ids=[c[0] for c in QUOTA_CASES]
)
def test_counts_stay_within_the_quota(flavors: list[str], exceeded: list[str]) -> None:
    found = checks.within_quota(flavors, QUOTA, CAT.flavors)
    assert [next(w for w in ("instances", "vCPUs", "GB of RAM") if f" {w}," in m) for m in found] == exceeded


def test_policy_quota_config_accepts_a_tier_or_custom_numbers_and_names_the_allowed_tiers() -> None:
    assert checks.quota_from_config({}, CAT).name == "200-vms"
    assert checks.quota_from_config({"quota": "50-vms"}, CAT).vcpus == 64
    assert checks.quota_from_config({"quota": {"instances": 3, "vcpus": 4, "ramGb": 5}}, CAT).ram_gb == 5
    with pytest.raises(ValueError, match="10-vms, 20-vms"):
        checks.quota_from_config({"quota": "huge"}, CAT)


def _recorded(rec: engine.Recording) -> list[tuple[str, dict[str, Any], str]]:
    return [(r.type, r.inputs, r.id) for r in rec.resources]


@pytest.mark.parametrize("stack", ["dev", "prod-gra11"])
def test_the_shipped_stacks_pass_every_policy(stack: str) -> None:
    rec = engine.run(stack_values(stack), stack)
    result = checks.check_all(_recorded(rec), rec.config.quota_limits, CAT)
    assert result == {name: [] for name in result}
    assert len(result) == 5


def test_a_seeded_violation_in_a_recorded_stack_is_caught_by_its_policy() -> None:
    rec = engine.run(with_tiers(stack_values("dev"), web=2), "dev")
    resources = _recorded(rec)
    seeded = []
    for type_, props, rid in resources:
        if type_ == checks.INSTANCE and props["name"].endswith("web-1"):
            props = props | {"flavorName": "t1-180", "metadata": {}, "schedulerHints": []}
        if type_ == RULE and props["portRangeMin"] == 22:
            props = props | {"remoteIpPrefix": "0.0.0.0/0"}
        seeded.append((type_, props, rid))
    result = checks.check_all(seeded, catalog.Quota("tiny", 1, 100, 1000), CAT)
    assert len(result["flavor-in-allow-list"]) == 1
    assert len(result["instance-has-tier-metadata"]) == 1
    assert [m.split()[1] for m in result["instance-in-anti-affinity-group"]] == ["swell-dev-web-1"]
    # One SSH rule per tier and per fixed group (chat store, shard).
    assert len(result["no-management-port-open-to-the-world"]) == 5
    assert result["counts-within-quota"] == ["the stack asks for 6 instances, above the 1 of quota 'tiny'"]


def test_the_policy_pack_is_built_only_in_its_entry_point() -> None:
    builders = [p for p in (ROOT / "stacks").rglob("*.py") if "PolicyPack(" in p.read_text()]
    assert [p.relative_to(ROOT).as_posix() for p in builders] == ["stacks/policy/__main__.py"]
    assert "runtime:" in Path(ROOT / "stacks/policy/PulumiPolicy.yaml").read_text()
    assert [p.name for p in pack.policies()] == list(checks.check_all([], QUOTA, CAT))


def _policy_resources(rec: engine.Recording) -> list[PolicyResource]:
    """The recording as CrossGuard hands a stack to a policy (URNs, property dependencies)."""
    by_urn: dict[str, PolicyResource] = {}
    recorded = [r for r in rec.resources if not r.type.startswith("swell:")]
    for r in recorded:
        by_urn[r.urn] = PolicyResource(r.type, r.inputs, r.urn, r.name, None, None, None, [], {})  # type: ignore[arg-type]
    for r in recorded:
        by_urn[r.urn].property_dependencies = {
            k: [by_urn[u] for u in urns if u in by_urn] for k, urns in r.property_dependencies.items()
        }
    return list(by_urn.values())


def _crossguard(rec: engine.Recording, config: dict[str, Any]) -> dict[str, list[str]]:
    """Run every policy of the pack as CrossGuard would, without its gRPC server."""
    found: dict[str, list[str]] = {}
    resources = _policy_resources(rec)
    for policy in pack.policies():
        messages: list[str] = []
        found[policy.name] = messages

        def report(message: str, urn: str | None = None, messages: list[str] = messages) -> None:
            messages.append(message)

        if isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(resources, config), report)
        else:
            assert isinstance(policy, ResourceValidationPolicy)
            for r in resources:
                args = ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, None, None, config)  # type: ignore[arg-type]
                policy.validate(args, report)
    return found


@pytest.mark.parametrize("stack", ["dev", "prod-gra11"])
def test_the_pack_passes_the_shipped_stacks_as_crossguard_runs_it(stack: str) -> None:
    found = _crossguard(engine.run(stack_values(stack), stack), {"quota": "200-vms"})
    assert found == {name: [] for name in found} and len(found) == 5


def test_the_pack_links_instances_to_server_groups_by_dependency_and_enforces_the_quota_config() -> None:
    rec = engine.run(with_tiers(stack_values("dev"), web=3), "dev")
    for r in rec.of_type(engine.SERVER_GROUP):
        if r.name == "web-servers":
            r.inputs["policies"] = "affinity"
    found = _crossguard(rec, {"quota": {"instances": 4, "vcpus": 100, "ramGb": 1000}})
    assert sorted(found["instance-in-anti-affinity-group"]) == [
        f"instance web-{i} is in server group(s) with policies ['affinity']; "
        "expected one of: anti-affinity, soft-anti-affinity"
        for i in range(3)
    ]
    # web 3, chat 1, video 1, and the fixed groups: the chat store and one shard.
    assert found["counts-within-quota"] == ["the stack asks for 7 instances, above the 4 of quota 'custom'"]


def test_the_pack_counts_shelved_warm_pool_instances_against_the_quota_and_says_so() -> None:
    """Warm (shelved) instances count in full (checks.within_quota says why, with its source)."""
    values = with_tiers(stack_values("dev"), web=1)
    values["swell:tiers"]["web"].update(max=8, warm=[1, 2, 3], filling=[4])
    rec = engine.run(values, "dev")
    found = _crossguard(rec, {"quota": {"instances": 8, "vcpus": 100, "ramGb": 1000}})
    # web 1 + 3 warm + 1 filling, chat 1, video 1, and the fixed groups: the chat store and one shard.
    assert found["counts-within-quota"] == [
        "the stack asks for 9 instances (including 3 shelved warm-pool instances, counted in full: "
        "unshelving needs the room), above the 8 of quota 'custom'"
    ]
    assert (
        checks.check_all(_recorded(rec), catalog.Quota("roomy", 9, 100, 1000), CAT)["counts-within-quota"]
        == []
    )
