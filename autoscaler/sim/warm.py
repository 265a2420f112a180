"""Warm pools in the simulator: instances created, configured, then shelved, which serve after the
warm lead time (unshelve and boot) instead of the cold one (create, boot, configure).

OpenStack shelves an instance (`shelved_offloaded`: CPU and RAM freed, its disk kept as an image)
and unshelves it in place; AWS calls the same idea a warm pool. Per tier, the simulator follows
every instance through these states:

- active: asked for by the policy; it serves once ready (`warm_lead_time_s` after an unshelve,
  `lead_time_s` after a create);
- filling: created for the pool, being booted and configured (the cold lead time), then shelved;
- warm: shelved, ready to be unshelved.

Each decision: the policy sets the active count and, through its pool sizer, the pool's size.
Up: warm instances are unshelved first, then filling ones are taken (ready when their creation
would have been), then new ones are created. Down: instances not ready yet are cancelled, newest
first; then ready ones are shelved back into the pool while it is short of its size, the rest are
deleted. The pool is refilled by creating instances (cold), and trimmed by deleting warm ones.

Billing: every commenced hour of an instance's life (from its creation) is billed: at the running
price if it ran at any moment of that hour (active or filling), else at `shelved_price_fraction` x
that price (what OVHcloud bills for a shelved instance is not confirmed: a parameter; the benchmark
shows 0%, 10% and 25%).

Pool sizers: swell sizes its pool from what it measured (`warm_pool_target` in its module);
the AWS-like baseline keeps the pool at the group's maximum prepared capacity minus the active
count (AWS's default: MaxGroupPreparedCapacity = the group's maximum size), with the maximum set
to the count the trace's peak needs.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from autoscaler.core.policies import swell
from autoscaler.core.registry import POLICIES, build_params
from autoscaler.core.types import Observation
from autoscaler.sim.engine import PolicyRun, Replay, SimParams, WarmPoolParams, initial_count, static_count
from autoscaler.sim.metrics import compute_metrics

ACTIVE, FILLING, WARM = "active", "filling", "warm"
# Policies that can run with a pool, and how each sizes it.
POOL_POLICIES = ("swell", "target-tracking")
MAX_KEEP_S = 86400.0  # a warm instance the pool has not needed for a day is deleted whatever it costs


class _Instance:
    __slots__ = ("created", "ready", "runs", "since", "state")

    def __init__(self, state: str, created: int, ready: int) -> None:
        self.state = state
        self.created = created
        self.ready = ready  # tick it serves from (active) or is configured and shelved (filling)
        self.since = created  # start of its current running stretch
        self.runs: list[tuple[int, int]] = []  # running stretches that ended

    def stop(self, at: int) -> None:
        """Its running stretch ends (shelved or deleted)."""
        if at > self.since:
            self.runs.append((self.since, at))
        self.since = at


class _Ledger:
    """The bill and the ticks served, folded in as instances go. OVHcloud bills an hourly
    instance for every commenced hour of its life; an hour of its life in which it ran at all is
    billed at the running price, an hour it spent shelved throughout at the shelved price."""

    def __init__(self, n: int, tick_s: float) -> None:
        self.n = n
        self.hour = 3600.0 / tick_s  # ticks per billed hour
        self.running = 0
        self.shelved = 0
        self.serving = np.zeros(n + 1, dtype=np.int64)

    def close(self, inst: _Instance, end: int) -> None:
        hours = max(1, math.ceil((end - inst.created) / self.hour - 1e-9))
        ran: set[int] = set()
        for start, stop in inst.runs:
            first = int((start - inst.created) // self.hour)
            last = max(first, math.ceil((stop - inst.created) / self.hour - 1e-9) - 1)
            ran.update(range(first, last + 1))
        ran = {k for k in ran if k < hours}
        self.running += len(ran)
        self.shelved += hours - len(ran)

    def served(self, first: int, last: int) -> None:
        first, last = max(first, 0), min(last, self.n)
        if first < last:
            self.serving[first] += 1
            self.serving[last] -= 1


def run_policy_warm(name: str, replay: Replay, params: SimParams, pool: WarmPoolParams) -> PolicyRun:
    """`run_policy` with a warm pool (module docstring); swell plans across the warm lead time."""
    if name not in POOL_POLICIES:
        raise ValueError(f"{name} has no warm pool; expected one of {', '.join(POOL_POLICIES)}")
    spec = POLICIES[name]
    # With a pool the next instances come warm: swell forecasts across the warm lead time.
    policy_lead = pool.warm_lead_time_s if name == "swell" else params.lead_time_s
    policy_params = build_params(
        name,
        capacity_per_instance=params.capacity_per_instance,
        lead_time_s=policy_lead,
        limits=params.limits,
        overrides=params.policy_overrides.get(name),
    )
    n = len(replay.t)
    tick = params.tick_s
    cold = params.lead_ticks()
    warm_lead = math.ceil(pool.warm_lead_time_s / tick - 1e-9)
    cap = params.capacity_per_instance
    sync = max(1, round(policy_params.sync_period_s / tick))
    seen = [None if math.isnan(v) else v for v in replay.observed.tolist()]
    times = replay.t.tolist()
    ceiling = min(static_count(replay, params), params.max_instances)

    def sizer(state: Any, active: int, i: int) -> int:
        if name == "swell":
            size, _ = swell.warm_pool_target(
                state, policy_params, active, params.lead_time_s, params.max_instances, times[i]
            )
            return size
        return max(0, ceiling - active)  # AWS: max prepared capacity - desired

    ledger = _Ledger(n, tick)
    # Refilling costs a commenced running hour per instance and the cold lead time; keeping one
    # shelved costs `shelved_price_fraction` of that per hour. So a warm instance is deleted only
    # once the pool has not needed it for as long as keeping it costs one refill: the pool keeps
    # the largest size asked for over that many hours.
    keep_s = (
        MAX_KEEP_S
        if pool.shelved_price_fraction <= 0
        else min(MAX_KEEP_S, 3600.0 / pool.shelved_price_fraction)
    )
    sizes = _RollingMax(max(1, round(keep_s / tick)))
    short_since: int | None = None  # since when the pool is below its size
    current = initial_count(replay, params)
    live = [_Instance(ACTIVE, -cold, 0) for _ in range(current)]
    state = spec.initial_state()
    change_ticks, change_values = [0], [current]
    for i in range(0, n, sync):
        for inst in live:
            if inst.state == FILLING and inst.ready <= i:
                inst.stop(inst.ready)  # configured, then shelved
                inst.state = WARM
        ready = sum(1 for x in live if x.state == ACTIVE and x.ready <= i)
        demand = seen[i]
        util = None if demand is None else (min(1.0, demand / (ready * cap)) if ready else 1.0)
        obs = Observation(
            params.tier, demand, params.metric_lag_s, current, ready, current - ready, util, None
        )
        decision, state = spec.decide(obs, state, policy_params, times[i])
        if decision.desired != current:
            current = decision.desired
            change_ticks.append(i)
            change_values.append(current)
        leaving = _scale(live, current, i, cold, warm_lead, ledger)
        size = sizer(state, current, i)
        pooled = sum(1 for x in live if x.state in (WARM, FILLING)) + len(leaving)
        short_since = (short_since if short_since is not None else i) if pooled < size else None
        # A deficit right after an activation is mostly refilled by the next scale-down (leaving
        # instances are shelved): create only for a deficit that lasted a cold lead time.
        fill = size if short_since is not None and i - short_since >= cold else 0
        live = _size_pool(live, leaving, fill, sizes.add(i, size), i, cold, ledger)
    for inst in live:
        if inst.state != WARM:
            inst.stop(n)
        if inst.state == ACTIVE:
            ledger.served(inst.ready, n)
        ledger.close(inst, n)
    marks = np.zeros(n, dtype=np.int64)
    marks[np.asarray(change_ticks[1:], dtype=np.int64)] = np.arange(1, len(change_ticks))
    requested = np.asarray(change_values, dtype=np.int64)[np.maximum.accumulate(marks)]
    ready_arr = np.cumsum(ledger.serving[:n])
    billed = ledger.running + pool.shelved_price_fraction * ledger.shelved
    metrics = compute_metrics(
        replay.demand, requested, ready_arr, cap, tick, params.price_per_hour, float(billed)
    )
    metrics["shelved_hours"] = float(ledger.shelved)
    return PolicyRun(name, requested, ready_arr, metrics)


def _scale(
    live: list[_Instance], target: int, i: int, cold: int, warm_lead: int, ledger: _Ledger
) -> list[_Instance]:
    """Bring the active count to `target`; returns the instances leaving it (still running)."""
    active = [x for x in live if x.state == ACTIVE]
    if target > len(active):
        need = target - len(active)
        for inst in [x for x in live if x.state == WARM][:need]:
            inst.state, inst.since, inst.ready = ACTIVE, i, i + warm_lead  # unshelved: running again
            need -= 1
        for inst in sorted((x for x in live if x.state == FILLING), key=lambda x: x.ready)[:need]:
            inst.state = ACTIVE  # already being created: serves when that completes
            need -= 1
        live.extend(_Instance(ACTIVE, i, i + cold) for _ in range(need))
        return []
    leaving = []
    # Not ready yet first (newest first), then ready ones (newest first).
    for inst in sorted(active, key=lambda x: (x.ready <= i, -x.ready))[: len(active) - target]:
        if inst.ready <= i:
            ledger.served(inst.ready, i)
        leaving.append(inst)
    return leaving


class _RollingMax:
    """The largest value added over the last `span` ticks (a monotonic deque)."""

    def __init__(self, span: int) -> None:
        self.span = span
        self.items: deque[tuple[int, int]] = deque()

    def add(self, tick: int, value: int) -> int:
        while self.items and self.items[-1][1] <= value:
            self.items.pop()
        self.items.append((tick, value))
        while self.items[0][0] <= tick - self.span:
            self.items.popleft()
        return self.items[0][1]


def _size_pool(
    live: list[_Instance], leaving: list[_Instance], size: int, keep: int, i: int, cold: int, ledger: _Ledger
) -> list[_Instance]:
    """Shelve the leaving instances into the pool; refill it by creating up to `size` (0: no
    refill now); delete warm ones beyond `keep` (the largest size of the recent past). Returns the
    live instances."""
    gone = {id(x) for x in leaving}
    pooled = sum(1 for x in live if x.state in (WARM, FILLING))
    for inst in leaving:
        # Shelved, not deleted: its hour is paid, a later scale-up unshelves it within that hour
        # for nothing more, and the trim below deletes what the pool does not need.
        if inst.ready <= i:
            inst.stop(i)
            inst.state = WARM
        else:
            inst.state = FILLING  # still being created: shelved once configured
        gone.discard(id(inst))
        pooled += 1
    if pooled < size:
        live.extend(_Instance(FILLING, i, i + cold) for _ in range(size - pooled))
    elif pooled > keep:
        for inst in [x for x in live if x.state == WARM][: pooled - keep]:
            ledger.close(inst, i)
            gone.add(id(inst))
    return [x for x in live if id(x) not in gone]
