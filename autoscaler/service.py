"""The autoscaler loop: every interval, read demand, decide per tier with the core, record, act.

One pass (`Autoscaler.run_once`), in order:

1. If leader election is on and this replica does not hold the Lease, do nothing.
2. Load the persisted loop state and the active on-call overrides.
3. Ask the metrics source for every tier's demand in one query. If it fails, every tier still goes
   through the core with missing demand, which holds (no scale-down; only min and override floors
   may raise a tier), and the reason names the failure.
4. Per tier: read its size from the actuator, decide with the core (a pure function), then apply
   the loop's own safety net (never above x4 of current, never below current on missing or stale
   data, always within min and max), record the decision in the store *before* acting, and act
   unless `dry_run`. A failed actuation is logged, counted, and left for the next pass, whose
   decision is at least as high (the core's stabilization remembers it): never forgotten.
5. Save the loop state; mark a good loop when the inputs were fresh and nothing failed.

The clock is injected, and every adapter arrives through `autoscaler.ports`, so the loop is tested
with fakes at those ports, and end to end against a real Prometheus.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autoscaler.config import AutoscalerConfig
from autoscaler.core.registry import POLICIES, build_params
from autoscaler.core.types import Limits, Observation, direction_of
from autoscaler.core.types import Override as CoreOverride
from autoscaler.ports import (
    ActuationError,
    Actuator,
    LeaderElector,
    LoopState,
    MetricsSource,
    MetricsSourceError,
    Override,
    Sample,
    StateStore,
    StateStoreError,
)
from autoscaler.telemetry import Telemetry

RECENT_DECISIONS_KEPT = 20
MAX_UP_FACTOR = 4

# Exit codes of `swell autoscale --once`.
EXIT_OK, EXIT_METRICS_UNAVAILABLE, EXIT_ACTUATION_FAILED, EXIT_STATE_UNAVAILABLE = 0, 3, 4, 5


@dataclass
class PassResult:
    decisions: list[dict[str, Any]] = field(default_factory=list)
    leader: bool = True
    metrics_error: str | None = None
    actuation_failed: bool = False
    state_error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.state_error:
            return EXIT_STATE_UNAVAILABLE
        if self.metrics_error:
            return EXIT_METRICS_UNAVAILABLE
        if self.actuation_failed:
            return EXIT_ACTUATION_FAILED
        return EXIT_OK


def safety_net(
    desired: int, current: int, fresh: bool, floor: int, tier_min: int, tier_max: int
) -> tuple[int, list[str]]:
    """The loop's own bounds on whatever a policy returns: a bug in a policy must not make things worse."""
    tags: list[str] = []
    cap = max(current * MAX_UP_FACTOR, tier_min, floor, 1)
    if desired > cap:
        desired, tags = cap, [*tags, "rate_limit"]
    if not fresh and desired < current:
        desired, tags = current, [*tags, "stale_data"]
    if desired > tier_max:
        desired, tags = tier_max, [*tags, "max"]
    if desired < tier_min:
        desired, tags = tier_min, [*tags, "min"]
    return desired, tags


def override_floor(overrides: list[Override], tier: str, now: float) -> CoreOverride | None:
    active = [o for o in overrides if o.tier == tier and o.active(now)]
    if not active:
        return None
    strongest = max(active, key=lambda o: (o.floor, o.expires_at))
    return CoreOverride(strongest.floor, strongest.expires_at, f"override {strongest.id}: {strongest.reason}")


