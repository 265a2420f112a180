"""A fourth tier defined only in the tier catalog appears in the stack under Pulumi's mocks: its
instances, security group (its ports and its exporters'), server group and, being balanced, its
load balancer; it passes the policy pack, and `swell configure` builds its inventory group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks import config, engine
from stacks.policy import checks
from swell.configure.inventory import InventorySettings, build_inventory, hosts_by_tier
from swell.configure.outputs import parse_stack_outputs
from tests.fourth_tier import NAME, use_extended_catalog, with_fourth_tier
from tests.stacks.stack_fixtures import stack_values


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> engine.Recording:
    use_extended_catalog(monkeypatch, tmp_path)
    return engine.run(with_fourth_tier(stack_values("dev")), "dev")


def test_the_fourth_tier_gets_instances_security_group_server_group_and_load_balancer(
    recorded: engine.Recording,
) -> None:
    instances = {r.inputs["name"]: r for r in recorded.of_type(engine.INSTANCE)}
    mine = {n: r for n, r in instances.items() if r.inputs["metadata"].get("tier") == NAME}
    assert sorted(mine) == [f"swell-dev-{NAME}-0", f"swell-dev-{NAME}-1"]
    assert all(r.inputs["securityGroups"] == [f"swell-dev-{NAME}"] for r in mine.values())
    # Not public: the private network only.
    assert all(len(r.inputs["networks"]) == 1 for r in mine.values())
    assert f"swell-dev-{NAME}" in {r.inputs["name"] for r in recorded.of_type(engine.SERVER_GROUP)}
    rules = {
        (r.inputs["protocol"], r.inputs["portRangeMin"], r.inputs["remoteIpPrefix"])
        for r in recorded.of_type(engine.SEC_GROUP_RULE)
        if r.name.startswith(f"{NAME}-")
    }
    private = config.parse(with_fourth_tier(stack_values("dev")), "dev").private_network.cidr
    assert {("tcp", 80, private), ("tcp", 9100, private)} <= rules
    assert not any(remote in ("0.0.0.0/0", "::/0") for _, _, remote in rules)
    assert len([r for r in recorded.of_type(engine.LOAD_BALANCER) if r.name.startswith(f"{NAME}-")]) == 1
    pools = [r for r in recorded.of_type("openstack:loadbalancer/pool:Pool") if r.name.startswith(f"{NAME}-")]
    assert [p.inputs["lbMethod"] for p in pools] == ["ROUND_ROBIN"]
    members = [r for r in recorded.of_type(engine.MEMBER) if r.name.startswith(f"{NAME}-")]
    assert len(members) == 2
    out = recorded.outputs["tiers"][NAME]
    assert out["load_balancer"]["vip_address"] and len(out["instances"]) == 2
    assert recorded.outputs["tier_vars"][NAME] == {}


def test_the_fourth_tier_passes_the_policy_pack_and_reaches_the_inventory(recorded: engine.Recording) -> None:
    for r in recorded.of_type(engine.INSTANCE):
        assert checks.tier_metadata(r.type, r.inputs) == []
    exported = json.dumps(recorded.outputs)
    inventory = build_inventory(parse_stack_outputs(exported), InventorySettings())
    assert hosts_by_tier(inventory)[NAME] == [f"swell-dev-{NAME}-0", f"swell-dev-{NAME}-1"]
    assert inventory["all"]["children"][NAME]["vars"]["swell_tier"] == NAME


def test_a_stack_without_the_catalogs_fourth_tier_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_extended_catalog(monkeypatch, tmp_path)
    with pytest.raises(config.ConfigError) as e:
        config.parse(stack_values("dev"), "dev")
    assert f"swell:tiers.{NAME}: required key is missing" in str(e.value)
    assert f"swell:tls.hosts.{NAME}: required key is missing" in str(e.value)
