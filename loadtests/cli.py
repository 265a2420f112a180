"""`swell drill`: options, live progress with rich, the report files, and the exit code
(0: the SLO held; 1: it broke; 2: bad options; 3: the drill could not run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from loadtests.drill import Drill, DrillError
from loadtests.faults import Fault
from loadtests.options import DrillOptions
from loadtests.report import build_report, write_report

EXIT_HELD, EXIT_BROKEN, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


def _view(snap: dict[str, Any]) -> Table:
    table = Table(title="swell drill", title_justify="left", show_header=True)
    if snap.get("phase") != "load":
        table.add_column("phase")
        table.add_row(str(snap.get("phase")))
        return table
    tiers = snap["tiers"]
    # One column per tier the drill runs (the catalog's, in its order).
    for col in ("t", "users", "req/s", "p95 ms", "errors", "CPU", *tiers):
        table.add_column(col, justify="right")

    def tier_cell(name: str) -> str:
        t = tiers[name]
        demand = "-" if t["demand"] is None else f"{t['demand']:.0f}"
        warm = f" w={t['warm']}" if t.get("warm") else ""
        return f"{t['ready']}/{t['requested']} d={demand}{warm}"

    p95 = snap["p95_ms"]
    table.add_row(
        f"{snap['t']:.0f}/{snap['load_s']:.0f} s",
        str(snap["users"]),
        f"{snap['rate']:.0f}",
        "-" if p95 is None else f"{p95:.0f}",
        f"{snap['errors']:.1%}",
        f"{snap['cpu']:.0f}%",
        *(tier_cell(name) for name in tiers),
    )
    table.caption = f"instances ready/requested, d = demand, w = warm pool; last action: {snap['decision']}"[
        :200
    ]
    return table


def drill_command(
    profile: str,
    speed: float | None,
    no_autoscale: bool,
    faults: list[str],
    out: Path,
    as_json: bool,
    base_users: int,
    warm_pool: bool = True,
    memory: bool = True,
) -> None:
    err = Console(stderr=True)
    try:
        options = DrillOptions(
            out=out,
            profile=profile,
            speed=speed,
            autoscale=not no_autoscale,
            faults=tuple(Fault.parse(f) for f in faults),
            base_users=base_users,
            warm_pool=warm_pool,
            memory=memory,
        )
        options.validate()
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    with Live(_view({"phase": "starting"}), console=err, refresh_per_second=2, transient=False) as live:
        drill = Drill(options, progress=lambda snap: live.update(_view(snap)))
        try:
            report = build_report(drill.run())
        except (DrillError, RuntimeError, OSError) as exc:
            # A part that did not start (HAProxy, Prometheus, an instance) or Locust gone wrong:
            # everything started is already stopped by Drill.run.
            err.print(f"[red]drill failed:[/red] {exc}")
            raise typer.Exit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted: everything the drill started is stopped[/yellow]")
            raise typer.Exit(130) from None
    paths = write_report(report, out)
    slo = report["slo"]
    if as_json:
        typer.echo(json.dumps(report, default=str))
    else:
        console = Console()
        console.print(paths["md"].read_text())
        console.print(f"report: {paths['json']}, {paths['md']}, {paths['png']}")
    verdict = "[green]held[/green]" if slo["held"] else "[red]broken[/red]"
    err.print(
        f"SLO {verdict}: p95 {slo['p95_ms']} ms, errors {slo['error_rate']:.2%}; "
        f"sessions cut by scale-down: {slo['dropped_sessions']}; "
        f"warm pool {'on' if options.warm_pool else 'off'}"
    )
    raise typer.Exit(EXIT_HELD if slo["held"] else EXIT_BROKEN)
