"""The `swell simulate` and `swell trace generate` commands (wired in swell/cli.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from autoscaler.sim.engine import (
    DEFAULT_POLICIES,
    DEFAULT_PRICE_PER_HOUR,
    SimParams,
    WarmPoolParams,
    check_size,
    resample,
    simulate,
)
from autoscaler.sim.frontier import Frontier, run_frontier
from autoscaler.sim.metrics import rounded
from autoscaler.sim.params import ParamError, parse_params
from autoscaler.sim.targets import judge
from autoscaler.sim.trace import TraceError, read_trace, write_trace


def simulate_command(
    trace_path: Path,
    policies: str,
    tick: float,
    lead_time: float,
    capacity_per_instance: float | None,
    metric_lag: float,
    min_instances: int,
    max_instances: int,
    price: float,
    plot: Path | None,
    as_json: bool,
    param: list[str] | None = None,
    frontier: bool = False,
    billing_granularity: float = 3600.0,
    swell_retirement: str = "hour-end",
    warm_pool: tuple[float, float] | None = None,
) -> None:
    err = Console(stderr=True, soft_wrap=True)  # an error message stays one line, whatever the terminal
    try:
        overrides = parse_params(param or [])
    except ParamError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    names = tuple(p.strip() for p in policies.split(",") if p.strip())
    unknown = [p for p in names if p not in DEFAULT_POLICIES]
    if unknown or not names:
        err.print(f"error: --policies: unknown {unknown}; expected some of {','.join(DEFAULT_POLICIES)}")
        raise typer.Exit(2)
    try:
        trace = read_trace(trace_path)
    except TraceError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    cap = capacity_per_instance if capacity_per_instance is not None else trace.median_demand() / 10
    if not (cap > 0 and math.isfinite(cap)):
        err.print("error: --capacity-per-instance: the trace's median demand is 0; give a capacity > 0")
        raise typer.Exit(2)
    try:
        params = SimParams(
            capacity_per_instance=cap,
            tick_s=tick,
            lead_time_s=lead_time,
            metric_lag_s=metric_lag,
            min_instances=min_instances,
            max_instances=max_instances,
            price_per_hour=price,
            policy_overrides=overrides,
            billing_granularity_s=billing_granularity,
            retirement={"swell": swell_retirement},
            warm_pool=None if warm_pool is None else WarmPoolParams(*warm_pool),
        )
        check_size(trace, params)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if frontier:
        _frontier(trace_path, trace.name, params, resample(trace, params), plot, as_json, overrides)
        return
    workers = 2 if len(trace) * len(names) > 200_000 else 1
    replay, runs = simulate(trace, params, names, workers=workers)
    if plot is not None:
        from autoscaler.sim.plot import plot_runs

        plot_runs(replay, runs, cap, plot, f"{trace.name}: lead time {lead_time:.0f} s, tick {tick:.0f} s")
    verdict = judge({name: run.metrics for name, run in runs.items()})
    if as_json:
        doc = {
            "trace": str(trace_path),
            "params": params.as_dict() | {"ticks": len(replay.t)},
            "policy_params": overrides,
            "policies": {name: rounded(run.metrics) for name, run in runs.items()},
            # The benchmark's targets on this trace (null unless swell, keda, hpa and
            # target-tracking all ran): docs/BENCHMARKS.md.
            "targets": verdict.as_dict() if verdict else None,
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    table = Table(title=f"{trace.name}: {len(replay.t)} ticks of {tick:.0f} s, lead time {lead_time:.0f} s")
    cols: list[tuple[str, str]] = [
        ("policy", "policy"),
        ("theta_U %", "theta_u"),
        ("theta_O %", "theta_o"),
        ("tau_U %", "tau_u"),
        ("tau_O %", "tau_o"),
        ("instab. %", "instability"),
        ("jitter /h", "jitter"),
        ("inst-h", "instance_hours"),
        ("EUR", "cost_eur"),
        ("unserved", "unserved_fraction"),
        ("SLO min", "slo_violation_minutes"),
        ("actions", "actions"),
        ("reaction s", "reaction_time_s"),
    ]
    for title, _ in cols:
        table.add_column(title, justify="left" if title == "policy" else "right")
    for name, run in runs.items():
        m = run.metrics
        cells = [name]
        for _, key in cols[1:]:
            v = m[key]
            cells.append(
                f"{v:.4f}"
                if key in ("theta_u", "unserved_fraction")
                else f"{v:,.2f}"
                if isinstance(v, float)
                else str(v)
            )
        table.add_row(*cells)
    console = Console()
    # Thirteen columns: wider than 80, narrower than any terminal a table like this is read in.
    Console(width=max(console.width, 150)).print(table)
    Console().print(
        f"capacity per instance {cap:g}, price {price:g} EUR/h (default b3-16 {DEFAULT_PRICE_PER_HOUR})"
    )
    if verdict is not None:
        Console().print(f"targets (docs/BENCHMARKS.md): {verdict.describe()}", highlight=False)
    if plot is not None:
        Console().print(f"plot: {plot}")


def _frontier(
    trace_path: Path,
    name: str,
    params: SimParams,
    replay: Any,
    plot: Path | None,
    as_json: bool,
    overrides: dict[str, dict[str, Any]],
) -> None:
    """`--frontier`: the sweep, the verdict against it, and the picture."""
    with Progress(transient=True, console=Console(stderr=True)) as progress:
        progress.add_task("frontier: every baseline at every target, swell at every headroom", total=None)
        result: Frontier = run_frontier(replay, params, workers=2)
    if plot is not None:
        from autoscaler.sim.plot import plot_frontier

        plot_frontier(result, plot, f"{name}, lead time {params.lead_time_s:.0f} s")
    if as_json:
        doc = {"trace": str(trace_path), "params": params.as_dict(), "policy_params": overrides}
        typer.echo(json.dumps(doc | result.as_dict(), indent=2))
        return
    table = Table(title=f"{name}: the cost frontier, lead time {params.lead_time_s:.0f} s")
    for col in ("policy", "setting", "theta_U %", "theta_O %", "inst-h", "billed h", "EUR", "actions"):
        table.add_column(col, justify="left" if col in ("policy", "setting") else "right")
    rows = [p for pts in result.points.values() for p in pts]
    rows += [result.swell_default, result.swell_newest, result.oracle]
    labels = ["" for _ in rows[:-3]] + [" (default)", " (default, retiring the newest)", ""]
    for p, extra in zip(rows, labels, strict=True):
        setting = ", ".join(f"{k} {v:g}" for k, v in p.params.items()) or "defaults"
        table.add_row(
            p.policy + extra,
            setting,
            f"{p.theta_u:.4f}",
            f"{p.theta_o:.1f}",
            f"{p.instance_hours:,.0f}",
            f"{p.billed_hours:,.0f}",
            f"{p.cost_eur:,.2f}",
            str(p.actions),
        )
    Console(width=max(Console().width, 120)).print(table)
    Console().print(f"verdict: {result.verdict.describe()}", highlight=False, markup=False)
    if plot is not None:
        Console().print(f"plot: {plot}")


def generate_command(shape: str, days: float, noise: float, seed: int, out: Path) -> None:
    from autoscaler.sim.generate import generate

    try:
        t, demand = generate(shape, days=days, noise=noise, seed=seed)
    except ValueError as exc:
        Console(stderr=True).print(f"error: {exc}")
        raise typer.Exit(2) from None
    write_trace(out, t, demand)
    typer.echo(f"wrote {out}: {len(t)} rows, {shape}, {days:g} days, noise {noise:g}, seed {seed}")
