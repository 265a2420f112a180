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
            "billed_hours",
            "cost_eur",
            "unserved_fraction",
            "slo_violation_minutes",
            "actions",
            "reaction_time_s",
        }


def test_simulate_judges_the_benchmark_targets_on_your_own_trace(small_trace: Path) -> None:
    """A planner with a real trace gets the same verdict the benchmark gives its rows."""
    result = runner.invoke(app, ["simulate", "--trace", str(small_trace), "--json", "--lead-time", "600"])
    doc = json.loads(result.output)
    targets, pol = doc["targets"], doc["policies"]
    best = min(("hpa", "keda", "target-tracking"), key=lambda n: pol[n]["theta_u"])
    assert targets["best_name"] == best
    assert targets["ih_ratio"] == pytest.approx(
        pol["swell"]["instance_hours"] / pol["keda"]["instance_hours"]
    )
    assert targets["passed"] == (targets["theta_ok"] and targets["ih_ok"])
    table = runner.invoke(app, ["simulate", "--trace", str(small_trace), "--lead-time", "600"])
    assert "targets (docs/BENCHMARKS.md): " + targets["regime"] in table.output.replace("\n", " ")
    partial = runner.invoke(
        app, ["simulate", "--trace", str(small_trace), "--json", "--policies", "swell,keda"]
    )
    assert json.loads(partial.output)["targets"] is None  # no verdict without the baselines


@pytest.mark.parametrize(
    ("best", "swell_theta", "swell_ih", "regime", "passed"),
    [
        (0.40, 0.09, 104.0, "baselines short", True),
        (0.40, 0.11, 104.0, "baselines short", False),  # theta_U above 1/4 of the best
        (0.40, 0.09, 106.0, "baselines short", False),  # instance-hours above 1.05 x keda
        (0.01, 0.009, 91.0, "baselines safe", True),
        (0.01, 0.011, 91.0, "baselines safe", False),  # above the absolute 0.01%
        (0.01, 0.009, 93.0, "baselines safe", False),  # not 8% cheaper than keda
        (0.05, 0.0124, 100.0, "baselines short", True),  # 0.05% is already "noticeably"
    ],
    ids=["short-pass", "short-theta", "short-cost", "safe-pass", "safe-theta", "safe-cost", "threshold"],
)
def test_target_verdicts(best: float, swell_theta: float, swell_ih: float, regime: str, passed: bool) -> None:
    from autoscaler.sim.targets import judge

    def m(theta: float, ih: float) -> dict[str, float]:
        return {"theta_u": theta, "instance_hours": ih}

    verdict = judge(
        {
            "swell": m(swell_theta, swell_ih),
            "keda": m(best, 100.0),
            "hpa": m(1.0, 90.0),
            "target-tracking": m(2.0, 95.0),
        }
    )
    assert verdict is not None
    assert (verdict.regime, verdict.passed) == (regime, passed)


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


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("keda.target_utilization=1.5", "utilization in (0, 1]"),
        ("keda.target_utilisation=0.6", "no settable field 'target_utilisation'"),
        ("kedaa.target_utilization=0.6", "unknown policy 'kedaa'"),
        ("keda.target_utilization=high", "expected a number"),
        ("swell.headroom_sigmas=nan", "finite"),
        ("swell.stabilization_down_s=-5", ">= 0"),
        ("hpa.scale_up_pods=2.5", "an integer"),
        ("swell.guards=1", "no settable field 'guards'"),
        ("keda.target_utilization", "POLICY.FIELD=VALUE"),
        ("swell.fast_halflife_s=500", "fast_halflife_s"),
    ],
    ids=[
        "out-of-range",
        "misspelled-field",
        "unknown-policy",
        "not-a-number",
        "nan",
        "negative-duration",
        "int-field",
        "not-settable",
        "no-value",
        "dataclass-check",
    ],
)
def test_a_bad_param_exits_2_naming_it(small_trace: Path, param: str, message: str) -> None:
    result = runner.invoke(app, ["simulate", "--trace", str(small_trace), "--param", param])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_params_change_the_policy_and_are_echoed(small_trace: Path) -> None:
    base = json.loads(
        runner.invoke(app, ["simulate", "--trace", str(small_trace), "--json", "--policies", "keda"]).output
    )
    tuned = runner.invoke(
        app,
        [
            "simulate",
            "--trace",
            str(small_trace),
            "--json",
            "--policies",
            "keda",
            "--param",
            "keda.target_utilization=0.5",
        ],
    )
    assert tuned.exit_code == 0, tuned.output
    doc = json.loads(tuned.output)
    assert doc["policy_params"] == {"keda": {"target_utilization": 0.5}}
    # A lower target keeps more instances: more instance-hours, no more shortfall.
    assert doc["policies"]["keda"]["instance_hours"] > base["policies"]["keda"]["instance_hours"]
    assert doc["policies"]["keda"]["theta_u"] <= base["policies"]["keda"]["theta_u"]


