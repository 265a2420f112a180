"""`swell trace generate` and `swell simulate` as a capacity planner runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swell.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("traces") / "spike.csv"
    result = runner.invoke(
        app, ["trace", "generate", "--shape", "spike", "--days", "1", "--seed", "4", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def test_simulate_json_has_every_policy_and_metric(small_trace: Path) -> None:
    result = runner.invoke(app, ["simulate", "--trace", str(small_trace), "--json", "--lead-time", "600"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["params"]["lead_time_s"] == 600
    assert set(doc["policies"]) == {"swell", "hpa", "keda", "target-tracking", "step", "static", "oracle"}
    for metrics in doc["policies"].values():
        assert set(metrics) == {
            "theta_u",
            "theta_o",
            "tau_u",
            "tau_o",
            "instability",
            "jitter",
            "instance_hours",
            "cost_eur",
            "unserved_fraction",
            "slo_violation_minutes",
            "actions",
            "reaction_time_s",
        }


def test_simulate_table_and_plot(small_trace: Path, tmp_path: Path) -> None:
    png = tmp_path / "out.png"
    result = runner.invoke(
        app, ["simulate", "--trace", str(small_trace), "--policies", "swell,keda", "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert "swell" in result.output and "keda" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timestamp,demand\n0,5\n60,-1\n", "line 3"),
        ("ts,load\n0,5\n", "line 1"),
    ],
    ids=["negative-demand", "missing-header"],
)
def test_bad_trace_exits_2_naming_the_line(tmp_path: Path, text: str, expected: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    result = runner.invoke(app, ["simulate", "--trace", str(bad)])
    assert result.exit_code == 2
    assert expected in result.output


def test_unknown_policy_exits_2_listing_the_known_ones(small_trace: Path) -> None:
    result = runner.invoke(app, ["simulate", "--trace", str(small_trace), "--policies", "swell,magic"])
    assert result.exit_code == 2
    assert "magic" in result.output and "target-tracking" in result.output
