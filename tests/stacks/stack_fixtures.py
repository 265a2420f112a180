"""Helpers for the stack tests: the shipped stack configs, and copies of them at other counts."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
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


def assert_no_locust() -> None:
    """Fail the test at once if locust (and so gevent's monkey-patching) is loaded in this process."""
    if "locust" in sys.modules:
        pytest.fail(
            "locust is imported in this pytest process: Pulumi mock tests hang under gevent. "
            "Run tests/stacks in its own pytest process (see the Makefile's unit target).",
            pytrace=False,
        )
