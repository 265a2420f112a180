"""The simulator: replays a demand trace at a fixed tick through every policy under identical
conditions and returns, per policy, the requested and ready counts and the metrics.

Model (one tick = `tick_s`, default 15 s):

- demand at a tick is the trace row in effect (the last row at or before it; an empty row is a
  gap until the next row);
- each policy decides on its own sync period (hpa and swell 15 s, keda 30 s, target-tracking and
  step 60 s), seeing demand `metric_lag_s` old (scrape plus rule evaluation), as sample age;
- an instance requested at tick j is ready, serving `capacity_per_instance`, at tick j + L, with
  L = ceil(lead_time_s / tick_s); scaling down cancels the newest pending instances first, then
  removes ready ones. With that order the ready count is the minimum of the requested count over
  the last L ticks, which is how supply is computed, for every policy alike;
- utilization (for hpa and step) = min(1, lagged demand / (ready x capacity)), 1 when none is
  ready: a saturated tier reports 100% busy, never more;
- billing as OVHcloud bills: each instance is tracked from its request to its removal and billed
  for every commenced hour (`billing_granularity_s`; 1 s models a per-second cloud). Instances
  standing at the start were created then; those standing at the end are billed up to it. When
  the count falls, pending instances are cancelled newest first (the ready count above), then
  ready ones retire by the policy's retirement mode (`autoscaler/core/billing.py`): the baselines
  retire the newest at once (what the stack does today); swell the one nearest the end of its paid
  hour, kept serving until that hour ends (free headroom, taken back by a scale-up meanwhile);
- the oracle sees, at each tick, the true peak demand of the coming lead time.

All policies start with the same count: what the first demand needs at 70% utilization.
Long runs go to worker processes, one policy per task (`workers`), since a policy is a
sequential loop and the machine has cores to spare.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from autoscaler.core.billing import (
    HOUR_S,
    RETIRE_AT_HOUR_END,
    RETIRE_NEWEST,
    RETIREMENT_MODES,
    choose_retirees,
    paid_until,
)
from autoscaler.core.registry import POLICIES, build_params
from autoscaler.core.types import Limits, Observation
from autoscaler.sim.metrics import compute_metrics
from autoscaler.sim.trace import Trace

DEFAULT_POLICIES = ("swell", "hpa", "keda", "target-tracking", "step", "static", "oracle")
# The b3-16 flavor (4 vCPU, 16 GB), EUR per hour excl. VAT: third-party price scrape, January 2026.
DEFAULT_PRICE_PER_HOUR = 0.10


@dataclass(frozen=True)
class WarmPoolParams:
    """A warm pool (autoscaler/sim/warm.py): shelved, configured instances, for swell and the
    AWS-like target-tracking baseline; the cold lead time is `SimParams.lead_time_s`."""

    warm_lead_time_s: float = 120.0  # unshelve + boot: an assumption to measure on OVHcloud
    shelved_price_fraction: float = 0.10  # of the running price; unconfirmed for OVHcloud

    def __post_init__(self) -> None:
        if not (self.warm_lead_time_s >= 0 and math.isfinite(self.warm_lead_time_s)):
            raise ValueError(f"warm lead time must be >= 0 s, got {self.warm_lead_time_s}")
        if not 0 <= self.shelved_price_fraction <= 1:
            raise ValueError(f"shelved price fraction must be in [0, 1], got {self.shelved_price_fraction}")


@dataclass(frozen=True)
class SimParams:
    capacity_per_instance: float
    tick_s: float = 15.0
    lead_time_s: float = 180.0
    metric_lag_s: float = 30.0
    min_instances: int = 1
    max_instances: int = 10_000
    quota: int | None = None
    price_per_hour: float = DEFAULT_PRICE_PER_HOUR
    tier: str = "web"
    policy_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    billing_granularity_s: float = HOUR_S
    # Which ready instance leaves on a scale-down, per policy; the others retire the newest.
    retirement: dict[str, str] = field(default_factory=lambda: {"swell": RETIRE_AT_HOUR_END})
    warm_pool: WarmPoolParams | None = None  # None: no pool, every instance is created cold

    def __post_init__(self) -> None:
        if not (self.capacity_per_instance > 0 and math.isfinite(self.capacity_per_instance)):
            raise ValueError(
                f"capacity per instance must be a finite number > 0, got {self.capacity_per_instance}"
            )
        if not (self.tick_s > 0 and math.isfinite(self.tick_s)):
            raise ValueError(f"tick must be a finite number of seconds > 0, got {self.tick_s}")
        for name, value in (("lead time", self.lead_time_s), ("metric lag", self.metric_lag_s)):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value}")
        if not (self.price_per_hour >= 0 and math.isfinite(self.price_per_hour)):
            raise ValueError(f"price must be a finite number >= 0, got {self.price_per_hour}")
        if self.min_instances < 0 or self.max_instances < max(self.min_instances, 1):
            raise ValueError(
                f"need 0 <= min <= max and max >= 1, got min {self.min_instances} "
                f"and max {self.max_instances}"
            )
        if not (self.billing_granularity_s > 0 and math.isfinite(self.billing_granularity_s)):
            raise ValueError(f"billing granularity must be > 0 s, got {self.billing_granularity_s}")
        for policy, mode in self.retirement.items():
            if mode not in RETIREMENT_MODES:
                raise ValueError(
                    f"retirement of {policy}: {mode!r}; expected one of {', '.join(RETIREMENT_MODES)}"
                )

    def retirement_of(self, policy: str) -> str:
        return self.retirement.get(policy, RETIRE_NEWEST)

    @property
    def limits(self) -> Limits:
        return Limits(self.min_instances, self.max_instances, self.quota)

    def lead_ticks(self) -> int:
        return math.ceil(self.lead_time_s / self.tick_s - 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tick_s": self.tick_s,
            "lead_time_s": self.lead_time_s,
            "metric_lag_s": self.metric_lag_s,
            "capacity_per_instance": self.capacity_per_instance,
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            "quota": self.quota,
            "price_per_hour_eur": self.price_per_hour,
            "billing_granularity_s": self.billing_granularity_s,
            "retirement": {name: self.retirement_of(name) for name in DEFAULT_POLICIES},
            "warm_pool": None
            if self.warm_pool is None
            else {
                "warm_lead_time_s": self.warm_pool.warm_lead_time_s,
                "shelved_price_fraction": self.warm_pool.shelved_price_fraction,
                "policies": ["swell", "target-tracking"],
            },
        }


@dataclass(frozen=True)
class Replay:
    """The trace on the simulator's tick grid."""

    t: np.ndarray
    demand: np.ndarray  # true demand per tick, NaN in gaps
    observed: np.ndarray  # demand as the policies see it (lagged)
    future_peak: np.ndarray  # max demand over [t, t + lead], for the oracle


