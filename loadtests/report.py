"""The drill's report, from a finished run's `DrillRecord` (`loadtests/record.py`): report.json
(timeline per tier, decisions, instance events, faults, SLO verdict, CPU busy, and the simulator's
elasticity metrics computed on measured demand and supply), report.md for people, and timeline.png
(matplotlib, Agg backend).

SLO: after the warm-up, p95 latency at most `p95_limit_ms` and at most `error_rate_limit` failed,
over every request Locust made (HTTP and WebSocket alike, as Locust's "Aggregated" row counts
them) and over each tier's requests: it holds only when the aggregate and every tier hold.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.sim.metrics import compute_metrics, rounded
from loadtests.faults import INJECTED_ACTUATION_ERROR, kill_target
from loadtests.record import DrillRecord
from loadtests.requestlog import LATE_AFTER_S, ChatMessages, Request, percentile
from swell.tiers import load as load_catalog

# How long after a fault's end a pass may still fail from it: one pass in flight (2 s) and slack.
FAULT_GRACE_S = 5.0
PRICE_PER_HOUR = 0.10  # b3-16, EUR excl. VAT, third-party price scrape of January 2026 (docs/ovhcloud.md)


def slo_of(requests: list[Request], p95_limit_ms: float, error_limit: float) -> dict[str, Any]:
    times = [r.ms for r in requests]
    failed = sum(1 for r in requests if not r.ok)
    p95 = percentile(times, 95)
    rate = failed / len(requests) if requests else 1.0
    held = bool(requests) and p95 is not None and p95 <= p95_limit_ms and rate <= error_limit
    return {
        "p95_ms": None if p95 is None else round(p95, 1),
        "error_rate": round(rate, 5),
        "requests": len(requests),
        "failed": failed,
        "held": held,
    }


def _per_second(rec: DrillRecord) -> dict[str, list[Any]]:
    """Requests per second, p95 and error rate per second of the load (real seconds)."""
    start = rec.load_started_at
    buckets: dict[int, list[tuple[float, bool]]] = {}
    for t, _tier, ms, ok in rec.requests:
        buckets.setdefault(int(t - start), []).append((ms, ok))
    end = max(buckets, default=0)
    out: dict[str, list[Any]] = {"t": [], "rate": [], "p95_ms": [], "error_rate": []}
    for s in range(0, end + 1):
        items = buckets.get(s, [])
        out["t"].append(s)
        out["rate"].append(len(items))
        p = percentile([m for m, _ in items], 95)
        out["p95_ms"].append(None if p is None else round(p, 1))
        out["error_rate"].append(
            round(sum(1 for _, ok in items if not ok) / len(items), 4) if items else None
        )
    return out


def _fault_outcomes(rec: DrillRecord) -> list[dict[str, Any]]:
    """What the autoscaler did about each fault: held, replaced, retried (figures and a sentence)."""
    out = []
    events = rec.instance_events
    for f in rec.faults:
        start, end = f["started_s"], f.get("ended_s", f["started_s"])
        during = [d for d in rec.decisions if start <= d["t"] < end]
        entry = dict(f)
        if f["kind"] == "prometheus-outage":
            held = sum(1 for d in during if str(d["reason"]).startswith("hold"))
            downs = sum(1 for d in during if d["direction"] == "down")
            entry.update(decisions=len(during), held=held, scale_downs=downs)
            entry["outcome"] = (
                f"{held} of {len(during)} decisions held during the outage, {downs} scale-downs"
            )
        elif f["kind"] == "actuator-error":
            # Told by the injected error itself, not by the window alone: a pass that started just
            # before the fault ended may fail after it, and its decision is stamped with its start.
            injected = [
                d
                for d in rec.decisions
                if start <= d["t"] < end + FAULT_GRACE_S and INJECTED_ACTUATION_ERROR in str(d["error"] or "")
            ]
            last_failure: dict[str, float] = {}
            for d in injected:
                last_failure[d["tier"]] = max(d["t"], last_failure.get(d["tier"], d["t"]))
            failed_tiers = set(last_failure)
            retried = {
                d["tier"]
                for d in rec.decisions
                if d["acted"] and d["tier"] in last_failure and d["t"] > last_failure[d["tier"]]
            }
            entry.update(errors=len(injected), retried=sorted(retried))
            entry["outcome"] = (
                f"{entry['errors']} failed actuations ({', '.join(sorted(failed_tiers))}); "
                f"applied after the fault: {', '.join(sorted(retried)) or 'none'}"
                if failed_tiers
                else "no scaling was asked during the fault (nothing to fail)"
            )
        else:
            t0 = rec.load_started_at + start
            died = next((e for e in events if e["event"] == "died" and e["at"] >= t0), None)
            killed = kill_target()
            # Started after the kill: created, or taken from the warm pool (unshelved, or activated
            # while filling).
            started = [
                e
                for e in events
                if e["event"] in ("started", "unshelved", "activated")
                and e["at"] > t0
                and e["tier"] == killed
            ]
            # Replaced: the instances asked for are back to the count before the kill.
            t, asked = rec.timeline.t, rec.timeline.requested[killed]
            before = next((n for ts, n in zip(reversed(t), reversed(asked), strict=True) if ts < start), None)
            dead_s = None if died is None else died["at"] - rec.load_started_at
            back = next(
                (
                    ts
                    for ts, n in zip(t, asked, strict=True)
                    if dead_s is not None and ts > dead_s and before is not None and n >= before
                ),
                None,
            )
            entry.update(
                seen_dead_s=None if dead_s is None else round(dead_s, 2),
                replaced=back is not None,
                replaced_at_s=None if back is None else round(back, 2),
                started_after=len(started),
            )
            entry["outcome"] = (
                f"instance on port {f.get('killed_port')} killed; "
                + ("not seen dead" if dead_s is None else f"dropped at {dead_s:.1f} s")
                + (
                    f"; replaced: {before} instances asked for again at {back:.1f} s"
                    if back is not None
                    else "; not replaced"
                )
            )
        out.append(entry)
    return out


def chat_counts(messages: list[ChatMessages]) -> dict[str, dict[str, int]]:
    """Chat messages delivered, lost (holes in a room's sequence) and late, per tier."""
    counts: dict[str, dict[str, int]] = {}
    for m in messages:
        c = counts.setdefault(m.tier, {"delivered": 0, "lost": 0, "late": 0})
        c["delivered"] += m.delivered
        c["lost"] += m.lost
        c["late"] += m.late
    return counts


def build_report(rec: DrillRecord) -> dict[str, Any]:
    o = rec.options
    tl = rec.timeline
    after = rec.load_started_at + o.warmup_s
    measured = [r for r in rec.requests if r.t >= after]
    slo = slo_of(measured, o.p95_limit_ms, o.error_rate_limit)
    slo.update(p95_limit_ms=o.p95_limit_ms, error_rate_limit=o.error_rate_limit, warmup_s=o.warmup_s)
    tiers: dict[str, Any] = {}
    for tier in o.plans:
        plan = o.plans[tier]
        ready = tl.ready[tier]
        requested = tl.requested[tier]
        demand = np.array([np.nan if v is None else v for v in tl.demand[tier]], dtype=float)
        tick = (tl.t[-1] - tl.t[0]) / max(len(tl.t) - 1, 1) if len(tl.t) > 1 else 1.0
        metrics = (
            rounded(
                compute_metrics(
                    demand,
                    np.array(requested),
                    np.array(ready),
                    plan.capacity_per_instance,
                    tick,
                    PRICE_PER_HOUR,
                )
            )
            if len(tl.t) and not np.isnan(demand).all()
            else {}
        )
        tier_slo = slo_of([r for r in measured if r.tier == tier], o.p95_limit_ms, o.error_rate_limit)
        dropped = rec.dropped_sessions.get(tier, 0)
        finite = demand[~np.isnan(demand)]
        tiers[tier] = {
            "start_instances": ready[0] if ready else plan.min,
            "peak_instances": max(ready) if ready else plan.min,
            "peak_requested": max(requested) if requested else plan.min,
            # The warm pool: shelved instances at the start and at most, and the delays (real s).
            "start_warm": tl.warm[tier][0] if tl.warm[tier] else 0,
            "peak_warm": max(tl.warm[tier], default=0),
            "cold_delay_s": round(o.cold_delay_s(tier), 2),
            "warm_delay_s": round(o.warm_delay_s(tier), 2),
            "capacity_per_instance": plan.capacity_per_instance,
            "unit": plan.unit,
            "peak_demand": round(float(finite.max()), 2) if len(finite) else None,
            "p95_ms": tier_slo["p95_ms"],
            "error_rate": tier_slo["error_rate"],
            "requests": tier_slo["requests"],
            "slo_held": tier_slo["held"],
            # Sessions (web: requests) still open on an instance when a scale-down stopped it.
            "dropped_sessions": dropped,
            "elasticity": metrics,
        }
    # The verdict needs every tier within the SLO too: an aggregate must not hide a slow tier.
    broken = [t for t, v in tiers.items() if not v["slo_held"]]
    slo.update(held=slo["held"] and not broken, tiers_broken=broken)
    slo["dropped_sessions"] = sum(t["dropped_sessions"] for t in tiers.values())
    # Chat: every message of a room reaches every member, in time, whichever instance they are on.
    chat = chat_counts([m for m in rec.chat_messages if m.t >= after])
    for tier, counts in chat.items():
        if tier in tiers:
            tiers[tier]["chat_messages"] = counts
    slo["chat_messages"] = {k: sum(c[k] for c in chat.values()) for k in ("delivered", "lost", "late")}
    slo["chat_messages"]["late_after_s"] = LATE_AFTER_S
    if slo["chat_messages"]["lost"] or slo["chat_messages"]["late"]:
        slo["held"] = False
    # Video: how the allocator (one for the bridges of every participants tier) spread conferences.
    allocation, catalog = allocation_summary(rec.allocation), load_catalog()
    for tier in tiers:
        if allocation and catalog.get(tier).traffic == "participants":
            tiers[tier]["allocation"] = allocation
    cpu = tl.cpu_busy[1:]
    # CPU time of the drill and every process it started and reaped (Prometheus, HAProxy,
    # instances, Locust): what the drill itself cost, apart from other work on the machine.
    a, b = rec.cpu_at_start, rec.cpu_at_end
    own_cpu_s = sum(
        getattr(b, f) - getattr(a, f) for f in ("user", "system", "children_user", "children_system")
    )
    wall = max(rec.finished_at - rec.started_at, 1e-9)
    cores = os.cpu_count() or 1
    report: dict[str, Any] = {
        "profile": o.profile,
        "speed": o.effective_speed,
        "autoscale": o.autoscale,
        "duration_s": round(rec.finished_at - rec.started_at, 1),
        "load_s": round((tl.t[-1] if tl.t else 0.0), 1),
        "boot_delay_s": round(o.boot_delay_s, 2),
        "warm_pool": o.warm_pool,
        "memory": o.memory,
        "interval_s": o.interval_s,
        "base_users": o.base_users,
        "peak_users": max((u for _, u in rec.users), default=0),
        "slo": slo,
        "tiers": tiers,
        "cpu": {
            "cores": cores,
            "busy_mean_pct": round(float(np.mean(cpu)), 1) if cpu else None,
            "busy_max_pct": round(float(np.max(cpu)), 1) if cpu else None,
            "drill_cpu_s": round(own_cpu_s, 1),
            "drill_busy_pct": round(100.0 * own_cpu_s / (wall * cores), 1),
            "note": "busy_*: whole machine (shared with other work), every second; "
            "drill_*: the drill's own processes",
        },
        "faults": _fault_outcomes(rec),
        "decisions": [
            {
                k: d[k]
                for k in (
                    "t",
                    "tier",
                    "demand",
                    "current",
                    "ready",
                    "desired",
                    "direction",
                    "reason",
                    "acted",
                    "error",
                )
            }
            # The warm pool this pass (target, keep, reason, warm, filling, what moved), if any.
            | ({"pool": d["pool"]} if d.get("pool") else {})
            for d in rec.decisions
            if d["direction"] != "hold" or d["error"] or d is rec.decisions[-1] or _pool_moved(d)
        ],
        "instance_events": [{**e, "t": round(e["at"] - rec.load_started_at, 2)} for e in rec.instance_events],
        "timeline": {**tl.to_dict(), "requests": _per_second(rec)},
    }
    return report


def _pool_moved(decision: dict[str, Any]) -> bool:
    """Whether the pass moved instances into, within or out of the warm pool."""
    pool = decision.get("pool") or {}
    return any(pool.get(k) for k in ("activated", "refilled", "shelved", "trimmed"))


def _fmt(v: Any, spec: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def allocation_summary(placed: dict[str, Any]) -> dict[str, Any]:
    """The video allocator's placements in short: how many bridges got conferences, how evenly
    (conferences per bridge, most first), and how often no bridge met every limit (fallbacks) or
    none took new conferences at all (refused)."""
    if not placed:
        return {}
    conferences = sorted((int(n) for n in placed.get("conferences_placed", {}).values()), reverse=True)
    return {
        "bridges_used": len(conferences),
        "conferences": sum(conferences),
        "conferences_per_bridge": conferences,
        "participants": sum(int(n) for n in placed.get("participants_placed", {}).values()),
        "fallbacks": int(placed.get("fallbacks", 0)),
        "refused": int(placed.get("refused", 0)),
    }


def write_markdown(report: dict[str, Any], path: Path) -> Path:
    s = report["slo"]
    lines = [
        f"# Drill: {report['profile']} (speed x{report['speed']:g}, "
        f"{'autoscaler on' if report['autoscale'] else 'no autoscaling'})",
        "",
        f"**SLO {'held' if s['held'] else 'BROKEN'}**: p95 {_fmt(s['p95_ms'], '.0f')} ms "
        f"(limit {s['p95_limit_ms']:.0f}), errors {s['error_rate']:.2%} (limit {s['error_rate_limit']:.0%}), "
        f"{s['requests']} requests after a {s['warmup_s']:.0f} s warm-up"
        + (f"; tiers outside it: {', '.join(s['tiers_broken'])}." if s["tiers_broken"] else ".")
        + f" Sessions cut by scale-down: {s['dropped_sessions']}."
        + f" Chat messages: {s['chat_messages']['delivered']} delivered, {s['chat_messages']['lost']} lost, "
        f"{s['chat_messages']['late']} late (> {s['chat_messages']['late_after_s']:g} s).",
        "",
        f"Duration {report['duration_s']:.0f} s (load {report['load_s']:.0f} s); boot delay "
        f"{report['boot_delay_s']:.1f} s cold, "
        + ", ".join(f"{_fmt(t['warm_delay_s'], '.1f')} s warm ({n})" for n, t in report["tiers"].items())
        + "; warm pool "
        + (
            "on (peak warm: " + ", ".join(f"{n} {t['peak_warm']}" for n, t in report["tiers"].items()) + ")"
            if report.get("warm_pool")
            else "off"
        )
        + (", swell remembering the profile's rise" if report.get("memory") else ", swell without memory")
        + f"; users {report['base_users']} -> {report['peak_users']}. CPU: the "
        f"drill's own processes {report['cpu']['drill_busy_pct']}% of {report['cpu']['cores']} cores; "
        f"the whole machine (shared) {_fmt(report['cpu']['busy_mean_pct'])}% mean, "
        f"{_fmt(report['cpu']['busy_max_pct'])}% max.",
        "",
        "| tier | start | peak ready | peak demand | p95 ms | errors | dropped sessions | theta_U % "
        "| theta_O % "
        "| tau_U % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tier, t in report["tiers"].items():
        m = t["elasticity"]
        lines.append(
            f"| {tier} | {t['start_instances']} | {t['peak_instances']} "
            f"| {_fmt(t['peak_demand'])} {t['unit']} "
            f"| {_fmt(t['p95_ms'], '.0f')} | {t['error_rate']:.2%} | {t['dropped_sessions']} "
            f"| {_fmt(m.get('theta_u'), '.1f')} "
            f"| {_fmt(m.get('theta_o'), '.1f')} | {_fmt(m.get('tau_u'), '.1f')} |"
        )
    for tier, t in report["tiers"].items():
        if "allocation" in t:
            a = t["allocation"]
            lines += [
                "",
                f"{tier} allocation (the Jicofo stand-in): {a['participants']} participants in "
                f"{a['conferences']} conferences over {a['bridges_used']} bridges (conferences per bridge "
                f"{', '.join(map(str, a['conferences_per_bridge']))}); {a['fallbacks']} fallbacks, "
                f"{a['refused']} refused.",
            ]
    if report["faults"]:
        lines += ["", "## Faults", ""]
        lines += [
            f"- {f['kind']} at {f['at_s']:g} s for {f['for_s']:g} s: {f['outcome']}" for f in report["faults"]
        ]
    acted = [d for d in report["decisions"] if d["acted"] or d["error"]]
    lines += ["", "## Scaling actions", ""]
    lines += [
        f"- {d['t']:.0f} s {d['tier']}: {d['current']} -> {d['desired']}"
        + (f" FAILED ({d['error']})" if d["error"] else "")
        + f": {d['reason']}"
        for d in acted
    ] or ["- none"]
    lines += ["", "Timeline: timeline.png; every figure: report.json."]
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_timeline(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = report["timeline"]
    t = tl["t"]
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    # One colour per tier in catalog order (web, chat, video kept their colours of old).
    palette = ("tab:blue", "tab:green", "tab:purple", "tab:olive", "tab:cyan", "tab:pink", "tab:gray")
    colors = {tier: palette[i % len(palette)] for i, tier in enumerate(tl["tiers"])}
    ax = axes[0]
    for tier, data in tl["tiers"].items():
        cap = report["tiers"][tier]["capacity_per_instance"]
        demand = [np.nan if v is None else v / cap for v in data["demand"]]
        ax.plot(t, demand, color=colors[tier], lw=0.8, ls="--", label=f"{tier} demand / capacity")
        ax.step(t, data["ready"], color=colors[tier], lw=1.2, where="post", label=f"{tier} ready")
        if any(data.get("warm") or []):
            ax.step(t, data["warm"], color=colors[tier], lw=0.8, ls=":", where="post", label=f"{tier} warm")
    ax.set_ylabel("instances")
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    req = tl["requests"]
    axes[1].plot(req["t"], [np.nan if v is None else v for v in req["p95_ms"]], color="tab:orange", lw=0.8)
    axes[1].axhline(report["slo"]["p95_limit_ms"], color="tab:red", lw=0.6, ls=":")
    axes[1].set_ylabel("p95 ms (per s)")
    axes[2].plot(
        req["t"], [np.nan if v is None else 100 * v for v in req["error_rate"]], color="tab:red", lw=0.8
    )
    axes[2].axhline(100 * report["slo"]["error_rate_limit"], color="tab:red", lw=0.6, ls=":")
    axes[2].set_ylabel("errors %")
    axes[3].plot(req["t"], req["rate"], color="0.3", lw=0.8, label="requests/s")
    axes[3].plot(t, tl["cpu_busy_pct"], color="tab:brown", lw=0.6, label="CPU busy %")
    axes[3].legend(fontsize=7, loc="upper left")
    axes[3].set_xlabel("seconds since the load started")
    for d in report["decisions"]:
        if d["acted"]:
            for a in axes:
                a.axvline(d["t"], color=colors.get(d["tier"], "0.5"), lw=0.4, alpha=0.5)
    for f in report["faults"]:
        for a in axes:
            a.axvspan(f["started_s"], f.get("ended_s", f["started_s"]) + 0.5, color="tab:red", alpha=0.12)
    s = report["slo"]
    fig.suptitle(
        f"swell drill {report['profile']} x{report['speed']:g}: SLO {'held' if s['held'] else 'broken'} "
        f"(p95 {_fmt(s['p95_ms'], '.0f')} ms, errors {s['error_rate']:.2%})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return {
        "json": out / "report.json",
        "md": write_markdown(report, out / "report.md"),
        "png": plot_timeline(report, out / "timeline.png"),
    }
