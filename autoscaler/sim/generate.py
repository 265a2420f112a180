"""Synthetic demand traces with the shapes the platform has to survive, one row per minute.

- `daily`: a 4-5x daily curve (trough about 04:00 UTC, peak about 14:00, a steeper morning rise
  than evening fall) with a quieter weekend;
- `surge400`: the daily curve, then on day 2 traffic grows x5 within a day (a logistic ramp over
  about 12 hours) and stays there: the 400% rise;
- `spike`: the daily curve with, every day at a random afternoon time, demand x4 within
  10 minutes, held for 1-2 hours, then back over 30 minutes;
- `bursty`: request counts as a real service logs them, for tuning: the daily curve peaking at
  about 55 requests a minute, wandering for tens of minutes (AR(1), 20-minute memory), about four bursts a
  day (x1.3-2 for 1-5 minutes), and overdispersed Poisson counts (gamma-mixed, `noise` the
  relative sd of the mixing; counts are noisier than Poisson, as logged traffic is).

For the other shapes noise is multiplicative and independent per minute: demand x
max(0, 1 + noise x N(0, 1)).
The same seed gives the same trace.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Shape = Literal["daily", "surge400", "spike", "bursty"]
SHAPES: tuple[str, ...] = ("daily", "surge400", "spike", "bursty")
BURSTY_BASE = 40.0  # requests per minute: Poisson noise matters, as in a logged trace
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday
SPIKE_RISE_S = 600.0  # a spike: x4 within 10 minutes


def daily_curve(t: np.ndarray, base: float) -> np.ndarray:
    """Peak/trough about 4.5 on weekdays; weekends at 70%."""
    hour = (t % 86400) / 3600.0
    phase = 2 * math.pi * (hour - 14.0) / 24.0
    # The second harmonic steepens the morning rise and flattens the evening.
    shape = 0.5 + 0.5 * np.cos(phase) + 0.12 * np.sin(2 * phase)
    shape = np.clip(shape, 0.0, None) / 1.0
    curve = base * (0.3 + 1.05 * shape)
    weekday = ((t // 86400).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday: 3 = Monday-based
    return np.where(weekday >= 5, 0.7 * curve, curve)


def generate(
    shape: str,
    *,
    days: float = 7.0,
    noise: float = 0.05,
    seed: int = 0,
    base: float = 1000.0,
    step_s: float = 60.0,
) -> tuple[np.ndarray, np.ndarray]:
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / step_s)
    t = START + np.arange(n) * step_s
    demand = daily_curve(t, base)
    if shape == "surge400":
        # Logistic from x1 to x5 centred at noon of day 2 (or mid-trace if shorter):
        # 5% to 95% of the rise within 12 hours.
        centre = START + min(1.5, days / 2) * 86400
        growth = 1.0 + 4.0 / (1.0 + np.exp(-(t - centre) / (12 * 3600 / 5.9)))
        demand = demand * growth
    elif shape == "spike":
        factor = np.ones(n)
        for onset, hold in _spike_schedule(rng, days):
            rise = np.clip((t - onset) / SPIKE_RISE_S, 0.0, 1.0)  # x4 within 10 minutes
            fall = np.clip((t - onset - SPIKE_RISE_S - hold) / 1800.0, 0.0, 1.0)
            factor *= 1.0 + 3.0 * rise * (1.0 - fall)
        demand = demand * factor
    elif shape == "bursty":
        return t, _bursty(t, rng, noise, BURSTY_BASE * base / 1000.0)
    if noise > 0:
        demand = demand * np.maximum(0.0, 1.0 + noise * rng.standard_normal(n))
    return t, np.round(demand, 2)


def fast_surge(
    factor: float,
    rise_s: float,
    *,
    flat_s: float = 1200.0,
    hold_s: float = 3600.0,
    noise: float = 0.05,
    seed: int = 0,
    base: float = 1000.0,
    step_s: float = 60.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A surge faster than the daily shapes: flat for `flat_s`, then x`factor` within `rise_s`
    (linear), held for `hold_s`: the case where a 30-minute average lags demand by more than x4
    (issue 17: x5 within 5 minutes, x8 within 10). Noise as for the other shapes."""
    if factor < 1 or rise_s <= 0 or flat_s < 0 or hold_s < 0:
        raise ValueError("need factor >= 1, rise_s > 0, flat_s >= 0 and hold_s >= 0")
    rng = np.random.default_rng(seed)
    n = int((flat_s + rise_s + hold_s) / step_s)
    t = START + np.arange(n) * step_s
    rise = np.clip((t - START - flat_s) / rise_s, 0.0, 1.0)
    demand = base * (1.0 + (factor - 1.0) * rise)
    if noise > 0:
        demand = demand * np.maximum(0.0, 1.0 + noise * rng.standard_normal(n))
    return t, np.round(demand, 2)


def _spike_schedule(rng: np.random.Generator, days: float) -> list[tuple[float, float]]:
    """(onset, hold) of each day's spike: a random afternoon time, held 1-2 hours. Drawn first,
    before the noise, so that `spike_onsets` can replay them from the seed alone."""
    out = []
    for day in range(math.ceil(days)):
        onset = START + day * 86400 + rng.uniform(11, 17) * 3600
        out.append((onset, rng.uniform(3600, 7200)))
    return out


def spike_onsets(days: float, seed: int) -> list[float]:
    """When each spike of `generate("spike", days=days, seed=seed)` starts (unix seconds)."""
    return [onset for onset, _ in _spike_schedule(np.random.default_rng(seed), days)]


def _bursty(t: np.ndarray, rng: np.random.Generator, noise: float, base: float) -> np.ndarray:
    n = len(t)
    # Wander: AR(1) with 20-minute memory at one-minute steps, +-4% a step.
    shocks = rng.standard_normal(n) * 0.04
    wander = np.empty(n)
    acc = 0.0
    for i in range(n):
        acc = 0.95 * acc + shocks[i]
        wander[i] = acc
    mean = daily_curve(t, base) * np.exp(wander)
    for _ in range(rng.poisson(4 * n / 1440)):
        start = int(rng.integers(0, n))
        mean[start : start + int(rng.integers(1, 6))] *= rng.uniform(1.3, 2.0)
    if noise > 0:
        mean = mean * rng.gamma(1 / noise**2, noise**2, n)
    return rng.poisson(mean).astype(float)
