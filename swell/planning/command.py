"""`swell plan`: read the inputs, plan every factor, show the changes, and with `--write` apply them.

Exit codes: 0 the plan is printed (quota flags are part of it, not failures); 1 `--write` refused
(the changed files would not load: nothing written); 2 a bad input, named.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

from autoscaler.config import ConfigError, load_config, parse_config
from autoscaler.core.registry import service_policies
from stacks import catalog
from stacks import config as stack_config
from swell.planning import report
from swell.planning.edits import EditError, FileEdit, autoscaler_edit, readable, stack_edit
from swell.planning.inputs import (
    Calibration,
    Peak,
    PlanInputError,
    PrometheusRange,
    load_calibrations,
    parse_duration,
    parse_factors,
    parse_peaks,
    parse_regions,
)
from swell.planning.model import FactorPlan, TierSettings, plan_factors, planning_data

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class PlanOptions:
    stack: str
    calibrations: list[Path]
    peaks: list[str]
    factors: str = "2,4"
    lead_time_s: float | None = None
    policy: str | None = None
    autoscaler_config: Path | None = None
    prometheus: str | None = None
    range: str = "7d"
    step: str = "60s"
    regions: str | None = None
    write: bool = False
    as_json: bool = False
    out: Path | None = None
    project_dir: Path = Path(".")  # where Pulumi.yaml and Pulumi.<stack>.yaml are


def load_stack(
    stack: str, project_dir: Path
) -> tuple[Path, dict[str, Any], stack_config.StackConfig, list[str]]:
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(
            p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in project_dir.glob("Pulumi.*.yaml")
        )
        raise PlanInputError(
            f"--stack {stack!r}: no {path.name} in {project_dir}; known stacks: {', '.join(known)}"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PlanInputError(f"--stack {stack}: {path.name} is not valid YAML ({exc})") from None
    values, notes = readable(dict(raw.get("config") or {}))
    try:
        cfg = stack_config.parse(values, stack)
    except stack_config.ConfigError as exc:
        raise PlanInputError(f"--stack {stack}: {exc}") from None
    return path, values, cfg, notes


def tier_settings(o: PlanOptions, tiers: list[str], autoscaler: Any | None) -> dict[str, TierSettings]:
    if o.policy is not None and o.policy not in service_policies():
        raise PlanInputError(
            f"--policy {o.policy!r}: expected one of {', '.join(service_policies())} (the service's)"
        )
    if o.lead_time_s is not None and not (math.isfinite(o.lead_time_s) and 0 <= o.lead_time_s <= 86400):
        raise PlanInputError(f"--lead-time {o.lead_time_s}: expected seconds between 0 and 86400")
    out = {}
    for tier in tiers:
        configured = autoscaler.tiers.get(tier) if autoscaler is not None else None
        out[tier] = TierSettings(
            policy=o.policy or (configured.policy if configured else "swell"),
            lead_time_s=o.lead_time_s
            if o.lead_time_s is not None
            else (configured.lead_time_s if configured else 180.0),
        )
    return out


def changes(
    plans: list[FactorPlan],
    cfg: stack_config.StackConfig,
    calibrations: dict[str, Calibration],
    peaks: dict[str, Peak],
) -> dict[str, Any]:
    """What to set for the largest factor: this stack's share of it (all of it, unless split)."""
    target, today = plans[-1], plans[0]
    k = max(1, len(target.split))
    home = target.split[0].tiers if target.split else {t: p.instances for t, p in target.tiers.items()}
    stack_tiers, autoscaler_tiers = {}, {}
    for name, tier in cfg.tiers.items():
        if name not in peaks:
            if k > 1:
                # Split at its current max by the quota check: this stack keeps its share of it.
                share_max = max(home[name], tier.min, 1)
                stack_tiers[name] = {"count": max(tier.min, min(tier.count, share_max)), "max": share_max}
            continue
        new_max = max(home[name], tier.min, 1)
        today_share = math.ceil(today.tiers[name].instances / k)
        new_count = min(new_max, max(tier.count, today_share, tier.min))
        if tier.instances is not None:
            # The autoscaler names the serving indices: the count goes with them, it is its to set.
            new_count = tier.count
        stack_tiers[name] = {"count": new_count, "max": new_max}
        autoscaler_tiers[name] = {
            "capacity_per_instance": calibrations[name].capacity_per_instance,
            "max": new_max,
        }
    return {
        "factor": target.factor,
        "regions": k,
        "stack": stack_tiers,
        "autoscaler": autoscaler_tiers,
        "regional_stacks": regional_stacks(target, today, cfg, peaks),
    }


