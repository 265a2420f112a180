"""The plan as a document (`--json`, `plan.json`), a Markdown report (`plan.md`), a picture
(`plan.png`: instances, vCPU against the quota, and EUR/month per tier for each factor) and the
terminal view (rich tables, the quota verdicts, the diff)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from stacks import catalog

if TYPE_CHECKING:
    from stacks.config import StackConfig
    from swell.planning.command import PlanOptions
    from swell.planning.edits import FileEdit
    from swell.planning.inputs import Calibration, Peak
    from swell.planning.model import FactorPlan, TierSettings

SCHEMA = "swell.plan/1"
TIER_COLORS = {"web": "tab:blue", "chat": "tab:green", "video": "tab:orange"}


def _x(factor: float) -> str:
    return f"x{factor:g}"


def document(
    o: PlanOptions,
    cfg: StackConfig,
    calibrations: dict[str, Calibration],
    peaks: dict[str, Peak],
    settings: dict[str, TierSettings],
    plans: list[FactorPlan],
    todo: dict[str, Any],
    edits: list[FileEdit],
    notes: list[str],
) -> dict[str, Any]:
    from swell.planning.command import now_iso, prices

    factors = []
    for p in plans:
        autoscaled = [t.eur_month_autoscaled for t in p.tiers.values() if t.planned]
        factors.append(
            {
                "factor": p.factor,
                "tiers": {name: asdict(t) for name, t in p.tiers.items()},
                "eur_month_at_peak": p.eur_month_at_peak,
                "eur_month_autoscaled_planned_tiers": round(sum(a for a in autoscaled if a is not None), 2)
                if autoscaled and all(a is not None for a in autoscaled)
                else None,
                "quota": asdict(p.quota),
                "split": [asdict(s) for s in p.split],
            }
        )
    return {
        "schema": SCHEMA,
        "generated_at": now_iso(),
        "stack": cfg.stack,
        "region": cfg.region,
        "quota": asdict(cfg.quota_limits),
        "prices": prices(),
        "inputs": {
            "calibrations": {t: c.to_dict() for t, c in calibrations.items() if t in peaks},
            "peaks": {t: p.to_dict() for t, p in peaks.items()},
            "factors": [p.factor for p in plans],
            "settings": {t: asdict(s) for t, s in settings.items()},
        },
        "factors": factors,
        "changes": todo
        | {
            "files": [
                {"path": str(e.path), "changes": e.changes, "diff": e.diff()} for e in edits if e.changed
            ],
            "written": bool(o.write),
        },
        "notes": notes,
    }


def _money(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def rows(doc: dict[str, Any]) -> list[list[str]]:
    out = []
    for f in doc["factors"]:
        for name, t in f["tiers"].items():
            sim = t["simulation"]
            need = str(t["instances"])
            if sim is not None and t["instances"] != t["instances_static"]:
                need += f" ({t['instances_static']} at 100%)"
            out.append(
                [
                    _x(f["factor"]),
                    name,
                    f"{t['demand_peak']:,.4g} {t['unit']}" if t["planned"] else "not planned",
                    f"{t['capacity_per_instance']:g}" if t["planned"] else "",
                    need if t["planned"] else f"{need} (max)",
                    t["flavor"],
                    str(t["vcpus"]),
                    str(t["ram_gb"]),
                    _money(t["eur_month_at_peak"]),
                    _money(t["eur_month_savings_plan"]),
                    _money(t["eur_month_autoscaled"]),
                ]
            )
    return out


HEADERS = [
    "factor",
    "tier",
    "peak demand",
    "per instance",
    "instances",
    "flavor",
    "vCPU",
    "RAM GB",
    "EUR/month at peak",
    "savings plan",
    "autoscaled",
]


def _verdict(q: dict[str, Any]) -> str:
    if q["regions_needed"] > 1:
        return f"SPLIT over {q['regions_needed']} regions"
    if not q["fits"]:
        return f"ASK for {q['smallest_tier']}"
    return "fits, ask early" if q["ask_early"] else "fits"


def render(doc: dict[str, Any], edits: list[FileEdit], console: Console, written: bool) -> None:
    q = doc["quota"]
    console.print(
        f"[bold]swell plan[/bold]: stack [cyan]{doc['stack']}[/cyan] ({doc['region']}), quota {q['name']} "
        f"({q['instances']} VMs / {q['vcpus']} vCPU / {q['ram_gb']} GB)",
        highlight=False,
    )
    table = Table(title="Instances, resources and EUR/month per tier and factor")
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("factor", "tier", "flavor", "peak demand") else "right")
    last = None
    for row in rows(doc):
        if last is not None and row[0] != last:
            table.add_section()
        last = row[0]
        table.add_row(*row)
    Console(width=max(console.width, 150), file=console.file).print(table)
    for f in doc["factors"]:
        quota = f["quota"]
        color = "green" if not quota["ask_early"] else ("yellow" if quota["fits"] else "red")
        console.print(
            f"{_x(f['factor'])}: [{color}]{_verdict(quota)}[/{color}]: {quota['advice']}; "
            f"{_money(f['eur_month_at_peak'])} EUR/month at peak",
            highlight=False,
        )
        for s in f["split"]:
            tiers = ", ".join(f"{t} {n}" for t, n in s["tiers"].items())
            console.print(
                f"    {s['region']} (stack {s['stack']}): {tiers}; {s['instances']} VMs / "
                f"{s['vcpus']} vCPU / {s['ram_gb']} GB -> quota {s['quota_tier'] or 'none fits'}",
                highlight=False,
            )
    p = doc["prices"]
    known = p["savings_plans"]["known_flavors"]
    console.print(
        f"Prices: EUR {p['basis']}, as of {p['as_of']} ({p['source']}); month = {p['hours_per_month']} h. "
        f"Savings plans: {'known for ' + ', '.join(known) if known else 'no price known'} "
        f"({p['savings_plans']['source']}).",
        highlight=False,
    )
    ch = doc["changes"]
    console.print(
        f"\n[bold]Changes for {_x(ch['factor'])}[/bold]"
        + (f" (this stack's share: 1 of {ch['regions']} regions)" if ch["regions"] > 1 else ""),
        highlight=False,
    )
    shown = [e for e in edits if e.changed]
    if not shown:
        console.print("nothing to change")
    for e in shown:
        for line in e.diff().splitlines():
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
            console.print(Text(line, style=style or ""), soft_wrap=True)
    if shown:
        console.print(
            "[green]written[/green]" if written else "not written: run again with --write to apply",
            highlight=False,
        )
    for regional in ch["regional_stacks"]:
        console.print(
            f"\n[bold]Stack {regional['stack']}[/bold] ({regional['region']}), from the same program "
            "(swell plan does not create stacks; docs/planning.md, 'Split across regions'):",
            highlight=False,
        )
        for command in regional["commands"]:
            console.print(f"  {command}", highlight=False, markup=False)
    for note in doc["notes"]:
        console.print(f"note: {note}", highlight=False)
    if doc.get("files"):
        console.print(
            f"report: {doc['files']['md']}, {doc['files']['png']}, {doc['files']['json']}", highlight=False
        )


def markdown(doc: dict[str, Any]) -> str:
    q = doc["quota"]
    lines = [
        f"# Capacity plan: stack {doc['stack']} ({doc['region']})",
        "",
        f"Generated {doc['generated_at']} by `swell plan`. Quota of the stack: {q['name']} "
        f"({q['instances']} VMs / {q['vcpus']} vCPU / {q['ram_gb']} GB).",
        "",
        "## Inputs",
        "",
        "| tier | today's peak | from | capacity per instance | calibrated on | policy, lead time |",
        "|---|---|---|---|---|---|",
    ]
    inputs = doc["inputs"]
    for tier, peak in inputs["peaks"].items():
        cal = inputs["calibrations"][tier]
        s = inputs["settings"][tier]
        lines.append(
            f"| {tier} | {peak['peak']:g} {cal['unit']} | {peak['kind']}: `{peak['source']}` | "
            f"{cal['capacity_per_instance']:g} {cal['unit']} | {cal['flavor'] or '?'} ({cal['target']}) | "
            f"{s['policy']}, {s['lead_time_s']:g} s |"
        )
    lines += ["", "## Per factor", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(doc)]
    lines += ["", "## Quota", ""]
    for f in doc["factors"]:
        lines.append(f"- **{_x(f['factor'])}**: {_verdict(f['quota'])}: {f['quota']['advice']}.")
        for s in f["split"]:
            tiers = ", ".join(f"{t} {n}" for t, n in s["tiers"].items())
            lines.append(
                f"  - {s['region']} (stack `{s['stack']}`): {tiers}; {s['instances']} VMs / "
                f"{s['vcpus']} vCPU / {s['ram_gb']} GB, quota {s['quota_tier'] or 'none fits'}"
            )
    ch = doc["changes"]
    lines += ["", f"## Changes for {_x(ch['factor'])}", ""]
    if ch["regions"] > 1:
        lines.append(
            f"This stack's share: one of {ch['regions']} regions (docs/planning.md, 'Split across regions')."
        )
        lines.append("")
    for f in ch["files"]:
        lines += [
            f"`{f['path']}`{' (written)' if ch['written'] else ''}:",
            "",
            "```diff",
            f["diff"].rstrip(),
            "```",
            "",
        ]
    if not ch["files"]:
        lines.append("Nothing to change.")
    for regional in ch["regional_stacks"]:
        lines += [
            "",
            f"Stack `{regional['stack']}` ({regional['region']}), from the same program (not created by "
            "`swell plan`):",
            "",
            "```sh",
            *regional["commands"],
            "```",
        ]
    p = doc["prices"]
    lines += [
        "",
        "## Prices",
        "",
        f"EUR {p['basis']}, as of {p['as_of']} ({p['source']}); a month is {p['hours_per_month']} h. "
        "`at peak`: the instances at peak kept all month (an upper bound); `autoscaled`: the simulator's "
        "bill over the trace (every commenced hour of every instance) scaled to a month, when a trace was "
        "given. "
        f"Savings plans: {p['savings_plans']['source']}.",
    ]
    if doc["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    lines += ["", "![plan](plan.png)", ""]
    return "\n".join(lines)


def picture(doc: dict[str, Any], path: Path) -> None:
    """Three panels per factor: instances per tier, vCPU stacked against the quota (with the 60% line
    and OVHcloud's largest tier), EUR/month stacked per tier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    factors = doc["factors"]
    labels = [_x(f["factor"]) for f in factors]
    tiers = list(factors[0]["tiers"])
    x = np.arange(len(factors))
    fig, (inst, cpu, eur) = plt.subplots(1, 3, figsize=(14, 5))
    width = 0.8 / len(tiers)
    for i, tier in enumerate(tiers):
        counts = [f["tiers"][tier]["instances"] for f in factors]
        bars = inst.bar(
            x + (i - (len(tiers) - 1) / 2) * width, counts, width, label=tier, color=TIER_COLORS.get(tier)
        )
        inst.bar_label(bars, fontsize=8)
    inst.set_xticks(x, labels)
    inst.set_ylabel("instances at peak")
    inst.set_title("Instances per tier")
    inst.legend(fontsize=8)
    bottom_cpu = np.zeros(len(factors))
    bottom_eur = np.zeros(len(factors))
    for tier in tiers:
        vcpus = np.array([f["tiers"][tier]["vcpus"] for f in factors], dtype=float)
        cpu.bar(x, vcpus, 0.6, bottom=bottom_cpu, label=tier, color=TIER_COLORS.get(tier))
        bottom_cpu += vcpus
        money = np.array([f["tiers"][tier]["eur_month_at_peak"] for f in factors], dtype=float)
        eur.bar(x, money, 0.6, bottom=bottom_eur, label=tier, color=TIER_COLORS.get(tier))
        bottom_eur += money
    q = doc["quota"]
    largest = max(catalog.load().quota_tiers, key=lambda t: t.vcpus)
    cpu.axhline(q["vcpus"], color="red", lw=1.5, label=f"quota {q['name']}: {q['vcpus']} vCPU")
    cpu.axhline(0.6 * q["vcpus"], color="red", lw=0.8, ls=":", label="60%: automatic increase after 30 days")
    if largest.vcpus != q["vcpus"]:
        cpu.axhline(largest.vcpus, color="darkred", lw=0.8, ls="--", label=f"largest tier {largest.name}")
    for xi, f in zip(x, factors, strict=True):
        cpu.annotate(
            f"{_verdict(f['quota'])}\n{f['quota']['use']:.0%} of quota",
            (xi, bottom_cpu[xi]),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            fontsize=8,
        )
    cpu.set_xticks(x, labels)
    cpu.set_ylabel("vCPU")
    cpu.set_ylim(0, max(float(bottom_cpu.max()), q["vcpus"]) * 1.25)
    cpu.set_title("vCPU against the quota")
    cpu.legend(fontsize=7, loc="upper left")
    for xi, total in zip(x, bottom_eur, strict=True):
        eur.annotate(
            f"{total:,.0f}", (xi, total), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8
        )
    eur.set_xticks(x, labels)
    eur.set_ylabel("EUR/month at peak (hourly prices)")
    eur.set_title(f"EUR/month (prices {doc['prices']['as_of']})")
    eur.legend(fontsize=8)
    fig.suptitle(f"swell plan: stack {doc['stack']} ({doc['region']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
