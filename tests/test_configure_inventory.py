"""The inventory from stack outputs, and the errors a bad outputs file gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from swell.cli import app
from swell.configure.inventory import InventorySettings, build_inventory, hosts_by_tier
from swell.configure.outputs import StackOutputsError, load_stack_outputs, parse_stack_outputs

SAMPLE = Path(__file__).parent / "data" / "stack-outputs-prod-gra11.json"
ADMIN = ("203.0.113.0/24",)


def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text())
    return data


def test_sample_outputs_become_one_group_per_tier() -> None:
    inventory = build_inventory(load_stack_outputs(SAMPLE), InventorySettings(admin_cidrs=ADMIN))
    assert hosts_by_tier(inventory) == {
        "web": ["swell-prod-gra11-web-0", "swell-prod-gra11-web-1"],
        "chat": ["swell-prod-gra11-chat-0"],
        "video": ["swell-prod-gra11-video-0", "swell-prod-gra11-video-1"],
        # The catalog's fixed groups, from the outputs' `fixed`.
        "chat_store": ["swell-prod-gra11-chat-store-0"],
        "shard": ["swell-prod-gra11-shard-0", "swell-prod-gra11-shard-1"],
    }
    children = inventory["all"]["children"]
    assert {tier: group["vars"]["swell_tier"] for tier, group in children.items()} == {
        "web": "web",
        "chat": "chat",
        "video": "video",
        "chat_store": "chat_store",
        "shard": "shard",
    }
    video0 = children["video"]["hosts"]["swell-prod-gra11-video-0"]
    assert video0 == {"ansible_host": "10.42.0.31", "swell_private_ip": "10.42.0.31", "swell_shard": "0"}
    common = inventory["all"]["vars"]
    assert common["swell_stack"] == "prod-gra11"
    assert common["swell_private_network_cidr"] == "10.42.0.0/16"
    assert common["swell_admin_cidrs"] == ["203.0.113.0/24"]
    assert common["ansible_user"] == "debian"


def test_shelved_warm_pool_instances_are_left_out_and_filling_ones_kept() -> None:
    """A warm instance is shelved (not running): Ansible could not reach it, and it was configured
    before it was shelved. A filling one runs and is being configured: it stays."""
    data = sample()
    web = data["tiers"]["web"]["instances"]
    web.append({**web[0], "name": "swell-prod-gra11-web-2", "private_ip": "10.42.0.13", "pool": "warm"})
    web.append({**web[0], "name": "swell-prod-gra11-web-3", "private_ip": "10.42.0.14", "pool": "filling"})
    inventory = build_inventory(parse_stack_outputs(json.dumps(data)), InventorySettings(admin_cidrs=ADMIN))
    assert hosts_by_tier(inventory)["web"] == [
        "swell-prod-gra11-web-0",
        "swell-prod-gra11-web-1",
        "swell-prod-gra11-web-3",
    ]


def test_limit_keeps_one_tier() -> None:
    inventory = build_inventory(
        load_stack_outputs(SAMPLE), InventorySettings(admin_cidrs=ADMIN, tiers=("chat",))
    )
    assert hosts_by_tier(inventory) == {"chat": ["swell-prod-gra11-chat-0"]}


def test_public_addresses_are_used_when_asked_and_missing_ones_are_named() -> None:
    outputs = load_stack_outputs(SAMPLE)
    inventory = build_inventory(
        outputs, InventorySettings(admin_cidrs=ADMIN, address="public", tiers=("video",))
    )
    assert (
        inventory["all"]["children"]["video"]["hosts"]["swell-prod-gra11-video-1"]["ansible_host"]
        == "51.68.0.32"
    )
    with pytest.raises(StackOutputsError, match="swell-prod-gra11-web-0: --address public"):
        build_inventory(outputs, InventorySettings(admin_cidrs=ADMIN, address="public"))


def test_bastion_goes_into_the_ssh_arguments() -> None:
    inventory = build_inventory(
        load_stack_outputs(SAMPLE), InventorySettings(admin_cidrs=ADMIN, ssh_jump="debian@51.68.0.99")
    )
    assert "-J debian@51.68.0.99" in inventory["all"]["vars"]["ansible_ssh_common_args"]


def test_admin_networks_from_outputs_and_flags_are_merged_once() -> None:
    data = sample() | {"admin_cidrs": ["203.0.113.0/24", "2001:db8::/32"]}
    inventory = build_inventory(
        parse_stack_outputs(json.dumps(data)),
        InventorySettings(admin_cidrs=("203.0.113.7/24", "198.51.100.0/24")),
    )
    assert inventory["all"]["vars"]["swell_admin_cidrs"] == [
        "203.0.113.0/24",
        "2001:db8::/32",
        "198.51.100.0/24",
    ]


def test_each_tier_gets_the_stacks_variables_as_group_vars() -> None:
    # What a new instance finds in /etc/swell/ansible-vars.json, so `swell configure` needs no -e:
    # the shards serve the stack's domain, video dials its shard's Prosody, chat reaches the store.
    inventory = build_inventory(load_stack_outputs(SAMPLE), InventorySettings(admin_cidrs=ADMIN))
    children = inventory["all"]["children"]
    groups = {tier: group["vars"] for tier, group in children.items()}
    assert groups["web"] == {"swell_tier": "web"}
    assert groups["chat"] == {
        "swell_tier": "chat",
        "swell_chat_store_address": "10.42.64.11",
        "swell_chat_store_port": 6379,
    }
    assert groups["video"]["swell_jitsi_shards"] == {"0": "10.42.80.11", "1": "10.42.80.12"}
    assert groups["video"]["swell_xmpp_port"] == 5222
    # The fixed groups are groups of their own, and each bridge gets its shard (its Nova metadata).
    assert groups["shard"]["swell_xmpp_domain"] == "meet.example.org"
    assert list(children["shard"]["hosts"]) == ["swell-prod-gra11-shard-0", "swell-prod-gra11-shard-1"]
    assert list(children["chat_store"]["hosts"]) == ["swell-prod-gra11-chat-store-0"]
    assert [h["swell_shard"] for h in children["video"]["hosts"].values()] == ["0", "1"]
    # An older stack without them still gives an inventory (the roles then ask for -e).
    data = sample()
    data.pop("tier_vars")
    older = build_inventory(parse_stack_outputs(json.dumps(data)), InventorySettings(admin_cidrs=ADMIN))
    assert older["all"]["children"]["video"]["vars"] == {"swell_tier": "video"}


def broken(change: Any) -> str:
    data = sample()
    change(data)
    return json.dumps(data)


BAD_OUTPUTS = [
    ('{"stack": "x",\n  "region": }', "line 2, column 13"),
    ("[1, 2]", "expected a JSON object"),
    (broken(lambda d: d.pop("private_network")), "private_network: Field required"),
    (
        broken(lambda d: d["tiers"]["web"]["instances"][0].update(private_ip="10.42.0.300")),
        "tiers.web.instances[0].private_ip",
    ),
    (
        broken(lambda d: d["tiers"].update(wbe=d["tiers"].pop("web"))),
        "tiers.wbe.[key]: Value error, unknown tier 'wbe'; tiers: web, chat, video",
    ),
    (
        broken(lambda d: d["tiers"]["chat"]["instances"][0].update(name="swell-prod-gra11-web-0")),
        "appears in tier 'web' and in tier 'chat'",
    ),
    (broken(lambda d: d["private_network"].update(cidr="10.42.0.0/33")), "private_network.cidr"),
    (
        broken(lambda d: d["tiers"]["video"]["instances"][0].pop("name")),
        "tiers.video.instances[0].name: Field required",
    ),
    (
        broken(lambda d: d["tier_vars"]["video"].update(swell_tier="web")),
        "tier_vars: Value error, video: 'swell_tier' is not a stack variable",
    ),
    (
        broken(lambda d: d["tier_vars"]["video"].update(video_xmpp_password="x")),
        "video: 'video_xmpp_password' is not a stack variable",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    BAD_OUTPUTS,
    ids=[
        "json-syntax",
        "not-an-object",
        "no-network",
        "bad-address",
        "unknown-tier",
        "duplicate-name",
        "bad-cidr",
        "no-name",
        "tier-var-redefines-the-tier",
        "tier-var-is-a-role-variable",
    ],
)
def test_bad_outputs_are_refused_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(StackOutputsError) as excinfo:
        parse_stack_outputs(text, source="outputs.json")
    assert expected in str(excinfo.value)
    assert str(excinfo.value).startswith("outputs.json:")


def test_stack_with_no_instances_is_refused() -> None:
    data = sample()
    for tier in [*data["tiers"].values(), *data["fixed"].values()]:
        tier["instances"] = []
    with pytest.raises(StackOutputsError, match="no instances"):
        build_inventory(parse_stack_outputs(json.dumps(data)), InventorySettings(admin_cidrs=ADMIN))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--stack-outputs", "missing.json", "--admin-cidr", "203.0.113.0/24"],
            "cannot read the stack outputs",
        ),
        (["--stack-outputs", "BAD", "--admin-cidr", "203.0.113.0/24"], "tiers.web.instances[0].private_ip"),
        (["--stack-outputs", str(SAMPLE)], "no admin networks"),
        (["--stack-outputs", str(SAMPLE), "--admin-cidr", "203.0.113.0/24", "--limit", "db"], "--limit 'db'"),
        (["--stack-outputs", str(SAMPLE), "--admin-cidr", "nope"], "--admin-cidr: 'nope' is not a CIDR"),
        # The stack refuses these for its security groups (swell:adminCidrs); the firewall must too.
        (
            ["--stack-outputs", str(SAMPLE), "--admin-cidr", "0.0.0.0/0"],
            "--admin-cidr: '0.0.0.0/0' opens SSH to the whole internet",
        ),
        (
            ["--stack-outputs", str(SAMPLE), "--admin-cidr", "203.0.113.0/24", "--admin-cidr", "::/0"],
            "--admin-cidr: '::/0' opens SSH to the whole internet",
        ),
        (
            ["--stack-outputs", "WORLD"],
            "admin_cidrs: Value error, '0.0.0.0/0' opens SSH to the whole internet",
        ),
        (
            ["--stack-outputs", str(SAMPLE), "--admin-cidr", "203.0.113.0/24", "-e", "novalue"],
            "expected KEY=VALUE",
        ),
    ],
    ids=[
        "missing-file",
        "bad-address",
        "no-admin-cidr",
        "unknown-limit",
        "bad-admin-cidr",
        "world-v4-admin-cidr",
        "world-v6-admin-cidr",
        "world-in-outputs",
        "bad-extra-var",
    ],
)
def test_configure_with_bad_input_exits_2_before_ansible_starts(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(broken(lambda d: d["tiers"]["web"]["instances"][0].update(private_ip="not-an-ip")))
    world = tmp_path / "world.json"
    world.write_text(json.dumps(sample() | {"admin_cidrs": ["0.0.0.0/0"]}))
    files = {"BAD": str(bad), "WORLD": str(world), "missing.json": str(tmp_path / "missing.json")}
    args = [files.get(a, a) for a in args]
    result = CliRunner().invoke(app, ["configure", *args])
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split())
    assert "play:" not in result.output and "per-host summary" not in result.output
