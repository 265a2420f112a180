"""The `swell` command line: the one place that wires each area's commands together.

Each command imports its implementation lazily, so that `swell --help` stays fast and a
command never drags in another area's heavy dependencies (Pulumi, Locust, Ansible).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from swell import __version__

app = typer.Typer(
    name="swell",
    help="Capacity as code for the web, chat and video tiers on OVHcloud.",
    no_args_is_help=True,
    # `swell --install-completion` / `--show-completion`: bash, zsh, fish, PowerShell.
    add_completion=True,
)


def examples(*lines: str) -> str:
    """A command's epilog: example command lines, each on its own line and shown as typed (help is
    rendered as rich markup, which would swallow text such as `[median / 10]`)."""
    return "Examples:\n\n" + "\n\n".join(escape(line) for line in lines)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"swell {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Capacity as code for the web, chat and video tiers on OVHcloud."""


# --- autoscaler: trace simulator (autoscaler/sim) ---------------------------------------------
trace_app = typer.Typer(help="Demand traces for the simulator.", no_args_is_help=True)
app.add_typer(trace_app, name="trace")


@app.command(
    "simulate",
    epilog=examples(
        "swell trace generate --shape surge400 --days 2 --out surge.csv",
        "swell simulate --trace surge.csv --lead-time 600 --plot surge.png",
        "swell simulate --trace data/traces/nasa-http-1995-07.csv --frontier --plot frontier.png --json",
        "swell simulate --trace surge.csv --policies swell,keda --param keda.target_utilization=0.6",
    ),
)
def _simulate(
    trace: Annotated[Path, typer.Option("--trace", help="CSV with header timestamp,demand.")],
    policies: Annotated[
        str, typer.Option("--policies", help="Comma-separated.")
    ] = "swell,hpa,keda,target-tracking,step,static,oracle",
    tick: Annotated[float, typer.Option("--tick", help="Simulation tick, seconds.")] = 15.0,
    lead_time: Annotated[float, typer.Option("--lead-time", help="Provisioning lead time, seconds.")] = 180.0,
    capacity_per_instance: Annotated[
        float | None,
        typer.Option(
            "--capacity-per-instance",
            help="Demand one instance serves within its SLO (default: the trace's median demand / 10).",
        ),
    ] = None,
    metric_lag: Annotated[
        float, typer.Option("--metric-lag", help="Scrape plus evaluation delay, s.")
    ] = 30.0,
    min_instances: Annotated[int, typer.Option("--min", help="Minimum instances.")] = 1,
    max_instances: Annotated[int, typer.Option("--max", help="Maximum instances.")] = 10_000,
    price: Annotated[float, typer.Option("--price", help="EUR per instance-hour (b3-16, Jan 2026).")] = 0.10,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write demand and supply per policy as PNG.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics as JSON instead of a table.")
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="POLICY.FIELD=VALUE, repeatable, e.g. keda.target_utilization=0.6 or "
            "swell.headroom_sigmas=3.5.",
        ),
    ] = None,
    frontier: Annotated[
        bool,
        typer.Option(
            "--frontier",
            help="Sweep hpa, keda and target-tracking over targets 0.50-0.95 and swell over its headroom; "
            "judge swell against that frontier (--plot draws it).",
        ),
    ] = False,
    billing_granularity: Annotated[
        float,
        typer.Option(
            "--billing-granularity", help="Seconds per billed period: 3600 as OVHcloud, 1 per-second."
        ),
    ] = 3600.0,
    swell_retirement: Annotated[
        Literal["hour-end", "paid-hour", "newest"],
        typer.Option(
            "--swell-retirement",
            help="How swell's scale-downs retire instances: hour-end (nearest the end of its paid hour, "
            "kept serving until then), paid-hour (that one, at once) or newest (at once, as the baselines).",
        ),
    ] = "hour-end",
    warm_pool: Annotated[
        bool,
        typer.Option(
            "--warm-pool",
            help="Give swell and target-tracking a pool of shelved, configured instances: --lead-time is "
            "then the cold one (create, boot, configure), --warm-lead-time the unshelve.",
        ),
    ] = False,
    warm_lead_time: Annotated[
        float, typer.Option("--warm-lead-time", help="Unshelve and boot, seconds (to measure on OVHcloud).")
    ] = 120.0,
    shelved_price: Annotated[
        float,
        typer.Option(
            "--shelved-price", help="A shelved hour's price as a fraction of a running hour (unconfirmed)."
        ),
    ] = 0.10,
) -> None:
    """Replay a demand trace through the scaling policies and compare elasticity and cost."""
    from autoscaler.sim.cli import simulate_command

    simulate_command(
        trace,
        policies,
        tick,
        lead_time,
        capacity_per_instance,
        metric_lag,
        min_instances,
        max_instances,
        price,
        plot,
        as_json,
        param,
        frontier,
        billing_granularity,
        swell_retirement,
        (warm_lead_time, shelved_price) if warm_pool else None,
    )


