"""The elasticity benchmark: `swell` against the baselines' cost frontier on the benchmark set,
billed as OVHcloud bills, and the simulator's speed. Prints the verdict per row and writes
docs/BENCHMARKS.md with the frontier pictures (docs/frontier/).

Run: `make bench-sim` (= `.venv/bin/python -m autoscaler.sim.bench --out docs/BENCHMARKS.md`).

The benchmark set: generated `daily`, `surge400`, `spike` and `bursty` traces (7 days, seeds 1 to
4), each with 5% and 15% noise, and the NASA-HTTP July 1995 trace (data/traces); each at lead
times 180 s and 600 s. `swell` was tuned on other seeds (offsets 100 and 200), never on these. The
generated rows run again on held-out seeds (offsets 300, 400, ..., `--held-out N`, 5 by default)
with a coarser sweep, to show how far one seed's verdict can be trusted.

Per row, hpa, keda and target-tracking run at every utilization target from 0.50 to 0.95 and
swell at every headroom (autoscaler/sim/frontier.py); swell's default point must have theta_U at
most A / 4 and cost at most 0.85 x B, with A the lowest baseline theta_U among the points that
cost no more than swell and B the lowest baseline cost among the points at least as safe. The
default-target verdict of issue 3 is kept beside it for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from autoscaler.sim import floor
from autoscaler.sim.engine import (
    DEFAULT_POLICIES,
    PolicyRun,
    Replay,
    SimParams,
    WarmPoolParams,
    resample,
    run_policy,
    simulate,
)
from autoscaler.sim.frontier import COST_RATIO, THETA_DIVISOR, run_frontier
from autoscaler.sim.generate import fast_surge, generate, spike_onsets
from autoscaler.sim.targets import judge
from autoscaler.sim.trace import Trace, read_trace

# The public trace ships with the project (data/traces/README.md: provenance and licence).
NASA = Path(__file__).resolve().parents[2] / "data" / "traces" / "nasa-http-1995-07.csv"
# `bursty`: request counts noisier than Poisson, with wander and short bursts, the regime where
# the baselines fall short on noise alone.
SEEDS = {"daily": 1, "surge400": 2, "spike": 3, "bursty": 4}
NOISES = (0.05, 0.15)
BURSTY_NOISE = 0.25  # tuning only (`--with-bursty`): a noisier bursty row
LEADS = (180.0, 600.0)
HELD_OUT_FIRST = 300  # seed offsets 300, 400, ...: after the benchmark's (0) and the tuning ones (100, 200)


@dataclass(frozen=True)
class Case:
    trace: str  # "daily", "surge400", "spike" or a file path
    noise: float
    lead: float

    @property
    def label(self) -> str:
        if self.trace in SEEDS:
            return f"{self.trace} {self.noise:.0%} noise"
        return Path(self.trace).stem


def load(case: Case, days: float, seed_offset: int) -> Trace:
    if case.trace in SEEDS:
        t, d = generate(case.trace, days=days, noise=case.noise, seed=SEEDS[case.trace] + seed_offset)
        return Trace(case.label, t, d)
    return read_trace(Path(case.trace))


def run_case(args: tuple[Case, float, int, dict[str, Any], bool]) -> dict[str, Any]:
    """One row: the frontier and its verdict; for a full row (not held-out) also every policy at
    its default (the reference verdict, the per-policy table, the spike floor)."""
    case, days, seed_offset, overrides, held_out = args
    trace = load(case, days, seed_offset)
    params = SimParams(
        capacity_per_instance=trace.median_demand() / 10,
        lead_time_s=case.lead,
        policy_overrides={"swell": overrides} if overrides else {},
    )
    replay = resample(trace, params)
    started = time.perf_counter()
    frontier = run_frontier(replay, params, coarse=held_out)
    row: dict[str, Any] = {
        "case": case,
        "frontier": frontier,
        "passed": frontier.verdict.passed,
        "ticks": len(replay.t),
    }
    if held_out:
        return row | {"seconds": time.perf_counter() - started}
    runs = {name: run_policy(name, replay, params) for name in DEFAULT_POLICIES}
    metrics = {name: run.metrics for name, run in runs.items()}
    verdict = judge(metrics)
    assert verdict is not None  # every policy ran
    keda_ih = metrics["keda"]["instance_hours"]
    fv = frontier.verdict
    spike = spike_floor(
        case, days, seed_offset, trace, replay, params, runs, fv.theta_limit, fv.b_instance_hours
    )
    reference = verdict.as_dict()  # best_name, best, regime, limits, ih_ratio, theta_ok, ih_ok, passed
    return row | {
        "metrics": metrics,
        "spike_floor": spike,
        "reference": reference,
        "oracle_ih_ratio": metrics["oracle"]["instance_hours"] / keda_ih,
        "seconds": time.perf_counter() - started,
    }


def spike_floor(
    case: Case,
    days: float,
    seed_offset: int,
    trace: Trace,
    replay: Replay,
    params: SimParams,
    runs: dict[str, PolicyRun],
    theta_limit: float,
    reference_ih: float,
) -> dict[str, float] | None:
    """For spike rows: how much of swell's and keda's theta_U falls in the blind windows, the floor
    at swell's standing margin, and what margin (and at least what cost, as a ratio to
    `reference_ih`: the instance-hours of the frontier's B point) the target needs
    (autoscaler/sim/floor.py)."""
    if case.trace != "spike":
        return None
    onsets = spike_onsets(days, SEEDS["spike"] + seed_offset)
    windows = floor.blind_windows(
        replay.t, replay.demand, trace.t, onsets, params.tick_s, params.metric_lag_s, params.lead_time_s
    )
    cap = params.capacity_per_instance
    out: dict[str, float] = {"spikes": float(len(windows))}
    for name in ("swell", "keda"):
        supply = runs[name].ready * cap
        out[f"{name}_in"] = floor.policy_theta_u_in(replay.demand, supply, windows)
        out[f"{name}_margin"] = floor.standing_margin(supply, windows)
    out["floor_at_swell_margin"] = floor.floor_theta_u(replay.demand, windows, out["swell_margin"])
    needed = floor.margin_needed(replay.demand, windows, theta_limit)
    out["margin_needed"] = needed
    least = floor.tracking_cost(replay.demand, cap, needed, params.tick_s)
    out["least_ih_ratio"] = least / reference_ih if reference_ih > 0 else float("inf")
    return out


# Surges faster than the daily shapes (issue 17): flat 20 minutes, then x5 within 5 minutes or x8
# within 10, held 2 hours (the spike shape holds 1-2 hours). Capacity: a tenth of the flat demand.
FAST_SURGES = ((5.0, 300.0), (8.0, 600.0))
FAST_SURGE_HOLD_S = 7200.0
FAST_SURGE_SEED = 5


def run_fast_surge(args: tuple[float, float, float, float]) -> dict[str, Any]:
    factor, rise_s, noise, lead = args
    t, d = fast_surge(factor, rise_s, hold_s=FAST_SURGE_HOLD_S, noise=noise, seed=FAST_SURGE_SEED)
    trace = Trace(f"x{factor:g} within {rise_s / 60:.0f} min, {noise:.0%} noise", t, d)
    params = SimParams(capacity_per_instance=100.0, lead_time_s=lead)
    _, runs = simulate(trace, params, ("swell", "keda", "oracle"))
    sw, keda = runs["swell"].metrics, runs["keda"].metrics
    return {
        "label": trace.name,
        "lead": lead,
        "swell_theta_u": sw["theta_u"],
        "keda_theta_u": keda["theta_u"],
        "ih_ratio": sw["instance_hours"] / keda["instance_hours"],
        "oracle_ih_ratio": runs["oracle"].metrics["instance_hours"] / keda["instance_hours"],
        "passed": sw["theta_u"] < keda["theta_u"] and sw["instance_hours"] <= keda["instance_hours"],
    }


def fast_surge_section(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "## Fast surges past x4",
        "",
        "Flat for 20 minutes, then x5 within 5 minutes or x8 within 10, held "
        f"{FAST_SURGE_HOLD_S / 3600:.0f} hours (`generate.fast_surge`,",
        f"seed {FAST_SURGE_SEED}; capacity per instance a tenth of the flat demand). The",
        "policies start cold: swell assumes 15% noise until it has measured it. Target: swell's theta_U",
        "below keda's at no more instance-hours.",
        "",
        "| surge | lead s | swell theta_U % | keda theta_U % | swell IH / keda | oracle IH / keda | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r["label"],
            f"{r['lead']:.0f}",
            f"{r['swell_theta_u']:.3f}",
            f"{r['keda_theta_u']:.3f}",
            f"{r['ih_ratio']:.3f}",
            f"{r['oracle_ih_ratio']:.3f}",
            "PASS" if r["passed"] else "FAIL",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    passed = sum(r["passed"] for r in rows)
    lines += ["", f"**{passed} of {len(rows)} fast-surge rows pass.**", ""]
    return lines


# Warm pools (issue 15): rows at the cold lead time of 600 s (create, boot, configure), unshelving
# in 120 s, shelved instances at 10% of the running price; swell and the AWS-like target-tracking
# baseline get a pool (autoscaler/sim/warm.py), hpa and keda do not (Kubernetes has none).
WARM_ROWS = (("spike", 0.05), ("spike", 0.15), ("daily", 0.15), ("nasa", 0.0))
WARM_LEAD = 600.0
SHELVED_PRICES = (0.0, 0.10, 0.25)


def run_warm_case(args: tuple[Case, float]) -> dict[str, Any]:
    """One row with warm pools: the coarse frontier and its verdict, what the pool recovers of the
    blind windows (spike rows), and swell's and the baseline's default points at every shelved price."""
    case, days = args
    trace = load(case, days, 0)
    cold = SimParams(capacity_per_instance=trace.median_demand() / 10, lead_time_s=case.lead)
    warm = replace(cold, warm_pool=WarmPoolParams())
    replay = resample(trace, cold)
    frontier = run_frontier(replay, warm, coarse=True)
    prices = {
        price: {
            name: run_policy(
                name, replay, replace(cold, warm_pool=WarmPoolParams(shelved_price_fraction=price))
            ).metrics
            for name in ("swell", "target-tracking")
        }
        for price in SHELVED_PRICES
    }
    recovered = None
    if case.trace == "spike":
        windows = floor.blind_windows(
            replay.t,
            replay.demand,
            trace.t,
            spike_onsets(days, SEEDS["spike"]),
            cold.tick_s,
            cold.metric_lag_s,
            cold.lead_time_s,
        )
        recovered = {}
        for name in ("swell", "target-tracking"):
            lost_cold = floor.policy_theta_u_in(
                replay.demand, run_policy(name, replay, cold).ready * cold.capacity_per_instance, windows
            )
            lost_warm = floor.policy_theta_u_in(
                replay.demand, run_policy(name, replay, warm).ready * cold.capacity_per_instance, windows
            )
            recovered[name] = {"cold": lost_cold, "warm": lost_warm}
    return {"case": case, "frontier": frontier, "prices": prices, "recovered": recovered}


def warm_section(rows: list[dict[str, Any]], cold_rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    cold_by = {(r["case"].label, r["case"].lead): r for r in cold_rows}
    lines = [
        "## Warm pools",
        "",
        f"Cold lead time {WARM_LEAD:.0f} s (create, boot, configure), warm 120 s (unshelve and boot: an",
        "assumption to measure on OVHcloud), shelved instances billed at 10% of the running price for every",
        "commenced hour they spend shelved (OVHcloud's price for a shelved instance is not confirmed: the",
        "second table shows 0%, 10% and 25%). swell sizes its pool from what it measured (the recent peak",
        "count and the fastest recent growth across the cold lead time: `warm_pool_target`); target-tracking",
        "keeps the pool AWS keeps by default (the group's maximum, here the count the trace's peak needs,",
        "minus the active count); hpa and keda have none. Judged against the frontier as above (targets",
        "0.5-0.9 in steps of 0.1), beside the same row without pools.",
        "",
        "| trace | swell theta_U % without -> with | swell EUR without -> with | A with pools | B with pools"
        " | swell / A | swell / B | result with pools | result without |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        v = r["frontier"].verdict
        cold = cold_by.get((r["case"].label, r["case"].lead))
        cv = cold["frontier"].verdict if cold else None
        cells = [
            r["case"].label,
            f"{cv.swell_theta_u:.4f} -> {v.swell_theta_u:.4f}" if cv else f"{v.swell_theta_u:.4f}",
            f"{cv.swell_cost:,.0f} -> {v.swell_cost:,.0f}" if cv else f"{v.swell_cost:,.0f}",
            f"{v.a:.4f} {v.a_point}",
            f"{v.b:,.0f} {v.b_point}",
            f"{v.theta_ratio:.3f}",
            f"{v.cost_ratio:.3f}",
            "PASS" if v.passed else "FAIL",
            ("PASS" if cv.passed else "FAIL") if cv else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Default points at each shelved price (theta_U %, EUR billed):",
        "",
        "| trace | policy | " + " | ".join(f"shelved at {p:.0%}" for p in SHELVED_PRICES) + " |",
        "|" + "---|" * (2 + len(SHELVED_PRICES)),
    ]
    for r in rows:
        for name in ("swell", "target-tracking"):
            cells = [r["case"].label, name + " + pool"]
            cells += [
                f"{r['prices'][p][name]['theta_u']:.4f}, {r['prices'][p][name]['cost_eur']:,.0f}"
                for p in SHELVED_PRICES
            ]
            lines.append("| " + " | ".join(cells) + " |")
    spikes = [r for r in rows if r["recovered"]]
    if spikes:
        lines += [
            "",
            "Spike rows, what the pool recovers of the blind-window loss (theta_U inside the blind windows,",
            "as in the spike-floor section; the windows of the cold lead time):",
            "",
            "| trace | policy | lost without pool | lost with pool | recovered |",
            "|---|---|---|---|---|",
        ]
        for r in spikes:
            for name, lost in r["recovered"].items():
                share = 1.0 - lost["warm"] / lost["cold"] if lost["cold"] > 0 else 0.0
                lines.append(
                    f"| {r['case'].label} | {name} | {lost['cold']:.4f} | {lost['warm']:.4f} | {share:.0%} |"
                )
    lines.append("")
    return lines


def speed_benchmark(workers: int) -> dict[str, float]:
    """A 30-day trace at 15 s ticks (172,800 ticks) through all seven policies."""
    t, d = generate("surge400", days=30, noise=0.1, seed=9)
    trace = Trace("speed", t, d)
    params = SimParams(capacity_per_instance=trace.median_demand() / 10)
    start = time.perf_counter()
    replay, _ = simulate(trace, params, DEFAULT_POLICIES, workers=workers)
    elapsed = time.perf_counter() - start
    return {"ticks": float(len(replay.t)), "seconds": elapsed, "workers": float(workers)}


def cases(nasa: Path, with_bursty: bool = False) -> list[Case]:
    out = [Case(shape, noise, lead) for shape in SEEDS for noise in NOISES for lead in LEADS]
    if with_bursty:
        out += [Case("bursty", BURSTY_NOISE, lead) for lead in LEADS]
    if nasa.exists():
        out += [Case(str(nasa), 0.0, lead) for lead in LEADS]
    return out


def fmt_row(r: dict[str, Any]) -> list[str]:
    """A row of the reference (default-target) table."""
    sw = r["metrics"]["swell"]
    ref = r["reference"]
    return [
        r["case"].label,
        f"{r['case'].lead:.0f}",
        f"{ref['best_name']} {ref['best']:.4f}",
        f"{sw['theta_u']:.4f}",
        f"<= {ref['theta_limit']:.4f}",
        f"{ref['ih_ratio']:.3f}",
        f"<= {ref['ih_limit']:.2f}",
        f"{r['oracle_ih_ratio']:.3f}",
        f"{sw['instance_hours'] / r['metrics']['oracle']['instance_hours']:.3f}",
        "PASS" if ref["passed"] else "FAIL",
    ]


HEADERS = [
    "trace",
    "lead s",
    "best baseline theta_U %",
    "swell theta_U %",
    "target",
    "swell IH / keda",
    "target",
    "oracle IH / keda",
    "swell IH / oracle",
    "result",
]

FRONTIER_HEADERS = [
    "trace",
    "lead s",
    "swell theta_U %",
    "A: best baseline theta_U % at no more cost",
    "swell / A (<= 0.25)",
    "swell EUR",
    "B: cheapest baseline EUR as safe",
    "swell / B (<= 0.85)",
    "retiring the newest instead: theta_U %, cost",
    "result",
]


def fmt_frontier_row(r: dict[str, Any]) -> list[str]:
    f = r["frontier"]
    v = f.verdict
    extra = f.swell_newest.cost_eur / f.swell_default.cost_eur - 1.0 if f.swell_default.cost_eur > 0 else 0.0
    theta_cell = f"{v.theta_ratio:.3f}" if v.a >= 0.01 else f"held to 0.01% ({v.swell_theta_u:.4f})"
    return [
        r["case"].label,
        f"{r['case'].lead:.0f}",
        f"{v.swell_theta_u:.4f}",
        f"{v.a:.4f} {v.a_point}",
        theta_cell,
        f"{v.swell_cost:,.0f}",
        f"{v.b:,.0f} {v.b_point}",
        f"{v.cost_ratio:.3f}",
        f"{f.swell_newest.theta_u:.4f}, {extra:+.1%}",
        "PASS" if v.passed else "FAIL",
    ]


def write_markdown(
    out: Path,
    results: list[dict[str, Any]],
    speed: dict[str, float],
    frontier_figures: list[Path],
    spike_figure: Path | None,
    held_out: list[dict[str, Any]] | None = None,
    fast_surges: list[dict[str, Any]] | None = None,
    total_s: float | None = None,
    warm_rows: list[dict[str, Any]] | None = None,
) -> None:
    lines = [
        "# Elasticity benchmark",
        "",
        "Produced by `make bench-sim` (`.venv/bin/python -m autoscaler.sim.bench --out docs/BENCHMARKS.md`);",
        "rerun it to refresh every figure here. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other work (timings are noisy).",
        "",
        "Set: generated `daily`, `surge400`, `spike` and `bursty` traces (7 days; seeds 1 to 4) with 5% and",
        "15% noise, and NASA-HTTP July 1995 (data/traces), at lead times 180 s and 600 s; tick 15 s, metric",
        "lag 30 s, capacity per instance = median demand / 10. `swell` was tuned on seed offsets 100 and",
        "200 (`--seed-offset`), never on these seeds or on the NASA file. theta_U in percent (SPEC).",
        "",
        "Billing as OVHcloud bills: every instance is billed for each commenced hour of its life",
        "(`autoscaler/core/billing.py`); EUR at the b3-16 price (0.10 EUR/h, January 2026). IH =",
        "instance-hours (the time instances existed, pending included), kept beside the bill. On a",
        "scale-down the baselines retire the newest instance at once (what the stack does today); swell",
        "retires the one nearest the end of its paid hour and keeps it serving until that hour ends (paid",
        "for: free headroom; a scale-up meanwhile takes it back instead of creating one). The last columns",
        "compare swell retiring the newest at once, as the baselines do.",
        "",
        "## Verdict against the cost frontier",
        "",
        "An SRE tunes a baseline's target, so swell's default is judged against each baseline at every",
        "utilization target from 0.50 to 0.95 (hpa, keda, target-tracking; `autoscaler/sim/frontier.py`):",
        "A = the lowest baseline theta_U among the points that cost no more than swell; B = the lowest",
        "baseline cost among the points whose theta_U is no higher than swell's. Targets: swell's theta_U",
        f"at most A / {THETA_DIVISOR:g} (held to 0.01% where A is below 0.01%), swell's cost at most "
        f"{COST_RATIO} x B.",
        "",
        "| " + " | ".join(FRONTIER_HEADERS) + " |",
        "|" + "---|" * len(FRONTIER_HEADERS),
    ]
    lines += ["| " + " | ".join(fmt_frontier_row(r)) + " |" for r in results]
    passed = sum(r["passed"] for r in results)
    lines += ["", f"**{passed} of {len(results)} rows pass against the frontier.**", ""]
    notes = [(r, r["frontier"].verdict.note) for r in results if r["frontier"].verdict.note]
    if notes:
        lines += ["Notes on the verdicts:", ""]
        lines += [f"- {r['case'].label}, lead {r['case'].lead:.0f} s: {note}." for r, note in notes]
        lines.append("")
    if frontier_figures:
        lines += [
            "Each trace's frontier (theta_U against the bill, one curve per policy, swell's default as a",
            "star, the oracle's point as the physical limit):",
            "",
        ]
        lines += [f"![{p.stem}](frontier/{p.name})" for p in frontier_figures]
        lines.append("")
    ref_passed = sum(r["reference"]["passed"] for r in results)
    lines += [
        "## For reference: the default-target verdict (issue 3)",
        "",
        "The earlier rule, each baseline at its default target (0.7) only: where the best of hpa, keda",
        "and target-tracking has theta_U >= 0.05%, swell's theta_U at most 1/4 of it with IH at most 1.05",
        "x keda's; elsewhere theta_U at most 0.01% with IH at most 0.92 x keda's. Kept to compare runs.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(fmt_row(r)) + " |" for r in results]
    lines += [
        "",
        f"{ref_passed} of {len(results)} rows pass the reference rule.",
        "",
        "## All policies per row, at their defaults",
        "",
        "| trace | lead s | policy | theta_U % | theta_O % | tau_U % | IH | billed h | actions"
        " | reaction s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, m in r["metrics"].items():
            cells = [
                r["case"].label,
                f"{r['case'].lead:.0f}",
                name,
                f"{m['theta_u']:.4f}",
                f"{m['theta_o']:.1f}",
                f"{m['tau_u']:.2f}",
                f"{m['instance_hours']:.0f}",
                f"{m['billed_hours']:.0f}",
                str(m["actions"]),
                f"{m['reaction_time_s']:.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Speed",
        "",
        f"A 30-day trace at 15 s ticks ({speed['ticks']:.0f} ticks) through all seven policies: "
        f"**{speed['seconds']:.2f} s** with {speed['workers']:.0f} worker processes, best of three runs",
        "(target: at most 10 s on 2 cores).",
    ]
    if total_s is not None:
        lines.append(
            f"The whole benchmark (frontiers of every row and of the held-out seeds, the speed run, the "
            f"pictures): **{total_s:.0f} s** with {speed['workers']:.0f} workers (target: at most 300 s)."
        )
    lines.append("")
    lines += held_out_section(held_out or [])
    lines += fast_surge_section(fast_surges or [])
    lines += warm_section(warm_rows or [], results)
    lines += analysis(results)
    if spike_figure is not None:
        lines += [
            "One spike (x4 within 10 minutes), 5% noise, lead time 600 s: demand, requested and ready",
            "supply.",
            "",
            f"![one spike]({spike_figure.name})",
            "",
        ]
    lines += TUNING_LOG
    out.write_text("\n".join(lines))


def analysis(results: list[dict[str, Any]]) -> list[str]:
    """By how much each failing row misses against the frontier, and what limits it."""
    lines = ["## Where swell misses, and by how much", ""]
    for r in results:
        if r["passed"]:
            continue
        v = r["frontier"].verdict
        parts = []
        if not v.theta_ok:
            parts.append(
                f"theta_U {v.swell_theta_u:.4f}% is {v.swell_theta_u / v.theta_limit:.1f}x its limit "
                f"({v.theta_limit:.4f}% = A / {THETA_DIVISOR:g}, A from {v.a_point})"
            )
        if not v.cost_ok:
            parts.append(
                f"cost {v.cost_ratio:.3f} x B ({v.b_point}), {100 * (v.cost_ratio - COST_RATIO):.1f} points "
                f"over {COST_RATIO}"
            )
            o = r["frontier"].oracle
            # The oracle's instance-hours at the hourly price: a clairvoyant tracker with no headroom
            # and no rounding up of hours. What the cost target leaves above it is all the headroom
            # any causal policy gets against this row's noise and lead time.
            clairvoyant = o.cost_eur * o.instance_hours / o.billed_hours if o.billed_hours else 0.0
            if v.b > 0:
                parts.append(
                    f"a clairvoyant tracker's instance-hours alone cost {clairvoyant / v.b:.3f} x B, so the "
                    f"target leaves {COST_RATIO * v.b / clairvoyant - 1:.0%} above it for headroom "
                    "and billing"
                )
        why = ""
        if r.get("spike_floor"):
            f = r["spike_floor"]
            share = f["swell_in"] / v.swell_theta_u if v.swell_theta_u > 0 else 0.0
            why = (
                f" Limited by the blind windows: {share:.0%} of swell's theta_U falls before any instance "
                f"ordered on a spike's first sample can be ready (section below)."
            )
        lines.append(f"- {r['case'].label}, lead {r['case'].lead:.0f} s: " + "; ".join(parts) + "." + why)
    if all(r["passed"] for r in results):
        lines.append("Every row passes.")
    ratios = [r["metrics"]["swell"]["billed_hours"] / r["metrics"]["oracle"]["billed_hours"] for r in results]
    ih_ratios = [
        r["metrics"]["swell"]["instance_hours"] / r["metrics"]["oracle"]["instance_hours"] for r in results
    ]
    lines += [
        "",
        "## How close swell comes to the oracle",
        "",
        "The oracle knows the peak demand of the coming lead time, so it under-provisions only before",
        "its first instances are ready. swell's instance-hours are "
        f"{min(ih_ratios):.2f}x to {max(ih_ratios):.2f}x the oracle's;",
        f"its bill is {min(ratios):.2f}x to {max(ratios):.2f}x the oracle's, which follows every wiggle of",
        "the future peak and pays a commenced hour for each: the oracle bounds theta_U and",
        "instance-hours, not the bill.",
        "",
    ]
    lines += spike_section(results)
    return lines


def held_out_section(held_out: list[dict[str, Any]]) -> list[str]:
    """Frontier verdicts of the generated rows over seeds nobody tuned on (a coarser sweep: targets
    0.5 to 0.9 in steps of 0.1): how much one seed's verdict can be trusted."""
    if not held_out:
        return []
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in held_out:
        groups.setdefault((r["case"].label, r["case"].lead), []).append(r)
    n = len(next(iter(groups.values())))
    lines = [
        "## Held-out seeds",
        "",
        f"The generated rows again on {n} seeds nobody tuned on (`--held-out {n}`: seed offsets "
        f"{HELD_OUT_FIRST} to {HELD_OUT_FIRST + 100 * (n - 1)}), each judged against its own frontier, swept",
        "coarser (targets 0.5, 0.6, 0.7, 0.8, 0.9). Worst = the largest ratio of swell's figure to its",
        "limit over those seeds (above 1 fails).",
        "",
        "| row | lead s | pass | worst theta_U / limit | worst cost / limit |",
        "|---|---|---|---|---|",
    ]
    for (label, lead), rs in groups.items():
        verdicts = [r["frontier"].verdict for r in rs]
        passed = sum(v.passed for v in verdicts)
        worst_theta = max(v.swell_theta_u / v.theta_limit for v in verdicts)
        worst_cost = max(v.swell_cost / v.cost_limit for v in verdicts)
        lines.append(
            f"| {label} | {lead:.0f} | {passed} of {len(rs)} | {worst_theta:.2f} | {worst_cost:.3f} |"
        )
    total = sum(r["passed"] for r in held_out)
    lines += ["", f"**{total} of {len(held_out)} held-out rows pass against their frontier.**", ""]
    return lines


