"""A fourth tier defined only in a tier catalog (issue 12, "Tiers are data"): the shipped catalog plus
a `recording` tier, written to a file that `SWELL_TIERS` names. No code knows its name: the tests
that use it show the stack, the rules, the dashboard, the inventory and the drill derive from the
catalog alone."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from swell import tiers

NAME = "recording"
# Recording sessions held behind their own load balancer, with a round-robin pool: everything the
# shipped tiers do not already use, so a property that were read from another tier would show.
ENTRY: dict[str, Any] = {
    "traffic": "sessions",
    "unit": "recordings",
    "role": "recording",
    "balancer": {"lb_method": "ROUND_ROBIN", "data_timeout_ms": 3_600_000},
    "ports": [
        {"protocol": "tcp", "port": 80, "source": "private", "description": "recorder HTTP, from the LB"}
    ],
    "exporters": ["node"],
    "drill": {
        "plan": {"min": 1, "max": 4, "capacity_per_instance": 3.0},
        "users_weight": 1,
        "service": {"capacity": 4, "hard_cap": 2.0},
    },
}


def write_catalog(directory: Path) -> Path:
    data = yaml.safe_load(tiers.DEFAULT_PATH.read_text())
    data["tiers"][NAME] = copy.deepcopy(ENTRY)
    path = directory / "tiers.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def use_extended_catalog(monkeypatch: pytest.MonkeyPatch, directory: Path) -> Path:
    """Point `SWELL_TIERS` (this process and its children) at the extended catalog."""
    path = write_catalog(directory)
    monkeypatch.setenv(tiers.ENV_VAR, str(path))
    assert tiers.names()[-1] == NAME
    return path


def with_fourth_tier(values: dict[str, Any], count: int = 2) -> dict[str, Any]:
    """Stack config values with the fourth tier's instances and public name (what an operator adds
    to Pulumi.<stack>.yaml with the catalog entry)."""
    out = copy.deepcopy(values)
    out["swell:tiers"][NAME] = {"flavor": "b3-8", "count": count, "min": 1, "max": 4}
    out["swell:tls"]["hosts"][NAME] = "recording.example.org"
    out["swell:quota"] = {"instances": 1000, "vcpus": 10_000, "ramGb": 100_000}
    return out
