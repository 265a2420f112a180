"""`swell calibrate` refuses bad input before it starts anything: exit 2 and a message naming the
option (and the file, for files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swell.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tier", "db"], "--tier 'db': unknown tier; expected one of web, chat, video"),
        (["--tier", "web", "--step-s", "nan"], "--step-s nan: expected a finite number of seconds"),
        (["--tier", "web", "--settle-s", "9"], "--settle-s 9: expected 0 or more and less than the step"),
        (["--tier", "web", "--workers", "500"], "--workers 500"),
        (["--tier", "web", "--target", "staging:80"], "--target 'staging:80': expected an http://"),
        (["--tier", "web", "--flavor", "b9-99"], "--flavor 'b9-99': unknown flavor"),
        (["--tier", "web", "--steps", "0"], "--steps 0: expected a whole number >= 1"),
        (["--tier", "web", "--steps", "40", "--step-s", "900"], "a calibration is bounded to 4 h"),
        (
            ["--tier", "web", "--from-log", "/nonexistent/master.log"],
            "--from-log /nonexistent/master.log: no such file",
        ),
        (["--tier", "web", "--slo", "/nonexistent/slo.yaml"], "--slo /nonexistent/slo.yaml: cannot read"),
    ],
    ids=["tier", "nan-step", "settle", "workers", "target", "flavor", "steps", "too-long", "log", "slo"],
)
def test_bad_options_exit_2_naming_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["calibrate", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_a_log_without_steps_of_the_tier_exits_2_naming_it(tmp_path: Path) -> None:
    log = tmp_path / "master.log"
    log.write_text("[2026-11-30 18:00:00] locust: starting\n")
    result = runner.invoke(
        app, ["calibrate", "--tier", "web", "--from-log", str(log), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and f"--from-log {log}: no swell-step line of tier web" in result.stderr


def test_a_kubernetes_run_is_judged_from_its_master_log(tmp_path: Path) -> None:
    """The master prints each step as `swell-step {json}` (kubectl logs carries it): calibrate reads
    those lines, runs no load, and writes the same JSON and PNG."""
    lines = []
    for index, (users, p95) in enumerate(
        [(100, 180.0), (200, 220.0), (300, 480.0), (400, 900.0), (500, 1500.0)]
    ):
        step = {
            "index": index,
            "users": users,
            "offered": float(users),
            "window_s": 90.0,
            "requests": users * 90,
            "failures": 0,
            "p50_ms": p95 / 2,
            "p95_ms": p95,
            "p99_ms": p95 * 1.2,
            "tier": "web",
            "step_s": 120.0,
            "settle_s": 30.0,
            "lag_s": 1.5,
            "workers": 4,
            "locust_version": "2.47.0",
            "host": "http://web-staging.collab.svc:80",
        }
        lines.append(f"2026-11-30T18:0{index}:00Z swell-step {json.dumps(step)}")
    log = tmp_path / "master.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["calibrate", "--tier", "web", "--from-log", str(log), "--flavor", "b3-16", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "knee 300 requests/s" in result.stdout
    data = json.loads((out / "web.json").read_text())
    assert data["capacity_per_instance"] == 300 and data["conditions"]["workers"] == 4
    assert data["conditions"]["flavor"] == "b3-16"
    assert (out / "web.png").read_bytes()[:4] == b"\x89PNG"
