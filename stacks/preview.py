"""`swell preview`: what a stack would declare, its vCPU/RAM against OVHcloud quota tiers, and its cost.

It runs the real stack program under Pulumi's mocks (stacks/engine.py): no cloud call, no state, so it
shows the whole desired stack, not a diff against what is deployed (`pulumi preview` does that).
Prices come from the dated table in stacks/data/ovhcloud.yaml.
"""

from __future__ import annotations

import copy
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from stacks import catalog, config
from stacks.policy import checks
from swell import tiers as tier_catalog

# The checkout this code runs from; in a wheel or pipx install it holds no Pulumi.yaml.
PROJECT_DIR = Path(__file__).resolve().parents[1]
DISCLAIMER = (
    "Offline: the stack program ran under Pulumi's mocks; no cloud call was made and no state was read, "
    "so this is the whole desired stack, not a diff against what is deployed."
)


class PreviewError(ValueError):
    """A stack file or --set override that cannot be previewed; the message says what to fix."""


def find_project_dir(start: Path | None = None) -> Path:
    """The Pulumi project whose stacks to preview: the nearest directory holding Pulumi.yaml from the
    working directory up, as the Pulumi CLI finds it; else the checkout this code runs from. An
    installed swell (wheel, pipx) previews the project it is run in."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return PROJECT_DIR if (PROJECT_DIR / "Pulumi.yaml").is_file() else here


def stack_file(stack: str, project_dir: Path | None = None) -> Path:
    return (project_dir or find_project_dir()) / f"Pulumi.{stack}.yaml"


def load_stack_values(stack: str, project_dir: Path | None = None) -> dict[str, Any]:
    project_dir = project_dir or find_project_dir()
    path = stack_file(stack, project_dir)
    if not path.is_file():
        known = sorted(
            p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in project_dir.glob("Pulumi.*.yaml")
        )
        raise PreviewError(
            f"no stack file {path.name} in {project_dir}; known stacks: {', '.join(known) or 'none'} "
            "(run swell preview in the Pulumi project, the directory holding Pulumi.yaml)"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    values = raw.get("config") or {}
    secrets = [k for k, v in values.items() if isinstance(v, dict) and set(v) == {"secure"}]
    if secrets:
        raise PreviewError(
            f"{path.name}: {', '.join(secrets)} are secrets, which only the Pulumi CLI can decrypt; "
            "the offline preview needs a stack without secrets"
        )
    return dict(values)


def apply_sets(values: Mapping[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """Apply `--set tiers.web.count=8` overrides (paths as `pulumi config set --path`, `swell:` implied)."""
    out = copy.deepcopy(dict(values))
    for item in sets:
        path, sep, text = item.partition("=")
        if not sep or not path:
            raise PreviewError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. tiers.web.count=8")
        key, *rest = path.split(".")
        full_key = key if ":" in key else f"{config.PROJECT}:{key}"
        value = yaml.safe_load(text) if text else ""
        if not rest:
            out[full_key] = value
            continue
        node = out.setdefault(full_key, {})
        for part in rest[:-1]:
            if not isinstance(node, dict):
                raise PreviewError(f"--set {item!r}: {part!r} is inside a value that is not an object")
            node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise PreviewError(f"--set {item!r}: {rest[-1]!r} is inside a value that is not an object")
        node[rest[-1]] = value
    return out


@dataclass(frozen=True)
class TierLine:
    tier: str
    flavor: str
    # Every instance the program declares (serving, retiring and the warm pool); `warm` and
    # `filling` say how many of them are in the pool. All are priced at the running price: what
    # OVHcloud bills for a shelved one is not confirmed (stacks/data/ovhcloud.yaml), so an upper bound.
    instances: int
    warm: int
    filling: int
    vcpus: int
    ram_gb: int
    eur_per_month: float
    resources: dict[str, int]


@dataclass(frozen=True)
class Summary:
    stack: str
    region: str
    tiers: list[TierLine]
    shared_resources: dict[str, int]
    total_resources: int
    instances: int
    vcpus: int
    ram_gb: int
    eur_per_month: float
    quota: dict[str, Any]
    quota_fits: bool
    smallest_ovhcloud_quota_tier: str | None
    max_instances: int
    max_vcpus: int
    max_ram_gb: int
    max_fits_quota: bool
    prices: dict[str, Any]
    unpriced: list[str]
    # The policy pack's checks (stacks/policy/checks.py) over what the program declared.
    policies: dict[str, list[str]]
    offline_note: str


def _short(type_: str) -> str:
    return type_.rsplit(":", 1)[-1]


def summarize(recording: Any) -> Summary:
    cat = catalog.load()
    cfg: config.StackConfig = recording.config
    # Components are not cloud resources, nor is the program's read of its own last outputs.
    custom = [r for r in recording.resources if not r.type.startswith(("swell:", "pulumi:"))]
    fixed = {g.name: g for g in tier_catalog.load().fixed}
    # Tiers, then fixed groups (chat store, shards): each a line of its own.
    flavors_of = {name: t.flavor for name, t in cfg.tiers.items()} | {n: g.flavor for n, g in fixed.items()}
    per_tier: dict[str, Counter[str]] = {name: Counter() for name in flavors_of}
    shared: Counter[str] = Counter()
    for r in custom:
        owner = r.name.split("-", 1)[0]
        per_tier.get(owner, shared)[_short(r.type)] += 1
    lines = []
    for name, flavor_name in flavors_of.items():
        flavor = cat.flavors[flavor_name]
        lines.append(
            TierLine(
                tier=name,
                flavor=flavor_name,
                instances=per_tier[name]["Instance"],
                warm=len(cfg.tiers[name].warm) if name in cfg.tiers else 0,
                filling=len(cfg.tiers[name].filling) if name in cfg.tiers else 0,
                vcpus=per_tier[name]["Instance"] * flavor.vcpus,
                ram_gb=per_tier[name]["Instance"] * flavor.ram_gb,
                eur_per_month=round(
                    per_tier[name]["Instance"] * flavor.eur_per_hour * cat.hours_per_month, 2
                ),
                resources=dict(sorted(per_tier[name].items())),
            )
        )
    quota = cfg.quota_limits
    instances = sum(line.instances for line in lines)
    vcpus = sum(line.vcpus for line in lines)
    ram_gb = sum(line.ram_gb for line in lines)
    fitting = cat.smallest_quota_fitting(instances, vcpus, ram_gb)
    # At every tier's max, with the fixed groups as they are (never scaled).
    at_max = [(t.max, t.flavor) for t in cfg.tiers.values()]
    at_max += [(cfg.fixed_count(g), g.flavor) for g in fixed.values()]
    max_instances = sum(n for n, _ in at_max)
    max_vcpus = sum(n * cat.flavors[f].vcpus for n, f in at_max)
    max_ram_gb = sum(n * cat.flavors[f].ram_gb for n, f in at_max)
    kinds = Counter(_short(r.type) for r in custom)
    return Summary(
        stack=cfg.stack,
        region=cfg.region,
        tiers=lines,
        shared_resources=dict(sorted(shared.items())),
        total_resources=len(custom),
        instances=instances,
        vcpus=vcpus,
        ram_gb=ram_gb,
        eur_per_month=round(sum(line.eur_per_month for line in lines), 2),
        quota=asdict(quota),
        quota_fits=instances <= quota.instances and vcpus <= quota.vcpus and ram_gb <= quota.ram_gb,
        smallest_ovhcloud_quota_tier=fitting.name if fitting else None,
        max_instances=max_instances,
        max_vcpus=max_vcpus,
        max_ram_gb=max_ram_gb,
        max_fits_quota=max_instances <= quota.instances
        and max_vcpus <= quota.vcpus
        and max_ram_gb <= quota.ram_gb,
        prices={
            "as_of": cat.as_of,
            "source": cat.source,
            "currency": cat.currency,
            "basis": cat.basis,
            "hours_per_month": cat.hours_per_month,
        },
        unpriced=sorted(k for k in kinds if k in ("LoadBalancer", "FloatingIp")),
        policies=checks.check_all([(r.type, r.inputs, r.id) for r in custom], quota, cat),
        offline_note=DISCLAIMER,
    )


def render(summary: Summary, console: Console) -> None:
    console.print(f"[bold]swell preview[/bold]: stack [cyan]{summary.stack}[/cyan], region {summary.region}")
    console.print(f"[yellow]{summary.offline_note}[/yellow]")
    table = Table(title="Instances per tier")
    for column in ("tier", "flavor", "instances", "vCPU", "RAM GB", f"{summary.prices['currency']}/month"):
        table.add_column(column, justify="left" if column in ("tier", "flavor") else "right")
    for line in summary.tiers:
        pool = ", ".join(f"{n} {what}" for n, what in ((line.warm, "warm"), (line.filling, "filling")) if n)
        table.add_row(
            line.tier,
            line.flavor,
            f"{line.instances} ({pool})" if pool else str(line.instances),
            str(line.vcpus),
            str(line.ram_gb),
            f"{line.eur_per_month:.2f}",
        )
    table.add_row(
        "total",
        "",
        str(summary.instances),
        str(summary.vcpus),
        str(summary.ram_gb),
        f"{summary.eur_per_month:.2f}",
        style="bold",
    )
    console.print(table)
    resources = Table(title=f"Resources the program declares ({summary.total_resources})")
    owners = [line.tier for line in summary.tiers] + ["shared"]
    counts = {line.tier: line.resources for line in summary.tiers} | {"shared": summary.shared_resources}
    resources.add_column("type")
    for owner in owners:
        resources.add_column(owner, justify="right")
    for kind in sorted({k for c in counts.values() for k in c}):
        resources.add_row(kind, *(str(counts[o].get(kind, "")) for o in owners))
    console.print(resources)
    q = summary.quota
    verdict = "[green]fits[/green]" if summary.quota_fits else "[red]EXCEEDS[/red]"
    console.print(
        f"Quota {q['name']!r} ({q['instances']} VMs / {q['vcpus']} vCPU / {q['ram_gb']} GB): {verdict} "
        f"({summary.instances} VMs / {summary.vcpus} vCPU / {summary.ram_gb} GB); "
        "smallest OVHcloud quota tier "
        f"that holds it: {summary.smallest_ovhcloud_quota_tier or 'none (above the largest)'}"
    )
    at_max = f"{summary.max_instances} VMs / {summary.max_vcpus} vCPU / {summary.max_ram_gb} GB"
    if summary.max_fits_quota:
        console.print(f"Every tier at its max ({at_max}) still fits the quota.")
    else:
        console.print(f"[red]Warning[/red]: every tier at its max ({at_max}) would exceed the quota.")
    failed = {name: found for name, found in summary.policies.items() if found}
    if failed:
        console.print(f"[red]Policies: {len(failed)} of {len(summary.policies)} fail[/red]")
        for name, found in failed.items():
            for message in found:
                console.print(f"  [red]{name}[/red]: {message}", highlight=False)
    else:
        console.print(f"Policies: all {len(summary.policies)} pass ({', '.join(summary.policies)}).")
    p = summary.prices
    console.print(
        f"Prices: {p['currency']} {p['basis']}, as of {p['as_of']} ({p['source']}); "
        f"month = {p['hours_per_month']} h. "
        f"Instances only: {', '.join(summary.unpriced) or 'nothing else'} not priced (not in the table)."
    )
    if any(line.warm for line in summary.tiers):
        console.print(
            "Warm (shelved) instances are priced at the running price, an upper bound: what OVHcloud "
            "bills for a shelved instance is not confirmed (stacks/data/ovhcloud.yaml, shelved_instances)."
        )


def main(stack: str, sets: Sequence[str], as_json: bool, project_dir: Path | None = None) -> int:
    """Entry point of `swell preview`; returns the exit code."""
    from stacks import engine

    console = Console()
    try:
        values = apply_sets(load_stack_values(stack, project_dir), sets)
        # Secrets can reach an offline preview only from the command line (`--set`): treat them as
        # the CLI treats keys set with --secret.
        secret = [k for k in (f"{config.PROJECT}:secrets", f"{config.PROJECT}:tls") if k in values]
        recording = engine.run(values, stack, secret_keys=secret)
    except (PreviewError, config.ConfigError) as e:
        print(f"swell preview: {e}", file=sys.stderr)
        return 2
    summary = summarize(recording)
    failed = any(summary.policies.values())
    if as_json:
        print(json.dumps({"summary": asdict(summary), "outputs": recording.outputs}, indent=2))
    else:
        render(summary, console)
    # Mandatory policies: a violation fails the preview as it would fail `pulumi up`.
    return 1 if failed else 0
