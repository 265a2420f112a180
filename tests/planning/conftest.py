"""Fixtures for `swell plan`: a project directory holding copies of the shipped stack files and the
autoscaler's example configuration (so `--write` never touches the repository), and calibration
files as `swell calibrate` writes them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Knees as `swell calibrate` measures them on the reference service (docs/planning.md: web 31 to 32).
KNEES = {"web": 32.0, "chat": 20.0, "video": 23.0}
UNITS = {"web": "requests/s", "chat": "sessions", "video": "participants"}


def calibration(tier: str, capacity: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "schema": "swell.calibration/1",
        "tier": tier,
        "unit": UNITS[tier],
        "capacity_per_instance": capacity,
        "uncertainty": None if capacity is None else {"low": capacity, "high": capacity + 1},
        "conditions": {
            "flavor": "local process",
            "target": "local reference tier service",
            "started_at": "2026-11-30T18:00:00+00:00",
        },
        **extra,
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    out = tmp_path / "project"
    out.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.prod-gra11.yaml", "Pulumi.dev.yaml", "autoscaler.example.yaml"):
        shutil.copy(ROOT / name, out / name)
    return out


@pytest.fixture
def calibrations(tmp_path: Path) -> Path:
    out = tmp_path / "calibrate"
    out.mkdir()
    for tier, knee in KNEES.items():
        (out / f"{tier}.json").write_text(json.dumps(calibration(tier, knee)))
    return out
