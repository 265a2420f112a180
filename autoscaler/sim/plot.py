"""Pictures of a simulation as PNG (matplotlib, Agg backend: no display): demand and supply per
policy, one panel each; the cost frontier of a trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.sim.engine import PolicyRun, Replay
from autoscaler.sim.frontier import Frontier


def plot_runs(
    replay: Replay,
    runs: dict[str, PolicyRun],
    capacity: float,
    out: Path,
    title: str,
    window_h: tuple[float, float] | None = None,
) -> Path:
    """`window_h`: (start, end) in hours since the trace start, to zoom on one event."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = (replay.t - replay.t[0]) / 3600.0
    fig, axes = plt.subplots(len(runs), 1, figsize=(12, 1.9 * len(runs) + 0.8), sharex=True, squeeze=False)
    for ax, (name, run) in zip(axes[:, 0], runs.items(), strict=True):
        ax.plot(hours, replay.demand, color="0.35", lw=0.5, label="demand")
        ax.plot(hours, run.ready * capacity, color="tab:blue", lw=0.8, label="supply (ready)")
        ax.plot(hours, run.requested * capacity, color="tab:orange", lw=0.6, ls="--", label="requested")
        short = np.where(
            ~np.isnan(replay.demand) & (run.ready * capacity < replay.demand), replay.demand, np.nan
        )
        ax.plot(hours, short, color="tab:red", lw=0.8, label="under-provisioned")
        m = run.metrics
        ax.set_title(
            f"{name}: theta_U {m['theta_u']:.3f}%  theta_O {m['theta_o']:.1f}%  "
            f"{m['instance_hours']:.0f} instance-hours",
            fontsize=9,
            loc="left",
        )
        ax.tick_params(labelsize=8)
    if window_h is not None:
        axes[-1, 0].set_xlim(*window_h)
        inside = (hours >= window_h[0]) & (hours <= window_h[1])
        top = max(
            np.nanmax(replay.demand[inside]),
            *(float(r.requested[inside].max()) * capacity for r in runs.values()),
        )
        for ax in axes[:, 0]:
            ax.set_ylim(0, top * 1.05)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncol=4)
    axes[-1, 0].set_xlabel("hours since trace start")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


FLOOR_THETA_U = 1e-4  # percent: a point with no shortfall at all is drawn on this line of the log axis
POLICY_COLORS = {
    "swell": "tab:blue",
    "hpa": "tab:green",
    "keda": "tab:orange",
    "target-tracking": "tab:purple",
}


def draw_frontier(ax: Any, frontier: Frontier, title: str) -> None:
    """theta_U (log) against the bill on `ax`: one curve per policy over its sweep, swell's default
    point marked, the oracle's point for the physical limit (it knows the future)."""
    for name, pts in frontier.points.items():
        ordered = sorted(pts, key=lambda p: p.cost_eur)
        knob = next(iter(ordered[0].params), "its knob")
        ax.plot(
            [p.cost_eur for p in ordered],
            [max(p.theta_u, FLOOR_THETA_U) for p in ordered],
            marker="o",
            ms=3,
            lw=1.2,
            color=POLICY_COLORS.get(name, "0.4"),
            label=f"{name} ({knob} swept)",
        )
    d, o = frontier.swell_default, frontier.oracle
    ax.plot(
        d.cost_eur,
        max(d.theta_u, FLOOR_THETA_U),
        marker="*",
        ms=14,
        color="tab:blue",
        ls="none",
        label="swell default",
    )
    oracle_label = "oracle (knows the future)" + (
        f", theta_U 0 drawn at {FLOOR_THETA_U:g}%" if o.theta_u <= 0 else ""
    )
    ax.plot(
        o.cost_eur,
        max(o.theta_u, FLOOR_THETA_U),
        marker="X",
        ms=9,
        color="black",
        ls="none",
        label=oracle_label,
    )
    v = frontier.verdict
    ax.axhline(
        max(v.theta_limit, FLOOR_THETA_U), color="tab:red", lw=0.8, ls=":", label="swell's theta_U limit"
    )
    ax.axvline(v.cost_limit, color="tab:red", lw=0.8, ls="--", label="swell's cost limit (0.85 x B)")
    ax.set_yscale("log")
    ax.set_xlabel("billed cost, EUR (every commenced instance-hour)")
    ax.set_ylabel("under-provisioning theta_U, % (log)")
    ax.set_title(f"{title}: " + ("PASS" if v.passed else "FAIL"), fontsize=9)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)


def plot_frontiers(panels: list[tuple[str, Frontier]], out: Path, title: str) -> Path:
    """One panel per (title, frontier) side by side, one legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False)
    for ax, (panel_title, frontier) in zip(axes[0], panels, strict=True):
        draw_frontier(ax, frontier, panel_title)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def plot_frontier(frontier: Frontier, out: Path, title: str) -> Path:
    return plot_frontiers([(title, frontier)], out, "the cost frontier")
