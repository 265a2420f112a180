"""The autoscaler's commands: `swell autoscale`, `swell surge` and `swell status`.

`surge` and `status` read and write the same state store the service uses (a SQLite file, or the
ConfigMap in a cluster), so on-call can run them from a laptop: the service picks an override up
on its next pass.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoscaler.config import AutoscalerConfig, ConfigError, load_config
from autoscaler.ports import ActuationError, Override, StateStore, StateStoreError

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A 400% surge is x5; x10 leaves room for a launch bigger than anything seen. The floor is capped by
# the tier's max anyway.
MIN_FACTOR, MAX_FACTOR = 1.0, 10.0
# An override is for an event; a lasting change is a new `min` in the stack, reviewed in git.
MAX_SURGE_S = 31 * 86400
MAX_PLAN_AHEAD_S = 366 * 86400

err = Console(stderr=True)
T = TypeVar("T")


def parse_duration(text: str) -> float:
    """'90s', '15m', '2h', '1d' -> seconds."""
    match = DURATION.match(text)
    if not match:
        raise typer.BadParameter(
            f"{text!r} is not a duration; expected a number and a unit: 90s, 15m, 2h, 1d"
        )
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)]


def _utc(at: float, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    """A stored time for people; one written by an older version may be past what the platform's
    calendar can show, and a listing must not crash on it."""
    try:
        return time.strftime(fmt, time.gmtime(at))
    except (OverflowError, OSError, ValueError):
        return "far future" if at > 0 else "invalid time"


def _load(config: Path) -> AutoscalerConfig:
    try:
        return load_config(config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        raise typer.Exit(2) from None


def _fail(message: str, code: int, cfg: AutoscalerConfig | None = None) -> typer.Exit:
    """Print an error, with every secret known from the environment and `cfg` redacted."""
    from autoscaler.wiring import build_redactor

    err.print(f"error: {build_redactor(cfg)(message)}", highlight=False, markup=False)
    return typer.Exit(code)


def autoscale(
    config: Path = typer.Option(
        ..., "--config", "-c", envvar="SWELL_CONFIG", help="Autoscaler YAML (see autoscaler.example.yaml)."
    ),
    once: bool = typer.Option(False, "--once", help="Run one pass and exit (exit 3: metrics unavailable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and record, but never act."),
    as_json: bool = typer.Option(False, "--json", help="With --once: print the pass's decisions as JSON."),
) -> None:
    """Run the autoscaler: every interval, read demand from Prometheus, decide per tier, act."""
    from autoscaler.telemetry import Telemetry, TelemetryServer
    from autoscaler.wiring import build_autoscaler, build_redactor

    cfg = _load(config)
    redact = build_redactor(cfg)
    telemetry = Telemetry(redact)
    try:
        loop = build_autoscaler(cfg, dry_run=dry_run, telemetry=telemetry)
    except ConfigError as exc:
        raise _fail(f"{config}: {exc}", 2, cfg) from None
    except (StateStoreError, ActuationError) as exc:
        raise _fail(str(exc), 5, cfg) from None
    if once:
        result = loop.run_once()
        # Pulumi updates run in the background: wait for them, a failure is this pass's failure.
        timeout = max((getattr(t.actuator, "update_timeout_s", 0.0) for t in cfg.tiers.values()), default=0.0)
        for tier, errors in loop.settle(timeout + 60).items():
            result.actuation_failed = True
            for d in result.decisions:
                if d["tier"] == tier:
                    d["error"] = "; ".join(errors)
        loop.close()
        if as_json:
            keys = (
                "tier",
                "current",
                "desired",
                "direction",
                "reason",
                "limited_by",
                "demand",
                "acted",
                "error",
            )
            typer.echo(redact(json.dumps([{k: d[k] for k in keys} for d in result.decisions], indent=2)))
        if result.metrics_error:
            err.print(redact(f"metrics unavailable, every tier held: {result.metrics_error}"), markup=False)
        if result.state_error:
            err.print(redact(f"state store unavailable, nothing decided: {result.state_error}"), markup=False)
        raise typer.Exit(result.exit_code)
    host, _, port = cfg.serve.listen.rpartition(":")
    stop = threading.Event()
    # The loop runs in a thread of its own, so /healthz can tell a dead or stuck loop from a live
    # one; the main thread only waits for signals.
    runner = threading.Thread(target=loop.run_forever, args=(stop,), name="swell-loop")
    server = TelemetryServer(
        telemetry,
        host,
        int(port),
        cfg.stale_after_s,
        time.time,
        stuck_after_s=cfg.serve.stuck_after_s,
        loop_alive=runner.is_alive,
    ).start()
    telemetry.log("started", listen=f"{host}:{server.port}", tiers=list(cfg.tiers), dry_run=dry_run)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner.start()
    try:
        while runner.is_alive():
            runner.join(timeout=0.5)
    finally:
        stop.set()
        runner.join(timeout=30)
        loop.close()  # cancels an update in flight; its CLI cannot outlive us in any case
        server.stop()
        telemetry.log("stopped")


def _read(cfg: AutoscalerConfig, call: Callable[[], T]) -> T:
    """A state store call; its failure is an error naming the store (exit 5), not a traceback."""
    try:
        return call()
    except StateStoreError as exc:
        raise _fail(str(exc), 5, cfg) from None


def _store(cfg: AutoscalerConfig) -> StateStore:
    from autoscaler.wiring import build_store

    try:
        return build_store(cfg)
    except StateStoreError as exc:
        raise _fail(str(exc), 5, cfg) from None


def surge(
    config: Path = typer.Option(
        ..., "--config", "-c", envvar="SWELL_CONFIG", help="The autoscaler's YAML (names its state store)."
    ),
    tier: str | None = typer.Option(None, "--tier", help="Tier to raise."),
    factor: float | None = typer.Option(
        None,
        "--factor",
        help="Keep at least FACTOR x today's count: 2 doubles it, 5 answers a 400% surge (1 < FACTOR <= 10).",
    ),
    duration: str | None = typer.Option(None, "--for", help="How long: 90m, 2h, 1d (at most 31d)."),
    at: str | None = typer.Option(
        None,
        "--at",
        help="Plan it for a known event starting at this ISO 8601 time with its UTC offset "
        "(2026-12-07T08:30+01:00): the floor rises one lead time earlier and ramps down after --for.",
    ),
    reason: str = typer.Option("", "--reason", help="Why, for the log and for whoever comes next."),
    list_: bool = typer.Option(False, "--list", help="List overrides."),
    cancel: str | None = typer.Option(None, "--cancel", help="Cancel the override with this id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Raise a tier by a factor of its current count, now or for a planned event (--at), until an
    expiry; or list or cancel such surges. Recurring events belong in the config's `schedules:`."""
    cfg = _load(config)
    store = _store(cfg)
    now = time.time()
    if list_:
        overrides = _read(cfg, store.overrides)
        if as_json:
            typer.echo(json.dumps([o.to_dict() | {"active": o.active(now)} for o in overrides], indent=2))
            return
        table = Table("id", "tier", "factor", "floor", "expires", "state", "reason", title="surge overrides")
        for o in overrides:
            left = o.expires_at - now
            if o.active(now):
                state = f"active, {left / 60:.0f} min left"
            elif o.starts_at is not None and now < o.starts_at:
                state = f"planned, rises {_utc(o.starts_at)}"
            else:
                state = "expired"
            table.add_row(
                escape(o.id),
                escape(o.tier),
                f"x{o.factor:g}",
                str(o.floor),
                _utc(o.expires_at),
                state,
                escape(o.reason),
            )
        Console().print(table)
        return
    if cancel is not None:
        if not _read(cfg, lambda: store.cancel_override(cancel)):
            raise _fail(f"no override with id {cancel!r}; `swell surge --list` shows them", 1)
        typer.echo(f"cancelled {cancel}")
        return
    if tier is None or factor is None or duration is None:
        raise _fail("give --tier, --factor and --for (or --list, or --cancel ID)", 2)
    if tier not in cfg.tiers:
        raise _fail(f"unknown tier {tier!r}; expected one of {', '.join(cfg.tiers)}", 2)
    if not MIN_FACTOR < factor <= MAX_FACTOR:
        raise _fail(f"--factor must be above {MIN_FACTOR:g} and at most {MAX_FACTOR:g}, got {factor:g}", 2)
    seconds = parse_duration(duration)
    starts_at = None if at is None else _planned_start(at, now, cfg.tiers[tier].lead_time_s)
    if not 0 < seconds <= MAX_SURGE_S:
        raise _fail(
            f"--for must be above 0 and at most {MAX_SURGE_S // 86400}d, got {duration}; "
            "for a lasting change raise the tier's min in the stack",
            2,
        )
    from autoscaler.wiring import build_actuators

    try:
        actuator = build_actuators(cfg, only={tier})[tier]
        current = actuator.capacity(tier).current
        own = getattr(actuator, "limits", None)
        tier_max = cfg.tiers[tier].limits(own(tier) if callable(own) else None)[1]
    except (ActuationError, ConfigError) as exc:
        raise _fail(f"cannot read the current size of {tier}: {exc}", 5, cfg) from None
    floor = min(math.ceil(factor * max(current, 1)), tier_max)
    override = Override(
        id=f"sg-{secrets.token_hex(3)}",
        tier=tier,
        factor=factor,
        floor=floor,
        created_at=now,
        expires_at=(now if starts_at is None else starts_at + cfg.tiers[tier].lead_time_s) + seconds,
        reason=reason or ("planned surge" if at else "manual surge"),
        starts_at=starts_at,
    )
    _read(cfg, lambda: store.add_override(override))
    capped = " (capped by max)" if floor < math.ceil(factor * max(current, 1)) else ""
    if as_json:
        typer.echo(json.dumps(override.to_dict()))
    elif starts_at is not None:
        typer.echo(
            f"{override.id}: {tier} kept at >= {floor} instances (x{factor:g} of {current}){capped} "
            f"from {_utc(starts_at)} (one lead time, {cfg.tiers[tier].lead_time_s:g} s, before {at}) "
            f"for {duration}, then ramping down over {cfg.schedule_ramp_down_s:g} s"
        )
    else:
        typer.echo(
            f"{override.id}: {tier} kept at >= {floor} instances (x{factor:g} of {current}){capped} "
            f"for {duration}; the autoscaler applies it on its next pass"
        )