def spike_section(results: list[dict[str, Any]]) -> list[str]:
    """The blind-window floor of every spike row, from autoscaler/sim/floor.py."""
    rows = [r for r in results if r.get("spike_floor")]
    if not rows:
        return []
    lines = [
        "## Spike rows: the blind-window floor",
        "",
        "A spike starts between two samples. From the first sample that shows it until an instance",
        "ordered on that sample can be ready (metric lag 30 s + lead time) no policy that cannot see",
        "the future has more than it requested before: its standing supply. With that supply at m x",
        "the demand of the 15 minutes before the spike, the theta_U inside those blind windows is at",
        "least floor(m) (`autoscaler/sim/floor.py`; perfect detection at the first sample assumed).",
        "The table inverts it: the standing margin the row's theta_U target (against the frontier)",
        "needs from the windows alone, and the least that margin costs: a tracker that knows the",
        "15-minute demand level exactly, has no lead time, and keeps ceil(margin x level / capacity)",
        "instances at all times, in instance-hours over those of the frontier's B point. A policy that",
        f"does not know when spikes come must hold the margin whenever one may start, so above {COST_RATIO}",
        "no such policy meets the row's cost target.",
        "",
        "| row | lead s | target theta_U % | swell theta_U % | of it in blind windows"
        " | floor at swell's margin | swell margin | keda margin | margin the target needs"
        " | least IH at that margin / B's | verdict |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        f = r["spike_floor"]
        v = r["frontier"].verdict
        if f["least_ih_ratio"] > COST_RATIO:
            verdict = f"out of reach: {f['least_ih_ratio']:.2f} > {COST_RATIO}"
        else:
            verdict = "not ruled out by the floor"
        cells = [
            r["case"].label,
            f"{r['case'].lead:.0f}",
            f"{v.theta_limit:.4f}",
            f"{v.swell_theta_u:.4f}",
            f"{f['swell_in']:.4f}",
            f"{f['floor_at_swell_margin']:.4f}",
            f"{f['swell_margin']:.2f}",
            f"{f['keda_margin']:.2f}",
            f"{f['margin_needed']:.2f}",
            f"{f['least_ih_ratio']:.3f}",
            verdict,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Reading it: swell's theta_U inside the windows sits at the floor of its own margin, so",
        "nothing it does after the first sample can lower that part; only capacity standing before",
        "the spike can, and the last columns price that capacity.",
        "Spikes that can be known in advance (a launch, an all-hands) are what `swell surge --factor 4",
        "--for 2h` is for: an override floor set before the event.",
        "",
    ]
    return lines


# What was tried, and measured, when each change was made: on the tuning seeds only.
TUNING_LOG = [
    "## Tuning log",
    "",
    "Measured when each change was made, on the tuning traces only (seeds 101-104 and 201-204);",
    "the figures above are this run's.",
    "",
    "- **Forecast never below the level; caps that follow a surge past x4** (issue 17, 2026-11-30;",
    "  a defect fix, measured on fast-surge traces with seeds 1-3, the row above uses seed 5, and on",
    "  the benchmark set). The trend, ramp and slow-trend projections were capped at x4 the 30-minute",
    "  EWMA, which lags a fast rise: the cap fell below the level and the recommendation collapsed",
    "  (in the drill: forecast 5.5 at level 40.7). Now the forecast is at least the level, and the",
    "  latest sample while a surge is open; the cap is max(x4 the 30-minute EWMA, the level). Tried",
    "  and left: the cap at x4 the level (what the issue suggested): theta_U no better, instance-hours",
    "  +4-19% against keda on 2-hour fast surges (x2.5 the plateau at lead 600 s: a linear ramp",
    "  projected 10 minutes past its end); x2 and x3 the level in between, +1-8%. With it: the",
    "  30-minute EWMA is a weighted mean of the samples seen so far (a cold first sample no longer",
    "  stands for the half hour), the volatility skips samples above the fast EWMA while an episode",
    "  is open (a surge's ramp had kept its headroom inflated for half an hour: without this, 4 of",
    "  the 8 fast-surge rows cost 0.7-2.0% more than keda), and no scale-down while demand rises",
    "  (sample > fast > level > slow; the looser sample > level and fast > slow cost NASA 180 s",
    "  +0.6 points of instance-hours, this one +0.1). Benchmark set against the previous run: daily",
    "  and surge400 rows within 0.1 point of IH and 0.0004 of theta_U; spike rows IH -0.3 to -1.3",
    "  points, theta_U equal or lower; NASA theta_U 0.123 -> 0.120 (180 s) and 0.230 -> 0.224",
    "  (600 s) for IH +0.3 and +0.4 points (180 s now 1.050: over its 1.05 cap by less than 0.1 point).",
    "- **Ramp projection** (`ramp_projection`, `ramp_min_s` 60): a surge still far above the level",
    "  a minute or more into its episode is projected linearly from the level the episode started",
    "  at across the horizon. The fast/slow EWMAs took 2-4 minutes to see a x4-in-10-minutes ramp,",
    "  so after the first x2 the second step (x4) came a sample or two late. Spike 5%/180 s on the",
    "  tuning seeds: theta_U 4.86 -> 4.55 x its target (seed 103), 5.13 -> 4.86 (seed 203); every",
    "  other row within 0.1 point of IH. Benchmark set: spike 5% theta_U 0.0803 -> 0.0771 (180 s),",
    "  0.3765 -> 0.3727 (600 s).",
    "- **Release of refuted episodes** (`release_refuted`, `release_band_sigmas` 1.5): when the",
    "  fast trend or a jump fired and demand then falls back (the last sample and the fast EWMA",
    "  within 1.5 sigmas of the level the episode started from), the episode's hold ends and its",
    "  recommendations leave the stabilization window. A burst of a few minutes used to buy x2",
    "  (or x4) and keep it for a whole 10-minute window; now most of it is cancelled while still",
    "  pending. A real surge keeps demand above the band and is never released.",
    "- **Slow-trend threshold** (`slow_trend_z` 5, was the shared `trend_z` 2): the slow trend's",
    "  noise figure assumes independent samples, but real demand wanders for tens of minutes, and",
    "  at 2 the slow trend projected that wander across a 10-minute lead time.",
    "",
    "Those two took the `bursty` tuning shape (daily curve at ~30-55 requests/minute, overdispersed",
    "counts, wander, ~4 short bursts a day) from 0 to 3 of 4 rows passing (IH 1.09-1.16 x keda",
    "before, 1.03-1.05 after) and NASA at 180 s from 1.093 to 1.046 x keda.",
    "",
    "Tried and left: `jump_z` 3 or 3.5 (faster on 15% spikes by a few percent, but bursty and NASA",
    "rows over the cost cap) and 5 (spike 15% theta_U nearly doubled); `trend_z` 3.5; a robust",
    "(mean-absolute) volatility estimate; shorter stabilization (480 s: cheaper, theta_U +13-22%);",
    "the daily profile smoothed over 45 minutes, or its ratio discounted by its own noise (seasonal",
    "pre-scaling is what keeps the 15%-noise, 600 s rows under 0.01%: both made them fail);",
    "`max_headroom` 0.8 (NASA at 600 s passes, but bursty and NASA at 180 s fail on theta_U);",
    "`season_weight` 0.2 or 0.15, a smoother daily profile (NASA at 600 s 1.073 -> 1.068 x keda, not",
    "enough) and 0.5; seasonal pre-scaling only where the profile rose on most past days (NASA at",
    "600 s 1.066, and the 15%-noise 600 s rows failed); `surge_ratio` 1.15 (5%-noise spikes a little",
    "faster, but x2 for a +15% step);",
    "+60% headroom held for a day after each surge (`surge_memory_headroom` 0.6: spike 5%/180 s",
    "theta_U 0.039% for 1.26 x keda's IH). They are all points on one theta_U/cost frontier.",
    "",
    "NASA at 600 s misses on cost, not safety: its per-minute counts are far noisier than Poisson",
    "(relative sd 0.26-0.46 around a 15-minute mean), so a headroom proportional to volatility is",
    "larger than keda's flat 43%, and seasonal pre-scaling and projections across a 10-minute",
    "horizon add more. swell's theta_U there is about 1/7 of keda's; the last 2 points of IH could",
    "be traded for theta_U, but not chosen by this one file. Worth checking on the team's real",
    "traces.",
    "",
]


def frontier_figures(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per trace, a panel per lead time: docs/frontier/<trace>.png."""
    from autoscaler.sim.plot import plot_frontiers

    by_trace: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_trace.setdefault(r["case"].label, []).append(r)
    paths = []
    for label, rows in by_trace.items():
        panels = [(f"lead time {r['case'].lead:.0f} s", r["frontier"]) for r in rows]
        name = label.replace(" ", "-").replace("%", "pct")
        paths.append(plot_frontiers(panels, out_dir / f"{name}.png", f"{label}: theta_U against the bill"))
    return paths


def spike_plot(out: Path) -> Path:
    """The first spike of the benchmark's spike trace, swell against keda and the oracle."""
    from autoscaler.sim.plot import plot_runs

    t, d = generate("spike", days=1, noise=0.05, seed=SEEDS["spike"])
    trace = Trace("spike", t, d)
    params = SimParams(capacity_per_instance=trace.median_demand() / 10, lead_time_s=600.0)
    replay, runs = simulate(trace, params, ("swell", "keda", "oracle"))
    ratio = np.diff(np.log(np.maximum(replay.demand, 1e-9)), n=40)
    onset_h = float((replay.t[int(np.nanargmax(ratio))] - replay.t[0]) / 3600.0)
    window = (onset_h - 0.5, onset_h + 1.5)
    return plot_runs(
        replay, runs, params.capacity_per_instance, out, "spike, 5% noise, lead time 600 s", window
    )


def run_cases(
    jobs: list[tuple[Case, float, int, dict[str, Any], bool]], label: str, workers: int
) -> list[dict[str, Any]]:
    """`run_case` over the jobs on `workers` processes, in order, with a progress bar."""
    results: list[dict[str, Any]] = []
    with Progress(transient=True) as progress, ProcessPoolExecutor(max_workers=workers) as pool:
        task = progress.add_task(label, total=len(jobs))
        for r in pool.map(run_case, jobs):
            results.append(r)
            progress.advance(task)
    return results


def print_results(
    console: Console,
    results: list[dict[str, Any]],
    held_out: list[dict[str, Any]],
    fast_surges: list[dict[str, Any]],
) -> None:
    table = Table(title="swell against the cost frontier (theta_U in %, cost in EUR billed)")
    for h in FRONTIER_HEADERS:
        table.add_column(h, justify="left" if h == "trace" else "right")
    for r in results:
        row = fmt_frontier_row(r)
        row[-1] = "[green]PASS[/]" if row[-1] == "PASS" else "[red]FAIL[/]"
        table.add_row(*row)
    console.print(table)
    passed = sum(r["passed"] for r in results)
    reference = sum(r["reference"]["passed"] for r in results)
    console.print(
        f"{passed} of {len(results)} rows pass against the frontier ({reference} under the reference rule)"
    )
    if held_out:
        ok = sum(r["passed"] for r in held_out)
        console.print(f"held-out seeds: {ok} of {len(held_out)} generated rows pass against their frontier")
    for fs in fast_surges:
        console.print(
            f"fast surge {fs['label']}, lead {fs['lead']:.0f} s: theta_U {fs['swell_theta_u']:.3f}% "
            f"(keda {fs['keda_theta_u']:.3f}%), IH {fs['ih_ratio']:.3f} x keda: "
            + ("PASS" if fs["passed"] else "FAIL")
        )


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write the results as Markdown (and the pictures beside it)")
    ap.add_argument("--days", type=float, default=7.0, help="length of the generated traces")
    ap.add_argument("--seed-offset", type=int, default=0, help="tuning: shift the seeds (e.g. 100)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--nasa", type=Path, default=NASA)
    ap.add_argument("--no-speed", action="store_true", help="skip the 30-day speed run")
    ap.add_argument(
        "--swell-params", default="{}", help='tuning: JSON of SwellParams fields, e.g. {"headroom_sigmas": 2}'
    )
    ap.add_argument(
        "--only", default="", help="tuning: comma-separated trace names (daily,surge400,spike,bursty,nasa)"
    )
    ap.add_argument(
        "--held-out",
        type=int,
        default=5,
        help="also run the generated rows on this many more seeds (offsets 300, 400, ...), never tuned on",
    )
    ap.add_argument(
        "--with-bursty", action="store_true", help=f"tuning: add bursty rows at {BURSTY_NOISE:.0%} noise"
    )
    args = ap.parse_args(argv)
    overrides = json.loads(args.swell_params)
    speed = {"ticks": 0.0, "seconds": float("nan"), "workers": float(args.workers)}
    if not args.no_speed:
        # First, before the set loads the machine; best of three, as timings on shared cores are noisy.
        runs = [speed_benchmark(args.workers) for _ in range(3)]
        speed = min(runs, key=lambda r: r["seconds"])
    todo = cases(args.nasa, args.with_bursty)
    if args.only:
        wanted = args.only.split(",")
        todo = [c for c in todo if c.trace in wanted or ("nasa" in wanted and c.trace not in SEEDS)]
    results = run_cases(
        [(c, args.days, args.seed_offset, overrides, False) for c in todo], "benchmark set", args.workers
    )
    generated_todo = [c for c in todo if c.trace in SEEDS and c.noise in NOISES]
    held_out: list[dict[str, Any]] = []
    if args.held_out > 0 and generated_todo:
        jobs = [
            (c, args.days, HELD_OUT_FIRST + 100 * k, overrides, True)
            for k in range(args.held_out)
            for c in generated_todo
        ]
        held_out = run_cases(jobs, f"held-out seeds (x{args.held_out})", args.workers)
    fast = [(factor, rise, noise, lead) for factor, rise in FAST_SURGES for noise in NOISES for lead in LEADS]
    with Progress(transient=True) as progress, ProcessPoolExecutor(max_workers=args.workers) as pool:
        task = progress.add_task("fast surges", total=len(fast))
        fast_surges: list[dict[str, Any]] = []
        for surge_row in pool.map(run_fast_surge, fast):
            fast_surges.append(surge_row)
            progress.advance(task)
    warm_jobs = [
        (c, args.days)
        for c in todo
        if (c.lead == WARM_LEAD and c.noise in NOISES and (c.trace, c.noise) in WARM_ROWS)
        or (c.lead == WARM_LEAD and c.trace not in SEEDS and ("nasa", 0.0) in WARM_ROWS)
    ]
    warm_rows: list[dict[str, Any]] = []
    if warm_jobs:
        with Progress(transient=True) as progress, ProcessPoolExecutor(max_workers=args.workers) as pool:
            task = progress.add_task("warm pools", total=len(warm_jobs))
            for warm_row in pool.map(run_warm_case, warm_jobs):
                warm_rows.append(warm_row)
                progress.advance(task)
    console = Console(width=max(Console().width, 200))
    print_results(console, results, held_out, fast_surges)
    for wr in warm_rows:
        console.print(
            f"warm pools, {wr['case'].label}, cold lead {wr['case'].lead:.0f} s: "
            + wr["frontier"].verdict.describe()
        )
    if not args.no_speed:
        verdict = "PASS" if speed["seconds"] <= 10 else "FAIL"
        console.print(
            f"speed: {speed['ticks']:.0f} ticks x 7 policies in {speed['seconds']:.2f} s "
            f"({args.workers} workers; target <= 10 s): {verdict}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figures = frontier_figures(results, args.out.parent / "frontier")
        spike_figure = spike_plot(args.out.with_name("benchmarks-spike.png"))
        total = time.perf_counter() - started
        write_markdown(
            args.out, results, speed, figures, spike_figure, held_out, fast_surges, total, warm_rows
        )
        console.print(
            f"wrote {args.out}, {len(figures)} frontier pictures in {figures[0].parent} and {spike_figure}"
        )
    total = time.perf_counter() - started
    console.print(f"the whole benchmark: {total:.0f} s ({args.workers} workers; target <= 300 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
