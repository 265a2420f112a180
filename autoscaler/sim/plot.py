"""Demand and supply per policy, one panel each, as a PNG (matplotlib, Agg backend: no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoscaler.sim.engine import PolicyRun, Replay


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