@trace_app.command(
    "generate",
    epilog=examples(
        "swell trace generate --shape daily --days 7 --out daily.csv",
        "swell trace generate --shape spike --noise 0.15 --seed 3 --out spike.csv",
    ),
)
def _trace_generate(
    shape: Annotated[
        str, typer.Option("--shape", help="daily, surge400, spike or bursty (request counts, for tuning).")
    ],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
    days: Annotated[float, typer.Option("--days", help="Length in days.")] = 7.0,
    noise: Annotated[float, typer.Option("--noise", help="Per-minute multiplicative noise (std).")] = 0.05,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed, the same trace.")] = 0,
) -> None:
    """Generate a demand trace: a 4-5x daily curve, a 400% surge, or a x4 spike."""
    from autoscaler.sim.cli import generate_command

    generate_command(shape, days, noise, seed, out)


# The autoscaler's commands keep their options beside their code; importing them loads typer, rich
# and pydantic only (adapters and SDKs are imported when a command runs).
from autoscaler import cli as _autoscaler_cli  # noqa: E402

app.command(
    "autoscale",
    epilog=examples(
        "swell autoscale -c autoscaler.yaml",
        "swell autoscale -c autoscaler.yaml --once --dry-run --json   # what it would do now",
        "SWELL_CONFIG=autoscaler.yaml swell autoscale --once",
    ),
)(_autoscaler_cli.autoscale)
app.command(
    "surge",
    epilog=examples(
        'swell surge -c autoscaler.yaml --tier video --factor 5 --for 3h --reason "launch, 400% expected"',
        "swell surge -c autoscaler.yaml --tier web --factor 3 --for 3h --at 2026-12-07T08:30+01:00",
        "swell surge -c autoscaler.yaml --list",
        "swell surge -c autoscaler.yaml --cancel sg-1a2b3c",
    ),
)(_autoscaler_cli.surge)
app.command(
    "status",
    epilog=examples("swell status -c autoscaler.yaml", "swell status -c autoscaler.yaml --json"),
)(_autoscaler_cli.status)


# --- load tests: the surge drill (loadtests/) -------------------------------------------------
@app.command(
    "drill",
    epilog=examples(
        "swell drill                                   # surge400, report in build/drill/",
        "swell drill --profile spike --json",
        "swell drill --profile surge400 --fault prometheus-outage@60:20 --fault kill-instance@90",
        "swell drill --no-autoscale --out build/baseline   # the same load on the minimum",
        "swell drill --profile spike --no-warm-pool --out build/cold   # the same load, no warm pool",
    ),
)
def _drill(
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            help="surge400 (x5 within 40 min), daily, spike (x4 within 10 min) or flash (x4 within 1 min).",
        ),
    ] = "surge400",
    speed: Annotated[
        float | None,
        typer.Option(
            "--speed", help="Time compression (default: surge400 20, daily 360, spike 7.5, flash 5)."
        ),
    ] = None,
    no_autoscale: Annotated[
        bool, typer.Option("--no-autoscale", help="Keep the minimum instances: the baseline.")
    ] = False,
    no_warm_pool: Annotated[
        bool,
        typer.Option(
            "--no-warm-pool",
            help="No pool of shelved instances (warm_pool.enabled false): new ones take the cold delay.",
        ),
    ] = False,
    no_memory: Annotated[
        bool,
        typer.Option(
            "--no-memory",
            help="swell starts without the memory of the profile's steepest rise: a first surge ever.",
        ),
    ] = False,
    faults: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="prometheus-outage@AT:FOR, kill-instance@AT, actuator-error@AT:FOR (s after load start).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Report directory.")] = Path("build/drill"),
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout.")] = False,
    base_users: Annotated[int, typer.Option("--base-users", help="Locust users at x1.")] = 30,
) -> None:
    """Rehearse a surge on this machine: HAProxy, Prometheus, tier instances, the autoscaler, Locust."""
    from loadtests.cli import drill_command

    drill_command(
        profile,
        speed,
        no_autoscale,
        faults or [],
        out,
        as_json,
        base_users,
        warm_pool=not no_warm_pool,
        memory=not no_memory,
    )