def regional_stacks(
    target: FactorPlan, today: FactorPlan, cfg: stack_config.StackConfig, peaks: dict[str, Peak]
) -> list[dict[str, Any]]:
    """The other regions of a split: one stack each, from the same program, made from this stack's
    configuration with its region, its quota tier and its share of each tier (`set`), and the Pulumi
    commands that make it. `swell plan` writes none of them: a new stack is an operator's decision."""
    k = len(target.split)
    out = []
    for share in target.split[1:]:
        values: dict[str, Any] = {
            stack_config.REGION_KEY: share.region,
            f"{stack_config.PROJECT}:quota": share.quota_tier or cfg.quota_limits.name,
        }
        for name, tier in cfg.tiers.items():
            new_max = max(share.tiers[name], tier.min, 1)
            if name in peaks:
                count = min(new_max, max(math.ceil(today.tiers[name].instances / k), tier.min))
            else:
                count = min(new_max, max(tier.count, tier.min))
            values[f"{stack_config.PROJECT}:tiers.{name}.count"] = count
            values[f"{stack_config.PROJECT}:tiers.{name}.max"] = new_max
        commands = [f"pulumi stack init {share.stack} --copy-config-from {cfg.stack}"]
        for key, value in values.items():
            path = " --path" if key.count(".") else ""
            commands.append(f"pulumi config set --stack {share.stack}{path} {key} {value}")
        out.append({"region": share.region, "stack": share.stack, "set": values, "commands": commands})
    return out


def check_limits(
    edit: FileEdit, stack: str, new_stack: dict[str, dict[str, int]], cfg: stack_config.StackConfig
) -> None:
    """EditError when a tier of the edited autoscaler file on this stack would widen the stack's new
    limits (the service refuses to start then, naming the key)."""
    service = parse_config(yaml.safe_load(edit.after), str(edit.path))
    for name, tier in service.tiers.items():
        if tier.actuator.kind != "pulumi" or getattr(tier.actuator, "stack", None) != stack:
            continue
        stack_tiers = dict(cfg.tiers.items())
        if name not in stack_tiers:
            continue
        own = stack_tiers[name]
        bounds = (own.min, int(new_stack.get(name, {}).get("max", own.max)))
        try:
            tier.limits(bounds)
        except ConfigError as exc:
            raise EditError(f"{edit.path}: tiers.{name}.{exc}") from None


