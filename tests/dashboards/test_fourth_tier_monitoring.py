"""A fourth tier defined only in the tier catalog appears in the recording rules (promtool-checked,
with a promtool unit test of its demand), the scrape configuration and the dashboard, with no
edit of dashboards/: the mixin lists the catalog's tiers by kind of traffic."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.mixin import DEMAND_RECORD, dashboard_document, render_rules, rules_document
from dashboards.prometheus import production_config
from tests.fourth_tier import NAME, use_extended_catalog

PROMTOOL = shutil.which("promtool")

# The fourth tier's sessions (an HTTP pool: it has the requests counter too), as the load balancer's
# PROMETHEUS listener exports them, and its one scrape target.
UNIT_TEST = f"""
rule_files: [rules.yml]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'octavia_pool_current_sessions{{job="swell-lb",tier="{NAME}",pool="p"}}'
        values: '7+0x8'
      - series: 'octavia_pool_http_requests_total{{job="swell-lb",tier="{NAME}",pool="p"}}'
        values: '0+10x8'
      - series: 'up{{job="swell-lb",tier="{NAME}",instance="lb"}}'
        values: '1+0x8'
    promql_expr_test:
      - expr: {DEMAND_RECORD}
        eval_time: 2m
        exp_samples:
          - labels: '{DEMAND_RECORD}{{tier="{NAME}"}}'
            value: 7
      - expr: tier:swell_demand_targets:count
        eval_time: 2m
        exp_samples:
          - labels: 'tier:swell_demand_targets:count{{tier="{NAME}"}}'
            value: 1
"""


@pytest.fixture(autouse=True)
def _extended(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_extended_catalog(monkeypatch, tmp_path)


def test_the_rules_count_the_fourth_tiers_demand_by_its_kind_of_traffic() -> None:
    rules = {r.get("record"): r["expr"] for g in rules_document()["groups"] for r in g["rules"]}
    assert f'tier:swell_offered_sessions:sum{{tier="{NAME}"}}' in rules[DEMAND_RECORD]
    assert NAME in rules["tier:swell_demand_targets:up"].split('job="swell-lb"', 1)[1].split(")")[0]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) missing")
def test_promtool_checks_the_rules_and_their_unit_test_with_the_fourth_tier(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(render_rules())
    (tmp_path / "test.yml").write_text(UNIT_TEST)
    for args in (["check", "rules", "rules.yml"], ["test", "rules", "test.yml"]):
        assert PROMTOOL is not None
        run = subprocess.run([PROMTOOL, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr


def test_the_scrape_configuration_keeps_and_labels_the_fourth_tier() -> None:
    jobs = {j["job_name"]: j for j in production_config()["scrape_configs"]}
    keep = jobs["node"]["relabel_configs"][0]["regex"]
    assert f"|{NAME})" in keep
    assert NAME not in jobs["jvb"]["relabel_configs"][0]["regex"]  # no bridge metrics
    from_proxy = jobs["swell-lb"]["metric_relabel_configs"][0]
    assert from_proxy["target_label"] == "tier" and f"|{NAME})" in from_proxy["regex"]


def test_the_dashboard_lists_tiers_from_the_demand_series_not_a_fixed_list() -> None:
    dashboard = dashboard_document()
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "tier"]
    assert variable["type"] == "query"
    assert variable["query"] == f"label_values({DEMAND_RECORD}, tier)"
    text = json.dumps(dashboard)
    assert not any(f'"{name}"' in text or f"={name}" in text for name in ("web", "chat", "video", NAME))
    # The same document as without the fourth tier: nothing in it names a tier.
    assert yaml.safe_dump(dashboard) == yaml.safe_dump(
        json.loads(
            (Path(__file__).resolve().parents[2] / "dashboards/grafana/swell-capacity.json").read_text()
        )
    )
