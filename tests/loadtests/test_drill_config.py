"""The drill's configuration derives from production's, with time the only difference: the
autoscaler config the drill runs (policy time constants compressed by one function) and the
Prometheus rules it loads (production's rule file, every range, offset and `for:` compressed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from autoscaler.config import parse_config
from autoscaler.core.policies.swell import SERVICE_TIMING, SwellParams
from loadtests.drill import DEFAULT_SPEED, DrillOptions, autoscaler_config
from loadtests.plumbing import RULES, compress_rules, drill_rate_window_lag_s, duration_s, write_yaml


@pytest.mark.parametrize("profile", sorted(DEFAULT_SPEED), ids=sorted(DEFAULT_SPEED))
def test_every_time_constant_of_the_policy_is_compressed_with_the_speed(profile: str, tmp_path: Path) -> None:
    options = DrillOptions(out=tmp_path, profile=profile)
    speed = options.effective_speed
    raw = autoscaler_config(options, "http://127.0.0.1:9", tmp_path / "state.db")
    cfg = parse_config(raw, source="drill")  # the service accepts it as it ships
    defaults = SwellParams(capacity_per_instance=1.0)
    for tier in cfg.tiers.values():
        for f in fields(SwellParams):
            if f.name.endswith("_s") and f.name not in SERVICE_TIMING:
                assert tier.policy_params[f.name] == pytest.approx(getattr(defaults, f.name) / speed), f.name
        assert tier.lead_time_s >= options.boot_delay_s
    web, chat = cfg.tiers["web"], cfg.tiers["chat"]
    assert web.lead_time_s == pytest.approx(options.boot_delay_s + drill_rate_window_lag_s(speed))
    assert chat.lead_time_s == pytest.approx(options.boot_delay_s)


def strip_durations(text: str) -> str:
    return re.sub(r"(\[|offset )[0-9a-z]+", r"\1D", text)


@pytest.mark.parametrize("speed", [1.0, 5.0, 20.0, 360.0], ids=lambda s: f"x{s:g}")
def test_the_drill_rules_are_productions_with_every_duration_compressed(speed: float) -> None:
    production = yaml.safe_load(RULES.read_text())
    drill = compress_rules(production, speed)
    pairs = [
        (p, d)
        for pg, dg in zip(production["groups"], drill["groups"], strict=True)
        for p, d in zip(pg["rules"], dg["rules"], strict=True)
    ]
    assert pairs
    for prod, compressed in pairs:
        assert {k: v for k, v in prod.items() if k not in ("expr", "for")} == {
            k: v for k, v in compressed.items() if k not in ("expr", "for")
        }
        assert strip_durations(prod["expr"]) == strip_durations(compressed["expr"])
        ranges = zip(
            re.findall(r"\[([0-9a-z]+)\]", prod["expr"]),
            re.findall(r"\[([0-9a-z]+)\]", compressed["expr"]),
            strict=True,
        )
        for nominal, short in ranges:
            assert duration_s(short) == pytest.approx(max(duration_s(nominal) / speed, 3.0), abs=1e-3)
        if "for" in prod:
            assert duration_s(compressed["for"]) == pytest.approx(duration_s(prod["for"]) / speed, abs=1e-3)


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool (Debian package prometheus)")
def test_promtool_accepts_the_compressed_rules(tmp_path: Path) -> None:
    path = tmp_path / "swell.rules.yml"
    write_yaml(path, compress_rules(yaml.safe_load(RULES.read_text()), 7.5))
    run = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