class Autoscaler:
    def __init__(
        self,
        config: AutoscalerConfig,
        source: MetricsSource,
        actuators: Mapping[str, Actuator],
        store: StateStore,
        telemetry: Telemetry,
        clock: Callable[[], float],
        elector: LeaderElector | None = None,
        dry_run: bool = False,
    ) -> None:
        self.config = config
        self.source = source
        self.actuators = actuators
        self.store = store
        self.telemetry = telemetry
        self.clock = clock
        self.elector = elector
        self.dry_run = dry_run
        self.params = {
            name: build_params(
                tier.policy,
                capacity_per_instance=tier.capacity_per_instance,
                lead_time_s=tier.lead_time_s,
                limits=Limits(min=tier.min, max=tier.max, quota=tier.quota),
                overrides=_with_service_timing(tier.policy, tier.policy_params, config),
            )
            for name, tier in config.tiers.items()
        }

    def run_once(self) -> PassResult:
        now = self.clock()
        result = PassResult()
        if self.elector is not None and not self.elector.try_acquire_or_renew(now):
            self.telemetry.leader.set(0)
            result.leader = False
            return result
        self.telemetry.leader.set(1)
        try:
            state = self.store.load_loop_state()
            overrides = self.store.overrides()
        except StateStoreError as exc:
            # Without the history the stabilization window is unknown: deciding could scale down.
            result.state_error = str(exc)
            self.telemetry.log("state_unavailable", error=str(exc))
            return result
        try:
            samples: Mapping[str, Sample] = self.source.demand()
        except MetricsSourceError as exc:
            samples = {}
            result.metrics_error = str(exc)
            self.telemetry.metrics_errors.inc()
        for tier in self.config.tiers:
            record = self._decide_and_act(tier, samples.get(tier), state, overrides, now, result)
            if record is not None:
                result.decisions.append(record)
        try:
            self.store.save_loop_state(state)
        except StateStoreError as exc:
            result.state_error = str(exc)
            self.telemetry.log("state_unavailable", error=str(exc))
        fresh = all(d["fresh"] for d in result.decisions)
        if not (result.metrics_error or result.state_error or result.actuation_failed) and fresh:
            self.telemetry.mark_good_loop(now)
        return result

    def _decide_and_act(
        self,
        tier: str,
        sample: Sample | None,
        state: LoopState,
        overrides: list[Override],
        now: float,
        result: PassResult,
    ) -> dict[str, Any] | None:
        cfg = self.config.tiers[tier]
        actuator = self.actuators[tier]
        try:
            capacity = actuator.capacity(tier)
        except ActuationError as exc:
            self.telemetry.actuation_errors.labels(tier, actuator.name).inc()
            self.telemetry.log("capacity_unavailable", tier=tier, error=str(exc))
            result.actuation_failed = True
            return None
        age = sample.age(now) if sample is not None else math.inf
        demand = sample.value if sample is not None else None
        fresh = demand is not None and age <= self.config.stale_after_s
        floor = override_floor(overrides, tier, now)
        history = state.recent_decisions.setdefault(tier, [])
        lost = self._lost(tier, capacity.current, state, history, now)
        # The core sizes against the count the loop last set: an instance that died (or a count
        # lowered behind the loop's back) is asked for again in this pass, not when demand next
        # outgrows what is left.
        intended = capacity.current + lost
        obs = Observation(
            tier=tier,
            demand=demand,
            sample_age_s=age,
            current=intended,
            ready=capacity.ready,
            pending=max(0, intended - capacity.ready),
            utilization=None,
            override=floor,
        )
        spec = POLICIES[cfg.policy]
        raw_state = state.policy_state.get(tier)
        policy_state = spec.state_from_dict(raw_state) if raw_state else spec.initial_state()
        decision, new_state = spec.decide(obs, policy_state, self.params[tier], now)
        desired, net = safety_net(
            decision.desired, intended, fresh, floor.floor if floor else 0, cfg.min, cfg.max
        )
        reason = decision.reason
        if result.metrics_error:
            reason = f"hold: metrics unavailable ({result.metrics_error})"
        if lost:
            reason = f"replacing {lost} lost instance{'s' if lost > 1 else ''}; {reason}"
        limited_by = list(dict.fromkeys([*decision.limited_by, *net]))
        record: dict[str, Any] = {
            "at": now,
            "tier": tier,
            "demand": demand,
            "sample_age_s": None if math.isinf(age) else round(age, 3),
            "fresh": fresh,
            "current": capacity.current,
            "lost": lost,
            "ready": capacity.ready,
            "desired": desired,
            "direction": direction_of(desired, capacity.current),
            "reason": reason,
            "limited_by": limited_by,
            "override": floor.reason if floor else None,
            "dry_run": self.dry_run,
            "acted": False,
            "error": None,
        }
        # Record before acting: a crash mid-actuation leaves the intent on disk.
        previous_failed = bool(history) and history[-1].get("error") is not None
        state.policy_state[tier] = new_state.to_dict()
        state.last_desired[tier] = desired
        # An actuator may report the size it was asked for before applying it (Pulumi's config is
        # written before `up`): after a failure, act again even when the sizes look equal.
        if not self.dry_run and (desired != capacity.current or previous_failed):
            started = self.clock()
            try:
                actuator.scale(tier, desired)
                record["acted"] = True
            except ActuationError as exc:
                record["error"] = str(exc)
                result.actuation_failed = True
                self.telemetry.actuation_errors.labels(tier, actuator.name).inc()
            finally:
                self.telemetry.actuation_seconds.labels(tier, actuator.name).observe(
                    max(0.0, self.clock() - started)
                )
        history.append(record)
        del history[:-RECENT_DECISIONS_KEPT]
        self.telemetry.record_decision(tier, record)
        return record

    def _lost(
        self, tier: str, current: int, state: LoopState, history: list[dict[str, Any]], now: float
    ) -> int:
        """Instances the actuator no longer reports though the loop's last decision, taken within
        the staleness window, set more: the ones that died since. None in a dry run (nothing was
        set) or after a long pause (the count may have been changed on purpose meanwhile)."""
        last_set = state.last_desired.get(tier)
        if self.dry_run or last_set is None or not history:
            return 0
        if now - float(history[-1].get("at", -math.inf)) > self.config.stale_after_s:
            return 0
        return max(0, last_set - current)

    def run_forever(self, stop: threading.Event) -> None:
        """Loop until `stop` is set, one pass per interval (a slow pass shortens the next wait)."""
        while not stop.is_set():
            started = self.clock()
            self.run_once()
            stop.wait(max(0.0, self.config.interval_s - (self.clock() - started)))
        if self.elector is not None:
            self.elector.release()


def _with_service_timing(policy: str, params: dict[str, Any], config: AutoscalerConfig) -> dict[str, Any]:
    """The service's interval and staleness rule feed the policies that know about them."""
    merged = dict(params)
    if policy == "swell":
        merged.setdefault("sync_period_s", config.interval_s)
        merged.setdefault("stale_after_s", config.stale_after_s)
    return merged
