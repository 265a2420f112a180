"""Billing as OVHcloud bills an hourly instance, and which instance to retire when a tier shrinks.

OVHcloud Public Cloud bills an hourly instance for every commenced hour from its creation to its
deletion (OVHcloud Public Cloud billing guide): an instance kept ten minutes costs a full hour, and
an instance whose hour is already paid is free headroom until that hour ends. So which instance
leaves matters, not only how many:

- `newest`: the latest started first. What the stack does today (it removes the highest index)
  and what the baselines get in the simulator.
- `paid-hour`: the one nearest the end of its paid period first. The others keep the longest
  stretch of time already paid for, which the next scale-down (or the next surge) can use for free.
- `hour-end`: the same choice, but the instance is kept, serving, until its paid period ends (the
  time is paid for: free headroom), then removed; a scale-up in the meantime takes such an
  instance back, ready at once and already paid for, before it creates a new one.

Pure functions with times passed in (seconds), shared by the simulator and, for the drain work,
the production actuators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

HOUR_S = 3600.0
RETIRE_NEWEST, RETIRE_PAID_HOUR, RETIRE_AT_HOUR_END = "newest", "paid-hour", "hour-end"
RETIREMENT_MODES = (RETIRE_NEWEST, RETIRE_PAID_HOUR, RETIRE_AT_HOUR_END)


def billed_periods(lifetime_s: float, granularity_s: float = HOUR_S) -> int:
    """Commenced billing periods of an instance that lived `lifetime_s`: at least one."""
    if granularity_s <= 0:
        raise ValueError(f"billing granularity must be > 0 s, got {granularity_s}")
    return max(1, math.ceil(lifetime_s / granularity_s - 1e-9))


def paid_until(started_at: float, now: float, granularity_s: float = HOUR_S) -> float:
    """When the period that `now` falls in ends for an instance started at `started_at`."""
    return started_at + billed_periods(now - started_at, granularity_s) * granularity_s


def choose_retirees(
    started_at: Sequence[float], count: int, now: float, mode: str, granularity_s: float = HOUR_S
) -> list[int]:
    """Indices (into `started_at`) of the `count` instances to retire at `now`, in that order."""
    if mode not in RETIREMENT_MODES:
        raise ValueError(f"unknown retirement mode {mode!r}; expected one of {', '.join(RETIREMENT_MODES)}")
    order = range(len(started_at))
    if mode == RETIRE_NEWEST:
        ranked = sorted(order, key=lambda i: -started_at[i])
    else:
        # Least paid time left first; among equals, the newest (as the stack would).
        ranked = sorted(order, key=lambda i: (paid_until(started_at[i], now, granularity_s), -started_at[i]))
    return ranked[: max(0, count)]
