"""The recording rules behind the autoscaler's partial-scrape check (`demand_targets`): promtool's
unit tests for them pass (a bridge whose scrape times out halves the video sum, the counts say 1 of
2), and the configurations shipped with the service read exactly those records."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from autoscaler.config import load_config, parse_config
from dashboards.mixin import DEMAND_TARGETS_COUNT_RECORD, DEMAND_TARGETS_UP_RECORD

ROOT = Path(__file__).resolve().parents[2]
RULE_TESTS = ROOT / "dashboards" / "tests" / "swell_demand_targets_test.yml"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) missing")
def test_promtool_unit_tests_of_the_demand_target_records_pass() -> None:
    done = subprocess.run(
        ["promtool", "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_shipped_configurations_read_the_demand_target_records() -> None:
    example = load_config(ROOT / "autoscaler.example.yaml")
    configmap = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "configmap.yaml").read_text())
    in_cluster = parse_config(yaml.safe_load(configmap["data"]["autoscaler.yaml"]))
    for cfg in (example, in_cluster):
        assert cfg.demand_targets is not None
        assert (cfg.demand_targets.up, cfg.demand_targets.expected) == (
            DEMAND_TARGETS_UP_RECORD,
            DEMAND_TARGETS_COUNT_RECORD,
        )
