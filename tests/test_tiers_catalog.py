"""The tier catalog (swell/tiers.py): the packaged one loads; a bad entry is refused naming the file,
the tier and what is expected; `SWELL_TIERS` chooses another file."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from swell import tiers


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
        "xmpp-address-before-its-provider",
        lambda t: t.update({"video": t.pop("video")}) or t.update({"chat": t.pop("chat")}),
        "video: swell_xmpp_address needs exactly one tier with the xmpp listener declared before it",
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
            _mutate(lambda t: t.pop("video") and t["chat"]["bootstrap"].update(vars=[])), sort_keys=False
        )
    )
    monkeypatch.setenv(tiers.ENV_VAR, str(path))
    assert tiers.names() == ("web", "chat")
    monkeypatch.setenv(tiers.ENV_VAR, str(tmp_path / "absent.yaml"))
    with pytest.raises(tiers.CatalogError, match=r"absent\.yaml: cannot read the tier catalog"):
        tiers.names()
