"""`swell calibrate`: options, live progress with rich, the output files, and the exit code
(0: knee found; 1: no knee between the steps (the SLO held everywhere or broke at once);
2: bad option; 3: the calibration could not run; 130: interrupted)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from loadtests.calibrate import (
    CalibrateOptions,
    Calibration,
    CalibrationError,
    load_slo,
    write_outputs,
)
from loadtests.knee import SLO, UNITS

EXIT_OK, EXIT_NO_KNEE, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


def _view(snap: dict[str, Any], tier: str) -> Table:
    table = Table(title=f"swell calibrate: {tier}", title_justify="left")
    if snap.get("phase") != "load":
        table.add_column("phase")
        table.add_row(str(snap.get("phase")))
        return table
    slo: SLO = snap["slo"]
    for col in ("users", f"offered {UNITS[tier]}", "done/s", "p50 ms", "p95 ms", "errors", "SLO"):
        table.add_column(col, justify="right")
    for s in snap["steps"]:
        table.add_row(
            str(s.users),
            f"{s.offered:g}",
            f"{s.throughput:.1f}",
            "-" if s.p50_ms is None else f"{s.p50_ms:.0f}",
            "-" if s.p95_ms is None else f"{s.p95_ms:.0f}",
            f"{s.error_rate:.2%}",
            "[green]held[/green]" if s.held(slo) else "[red]broke[/red]",
        )
    table.caption = (
        f"{snap['pass']} pass {snap['elapsed_s']:.0f}/{snap['duration_s']:.0f} s, users {snap['users']}; "
        f"SLO p95 <= {slo.p95_ms:g} ms, errors <= {slo.error_rate:.1%}"
    )
    return table


def calibrate_command(
    tier: str,
    target: str | None,
    workers: int,
    flavor: str | None,
    step_s: float | None,
    settle_s: float | None,
    start: int | None,
    increment: int | None,
    steps: int | None,
    refine: bool,
    slo_file: Path | None,
    out: Path,
    as_json: bool,
    from_log: Path | None = None,
) -> None:
    err = Console(stderr=True, soft_wrap=True)
    try:
        if tier not in UNITS:
            raise ValueError(f"--tier {tier!r}: unknown tier; expected one of {', '.join(UNITS)}")
        slo, source = load_slo(slo_file, tier)
        options = CalibrateOptions(
            tier=tier,
            out=out,
            target=target,
            workers=workers,
            flavor=flavor,
            step_s=step_s,
            settle_s=settle_s,
            start=start,
            increment=increment,
            steps=steps,
            refine=refine,
            slo=slo,
            slo_source=source,
            from_log=from_log,
        )
        options.validate()
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    # Reading a log runs no load: nothing to watch.
    live = Live(_view({"phase": "starting"}, tier), console=err, refresh_per_second=2)
    with contextlib.nullcontext() if from_log is not None else live:
        calibration = Calibration(options, progress=lambda snap: live.update(_view(snap, tier)))
        try:
            result = calibration.run()
        except CalibrationError as exc:
            err.print(f"calibration failed: {exc}", markup=False, highlight=False)
            raise typer.Exit(EXIT_FAILED) from None
        except ValueError as exc:  # a --from-log that holds no usable step
            err.print(f"error: {exc}", markup=False, highlight=False)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            err.print("interrupted: the tier service and Locust are stopped")
            raise typer.Exit(130) from None
    paths = write_outputs(result, out)
    if as_json:
        typer.echo(json.dumps(json.loads(paths["json"].read_text()), indent=2))
    for warning in result["warnings"]:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    unit = result["unit"]
    cap = result["capacity_per_instance"]
    if cap is None:
        err.print(f"no knee found between the steps; curve: {paths['json']}, {paths['png']}")
        raise typer.Exit(EXIT_NO_KNEE)
    unc = result["uncertainty"]
    line = (
        f"{tier}: knee {cap:g} {unit} per instance (held; broke at {unc['high']:g}), "
        f"p95 {result['knee']['p95_ms']:g} ms, errors {result['knee']['error_rate']:.2%} "
        f"(SLO p95 <= {result['slo']['p95_ms']:g} ms, errors <= {result['slo']['error_rate']:.1%})"
    )
    designed = result["designed_capacity"]
    if designed:
        line += f"; designed {designed['value']:g} {unit}: knee at {designed['knee_ratio']:.0%} of it"
    if not as_json:
        Console().print(line, highlight=False)
        Console().print(
            f"capacity_per_instance: {cap:g}  ->  {paths['json']}, {paths['png']}", highlight=False
        )
    raise typer.Exit(EXIT_OK)
