"""Fixtures shared by the autoscaler tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

STANDIN = Path(__file__).with_name("pulumi_standin.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "pulumi"
    cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: swell\nruntime: python\nmain: stacks/\n")
    # The shipped dev stack (every key the stack's validation needs), roomier: the actuator checks
    # each layout with the stack's own parser before writing it.
    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    config["swell:quota"] = {"instances": 60, "vcpus": 1000, "ramGb": 4000}
    config["swell:tiers"] = {
        "web": {"flavor": "b3-8", "count": 2, "min": 1, "max": 32},
        "chat": {"flavor": "b3-8", "count": 1, "min": 1, "max": 8},
        "video": {"flavor": "c3-8", "count": 1, "min": 1, "max": 8},
    }
    (project / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))
    return project
