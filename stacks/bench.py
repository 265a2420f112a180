"""Benchmark: time the stack program under Pulumi's mocks at 10, 100 and 1000 instances.

Goal (issue 2): 1000 instances resolve in at most 6 s on 2 cores. Each size runs `--repeat` times in
this one process (which also exercises the engine's reset between runs); the figures (median and best
wall time, resources declared, ms per instance) go to the terminal, to build/bench-stacks.json and to
build/bench-stacks.png. Instances are split 40% web, 20% chat, 40% video, so load balancer members
(one per web/chat instance) are part of the cost. Run: `make bench-stacks`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from stacks import engine, preview

GOAL_SECONDS = 6.0
GOAL_INSTANCES = 1000


def values_for(total: int) -> dict[str, Any]:
    """The dev stack with `total` instances split 40/20/40, and a quota large enough to allow them."""
    values: dict[str, Any] = yaml.safe_load(preview.stack_file("dev").read_text())["config"]
    web = total * 2 // 5
    chat = total // 5
    counts = {"web": web, "chat": chat, "video": total - web - chat}
    for tier, count in counts.items():
        values["swell:tiers"][tier].update(count=count, min=0, max=count)
    values["swell:quota"] = {"instances": total, "vcpus": 8 * total, "ramGb": 32 * total}
    return values


def measure(total: int, repeat: int) -> dict[str, Any]:
    values = values_for(total)
    times = []
    cpu = []
    resources = 0
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        rec = engine.run(values, "dev")
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        resources = len(rec.resources)
        assert sum(len(t["instances"]) for t in rec.outputs["tiers"].values()) == total
    median = statistics.median(times)
    return {
        "instances": total,
        "resources": resources,
        "runs": repeat,
        "median_s": round(median, 3),
        "best_s": round(min(times), 3),
        # CPU time of this process (all its threads): what a machine with no one else on it would
        # approach, since the GIL keeps the program on about one core.
        "median_cpu_s": round(statistics.median(cpu), 3),
        "ms_per_instance": round(1000 * median / total, 2),
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["instances"] for r in rows]
    ax.plot(xs, [r["median_s"] for r in rows], marker="o", label="median")
    ax.plot(xs, [r["best_s"] for r in rows], marker="x", linestyle="--", label="best")
    ax.plot(xs, [r["median_cpu_s"] for r in rows], marker="s", linestyle="-.", label="median CPU time")
    ax.axhline(
        GOAL_SECONDS, color="red", linestyle=":", label=f"goal: {GOAL_INSTANCES} in {GOAL_SECONDS:.0f} s"
    )
    ax.set_xscale("log")
    ax.set_xlabel("instances (40% web, 20% chat, 40% video)")
    ax.set_ylabel("seconds under Pulumi mocks")
    ax.set_title("swell stack program, offline")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=preview.PROJECT_DIR / "build")
    args = parser.parse_args(argv)
    console = Console()
    rows = []
    with Progress(console=console) as progress:
        task = progress.add_task("running the stack program under mocks", total=len(args.sizes))
        for size in args.sizes:
            rows.append(measure(size, args.repeat))
            progress.advance(task)
    table = Table(title="stack program under mocks")
    keys = ("instances", "resources", "median_s", "best_s", "median_cpu_s", "ms_per_instance")
    for column in ("instances", "resources", "median s", "best s", "median CPU s", "ms/instance"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(*(str(r[k]) for k in keys))
    console.print(table)
    goal = next((r for r in rows if r["instances"] == GOAL_INSTANCES), None)
    verdict: dict[str, Any] = {}
    if goal:
        verdict = {
            "goal_s": GOAL_SECONDS,
            "ratio_to_goal": round(goal["median_s"] / GOAL_SECONDS, 2),
            "cpu_ratio_to_goal": round(goal["median_cpu_s"] / GOAL_SECONDS, 2),
        }
        ok = goal["median_s"] <= GOAL_SECONDS
        console.print(
            f"{GOAL_INSTANCES} instances: median wall {goal['median_s']} s = "
            f"{verdict['ratio_to_goal']:.2f} x the "
            f"{GOAL_SECONDS:.0f} s goal ({'[green]met[/green]' if ok else '[red]missed[/red]'}); median CPU "
            f"{goal['median_cpu_s']} s = {verdict['cpu_ratio_to_goal']:.2f} x. {os.cpu_count()} CPUs, load "
            f"average {os.getloadavg()[0]:.1f}: on a shared machine wall time is noisy, CPU time less so."
        )
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "rows": rows,
        **verdict,
    }
    (args.out / "bench-stacks.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, args.out / "bench-stacks.png")
    console.print(f"wrote {args.out / 'bench-stacks.json'} and {args.out / 'bench-stacks.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
