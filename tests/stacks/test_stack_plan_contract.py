"""`swell plan --write` and the stack program agree: the stack file the plan wrote, run under Pulumi's
mocks, declares the instances the plan set and stays within its quota; the autoscaler's own loader
accepts the autoscaler file it wrote; and each other region of a split, made as the plan says (this
stack's configuration with the region, the quota tier and the share set), is a stack the same
program declares in that region, within one region's quota."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from autoscaler.config import load_config
from stacks import config as stack_config
from stacks import engine
from swell import tiers
from swell.cli import app
from tests.stacks.stack_fixtures import ROOT

KNEES = {"web": 30.0, "chat": 20.0, "video": 23.0}
UNITS = {"web": "requests/s", "chat": "sessions", "video": "participants"}


def project_with_calibrations(tmp_path: Path) -> tuple[Path, Path]:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.prod-gra11.yaml", "autoscaler.example.yaml"):
        shutil.copy(ROOT / name, project / name)
    calibrations = tmp_path / "calibrate"
    calibrations.mkdir()
    for tier, knee in KNEES.items():
        (calibrations / f"{tier}.json").write_text(
            json.dumps(
                {
                    "schema": "swell.calibration/1",
                    "tier": tier,
                    "unit": UNITS[tier],
                    "capacity_per_instance": knee,
                    "conditions": {"flavor": "b3-16", "target": "staging"},
                }
            )
        )
    return project, calibrations


def plan(project: Path, calibrations: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app,
        [
            "plan",
            "--stack",
            "prod-gra11",
            "--project-dir",
            str(project),
            "--calibration",
            str(calibrations),
            "--out",
            str(project / "plan"),
            "--json",
            *("--peak", "web=420", "--peak", "chat=90", "--peak", "video=160"),
            *args,
        ],
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def instances_per_tier(recording: Any) -> dict[str, int]:
    """Instances per tier; the fixed groups (chat store, shards) are not the plan's."""
    out: dict[str, int] = {}
    fixed = tiers.load().fixed_names
    for name in recording.named(engine.INSTANCE):
        tier = name.rsplit("-", 1)[0]
        if tier not in fixed:
            out[tier] = out.get(tier, 0) + 1
    return out


def test_the_written_stack_and_autoscaler_files_load_and_declare_the_plan(tmp_path: Path) -> None:
    project, calibrations = project_with_calibrations(tmp_path)
    auto = project / "autoscaler.example.yaml"
    doc = plan(project, calibrations, "--factor", "2", "--write", "--autoscaler-config", str(auto))
    assert doc["changes"]["written"] and doc["changes"]["regions"] == 1
    written = yaml.safe_load((project / "Pulumi.prod-gra11.yaml").read_text())["config"]
    recording = engine.run(written, "prod-gra11")  # the stack program, under Pulumi's mocks
    tiers = written["swell:tiers"]
    assert instances_per_tier(recording) == {t: v["count"] for t, v in tiers.items()}
    x2 = doc["factors"][-1]["tiers"]
    for tier, values in doc["changes"]["stack"].items():
        assert tiers[tier]["max"] == values["max"] == x2[tier]["instances"]
    service = load_config(auto)  # the autoscaler's own loader
    for tier, values in doc["changes"]["autoscaler"].items():
        assert service.tiers[tier].capacity_per_instance == KNEES[tier] == values["capacity_per_instance"]
        limits = (tiers[tier]["min"], tiers[tier]["max"])
        assert service.tiers[tier].limits(limits) == limits  # the stack's new limits, not narrowed


def test_each_region_of_a_split_is_a_stack_of_the_same_program(tmp_path: Path) -> None:
    project, calibrations = project_with_calibrations(tmp_path)
    doc = plan(project, calibrations, "--factor", "4")
    x4 = doc["factors"][-1]
    assert x4["quota"]["regions_needed"] == 2
    (regional,) = doc["changes"]["regional_stacks"]
    assert regional["stack"] == "prod-sbg5" and regional["region"] == "SBG5"
    assert regional["commands"][0] == "pulumi stack init prod-sbg5 --copy-config-from prod-gra11"
    # What `--copy-config-from` and the `pulumi config set` commands make of this stack's values.
    values = copy.deepcopy(yaml.safe_load((ROOT / "Pulumi.prod-gra11.yaml").read_text())["config"])
    for key, value in regional["set"].items():
        if key.startswith("swell:tiers."):
            _, tier, field = key.split(".")
            values["swell:tiers"][tier][field] = value
        else:
            values[key] = value
    cfg = stack_config.parse(values, "prod-sbg5")
    assert cfg.region == "SBG5"
    recording = engine.run(values, "prod-sbg5")
    assert instances_per_tier(recording) == {t: v["count"] for t, v in values["swell:tiers"].items()}
    # At its max, each region's share fits one region's quota; both shares make the whole factor.
    home = doc["factors"][-1]["split"][0]
    for tier, t in x4["tiers"].items():
        assert values["swell:tiers"][tier]["max"] + home["tiers"][tier] >= t["instances"]
    at_max = copy.deepcopy(values)
    for t in at_max["swell:tiers"].values():
        t["count"] = t["max"]
    stack_config.parse(at_max, "prod-sbg5")  # within its quota tier at its max