def test_frontier_prints_every_point_and_a_verdict_that_follows_from_them(
    small_trace: Path, tmp_path: Path
) -> None:
    png = tmp_path / "frontier.png"
    result = runner.invoke(
        app, ["simulate", "--trace", str(small_trace), "--frontier", "--json", "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    frontier, verdict = doc["frontier"], doc["verdict"]
    assert set(frontier) == {"hpa", "keda", "target-tracking", "swell"}
    assert [p["params"]["target_utilization"] for p in frontier["keda"]] == pytest.approx(
        [0.5 + 0.05 * k for k in range(10)]
    )
    for pts in frontier.values():
        assert all({"params", "theta_u", "cost_eur", "instance_hours", "billed_hours"} <= set(p) for p in pts)
    baselines = [p for name in ("hpa", "keda", "target-tracking") for p in frontier[name]]
    swell = doc["swell_default"]
    affordable = [p for p in baselines if p["cost_eur"] <= swell["cost_eur"]]
    if affordable:
        assert verdict["A"] == pytest.approx(min(p["theta_u"] for p in affordable), abs=1e-6)
    as_safe = [p for p in baselines if p["theta_u"] <= swell["theta_u"]]
    if as_safe:
        assert verdict["B"] == pytest.approx(min(p["cost_eur"] for p in as_safe), abs=1e-6)
    assert verdict["pass"] == (verdict["theta_ok"] and verdict["cost_ok"])
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lead-time", "nan"], "lead time must be a finite number"),
        (["--lead-time", "inf"], "lead time must be a finite number"),
        (["--tick", "0"], "tick must be"),
        (["--min", "10", "--max", "5"], "need 0 <= min <= max"),
        (["--capacity-per-instance", "nan"], "capacity"),
        (["--price", "-1"], "price must be"),
        (["--swell-retirement", "oldest"], "'hour-end', 'paid-hour', 'newest'"),
        (["--warm-pool", "--shelved-price", "2"], "shelved price fraction"),
    ],
    ids=[
        "nan-lead",
        "inf-lead",
        "zero-tick",
        "min-above-max",
        "nan-capacity",
        "negative-price",
        "unknown-retirement",
        "shelved-price",
    ],
)
def test_bad_simulation_options_exit_2_naming_them(small_trace: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["simulate", "--trace", str(small_trace), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_a_trace_too_long_to_replay_exits_2_instead_of_running_out_of_memory(tmp_path: Path) -> None:
    trace = tmp_path / "century.csv"
    trace.write_text("timestamp,demand\n1926-01-01T00:00:00Z,10\n2026-01-01T00:00:00Z,12\n")
    result = runner.invoke(app, ["simulate", "--trace", str(trace)])
    assert result.exit_code == 2, result.output
    assert "spans 36,525 days" in " ".join(result.output.split())


def test_a_trace_that_is_not_utf8_exits_2_naming_the_line(tmp_path: Path) -> None:
    trace = tmp_path / "latin1.csv"
    trace.write_bytes(
        "timestamp,demand\n2026-01-01T00:00:00Z,10\n2026-01-01T00:01:00Z,1\xe9\n".encode("latin-1")
    )
    result = runner.invoke(app, ["simulate", "--trace", str(trace)])
    assert result.exit_code == 2, result.output
    assert "line 3: not UTF-8 text" in " ".join(result.output.split())


def test_simulate_help_shows_the_capacity_default_whole() -> None:
    result = runner.invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert "median demand / 10" in " ".join(result.output.split())
