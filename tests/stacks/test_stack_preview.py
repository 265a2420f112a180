"""`swell preview`: what an SRE reads (counts, vCPU/RAM against quota, cost) and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stacks import preview
from swell.cli import app
from tests.stacks.stack_fixtures import ROOT

runner = CliRunner()


def _json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["preview", "--json", *args])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_dev_preview_counts_instances_and_prices_them_from_the_dated_table() -> None:
    summary = _json("--stack", "dev")["summary"]
    tiers = {t["tier"]: t for t in summary["tiers"]}
    # The fixed groups have a line each: the chat store and the one shard (swell:shards defaults to 1).
    assert {t: tiers[t]["instances"] for t in tiers} == {
        "web": 1,
        "chat": 1,
        "video": 1,
        "chat_store": 1,
        "shard": 1,
    }
    # b3-8: 2 vCPU, 8 GB, 0.05 EUR/h (web, chat, chat store, shard); c3-8: 4 vCPU, 8 GB, 0.08 EUR/h; 730 h.
    assert (summary["vcpus"], summary["ram_gb"]) == (2 + 2 + 4 + 2 + 2, 8 + 8 + 8 + 8 + 8)
    assert summary["eur_per_month"] == pytest.approx((0.05 + 0.05 + 0.08 + 0.05 + 0.05) * 730)
    assert summary["prices"]["as_of"] == "2026-01"
    assert summary["smallest_ovhcloud_quota_tier"] == "10-vms"
    assert summary["quota_fits"] is True
    assert "no cloud call" in summary["offline_note"]


def test_set_overrides_a_count_like_the_autoscaler_would() -> None:
    data = _json("--stack", "dev", "--set", "tiers.web.max=8", "--set", "tiers.web.count=8")
    tiers = {t["tier"]: t for t in data["summary"]["tiers"]}
    assert tiers["web"]["instances"] == 8
    assert tiers["web"]["resources"]["Member"] == 8
    assert len(data["outputs"]["tiers"]["web"]["instances"]) == 8
    assert data["summary"]["smallest_ovhcloud_quota_tier"] == "20-vms"  # 12 VMs, 26 vCPU


def test_prod_preview_fits_its_quota_even_with_every_tier_at_max() -> None:
    summary = _json("--stack", "prod-gra11")["summary"]
    assert summary["instances"] == 37  # 35 in the tiers, the chat store and one shard
    assert summary["quota_fits"] and summary["max_fits_quota"]
    assert all(not found for found in summary["policies"].values())


def test_human_output_says_it_is_offline_and_shows_the_totals() -> None:
    result = runner.invoke(app, ["preview", "--stack", "dev"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no cloud call" in result.output
    assert "204.40" in result.output  # (0.05 x 4 + 0.08) EUR/h x 730 h
    assert "Policies: all 5 pass" in result.output


ERRORS = [
    ("unknown-stack", ["--stack", "nope"], "known stacks: dev, prod-gra11"),
    ("count-above-max", ["--set", "tiers.web.count=9"], "swell:tiers.web.count: 9 is above max"),
    ("malformed-set", ["--set", "tiers.web.count"], "expected KEY.PATH=VALUE"),
    ("unknown-tier", ["--set", "tiers.db.count=1"], "swell:tiers.db: unknown key; allowed: web, chat, video"),
    ("negative-count", ["--set", "tiers.web.count=-2"], "swell:tiers.web.count"),
]


@pytest.mark.parametrize(("args", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_exits_non_zero_with_a_message_naming_the_problem(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["preview", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_a_stack_with_secrets_is_refused_with_a_reason(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path)
    (tmp_path / "Pulumi.sec.yaml").write_text("config:\n  swell:sshPublicKey:\n    secure: AAAbase64\n")
    with pytest.raises(preview.PreviewError, match="secrets"):
        preview.load_stack_values("sec", tmp_path)


def test_set_paths_follow_pulumi_config_set_path() -> None:
    values: dict[str, Any] = {"swell:tiers": {"web": {"count": 1}}, "openstack:region": "GRA11"}
    out = preview.apply_sets(values, ["tiers.web.count=4", "openstack:region=SBG5", "quota=50-vms"])
    assert out == {"swell:tiers": {"web": {"count": 4}}, "openstack:region": "SBG5", "swell:quota": "50-vms"}
    assert values["swell:tiers"]["web"]["count"] == 1  # the stack file's values are not modified


def test_a_warm_pool_is_previewed_shelved_counted_and_priced_as_an_upper_bound() -> None:
    sets = ["tiers.web.max=6", "tiers.web.warm=[2,3]", "tiers.web.filling=[4]"]
    data = _json("--stack", "dev", *(a for s in sets for a in ("--set", s)))
    web = {t["tier"]: t for t in data["summary"]["tiers"]}["web"]
    assert (web["instances"], web["warm"], web["filling"]) == (4, 2, 1)
    assert web["resources"]["Member"] == 1, "the serving one only"
    assert web["eur_per_month"] == pytest.approx(4 * 0.05 * 730)
    pools = {e["index"]: e["pool"] for e in data["outputs"]["tiers"]["web"]["instances"]}
    assert pools == {0: "", 2: "warm", 3: "warm", 4: "filling"}
    args = [a for s in sets for a in ("--set", s)]
    human = runner.invoke(app, ["preview", "--stack", "dev", *args], env={"COLUMNS": "200"})
    assert human.exit_code == 0, human.output
    assert "4 (2 warm, 1 filling)" in human.output
    assert "priced at the running price, an upper bound" in " ".join(human.output.split())
