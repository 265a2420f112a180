"""Helpers for the stack tests: the shipped stack configs, and copies of them at other counts or with a
certificate the stack stores itself (secret config marked as the Pulumi CLI marks it)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pulumi
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


# PEM-shaped test material (not a real key pair: only its form is checked before Octavia). The key's
# body carries a marker, so a test can tell whether it leaked anywhere.
KEY_MARKER = "c2VjcmV0LWtleS1tYXJrZXI"
TEST_CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIBdGVzdC1jZXJ0aWZpY2F0ZQ==\n-----END CERTIFICATE-----\n"
TEST_CHAIN = "-----BEGIN CERTIFICATE-----\nMIIBaW50ZXJtZWRpYXRl\n-----END CERTIFICATE-----\n"
TEST_PRIVATE_KEY = f"-----BEGIN PRIVATE KEY-----\nMIIE{KEY_MARKER}AAAA\n-----END PRIVATE KEY-----\n"


def with_pem_tls(values: dict[str, Any], chain: bool = True) -> dict[str, Any]:
    """A copy of `values` whose certificate the stack stores itself, from (test) PEM material."""
    out = copy.deepcopy(values)
    tls = {
        "certificate": TEST_CERTIFICATE,
        "privateKey": TEST_PRIVATE_KEY,
        "hosts": out["swell:tls"]["hosts"],
    }
    if chain:
        tls["chain"] = TEST_CHAIN
    out["swell:tls"] = tls
    return out


def run_with_secrets(values: dict[str, Any], stack: str, secret_keys: list[str]) -> Any:
    """`engine.run`, with `secret_keys` marked secret as `pulumi config set --secret` marks them (the
    offline engine itself has no notion of secret config)."""
    from stacks import engine, program

    def entry() -> object:
        pulumi.runtime.set_all_config(engine.config_strings(values), secret_keys)
        return program.main()

    return engine.run(values, stack, entry=entry)