@dataclass(frozen=True)
class PolicyRun:
    name: str
    requested: np.ndarray
    ready: np.ndarray
    metrics: dict[str, Any]


# Ticks one replay may hold: about 2.4 years at 15 s, a few GB of arrays across the policies.
MAX_TICKS = 5_000_000


def tick_count(trace: Trace, params: SimParams) -> int:
    """How many ticks replaying `trace` takes (the grid spans its first to its last row)."""
    step = float(np.median(np.diff(trace.t))) if len(trace) > 1 else params.tick_s
    return max(1, math.ceil((float(trace.t[-1]) + step - float(trace.t[0])) / params.tick_s - 1e-9))


def check_size(trace: Trace, params: SimParams) -> None:
    """Refuse, by name, a trace too long to replay at this tick (two rows a century apart)."""
    n = tick_count(trace, params)
    if n > MAX_TICKS:
        days = (float(trace.t[-1]) - float(trace.t[0])) / 86400.0
        raise ValueError(
            f"the trace spans {days:,.0f} days: {n:,} ticks of {params.tick_s:g} s, more than the "
            f"{MAX_TICKS:,} a replay holds; cut the trace or use a longer --tick"
        )


def resample(trace: Trace, params: SimParams) -> Replay:
    t0 = float(trace.t[0])
    step = float(np.median(np.diff(trace.t))) if len(trace) > 1 else params.tick_s
    end = float(trace.t[-1]) + step
    n = max(1, math.ceil((end - t0) / params.tick_s - 1e-9))
    grid = t0 + np.arange(n) * params.tick_s
    idx = np.searchsorted(trace.t, grid, side="right") - 1
    demand = trace.demand[idx]
    lag = round(params.metric_lag_s / params.tick_s)
    observed = np.concatenate((np.full(lag, demand[0]), demand[: n - lag])) if lag else demand.copy()
    lead = params.lead_ticks()
    padded = np.concatenate((demand, np.full(lead, np.nan)))
    windows = sliding_window_view(padded, lead + 1)
    with np.errstate(all="ignore"):
        all_nan = np.isnan(windows).all(axis=1)
        future = np.where(all_nan, np.nan, np.nanmax(np.where(np.isnan(windows), -np.inf, windows), axis=1))
    return Replay(grid, demand, observed, future)


