"""The blind-window floor of a spike: the under-provisioning no policy that cannot see the future
can avoid without capacity standing before the spike starts.

A spike starts at `onset`. The first sample that shows it is the first one after the onset
(`first`); a policy sees it `metric_lag_s` later, and an instance it orders at that moment is
ready `lead_time_s` after that. Over the blind window [first, first + lag + lead) every policy
serves with what it had requested before it could know: its standing supply. With that supply
at m x the demand level before the spike (`pre`, the mean of the 15 minutes before it), the
under-provisioning inside the window is at least

    floor(m) = 100/T x sum over blind ticks of max(d - m x pre, 0) / d x tick

in the units of theta_U (SPEC, percent of the whole trace). `margin_needed` inverts it: the
standing margin at which the floor alone is a given theta_U. `tracking_cost` prices a margin:
the instance-hours of a tracker that knows the demand level (15-minute mean) exactly, has no
lead time, and keeps ceil(m x level / capacity) instances at all times. A policy that does not
know when spikes come cannot keep the margin for less, so if that already exceeds a cost cap,
no policy meets both the theta_U target and the cap on that trace.

Pure numpy on the simulator's replay; used by the benchmark (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PRE_WINDOW_S = 900.0


@dataclass(frozen=True)
class BlindWindow:
    start: int  # first tick that sees the spike in true demand (the first sample after the onset)
    stop: int  # first tick at which an instance ordered on the first observation can be ready
    pre: float  # mean true demand over the 15 minutes before `start`


def blind_windows(
    grid: np.ndarray,
    demand: np.ndarray,
    sample_t: np.ndarray,
    onsets: list[float],
    tick_s: float,
    metric_lag_s: float,
    lead_time_s: float,
) -> list[BlindWindow]:
    """One window per onset inside the replay: `grid` and `demand` are the simulator's ticks and
    true demand, `sample_t` the trace's own sample times (the replay holds each sample until the next)."""
    lag_ticks = round(metric_lag_s / tick_s)
    lead_ticks = int(np.ceil(lead_time_s / tick_s - 1e-9))
    level = trailing_level(demand, tick_s)
    out = []
    for onset in onsets:
        after = int(np.searchsorted(sample_t, onset, side="right"))
        if after >= len(sample_t):
            continue
        start = int(np.searchsorted(grid, sample_t[after], side="left"))
        if start == 0 or start >= len(grid):
            continue
        stop = min(start + lag_ticks + lead_ticks, len(grid))
        pre = float(level[start - 1])  # the 15 minutes before `start`
        if np.isnan(pre):
            continue
        out.append(BlindWindow(start, stop, pre))
    return out


def trailing_level(demand: np.ndarray, tick_s: float) -> np.ndarray:
    """Per tick, the mean of the valid samples among the last 15 minutes' ticks (that tick
    included); NaN where there are none. A gap counts neither as zero demand nor as a sample."""
    valid = ~np.isnan(demand)
    k = max(1, round(PRE_WINDOW_S / tick_s))
    csum = np.concatenate(([0.0], np.cumsum(np.where(valid, demand, 0.0))))
    ccount = np.concatenate(([0], np.cumsum(valid)))
    lo = np.maximum(np.arange(1, len(demand) + 1) - k, 0)
    counts = ccount[1:] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (csum[1:] - csum[lo]) / counts, np.nan)


def _valid_ticks(demand: np.ndarray) -> int:
    return max(int(np.count_nonzero(~np.isnan(demand))), 1)


def floor_theta_u(demand: np.ndarray, windows: list[BlindWindow], margin: float) -> float:
    """theta_U (percent of the whole trace) inside the blind windows with supply margin x pre."""
    return _theta_u_in(demand, windows, lambda w: margin * w.pre)


def policy_theta_u_in(demand: np.ndarray, supply: np.ndarray, windows: list[BlindWindow]) -> float:
    """The part of a policy's theta_U (percent of the whole trace) that falls in the blind windows;
    `supply` is ready instances x capacity per tick."""
    return _theta_u_in(demand, windows, lambda w: supply[w.start : w.stop])


def _theta_u_in(
    demand: np.ndarray, windows: list[BlindWindow], supply_in: Callable[[BlindWindow], float | np.ndarray]
) -> float:
    """SPEC theta_U over the ticks of the windows only, in percent of the whole trace's valid ticks,
    with `supply_in(window)` the supply over a window (a constant or one value per tick)."""
    total = 0.0
    for w in windows:
        d = demand[w.start : w.stop]
        s = np.broadcast_to(supply_in(w), d.shape)
        ok = ~np.isnan(d) & (d > 0)
        total += float((np.maximum(d[ok] - s[ok], 0.0) / d[ok]).sum())
    return 100.0 * total / max(int(np.count_nonzero(~np.isnan(demand))), 1)


def standing_margin(supply: np.ndarray, windows: list[BlindWindow]) -> float:
    """A policy's ready supply at the start of each window over the demand before it: the median."""
    if not windows:
        return float("nan")
    return float(np.median([supply[w.start] / w.pre for w in windows]))


def margin_needed(demand: np.ndarray, windows: list[BlindWindow], theta_u: float) -> float:
    """The smallest standing margin (supply / pre-spike demand) whose floor is at most `theta_u`."""
    lo, hi = 0.0, 1.0
    while floor_theta_u(demand, windows, hi) > theta_u:
        hi *= 2.0
        if hi > 1e6:
            return float("inf")
    for _ in range(50):
        mid = (lo + hi) / 2.0
        if floor_theta_u(demand, windows, mid) > theta_u:
            lo = mid
        else:
            hi = mid
    return hi


def tracking_cost(demand: np.ndarray, capacity_per_instance: float, margin: float, tick_s: float) -> float:
    """Instance-hours of keeping ceil(margin x level / capacity) ready at every tick, the level being
    the trailing 15-minute mean of true demand (known exactly, no lead time): what standing
    `margin` costs at the least."""
    valid = ~np.isnan(demand)
    level = trailing_level(demand, tick_s)
    instances = np.ceil(margin * level[valid] / capacity_per_instance - 1e-9)
    return float(instances.sum()) * tick_s / 3600.0
