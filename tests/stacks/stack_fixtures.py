"""Helpers for the stack tests: the shipped stack configs, and copies of them at other counts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def stack_values(stack: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"])


def with_tiers(values: dict[str, Any], **counts: int) -> dict[str, Any]:
    """A copy of `values` with the given tier counts (max raised to fit, quota made roomy)."""
    out = copy.deepcopy(values)
    for tier, count in counts.items():
        out["swell:tiers"][tier]["count"] = count
        out["swell:tiers"][tier]["min"] = 0
        out["swell:tiers"][tier]["max"] = max(count, out["swell:tiers"][tier]["max"])
    out["swell:quota"] = {"instances": 10_000, "vcpus": 100_000, "ramGb": 1_000_000}
    return out
