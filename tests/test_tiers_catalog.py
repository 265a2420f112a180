"""The tier catalog (swell/tiers.py): the packaged one loads; a bad entry is refused naming the file,
the tier and what is expected; `SWELL_TIERS` chooses another file."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from swell import chat_store, tiers


def test_the_packaged_catalog_has_the_platforms_tiers_and_their_properties() -> None:
    catalog = tiers.load(tiers.DEFAULT_PATH)
    assert catalog.names == ("web", "chat", "video")
    assert [(t.traffic, t.balanced, t.public, t.bridge_metrics) for t in catalog.tiers] == [
        ("requests", True, False, False),
        ("sessions", True, False, False),
        ("participants", False, True, True),
    ]


def _base() -> dict[str, Any]:
    return dict(yaml.safe_load(tiers.DEFAULT_PATH.read_text()))


def _mutate(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(_base())
    change(data["tiers"])
    return data


def _mutate_fixed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(_base())
    change(data)
    return data


BAD = [
    (
        "requests-without-balancer",
        lambda t: t["web"].pop("balancer"),
        "tiers.0: requests are counted at a load",
    ),
    (
        "participants-without-jvb",
        lambda t: t["video"].update(exporters=["node"]),
        "list `jvb` in `exporters`",
    ),
    (
        "unknown-traffic",
        lambda t: t["web"].update(traffic="packets"),
        "'requests', 'sessions' or 'participants'",
    ),
    (
        "misspelt-key",
        lambda t: t["chat"].update(balancr={}),
        "tiers.1.balancr: Extra inputs are not permitted",
    ),
    ("bad-name", lambda t: t.update({"Turn Server": t["web"]}), "tiers.3.name: String should match pattern"),
    (
        "unknown-secret",
        lambda t: t["chat"]["bootstrap"]["secrets"].update(x="password"),
        "xmpp_bridge_password",
    ),
    (
        "placed-in-an-unknown-group",
        lambda t: t["video"].update(placed_in="shards"),
        "video: placed_in names unknown fixed group 'shards'; fixed groups: chat_store, shard",
    ),
    (
        "shard-addresses-without-a-placement",
        lambda t: t["video"].pop("placed_in"),
        "video: swell_jitsi_shards needs `placed_in`",
    ),
]


@pytest.mark.parametrize(("change", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_catalog_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    path = tmp_path / "tiers.yaml"
    path.write_text(yaml.safe_dump(_mutate(change), sort_keys=False))
    with pytest.raises(tiers.CatalogError) as e:
        tiers.load(path)
    assert str(path) in str(e.value) and expected in str(e.value)


def test_swell_tiers_chooses_the_catalog_and_a_missing_file_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "tiers.yaml"
    path.write_text(
        yaml.safe_dump(
            # Without video, nor the shards that admit it.
            _mutate_fixed(lambda d: d["tiers"].pop("video") and d["fixed"].pop("shard")),
            sort_keys=False,
        )
    )
    monkeypatch.setenv(tiers.ENV_VAR, str(path))
    assert tiers.names() == ("web", "chat")
    monkeypatch.setenv(tiers.ENV_VAR, str(tmp_path / "absent.yaml"))
    with pytest.raises(tiers.CatalogError, match=r"absent\.yaml: cannot read the tier catalog"):
        tiers.names()


def test_the_packaged_catalog_has_the_fixed_groups_the_tiers_need() -> None:
    catalog = tiers.load(tiers.DEFAULT_PATH)
    assert catalog.fixed_names == ("chat_store", "shard")
    store, shard = catalog.fixed
    # Redis on the port the chat servers dial (swell/chat_store.py), from chat's security group only.
    assert [(p.protocol, p.port, p.from_tier) for p in store.ports] == [("tcp", chat_store.PORT, "chat")]
    assert (store.role, store.count_key, store.slug) == ("chat_store", None, "chat-store")
    # Prosody's c2s for the bridges, from video's security group only; as many shards as swell:shards.
    assert [(p.protocol, p.port, p.from_tier) for p in shard.ports] == [("tcp", 5222, "video")]
    assert (shard.role, shard.count_key) == ("jitsi_shard", "shards")
    # The bridges are placed in shards; the chat tier has no XMPP left and no persistence.
    assert catalog.get("video").placed_in == "shard"
    chat = catalog.get("chat")
    assert (
        chat.balancer is not None and chat.balancer.persistence is None and not chat.balancer.extra_listeners
    )
    assert 5222 not in {p.port for p in chat.ports}
    # Readers of `tiers` never see a fixed group.
    assert catalog.names == ("web", "chat", "video")


BAD_FIXED = [
    (
        "port-from-an-unknown-tier",
        lambda d: d["fixed"]["chat_store"]["ports"][0].update(from_tier="chats"),
        "fixed chat_store: port 6379 is open to unknown tier 'chats'; tiers: web, chat, video",
    ),
    ("name-of-a-tier", lambda d: d["fixed"].update(chat=d["fixed"]["shard"]), "chat: a name appears twice"),
    ("unknown-count-key", lambda d: d["fixed"]["shard"].update(count_key="bridges"), "fixed.1.count_key"),
    (
        "unknown-exporter",
        lambda d: d["fixed"]["shard"].update(exporters=["node", "prosody"]),
        "shard: unknown exporter",
    ),
    ("underscore-free-role-name", lambda d: d["fixed"]["shard"].update(role="Jitsi"), "fixed.1.role"),
]


@pytest.mark.parametrize(("change", "expected"), [b[1:] for b in BAD_FIXED], ids=[b[0] for b in BAD_FIXED])
def test_a_bad_fixed_group_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    path = tmp_path / "tiers.yaml"
    path.write_text(yaml.safe_dump(_mutate_fixed(change), sort_keys=False))
    with pytest.raises(tiers.CatalogError) as e:
        tiers.load(path)
    assert str(path) in str(e.value) and expected in str(e.value)