def plan_command(o: PlanOptions) -> None:
    err = Console(stderr=True, soft_wrap=True)

    def fail(message: str, code: int = EXIT_USAGE) -> None:
        err.print(f"error: {message}", markup=False, highlight=False)
        raise typer.Exit(code)

    notes: list[str] = []
    try:
        stack_path, _, cfg, read_notes = load_stack(o.stack, o.project_dir)
        notes += read_notes
        calibrations = load_calibrations(o.calibrations)
        if not calibrations:
            raise PlanInputError(
                "--calibration: give the calibration file of each tier to plan (swell calibrate)"
            )
        factors = parse_factors(o.factors)
        prom = PrometheusRange(
            o.prometheus, parse_duration(o.range, "--range"), parse_duration(o.step, "--step")
        )
        peaks = parse_peaks(o.peaks, prom, time.time())
        missing = [t for t in peaks if t not in calibrations]
        if missing:
            raise PlanInputError(
                f"--peak {missing[0]}: no --calibration for tier {missing[0]} "
                f"(swell calibrate --tier {missing[0]})"
            )
        autoscaler = None
        if o.autoscaler_config is not None:
            try:
                autoscaler = load_config(o.autoscaler_config)
            except ConfigError as exc:
                raise PlanInputError(f"--autoscaler-config: {exc}") from None
        settings = tier_settings(o, list(peaks), autoscaler)
        regions = parse_regions(o.regions, planning_data().regions)
        plans = plan_factors(cfg, calibrations, peaks, factors, settings, regions)
    except (PlanInputError, ValueError) as exc:
        fail(str(exc))
        return
    stack_tiers: dict[str, stack_config.TierConfig] = dict(cfg.tiers.items())
    for name, cal in calibrations.items():
        stack_flavor = stack_tiers[name].flavor
        if name in peaks and cal.flavor != stack_flavor:
            notes.append(
                f"{name} was calibrated on {cal.flavor or 'an unknown flavor'} ({cal.target}); the stack "
                f"runs {stack_flavor}: calibrate one {stack_flavor} instance (swell calibrate --target URL "
                f"--flavor {stack_flavor}) before ordering"
            )
    numbers = [t for t, p in peaks.items() if p.trace is None]
    if numbers:
        notes.append(
            f"{', '.join(numbers)}: a single peak number, so instances are peak / capacity with no headroom "
            "for the lead time; give a trace or a Prometheus query to have the policy's headroom simulated"
        )
    for name, plan in plans[-1].tiers.items():
        if not plan.planned:
            note = f"{name}: no --peak: counted at its current max ({plan.instances}) in every factor"
            if plans[-1].split:
                note += "; split over the regions like the others, so its max here is this stack's share"
            notes.append(note)
    todo = changes(plans, cfg, calibrations, peaks)
    notes.append(
        f"the counts in {stack_path.name} are the last commit's, not the live ones: before --write on a "
        "stack the autoscaler drives, read them back (pulumi config refresh --force; docs/stacks.md)"
    )
    edits: list[FileEdit] = []
    try:
        edits.append(stack_edit(stack_path, o.stack, todo["stack"]))
        if o.autoscaler_config is not None and autoscaler is not None:
            mine = {}
            for name, values_ in todo["autoscaler"].items():
                tier = autoscaler.tiers.get(name)
                if tier is None:
                    notes.append(f"the autoscaler configuration has no tier {name}: not changed")
                    continue
                stack = getattr(tier.actuator, "stack", o.stack)
                if tier.actuator.kind == "pulumi" and stack != o.stack:
                    notes.append(f"the autoscaler's {name} drives stack {stack}, not {o.stack}: not changed")
                    continue
                if tier.quota is not None and tier.quota < values_["max"]:
                    notes.append(
                        f"the autoscaler's tiers.{name}.quota ({tier.quota}) is below the new max "
                        f"({values_['max']}): it caps the tier there until the project's quota is raised"
                    )
                if tier.actuator.kind == "pulumi" and tier.max is None:
                    # The stack's max is the limit (one source); the autoscaler file gets only the knee.
                    values_ = {k: v for k, v in values_.items() if k != "max"}
                mine[name] = values_
            edit = autoscaler_edit(o.autoscaler_config, mine)
            edits.append(edit)
            # The service narrows the stack's limits by its own: they must not widen the new ones.
            check_limits(edit, o.stack, todo["stack"], cfg)
    except EditError as exc:
        fail(f"the plan's changes would not load, nothing is written:\n{exc}", EXIT_REFUSED)
        return
    doc = report.document(o, cfg, calibrations, peaks, settings, plans, todo, edits, notes)
    if o.out is not None:
        o.out.mkdir(parents=True, exist_ok=True)
        (o.out / "plan.json").write_text(json.dumps(doc, indent=2) + "\n")
        (o.out / "plan.md").write_text(report.markdown(doc))
        report.picture(doc, o.out / "plan.png")
        doc["files"] = {k: str(o.out / f"plan.{k}") for k in ("json", "md", "png")}
    if o.write:
        for edit in edits:
            if edit.changed:
                edit.write()
    if o.as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        report.render(doc, edits, Console(), written=o.write)
    raise typer.Exit(EXIT_OK)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def prices() -> dict[str, Any]:
    cat, data = catalog.load(), planning_data()
    return {
        "as_of": cat.as_of,
        "source": cat.source,
        "basis": cat.basis,
        "hours_per_month": cat.hours_per_month,
        "savings_plans": {
            "as_of": data.savings_as_of,
            "source": data.savings_source,
            "known_flavors": sorted(data.savings_eur_per_month),
        },
    }