def initial_count(replay: Replay, params: SimParams) -> int:
    valid = replay.demand[~np.isnan(replay.demand)]
    first = float(valid[0]) if len(valid) else 0.0
    need = math.ceil(first / (0.7 * params.capacity_per_instance))
    return min(max(need, params.min_instances, 1), params.max_instances)


def ready_counts(requested: np.ndarray, lead: int, initial: int) -> np.ndarray:
    """Ready at tick i = min(requested[i - lead .. i]) (newest pending cancelled first)."""
    if lead == 0:
        return requested.copy()
    padded = np.concatenate((np.full(lead, initial, dtype=requested.dtype), requested))
    return sliding_window_view(padded, lead + 1).min(axis=1)


@dataclass(frozen=True)
class Ledger:
    """Every instance behind a run, one by one: what the bill says and when each one served."""

    billed_hours: float
    ready: np.ndarray  # instances serving at each tick


def instance_ledger(
    requested: np.ndarray, lead: int, tick_s: float, mode: str, granularity_s: float
) -> Ledger:
    """The instances behind `requested` (a count per tick): created when the count rises (those
    standing at the start a lead time before it, so that they serve from its first tick), ready a
    lead time later; when it falls, pending ones are cancelled newest first, then ready ones retire
    by `mode` (`autoscaler/core/billing.py`). Each is billed for every commenced period of
    `granularity_s` of its life, up to the end of the run."""
    n = len(requested)
    counts = requested.tolist()
    keep = mode == RETIRE_AT_HOUR_END
    active = [-lead] * (int(counts[0]) if n else 0)  # start tick of each instance in the count
    retiring: list[tuple[int, int]] = []  # (start, tick its paid period ends): serving, outside the count
    lives: list[tuple[int, int]] = []  # (start, end) of every instance gone

    def period_end(start: int, now: int) -> int:
        return math.floor(paid_until(start * tick_s, now * tick_s, granularity_s) / tick_s + 1e-9)

    for i in (np.flatnonzero(np.diff(requested)) + 1).tolist():
        if retiring:
            lives.extend((start, end) for start, end in retiring if end <= i)
            retiring = [(start, end) for start, end in retiring if end > i]
        target = int(counts[i])
        if target > len(active):
            need = target - len(active)
            if retiring:
                # Take back the ones paid furthest ahead: they would have stayed longest anyway.
                retiring.sort(key=lambda r: r[1])
                back, retiring = retiring[-need:], retiring[:-need]
                active.extend(start for start, _ in back)
                need -= len(back)
            active.extend([i] * need)
            continue
        excess = len(active) - target
        # Pending instances (not ready yet) are cancelled first, newest first.
        pending = sorted((k for k, start in enumerate(active) if i - start < lead), key=lambda k: -active[k])
        gone = pending[:excess]
        lives.extend((active[k], i) for k in gone)
        if len(gone) < excess:
            ready = [k for k in range(len(active)) if k not in set(gone)]
            picks = choose_retirees(
                [active[k] * tick_s for k in ready], excess - len(gone), i * tick_s, mode, granularity_s
            )
            for k in (ready[p] for p in picks):
                gone.append(k)
                end = period_end(active[k], i) if keep else i
                if end > i:
                    retiring.append((active[k], end))
                else:
                    lives.append((active[k], i))
        dropped = set(gone)
        active = [start for k, start in enumerate(active) if k not in dropped]
    lives.extend((start, n) for start in active)
    lives.extend((start, min(end, n)) for start, end in retiring)
    periods = sum(max(1, math.ceil((end - start) * tick_s / granularity_s - 1e-9)) for start, end in lives)
    serving = np.zeros(n + 1, dtype=np.int64)
    for start, end in lives:
        first = max(start + lead, 0)
        if first < end:
            serving[first] += 1
            serving[end] -= 1
    return Ledger(periods * granularity_s / 3600.0, np.cumsum(serving[:n]))