def _planned_start(at: str, now: float, lead_s: float) -> float:
    """When a surge planned for `at` raises its floor: one lead time before (seconds since epoch)."""
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise _fail(f"--at {at!r} is not an ISO 8601 time; expected e.g. 2026-12-07T08:30+01:00", 2) from None
    if when.tzinfo is None:
        raise _fail(f"--at {at!r} has no UTC offset; add one (+01:00, Z) so the time is not a guess", 2)
    start = when.timestamp()
    if not now < start <= now + MAX_PLAN_AHEAD_S:
        raise _fail(
            f"--at {at!r} must be in the future and at most {MAX_PLAN_AHEAD_S // 86400}d ahead; "
            "a recurring event belongs in the config's schedules:",
            2,
        )
    return start - lead_s


def status(
    config: Path = typer.Option(
        ..., "--config", "-c", envvar="SWELL_CONFIG", help="The autoscaler's YAML (names its state store)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Per tier: active (current), desired, ready and pending instances, the warm pool (warm, and
    filling: being configured for it), the last decision and why, overrides, data age, the update in
    flight (since when, target counts) and the instances draining."""
    cfg = _load(config)
    store = _store(cfg)
    now = time.time()
    state = _read(cfg, store.load_loop_state)
    stored = _read(cfg, store.overrides)
    overrides = [o for o in stored if o.active(now)]
    upcoming = _upcoming(cfg, stored, now)
    rows: list[dict[str, Any]] = []
    for tier in cfg.tiers:
        history = state.recent_decisions.get(tier) or []
        last = history[-1] if history else None
        rows.append(
            {
                "tier": tier,
                "current": last["current"] if last else None,
                "desired": last["desired"] if last else None,
                "ready": last["ready"] if last else None,
                "direction": last["direction"] if last else None,
                "reason": last["reason"] if last else "no decision yet",
                "limited_by": last["limited_by"] if last else [],
                "decided_s_ago": round(now - last["at"], 1) if last else None,
                "sample_age_s": last["sample_age_s"] if last else None,
                "error": last["error"] if last else None,
                "overrides": [o.to_dict() for o in overrides if o.tier == tier],
                "scheduled": [w for w in upcoming if w["tier"] == tier],
                "pending": max(0, last["current"] - last["ready"]) if last else None,
                # The warm pool as the last pass left it (None: the tier has none).
                "pool": last.get("pool") if last else None,
                "update": _update_of(state.actuation, tier),
                "draining": [
                    {"index": int(i), **d}
                    for i, d in sorted(state.drains.get(tier, {}).items(), key=lambda x: int(x[0]))
                ],
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(
        "tier",
        "active",
        "desired",
        "ready",
        "pending",
        "warm",
        "last decision",
        "limited by",
        "override",
        "data",
        "update",
        "draining",
        title="swell status",
    )
    for r in rows:
        arrow = {"up": "[green]up[/green]", "down": "[yellow]down[/yellow]", "hold": "hold"}.get(
            r["direction"], "-"
        )
        decided = f"{r['decided_s_ago']:.0f} s ago" if r["decided_s_ago"] is not None else "never"
        stale = r["decided_s_ago"] is None or r["decided_s_ago"] > cfg.stale_after_s
        data = "[red]stale[/red]" if stale or r["sample_age_s"] is None else f"{r['sample_age_s']:.0f} s old"
        # Reasons, errors and on-call's own --reason are text, never markup.
        note = f"{arrow} {escape(r['reason'])}" + (
            f" [red](failed: {escape(r['error'])})[/red]" if r["error"] else ""
        )
        table.add_row(
            r["tier"],
            str(r["current"] if r["current"] is not None else "-"),
            str(r["desired"] if r["desired"] is not None else "-"),
            str(r["ready"] if r["ready"] is not None else "-"),
            str(r["pending"] if r["pending"] is not None else "-"),
            _pool_cell(r["pool"]),
            f"{note} ({decided})",
            escape(", ".join(r["limited_by"])) or "-",
            ", ".join(
                f">= {o['floor']} until {_utc(o['expires_at'], '%Y-%m-%d %H:%M UTC')}" for o in r["overrides"]
            )
            or "-",
            data,
            escape(_update_cell(r["update"], now)),
            ", ".join(
                f"#{d['index']} {d['sessions'] if d['sessions'] is not None else '?'} sessions, "
                f"{max(0.0, d['deadline'] - now):.0f} s left"
                for d in r["draining"]
            )
            or "-",
        )
    Console().print(table)
    if upcoming:
        columns = ("tier", "what", "floor", "rises", "starts", "ends")
        plan = Table(*columns, title="scheduled surges, next 7 days")
        for w in upcoming:
            plan.add_row(
                escape(w["tier"]),
                escape(w["what"]),
                str(w["floor"]),
                _utc(w["rises_at"]),
                _utc(w["starts_at"]),
                _utc(w["ends_at"]),
            )
        Console().print(plan)
    if any(r["error"] for r in rows):
        sys.exit(4)


UPCOMING_HORIZON_S = 7 * 86400


def _upcoming(cfg: AutoscalerConfig, overrides: list[Override], now: float) -> list[dict[str, Any]]:
    """Scheduled floors rising within a week or up now (configured schedules and planned
    overrides), in the order they rise."""
    from autoscaler.core.schedule import windows

    found: list[dict[str, Any]] = []
    for s in cfg.schedules:
        lead = cfg.tiers[s.tier].lead_time_s
        for w in windows(s.to_core(), now, lead, cfg.schedule_ramp_down_s, UPCOMING_HORIZON_S):
            found.append(
                {
                    "tier": s.tier,
                    "what": f"schedule {s.name}" + (f": {s.reason}" if s.reason else ""),
                    "floor": s.instances,
                    "rises_at": w.raises_at,
                    "starts_at": w.starts_at,
                    "ends_at": w.ends_at,
                }
            )
    for o in overrides:
        if o.starts_at is not None and now < o.expires_at and o.starts_at <= now + UPCOMING_HORIZON_S:
            lead = cfg.tiers[o.tier].lead_time_s if o.tier in cfg.tiers else 0.0
            found.append(
                {
                    "tier": o.tier,
                    "what": f"override {o.id}: {o.reason}",
                    "floor": o.floor,
                    "rises_at": o.starts_at,
                    "starts_at": o.starts_at + lead,
                    "ends_at": o.expires_at,
                }
            )
    return sorted(found, key=lambda w: w["rises_at"])


def _update_of(actuation: dict[str, dict[str, Any]], tier: str) -> dict[str, Any] | None:
    """The update in flight or queued that covers `tier`, from what the actuators reported."""
    for stack, report in actuation.items():
        flight = report.get("in_flight") or {}
        if tier in flight.get("targets", {}):
            return {
                "stack": stack,
                "state": "running",
                "since": flight["since"],
                "targets": flight["targets"],
            }
        if tier in (report.get("queued") or {}):
            return {"stack": stack, "state": "queued", "since": None, "targets": report["queued"]}
    return None


def _pool_cell(pool: dict[str, Any] | None) -> str:
    """`3 (+1 filling)`: warm instances, and those being configured for the pool; `-`: no pool."""
    if not pool:
        return "-"
    filling = f" (+{pool['filling']} filling)" if pool.get("filling") else ""
    return f"{pool['warm']}{filling}"


def _update_cell(update: dict[str, Any] | None, now: float) -> str:
    if update is None:
        return "-"
    targets = ", ".join(f"{t} -> {n}" for t, n in sorted(update["targets"].items()))
    if update["state"] == "queued":
        return f"queued on {update['stack']}: {targets}"
    return f"pulumi up on {update['stack']} for {now - update['since']:.0f} s: {targets}"