@app.command(
    "calibrate",
    epilog=examples(
        "swell calibrate --tier web   # the local reference service, real Locust: about 90 s",
        "swell calibrate --tier chat --out build/calibrate",
        "swell calibrate --tier web --target http://10.0.0.5:80 --flavor b3-16 --workers 2",
        "swell calibrate --tier web --from-log master.log   # the steps a Kubernetes run logged",
    ),
)
def _calibrate(
    tier: Annotated[
        str, typer.Option("--tier", help="web (requests/s), chat (sessions) or video (participants).")
    ],
    target: Annotated[
        str | None,
        typer.Option(
            "--target", help="URL of ONE real instance (staging); default: the local reference service."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option("--workers", help="Locust workers on this machine (distributed mode); 0: one process."),
    ] = 0,
    flavor: Annotated[
        str | None,
        typer.Option("--flavor", help="The target's flavor, recorded with the result (e.g. b3-16)."),
    ] = None,
    step_s: Annotated[
        float | None, typer.Option("--step-s", help="Seconds per step (default: 6 local, 60 with --target).")
    ] = None,
    settle_s: Annotated[
        float | None,
        typer.Option(
            "--settle-s", help="Seconds left out at each step's start (default: 1.5 local, a quarter step)."
        ),
    ] = None,
    start: Annotated[
        int | None, typer.Option("--start", help="Users at the first step (default 4; 10 with --target).")
    ] = None,
    increment: Annotated[
        int | None, typer.Option("--increment", help="Users added per step (default 4; 10 with --target).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Steps of the coarse pass (default 12; 10).")
    ] = None,
    refine: Annotated[
        bool,
        typer.Option("--refine/--no-refine", help="A finer pass between the last good and first bad step."),
    ] = True,
    slo: Annotated[
        Path | None,
        typer.Option("--slo", help="YAML {tier: {p95_ms, error_rate}}; default: the drill's SLO."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for <tier>.json, <tier>.png and logs/.")
    ] = Path("build/calibrate"),
    as_json: Annotated[bool, typer.Option("--json", help="Print <tier>.json to stdout.")] = False,
    from_log: Annotated[
        Path | None,
        typer.Option(
            "--from-log",
            help="Judge the swell-step lines of a Locust master's log (Kubernetes); run no load.",
        ),
    ] = None,
) -> None:
    """Find the knee of one instance: the highest offered load at which the tier's SLO holds.

    Writes <tier>.json (capacity_per_instance, the curve, the conditions) and <tier>.png, knee marked.

    Exit 0 knee found, 1 no knee between the steps, 2 bad option, 3 the run failed.
    """
    from loadtests.calibrate_cli import calibrate_command

    calibrate_command(
        tier,
        target,
        workers,
        flavor,
        step_s,
        settle_s,
        start,
        increment,
        steps,
        refine,
        slo,
        out,
        as_json,
        from_log,
    )


@app.command(
    "plan",
    epilog=examples(
        "swell plan --stack prod-gra11 --calibration build/calibrate --peak web=420 --peak chat=90",
        "swell plan --stack prod-gra11 --calibration build/calibrate --peak web=web.csv --factor 2,4",
        "swell plan --stack prod-gra11 --calibration build/calibrate --prometheus http://127.0.0.1:9090 "
        "--range 7d --peak 'web=query:tier:swell_offered_demand:avg5m{tier=\"web\"}'",
        "swell plan --stack prod-gra11 --calibration build/calibrate --peak web=420 "
        "--autoscaler-config autoscaler.yaml --write",
    ),
)
def _plan(
    stack: Annotated[str, typer.Option("--stack", help="Reads Pulumi.<stack>.yaml: flavors, counts, quota.")],
    calibration: Annotated[
        list[Path],
        typer.Option("--calibration", help="A `swell calibrate` JSON, or a directory of them (repeatable)."),
    ],
    peak: Annotated[
        list[str],
        typer.Option(
            "--peak",
            help="TIER=NUMBER (today's peak, in the tier's unit), TIER=TRACE.csv or TIER=query:PROMQL "
            "(with --prometheus, over --range). Repeatable.",
        ),
    ],
    factor: Annotated[
        str, typer.Option("--factor", help="Growth factors, comma-separated (x1 is always shown).")
    ] = "2,4",
    lead_time: Annotated[
        float | None,
        typer.Option(
            "--lead-time", help="Seconds from order to ready (default: the autoscaler's, else 180)."
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy", help="swell, keda or target-tracking (default: the autoscaler's, else swell)."
        ),
    ] = None,
    autoscaler_config: Annotated[
        Path | None,
        typer.Option(
            "--autoscaler-config", help="The autoscaler's YAML: its capacity_per_instance and max change too."
        ),
    ] = None,
    prometheus: Annotated[
        str | None, typer.Option("--prometheus", help="Prometheus URL for query: peaks.")
    ] = None,
    range_: Annotated[
        str, typer.Option("--range", help="How far back a query: peak looks (e.g. 7d).")
    ] = "7d",
    step: Annotated[str, typer.Option("--step", help="Resolution of a query: peak (e.g. 60s).")] = "60s",
    regions: Annotated[
        str | None,
        typer.Option(
            "--regions", help="Regions a split may use, in order (default: stacks/data/ovhcloud.yaml)."
        ),
    ] = None,
    project_dir: Annotated[
        Path, typer.Option("--project-dir", help="The directory with Pulumi.yaml and the stack files.")
    ] = Path("."),
    write: Annotated[
        bool, typer.Option("--write", help="Apply the changes to the stack and autoscaler files.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    out: Annotated[Path, typer.Option("--out", help="Directory for plan.md, plan.png and plan.json.")] = Path(
        "build/plan"
    ),
) -> None:
    """Plan x2, x4: instances per tier, quota, EUR/month, and the stack and autoscaler changes.

    Prints the table, the quota verdicts (a region split when one region cannot hold a factor), the diff.

    Writes plan.md, plan.png and plan.json to --out. Exit 0 planned, 1 --write refused, 2 bad input.
    """
    from swell.planning.command import PlanOptions, plan_command

    plan_command(
        PlanOptions(
            stack=stack,
            calibrations=calibration,
            peaks=peak,
            factors=factor,
            lead_time_s=lead_time,
            policy=policy,
            autoscaler_config=autoscaler_config,
            prometheus=prometheus,
            range=range_,
            step=step,
            regions=regions,
            write=write,
            as_json=as_json,
            out=out,
            project_dir=project_dir,
        )
    )


@app.command(
    epilog=examples(
        "swell preview --stack prod-gra11",
        "swell preview --stack dev --set tiers.web.count=8 --json",
    ),
)
def preview(
    stack: str = typer.Option("dev", "--stack", help="Stack name: reads Pulumi.<stack>.yaml."),
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config value, e.g. tiers.web.count=8 (repeatable; `swell:` implied)."
        ),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print the summary and the stack outputs as JSON."),
) -> None:
    """Offline preview of a stack: resources per tier, vCPU/RAM against quota, monthly cost. No cloud call."""
    from stacks.preview import main as preview_main

    raise typer.Exit(preview_main(stack, sets or [], as_json))


@app.command(
    "configure",
    epilog=examples(
        "pulumi stack output --json --stack prod-gra11 > outputs.json",
        "swell configure --stack-outputs outputs.json --check --diff",
        "swell configure --stack-outputs outputs.json --limit video --address public",
    ),
)
def configure_command(
    stack_outputs: Annotated[
        Path,
        typer.Option(
            "--stack-outputs", help="JSON from `pulumi stack output --json` (ARCHITECTURE.md contract)."
        ),
    ],
    limit: Annotated[
        str | None,
        typer.Option("--limit", help="Only this tier (a tier of swell/data/tiers.yaml: web, chat, video)."),
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Report what would change; change nothing.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show the changes made to files.")] = False,
    admin_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--admin-cidr", help="Network allowed to SSH (repeatable); adds to the outputs' admin_cidrs."
        ),
    ] = None,
    ssh_user: Annotated[str, typer.Option("--ssh-user", help="Login user on the instances.")] = "debian",
    address: Annotated[
        Literal["private", "public"],
        typer.Option("--address", help="Reach instances by their private or public address."),
    ] = "private",
    ssh_jump: Annotated[str | None, typer.Option("--ssh-jump", help="Bastion user@host for ssh -J.")] = None,
    extra_vars: Annotated[
        list[str] | None,
        typer.Option("--extra-vars", "-e", help="KEY=VALUE (YAML value) or @FILE, as for ansible-playbook."),
    ] = None,
    timeout: Annotated[int, typer.Option("--timeout", help="Stop the run after this many seconds.")] = 3600,
) -> None:
    """Converge the hosts of a stack: run playbooks/site.yml through ansible-runner."""
    from swell.configure.command import ConfigureOptions, configure

    options = ConfigureOptions(
        stack_outputs=stack_outputs,
        limit=limit,
        check=check,
        diff=diff,
        admin_cidrs=tuple(admin_cidr or ()),
        ssh_user=ssh_user,
        address=address,
        ssh_jump=ssh_jump,
        extra_vars=tuple(extra_vars or ()),
        timeout_s=timeout,
    )
    raise typer.Exit(configure(options))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
