"""The stack outputs contract end to end: what the program exports (under Pulumi's mocks) is what
`swell configure` builds its inventory from, admin networks included, with no flag needed."""

from __future__ import annotations

import json

from stacks import engine
from swell.configure.inventory import InventorySettings, build_inventory, hosts_by_tier
from swell.configure.outputs import parse_stack_outputs
from tests.stacks.stack_fixtures import stack_values, with_tiers


def test_the_program_outputs_become_the_inventory() -> None:
    values = with_tiers(stack_values("dev"), web=3, chat=1, video=2)
    exported = json.dumps(engine.run(values, "dev").outputs)  # what `pulumi stack output --json` prints
    inventory = build_inventory(parse_stack_outputs(exported), InventorySettings())
    assert hosts_by_tier(inventory) == {
        "web": [f"swell-dev-web-{i}" for i in range(3)],
        "chat": ["swell-dev-chat-0"],
        "video": [f"swell-dev-video-{i}" for i in range(2)],
        # The fixed groups are configured too, with the variables their user_data gives.
        "chat_store": ["swell-dev-chat-store-0"],
        "shard": ["swell-dev-shard-0"],
    }
    assert inventory["all"]["vars"]["swell_admin_cidrs"] == values["swell:adminCidrs"]
    children = inventory["all"]["children"]
    assert children["shard"]["vars"]["swell_tier"] == "shard"
    assert children["shard"]["vars"]["swell_xmpp_domain"] == values["swell:xmpp"]["domain"]
    # Each bridge gets its shard from the outputs' placements, as the role would read its metadata.
    assert {h["swell_shard"] for h in children["video"]["hosts"].values()} == {"0"}
    shard_ip = children["shard"]["hosts"]["swell-dev-shard-0"]["swell_private_ip"]
    assert children["video"]["vars"]["swell_jitsi_shards"] == {"0": shard_ip}
