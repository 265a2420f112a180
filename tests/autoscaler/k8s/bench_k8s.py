"""Benchmark: the Kubernetes side of one autoscaler pass over many tiers, official client vs the stand-in.

One pass = renew the Lease, read every tier's capacity, scale every tier (idempotent: read, no
write), save the loop state and read the overrides. The stand-in answers in microseconds, so this
measures the client's own cost (HTTP, JSON, pydantic models) per call, not a real API server's
latency (add the cluster's round trip per call for that). It also reports the size of the saved
loop state against the 1 MiB a ConfigMap may hold.

    make bench-k8s            # or: .venv/bin/python tests/autoscaler/k8s/bench_k8s.py --tiers 100 --passes 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from kubernetes import client
from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from k8s_standin import running_standin

from autoscaler.adapters.k8s import (
    ConfigMapStateSettings,
    ConfigMapStateStore,
    DeploymentRef,
    KubernetesActuator,
    KubernetesActuatorSettings,
    LeaseLeaderElector,
    LeaseSettings,
)
from autoscaler.adapters.k8s.state import MAX_DATA_BYTES
from autoscaler.ports import LoopState

INTERVAL_S = 15.0  # the loop's default interval
PASS_BUDGET_MS = 200.0  # issue 4's budget for one whole pass over 100 tiers


def loop_state(tiers: list[str], decisions: int, now: float) -> LoopState:
    """A realistic worst case: each tier with 20 minutes of 15 s history and `decisions` recent decisions."""
    history = [[now - 15 * i, 10 + i % 7] for i in range(80)]
    return LoopState(
        policy_state={t: {"history": history, "last_scale_up": now - 60} for t in tiers},
        last_desired={t: 12 for t in tiers},
        recent_decisions={
            t: [
                {
                    "at": now - 15 * i,
                    "current": 10,
                    "desired": 12,
                    "direction": "up",
                    "reason": "surge",
                    "limited_by": None,
                }
                for i in range(decisions)
            ]
            for t in tiers
        },
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", type=int, default=100)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--decisions", type=int, default=20, help="recent decisions kept per tier")
    parser.add_argument("--json", type=Path, default=Path("out/bench-k8s.json"))
    args = parser.parse_args()
    console = Console()
    tiers = [f"tier{i:03d}" for i in range(args.tiers)]
    now = 1_790_000_000.0
    with running_standin() as server:
        api = client.ApiClient(client.Configuration(host=server.url))
        for t in tiers:
            server.add_deployment("collab", t, replicas=12)
        actuator = KubernetesActuator(
            api, KubernetesActuatorSettings(deployments={t: DeploymentRef(t, "collab") for t in tiers})
        )
        elector = LeaseLeaderElector(api, LeaseSettings(namespace="ops"), identity="bench")
        store = ConfigMapStateStore(api, ConfigMapStateSettings(namespace="ops"))
        state = loop_state(tiers, args.decisions, now)
        parts: dict[str, list[float]] = {"lease": [], "capacity": [], "scale": [], "state": [], "pass": []}
        calls_before = len(server.calls)
        for i in track(
            range(args.passes), description=f"{args.passes} passes over {args.tiers} tiers", console=console
        ):
            at = now + 15 * i
            t0 = time.perf_counter()
            assert elector.try_acquire_or_renew(at)
            t1 = time.perf_counter()
            for t in tiers:
                actuator.capacity(t)
            t2 = time.perf_counter()
            for t in tiers:
                actuator.scale(t, 12)
            t3 = time.perf_counter()
            state.last_desired[tiers[0]] = 12 + i  # a change, so every save writes
            store.save_loop_state(state)
            store.overrides()
            t4 = time.perf_counter()
            for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                parts[key].append(seconds * 1000)
        calls_per_pass = (len(server.calls) - calls_before) / args.passes
        cm = server.get_object("configmaps", "ops", "swell-autoscaler-state")
        assert cm is not None
        state_bytes = sum(len(v.encode()) for v in cm["data"].values())

    median = {k: statistics.median(v) for k, v in parts.items()}
    p95 = {k: sorted(v)[max(0, int(len(v) * 0.95) - 1)] for k, v in parts.items()}
    result = {
        "tiers": args.tiers,
        "passes": args.passes,
        "calls_per_pass": calls_per_pass,
        "median_ms": median,
        "p95_ms": p95,
        "ms_per_call": median["pass"] / calls_per_pass,
        "pass_over_interval": median["pass"] / (INTERVAL_S * 1000),
        "pass_over_200ms_budget": median["pass"] / PASS_BUDGET_MS,
        "state_bytes": state_bytes,
        "state_over_configmap_limit": state_bytes / MAX_DATA_BYTES,
        "note": "client cost against a local stand-in (not a Kubernetes API server); 2 shared cores, noisy",
    }
    table = Table(title=f"Kubernetes side of one pass, {args.tiers} tiers (stand-in API server)")
    table.add_column("part")
    table.add_column("median ms", justify="right")
    table.add_column("p95 ms", justify="right")
    for key in parts:
        table.add_row(key, f"{median[key]:.1f}", f"{p95[key]:.1f}")
    console.print(table)
    console.print(
        f"{calls_per_pass:.0f} API calls per pass, {result['ms_per_call']:.2f} ms per call; "
        f"pass = {result['pass_over_interval']:.3f} x the 15 s interval, "
        f"{result['pass_over_200ms_budget']:.2f} x issue 4's 200 ms pass budget; "
        f"loop state {state_bytes} bytes = {result['state_over_configmap_limit']:.2f} x the ConfigMap limit"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