def billed_hours(requested: np.ndarray, lead: int, tick_s: float, mode: str, granularity_s: float) -> float:
    """Hours billed for the instances behind `requested` (see `instance_ledger`)."""
    return instance_ledger(requested, lead, tick_s, mode, granularity_s).billed_hours


def static_count(replay: Replay, params: SimParams) -> int:
    valid = replay.demand[~np.isnan(replay.demand)]
    peak = float(valid.max()) if len(valid) else 0.0
    return max(1, math.ceil(peak / params.capacity_per_instance - 1e-9))


def run_policy(name: str, replay: Replay, params: SimParams) -> PolicyRun:
    if params.warm_pool is not None:
        from autoscaler.sim import warm  # it builds on this module

        if name in warm.POOL_POLICIES:
            return warm.run_policy_warm(name, replay, params, params.warm_pool)
    spec = POLICIES[name]
    policy_params = build_params(
        name,
        capacity_per_instance=params.capacity_per_instance,
        lead_time_s=params.lead_time_s,
        limits=params.limits,
        static_count=static_count(replay, params),
        overrides=params.policy_overrides.get(name),
    )
    decide = spec.decide
    state = spec.initial_state()
    n = len(replay.t)
    lead = params.lead_ticks()
    tick = params.tick_s
    cap = params.capacity_per_instance
    age = params.metric_lag_s
    tier = params.tier
    sync = max(1, round(policy_params.sync_period_s / tick))
    source = replay.future_peak if name == "oracle" else replay.observed
    # Python floats: numpy scalar access costs more than the decision itself in this loop.
    seen = [None if math.isnan(v) else v for v in source.tolist()]
    times = replay.t.tolist()
    # A fixed size is there from the start: it was provisioned before the trace began.
    current = policy_params.count if name == "static" else initial_count(replay, params)
    initial = current
    changes: deque[tuple[int, int]] = deque([(-lead - 1, current)])
    change_ticks = [0]
    change_values = [current]
    for i in range(0, n, sync):
        cutoff = i - lead
        while len(changes) > 1 and changes[1][0] <= cutoff:
            changes.popleft()
        ready = min(v for _, v in changes) if len(changes) > 1 else changes[0][1]
        demand = seen[i]
        if demand is None:
            util = None
        elif ready > 0:
            util = demand / (ready * cap)
            if util > 1.0:
                util = 1.0
        else:
            util = 1.0 if demand > 0 else 0.0
        obs = Observation(tier, demand, age, current, ready, current - ready, util, None)
        decision, state = decide(obs, state, policy_params, times[i])
        if decision.desired != current:
            current = decision.desired
            changes.append((i, current))
            change_ticks.append(i)
            change_values.append(current)
    # Requested count per tick: forward-fill the change points.
    marks = np.zeros(n, dtype=np.int64)
    marks[np.asarray(change_ticks[1:], dtype=np.int64)] = np.arange(1, len(change_ticks))
    requested = np.asarray(change_values, dtype=np.int64)[np.maximum.accumulate(marks)]
    mode = params.retirement_of(name)
    ledger = instance_ledger(requested, lead, tick, mode, params.billing_granularity_s)
    # Kept instances serve outside the count; otherwise the ready count follows from it alone.
    ready_arr = ledger.ready if mode == RETIRE_AT_HOUR_END else ready_counts(requested, lead, initial)
    metrics = compute_metrics(
        replay.demand, requested, ready_arr, cap, tick, params.price_per_hour, ledger.billed_hours
    )
    return PolicyRun(name, requested, ready_arr, metrics)


def _run_one(args: tuple[str, Replay, SimParams]) -> PolicyRun:
    return run_policy(*args)


def simulate(
    trace: Trace,
    params: SimParams,
    policies: tuple[str, ...] = DEFAULT_POLICIES,
    workers: int = 1,
) -> tuple[Replay, dict[str, PolicyRun]]:
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; expected some of {', '.join(POLICIES)}")
    check_size(trace, params)
    replay = resample(trace, params)
    tasks = [(name, replay, params) for name in policies]
    if workers > 1 and len(policies) > 1:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            runs = list(pool.map(_run_one, tasks))
    else:
        runs = [_run_one(task) for task in tasks]
    return replay, {run.name: run for run in runs}
