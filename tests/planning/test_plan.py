"""`swell plan` through the command line: instances, quota verdicts and prices per factor from
calibrations and peaks (numbers, traces, a real Prometheus range), the split across regions, the
changes shown as a diff and written with `--write` (comments kept, files that load), and every bad
input refused with exit 2 naming its option."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from autoscaler.config import load_config
from autoscaler.sim.generate import generate
from autoscaler.sim.trace import write_trace
from stacks import catalog
from stacks import config as stack_config
from swell.cli import app
from swell.planning.edits import autoscaler_edit, stack_edit
from swell.planning.model import region_stack_name
from tests.planning.conftest import KNEES, calibration
from tests.realparts import needs_prometheus, running_prometheus, wait_until

runner = CliRunner()
PEAKS = {"web": 420.0, "chat": 90.0, "video": 330.0}
STACK_TIERS = yaml.safe_load((Path(__file__).resolve().parents[2] / "Pulumi.prod-gra11.yaml").read_text())[
    "config"
]["swell:tiers"]


def plan(project: Path, calibrations: Path, *args: str, peaks: dict[str, Any] | None = None) -> Any:
    peak_args = [
        a for t, v in (peaks if peaks is not None else PEAKS).items() for a in ("--peak", f"{t}={v}")
    ]
    return runner.invoke(
        app,
        [
            "plan",
            "--stack",
            "prod-gra11",
            "--project-dir",
            str(project),
            "--calibration",
            str(calibrations),
            "--out",
            str(project / "plan"),
            *peak_args,
            *args,
        ],
    )


def as_json(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_numbers_give_instances_resources_prices_and_quota_per_factor(
    project: Path, calibrations: Path
) -> None:
    doc = as_json(plan(project, calibrations, "--json"))
    cat = catalog.load()
    assert [f["factor"] for f in doc["factors"]] == [1.0, 2.0, 4.0]
    for f in doc["factors"]:
        for tier, t in f["tiers"].items():
            flavor = cat.flavors[STACK_TIERS[tier]["flavor"]]
            need = max(math.ceil(f["factor"] * PEAKS[tier] / KNEES[tier]), STACK_TIERS[tier]["min"])
            assert t["instances"] == t["instances_static"] == need, (f["factor"], tier)
            assert (t["vcpus"], t["ram_gb"]) == (need * flavor.vcpus, need * flavor.ram_gb)
            assert t["eur_month_at_peak"] == pytest.approx(need * flavor.eur_per_hour * cat.hours_per_month)
            assert t["eur_month_savings_plan"] is None  # no savings-plan price is known: left empty
            assert t["eur_month_autoscaled"] is None and t["simulation"] is None
    x1, x2, x4 = (f["quota"] for f in doc["factors"])
    # prod-gra11 holds 200-vms (512 vCPU), OVHcloud's largest tier of one region.
    assert x1["fits"] and not x1["ask_early"] and x1["use"] < 0.6
    assert x2["fits"] and x2["ask_early"] and x2["use"] > 0.6 and "second region" in x2["advice"]
    assert not x4["fits"] and x4["regions_needed"] == 2 and x4["smallest_tier"] is None
    shares = doc["factors"][2]["split"]
    assert [s["region"] for s in shares] == ["GRA11", "SBG5"]
    assert [s["stack"] for s in shares] == ["prod-gra11", "prod-sbg5"]
    for tier, t in doc["factors"][2]["tiers"].items():
        assert sum(s["tiers"][tier] for s in shares) == t["instances"]
    assert all(s["quota_tier"] == "200-vms" and s["vcpus"] <= 512 for s in shares)
    assert any("single peak number" in n for n in doc["notes"])
    for name in ("plan.md", "plan.png", "plan.json"):
        assert (project / "plan" / name).stat().st_size > 1000
    assert "SPLIT over 2 regions" in (project / "plan" / "plan.md").read_text()


def test_the_table_and_the_diff_are_printed_and_nothing_is_written(project: Path, calibrations: Path) -> None:
    before = (project / "Pulumi.prod-gra11.yaml").read_text()
    result = plan(project, calibrations)
    assert result.exit_code == 0, result.output
    for text in ("x4", "SPLIT over 2 regions", "prod-sbg5", "-      max: 30", "+      max: 27", "--write"):
        assert text in result.stdout, text
    assert (project / "Pulumi.prod-gra11.yaml").read_text() == before


def daily_trace(path: Path, peak: float) -> Path:
    t, demand = generate("daily", days=3, noise=0.05, seed=3)
    write_trace(path, t, demand * peak / float(np.nanmax(demand)))
    return path


def test_a_trace_is_replayed_through_the_policy_with_its_lead_time(
    project: Path, calibrations: Path, tmp_path: Path
) -> None:
    trace = daily_trace(tmp_path / "web.csv", 420.0)
    peaks = {"web": trace, "chat": 90, "video": 330}
    auto = str(project / "autoscaler.example.yaml")
    short = as_json(plan(project, calibrations, "--json", "--autoscaler-config", auto, peaks=peaks))
    longer = as_json(plan(project, calibrations, "--json", "--lead-time", "900", peaks=peaks))
    for f_short, f_long in zip(short["factors"], longer["factors"], strict=True):
        web, web_long = f_short["tiers"]["web"], f_long["tiers"]["web"]
        sim = web["simulation"]
        assert sim["policy"] == "swell" and sim["lead_time_s"] == 180  # the autoscaler's, for web
        assert web_long["simulation"]["lead_time_s"] == 900
        assert web["demand_peak"] == pytest.approx(420 * f_short["factor"], rel=1e-3)
        # The policy keeps headroom for its lead time: more instances than the bare need.
        assert web["instances"] >= web["instances_static"]
        assert web_long["instances"] >= web["instances"]
        assert 0 < web["eur_month_autoscaled"] < web["eur_month_at_peak"]
    assert short["inputs"]["peaks"]["web"]["kind"] == "trace"
    assert any(
        f["tiers"]["web"]["instances"] > f["tiers"]["web"]["instances_static"] for f in short["factors"]
    )


OPENMETRICS_STEP_S = 60


def backfilled_prometheus(tmp_path: Path, series: dict[str, np.ndarray], now: float) -> Path:
    """A TSDB holding a week of `swell_demand{tier=...}` one sample a minute up to `now`, written by
    promtool (the way history is backfilled into Prometheus)."""
    n = len(next(iter(series.values())))
    stamps = now - OPENMETRICS_STEP_S * np.arange(n)[::-1] - 60
    lines = ["# HELP swell_demand offered demand", "# TYPE swell_demand gauge"]
    for tier, values in series.items():
        lines += [
            f'swell_demand{{tier="{tier}"}} {v:.3f} {int(s)}' for s, v in zip(stamps, values, strict=True)
        ]
    lines.append("# EOF")
    (tmp_path / "history.om").write_text("\n".join(lines) + "\n")
    tsdb = tmp_path / "prom" / "tsdb"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "history.om"), str(tsdb)],
        check=True,
        capture_output=True,
    )
    return tmp_path / "prom"


@needs_prometheus
@pytest.mark.slow
def test_a_prometheus_range_query_is_todays_peak_and_the_trace(
    project: Path, calibrations: Path, tmp_path: Path
) -> None:
    now = time.time()
    rng = np.random.default_rng(5)
    week = 7 * 24 * 60 - 10
    web = 200 + 150 * np.sin(np.arange(week) / (24 * 60) * 2 * np.pi) ** 2 + rng.normal(0, 5, week)
    web[week // 2] = 437.5  # today's peak, one minute of it
    workdir = backfilled_prometheus(tmp_path, {"web": web, "chat": np.full(week, 40.0)}, now)
    config = {"global": {"scrape_interval": "15s"}, "scrape_configs": []}
    with running_prometheus(workdir, config) as (url, _):
        query = 'swell_demand{tier="web"}'
        wait_until(
            lambda: (
                runner.invoke(
                    app,
                    [
                        "plan",
                        "--stack",
                        "prod-gra11",
                        "--project-dir",
                        str(project),
                        "--calibration",
                        str(calibrations),
                        "--peak",
                        f"web=query:{query}",
                        "--prometheus",
                        url,
                        "--json",
                        "--out",
                        str(tmp_path / "p"),
                    ],
                ).exit_code
                == 0
            ),
            "the backfilled blocks to load",
            30,
        )
        doc = as_json(
            plan(project, calibrations, "--json", "--prometheus", url, peaks={"web": f"query:{query}"})
        )
        peak = doc["inputs"]["peaks"]["web"]
        assert peak["kind"] == "query" and peak["peak"] == pytest.approx(437.5)
        assert peak["samples"] > 9000 and peak["span_h"] == pytest.approx(7 * 24, rel=0.02)
        assert doc["factors"][0]["tiers"]["web"]["simulation"] is not None
        two = plan(project, calibrations, "--prometheus", url, peaks={"web": "query:swell_demand"})
        assert two.exit_code == 2 and "expected exactly one series, got 2" in two.stderr


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# (arguments replacing the defaults, text the error must hold)
BAD = [
    (["--peak", "db=3"], "--peak 'db=3': unknown tier 'db'"),
    (["--peak", "web=0"], "--peak 'web=0': today's peak must be a number > 0"),
    (["--peak", "web=-20"], "today's peak must be a number > 0"),
    (["--peak", "web=nan"], "--peak 'web=nan': today's peak must be a number > 0"),
    (["--peak", "web=inf"], "--peak 'web=inf': today's peak must be a number > 0"),
    (["--peak", "web=/nonexistent/web.csv"], "is neither a number nor a trace file"),
    (
        ["--peak", "web=1", "--calibration", "/nonexistent/web.json"],
        "--calibration /nonexistent/web.json: cannot read",
    ),
    (["--peak", "web=lots"], "is neither a number nor a trace file"),
    (["--peak", "web"], "expected TIER=NUMBER"),
    (["--peak", "web=1", "--peak", "web=2"], "web is given twice"),
    (["--peak", "web=1", "--factor", "2,x"], "--factor '2,x': 'x' is not a number"),
    (["--peak", "web=1", "--factor", "0"], "--factor '0'"),
    (["--peak", "web=1", "--factor", "nan"], "--factor 'nan'"),
    (["--peak", "web=1", "--policy", "hpa"], "--policy 'hpa'"),
    (["--peak", "web=1", "--lead-time", "-5"], "--lead-time -5"),
    (["--peak", "web=query:up"], "give --prometheus URL"),
    (["--peak", "web=query:up", "--prometheus", "http://127.0.0.1:9", "--range", "7x"], "--range '7x'"),
    (
        ["--peak", "web=query:up", "--prometheus", "http://127.0.0.1:9", "--range", "30d", "--step", "1s"],
        "--range/--step",
    ),
    (["--peak", "web=1", "--regions", "gra 11"], "--regions"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[m[:30] for _, m in BAD])
def test_bad_input_exits_2_naming_the_option(
    project: Path, calibrations: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(
        app,
        [
            "plan",
            "--stack",
            "prod-gra11",
            "--project-dir",
            str(project),
            "--calibration",
            str(calibrations),
            *args,
        ],
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"tier": "web"}), 'not a calibration (expected "schema"'),
        (json.dumps(calibration("web", None)), "capacity_per_instance is null"),
        (json.dumps(calibration("web", -3)), "capacity_per_instance -3"),
        (json.dumps(calibration("web", 30) | {"unit": "sessions"}), "web is measured in requests/s"),
        (json.dumps(calibration("web", 30) | {"tier": "db"}), "tier 'db'"),
    ],
    ids=["not-json", "no-schema", "no-knee", "negative", "wrong-unit", "unknown-tier"],
)
def test_a_malformed_calibration_exits_2_naming_the_file(
    project: Path, tmp_path: Path, content: str, message: str
) -> None:
    bad = write(tmp_path / "bad.json", content)
    result = runner.invoke(
        app,
        [
            "plan",
            "--stack",
            "prod-gra11",
            "--project-dir",
            str(project),
            "--calibration",
            str(bad),
            "--peak",
            "web=10",
        ],
    )
    assert result.exit_code == 2, result.output
    assert f"--calibration {bad}" in result.stderr and message in result.stderr, result.stderr


def test_a_tier_without_calibration_or_an_unknown_stack_exits_2(project: Path, calibrations: Path) -> None:
    (calibrations / "video.json").unlink()
    result = plan(project, calibrations)
    assert result.exit_code == 2 and "--peak video: no --calibration for tier video" in result.stderr
    result = runner.invoke(
        app,
        [
            "plan",
            "--stack",
            "prod-sbg5",
            "--project-dir",
            str(project),
            "--calibration",
            str(calibrations),
            "--peak",
            "web=1",
        ],
    )
    assert result.exit_code == 2 and "--stack 'prod-sbg5': no Pulumi.prod-sbg5.yaml" in result.stderr


def comment_lines(text: str) -> list[str]:
    """Every comment, whole-line or after a value, in order."""
    return [line[line.index("#") :].strip() for line in text.splitlines() if "#" in line]


def test_write_applies_the_diff_keeping_every_comment(project: Path, calibrations: Path) -> None:
    stack_file, auto_file = project / "Pulumi.prod-gra11.yaml", project / "autoscaler.example.yaml"
    before = {p: p.read_text() for p in (stack_file, auto_file)}
    doc = as_json(
        plan(
            project, calibrations, "--json", "--write", "--autoscaler-config", str(auto_file), "--factor", "2"
        )
    )
    # x2 fits one region: this stack gets all of it.
    x2 = doc["factors"][-1]
    assert doc["changes"]["factor"] == 2.0 and doc["changes"]["regions"] == 1
    written = yaml.safe_load(stack_file.read_text())["config"]["swell:tiers"]
    for tier, t in x2["tiers"].items():
        assert written[tier]["max"] == t["instances"]
        today = doc["factors"][0]["tiers"][tier]["instances"]
        assert written[tier]["count"] == max(STACK_TIERS[tier]["count"], today)
        assert written[tier]["flavor"] == STACK_TIERS[tier]["flavor"]
    stack_config.parse(yaml.safe_load(stack_file.read_text())["config"], "prod-gra11")
    cfg = load_config(auto_file)  # the service's own loader
    for tier, t in cfg.tiers.items():
        assert t.capacity_per_instance == KNEES[tier]
        # A tier on the stack takes the stack's limits (no max of its own is written), within them.
        assert t.max is None
        assert t.limits((written[tier]["min"], written[tier]["max"])) == (
            written[tier]["min"],
            written[tier]["max"],
        )
    for path, text in before.items():
        after = path.read_text()
        assert comment_lines(after) == comment_lines(text), path.name
        changed = {line for line in after.splitlines() if line not in text.splitlines()}
        assert changed and all(re.search(r"(max|count|capacity_per_instance): \d", line) for line in changed)
        if path == auto_file:
            assert not any("max" in line for line in changed)
        listed = {f["path"]: f["diff"] for f in doc["changes"]["files"]}[str(path)]
        assert all(f"+{line}" in listed for line in changed)


def test_write_is_refused_when_the_stack_would_not_load(project: Path, calibrations: Path) -> None:
    """The dev stack holds quota 20-vms: today's peak of 900 requests/s needs 29 web instances, and
    the stack would refuse them; nothing is written."""
    before = (project / "Pulumi.dev.yaml").read_text()
    result = runner.invoke(
        app,
        [
            "plan",
            "--stack",
            "dev",
            "--project-dir",
            str(project),
            "--calibration",
            str(calibrations),
            "--peak",
            "web=900",
            "--write",
            "--out",
            str(project / "plan"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "would not load" in result.stderr and "swell:quota" in result.stderr
    assert (project / "Pulumi.dev.yaml").read_text() == before


@pytest.mark.parametrize("name", ["Pulumi.prod-gra11.yaml", "Pulumi.dev.yaml", "autoscaler.example.yaml"])
def test_an_edit_that_changes_nothing_leaves_the_file_byte_for_byte(project: Path, name: str) -> None:
    path = project / name
    if name.startswith("Pulumi."):
        stack = name.removeprefix("Pulumi.").removesuffix(".yaml")
        tiers = yaml.safe_load(path.read_text())["config"]["swell:tiers"]
        edit = stack_edit(path, stack, {t: {"count": v["count"], "max": v["max"]} for t, v in tiers.items()})
    else:
        tiers = yaml.safe_load(path.read_text())["tiers"]
        edit = autoscaler_edit(
            path, {t: {"capacity_per_instance": v["capacity_per_instance"]} for t, v in tiers.items()}
        )
    assert not edit.changed and edit.after == path.read_text()


def test_encrypted_values_do_not_stop_a_plan(project: Path, calibrations: Path) -> None:
    path = project / "Pulumi.prod-gra11.yaml"
    data = yaml.safe_load(path.read_text())
    data["config"]["swell:secrets"] = {"xmppBridgePassword": {"secure": "v1:AAAAAAAA"}}
    data["config"]["swell:tls"] = {
        "certificate": "x",
        "privateKey": {"secure": "v1:BBBB"},
        "hosts": data["config"]["swell:tls"]["hosts"],
    }
    path.write_text(yaml.safe_dump(data))
    doc = as_json(plan(project, calibrations, "--json"))
    assert any("swell:secrets holds encrypted values" in n for n in doc["notes"])
    assert any("swell:tls holds encrypted values" in n for n in doc["notes"])


@pytest.mark.parametrize(
    ("stack", "home", "region", "expected"),
    [
        ("prod-gra11", "GRA11", "SBG5", "prod-sbg5"),
        ("prod", "GRA11", "DE1", "prod-de1"),
        ("eu-GRA11", "GRA11", "UK1", "eu-uk1"),
    ],
)
def test_each_region_gets_a_stack_named_after_it(stack: str, home: str, region: str, expected: str) -> None:
    assert region_stack_name(stack, home, region) == expected


def test_an_autoscaler_max_of_its_own_follows_the_stacks_new_max(project: Path, calibrations: Path) -> None:
    """A tier that narrows the stack's limits with a max of its own gets the new max too: left at 30
    over a stack max of 27, the service would refuse to start."""
    auto = project / "autoscaler.example.yaml"
    data = yaml.safe_load(auto.read_text())
    data["tiers"]["web"]["max"] = 30
    auto.write_text(yaml.safe_dump(data))
    doc = as_json(plan(project, calibrations, "--json", "--write", "--autoscaler-config", str(auto)))
    new_max = doc["changes"]["stack"]["web"]["max"]
    assert new_max < 30
    web = load_config(auto).tiers["web"]
    assert web.max == new_max and web.limits((3, new_max)) == (3, new_max)
