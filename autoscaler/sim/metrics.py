"""Per-policy metrics of one simulation, with numpy over the whole run.

Elasticity metrics after the SPEC Research Group (Herbst et al., "Quantifying Cloud Performance
and Dependability: Taxonomy, Metric Design, and Emerging Challenges", arXiv 1604.03470), in
percent: with demand d_t and supply s_t = ready instances x capacity per instance,

- theta_U = 100/T x sum(max(d - s, 0) / d x dt), theta_O likewise with max(s - d, 0) / d
  (ticks with d = 0 have no relative error and are left out of both);
- tau_U, tau_O = percentage of time with s < d, s > d;
- instability = percentage of time supply and demand move in different directions, on instance
  counts (demand in instances = ceil(d / capacity)), min(|sgn dS - sgn dD|, 1);
- jitter = (supply adaptations - demand adaptations) per hour, on instance counts: negative when
  supply changes less often than demand.

Gaps (NaN demand) are left out of every demand-based metric; instance-hours count every requested
instance for every tick, pending ones included (a booting VM costs money). Cost is what OVHcloud
bills: every commenced hour of each instance's life (`billed_hours`, computed by the engine, which
tracks instances one by one), at the flavor's hourly price.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

METRIC_KEYS = (
    "theta_u",
    "theta_o",
    "tau_u",
    "tau_o",
    "instability",
    "jitter",
    "instance_hours",
    "billed_hours",
    "cost_eur",
    "unserved_fraction",
    "slo_violation_minutes",
    "actions",
    "reaction_time_s",
)


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in `mask`."""
    if not mask.any():
        return 0
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[0::2]).max())


def compute_metrics(
    demand: np.ndarray,
    requested: np.ndarray,
    ready: np.ndarray,
    capacity_per_instance: float,
    tick_s: float,
    price_per_hour: float,
    billed_hours: float | None = None,
) -> dict[str, Any]:
    """`billed_hours` defaults to the instance-hours (billing per second, no rounding up)."""
    valid = ~np.isnan(demand)
    d = demand[valid]
    s = ready[valid] * capacity_per_instance
    n = max(len(d), 1)
    positive = d > 0
    # n x capacity is a float product: 30 x 4.1 must cover a demand of 123, not miss it by 1e-14.
    short = s < d * (1.0 - 1e-9)
    under = np.where(short, d - s, 0.0)
    over = np.maximum(s - d, 0.0)
    dp = d[positive]
    theta_u = 100.0 * float((under[positive] / dp).sum()) / n
    theta_o = 100.0 * float((over[positive] / dp).sum()) / n
    hours = n * tick_s / 3600.0
    demand_inst = np.ceil(d / capacity_per_instance - 1e-9)
    supply_inst = ready[valid].astype(float)
    d_sign = np.sign(np.diff(demand_inst))
    s_sign = np.sign(np.diff(supply_inst))
    instability = 100.0 * float(np.minimum(np.abs(s_sign - d_sign), 1).mean()) if len(d_sign) else 0.0
    jitter = (float(np.count_nonzero(s_sign)) - float(np.count_nonzero(d_sign))) / hours if hours else 0.0
    # Reaction: the longest stretch of consecutive under-provisioned ticks (gaps break stretches).
    short_full = np.zeros(len(demand), dtype=bool)
    short_full[valid] = short
    instance_hours = float(requested.sum()) * tick_s / 3600.0
    billed = instance_hours if billed_hours is None else billed_hours
    total = float(d.sum())
    return {
        "theta_u": theta_u,
        "theta_o": theta_o,
        "tau_u": 100.0 * float(short.mean()) if len(d) else 0.0,
        "tau_o": 100.0 * float((s > d * (1.0 + 1e-9)).mean()) if len(d) else 0.0,
        "instability": instability,
        "jitter": jitter,
        "instance_hours": instance_hours,
        "billed_hours": billed,
        "cost_eur": billed * price_per_hour,
        "unserved_fraction": float(under.sum()) / total if total > 0 else 0.0,
        "slo_violation_minutes": float(short.sum()) * tick_s / 60.0,
        "actions": int(np.count_nonzero(np.diff(requested))),
        "reaction_time_s": longest_run(short_full) * tick_s,
    }


def rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in metrics.items()}
