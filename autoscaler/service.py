"""The autoscaler loop: every interval, read demand, decide per tier with the core, record, act.

One pass (`Autoscaler.run_once`), in order:

1. If leader election is on and this replica does not hold the Lease, do nothing (and forget its
   in-memory state: whoever leads now writes the store).
2. Read the active on-call overrides; the loop state comes from memory while this replica leads
   (the state it computed last pass is the truth, saved or not), from the store at the start of a
   term. An empty store is said so in the log and in every decision that lacks history.
3. Ask the metrics source for every tier's demand in one query. If it fails (or raises anything:
   a bug in an adapter must not kill the pass), every tier still goes through the core with
   missing demand, which holds (no scale-down; only min and override floors may raise a tier),
   and the failure is appended to the reason.
4. Per tier: judge the sample (negative, stamped in the future, or from an incomplete scrape:
   hold, as for stale data), read the tier's size from the actuator, decide with the core (a pure
   function whose normalization chain also applies the loop's rules: the safety net, never above
   x4 of current, never below current on data the loop finds stale or unusable, always within min
   and max, and no scale-down before one stabilization window of history; what the loop knows
   beyond the core is appended to the reason, never put in its place), **save the decision record
   and the state it implies to the store**, re-check the lead, and act unless `dry_run`. A
   scale-down whose record cannot be saved is not applied (a scale-up is: adding capacity is the
   safe side, and the in-memory state keeps the record). A failed actuation is logged, counted,
   and left for the next pass, whose decision is at least as high (the core's stabilization
   remembers it): never forgotten.
5. Save the loop state (retried next pass on failure: memory stays the truth); mark a good loop
   when the inputs were fresh and nothing failed.

`run_forever` repeats passes, renews the Lease every `retry_period_s` in between (client-go's
cadence), and survives anything a pass raises. The clock is injected, and every adapter arrives
through `autoscaler.ports`, so the loop is tested with fakes at those ports, and end to end against
a real Prometheus and the Kubernetes stand-in.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoscaler.config import AutoscalerConfig, TierConfig
from autoscaler.core.drain import Drain, FleetPlan, plan_fleet
from autoscaler.core.policies.swell import warm_pool_target
from autoscaler.core.registry import POLICIES, build_params
from autoscaler.core.schedule import Schedule, Window, scheduled_floor
from autoscaler.core.types import Limits, Observation, direction_of
from autoscaler.core.types import Override as CoreOverride
from autoscaler.core.warm_pool import pool_keep
from autoscaler.ports import (
    POOL_FILLING,
    POOL_WARM,
    ActuationError,
    Actuator,
    Fleet,
    LeaderElector,
    LoopState,
    Member,
    MetricsSource,
    MetricsSourceError,
    Override,
    Sample,
    StateFenceError,
    StateStore,
    StateStoreError,
    is_fleet,
)
from autoscaler.telemetry import Telemetry

# Where drains read the sessions left on retiring instances when the actuator cannot say:
# (tier, indices) -> {index: sessions or None}.
SessionSource = Callable[[str, list[int]], Mapping[int, int | None]]

RECENT_DECISIONS_KEPT = 20
# A sample stamped further ahead than this (Prometheus's clock against ours) is not believed:
# `now - timestamp` would make it fresh forever.
FUTURE_TOLERANCE_S = 5.0

# Exit codes of `swell autoscale --once`.
EXIT_OK, EXIT_METRICS_UNAVAILABLE, EXIT_ACTUATION_FAILED, EXIT_STATE_UNAVAILABLE = 0, 3, 4, 5


@dataclass
class PassResult:
    decisions: list[dict[str, Any]] = field(default_factory=list)
    leader: bool = True
    metrics_error: str | None = None
    actuation_failed: bool = False
    state_error: str | None = None
    deposed: bool = False  # leadership lost during the pass: it stopped acting and saving

    @property
    def exit_code(self) -> int:
        if self.state_error:
            return EXIT_STATE_UNAVAILABLE
        if self.metrics_error:
            return EXIT_METRICS_UNAVAILABLE
        if self.actuation_failed:
            return EXIT_ACTUATION_FAILED
        return EXIT_OK


def override_floor(
    overrides: list[Override],
    tier: str,
    now: float,
    schedules: Sequence[Schedule] = (),
    lead_s: float = 0.0,
    ramp_s: float = 0.0,
) -> CoreOverride | None:
    """The strongest floor on `tier` at `now`: on-call's overrides, those scheduled with
    `swell surge --at` (ramping down past their end), and the configured schedules."""
    floors: list[CoreOverride] = []
    for o in overrides:
        if o.tier != tier:
            continue
        if o.starts_at is None:
            if o.active(now):
                floors.append(CoreOverride(o.floor, o.expires_at, f"override {o.id}: {o.reason}"))
            continue
        window = Window(o.floor, o.starts_at, o.starts_at + lead_s, o.expires_at, o.expires_at + ramp_s)
        floor = window.floor_at(now)
        if floor > 0:
            phase = " (ramping down)" if now >= o.expires_at else ""
            reason = f"scheduled override {o.id}{phase}: {o.reason}"
            floors.append(CoreOverride(floor, window.ramp_ends_at, reason))
    planned = scheduled_floor(list(schedules), tier, now, lead_s, ramp_s)
    if planned is not None:
        floors.append(planned)
    return max(floors, key=lambda f: (f.floor, f.expires_at), default=None)


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
        limits: Mapping[str, tuple[int, int]] | None = None,
        sessions: Mapping[str, SessionSource] | None = None,
    ) -> None:
        self.config = config
        # (min, max) per tier: the stack's own limits narrowed by the config (autoscaler.wiring),
        # or the config's when the actuator has none.
        self.limits = {name: (limits or {}).get(name) or tier.limits() for name, tier in config.tiers.items()}
        self.sessions = dict(sessions or {})
        self.schedules = [s.to_core() for s in config.schedules]
        self.source = source
        self.actuators = actuators
        self.store = store
        self.telemetry = telemetry
        self.clock = clock
        self.elector = elector
        self.dry_run = dry_run
        # The loop state while this replica leads: what it computed last pass, saved or not.
        self._state: LoopState | None = None
        self._saved_once = False  # to tell a lost store from a first start
        self._store_was_empty = False  # at the start of the current term
        self._pool_ignored: set[str] = set()  # tiers whose pool was said to be ignored (logged once)
        self.params = {
            name: build_params(
                tier.policy,
                capacity_per_instance=tier.capacity_per_instance,
                lead_time_s=_policy_lead_time(tier, name in actuators and is_fleet(actuators[name])),
                limits=Limits(min=self.limits[name][0], max=self.limits[name][1], quota=tier.quota),
                overrides=_with_service_timing(tier.policy, tier.policy_params, config),
            )
            for name, tier in config.tiers.items()
        }

    def run_once(self) -> PassResult:
        now = self.clock()
        self.telemetry.beat(now)
        result = PassResult()
        if self.elector is not None and not self.elector.try_acquire_or_renew(now):
            self._follow()
            result.leader = False
            self.telemetry.pass_finished(self.clock(), leader=False)
            return result
        self.telemetry.leader.set(1)
        try:
            overrides = self.store.overrides()
            state = self._state if self._state is not None else self._begin_term(now)
        except StateStoreError as exc:
            # Without the history the stabilization window is unknown: deciding could scale down.
            self._store_failed(exc, result)
            self.telemetry.pass_finished(self.clock(), leader=True)
            return result
        try:
            samples: Mapping[str, Sample] = self.source.demand()
        except MetricsSourceError as exc:
            samples = {}
            result.metrics_error = str(exc)
            self.telemetry.metrics_errors.inc()
        except Exception as exc:  # an adapter bug: hold like an outage rather than lose the pass
            samples = {}
            result.metrics_error = f"the metrics source failed unexpectedly ({type(exc).__name__}: {exc})"
            self.telemetry.metrics_errors.inc()
        with contextlib.ExitStack() as batches:
            # One update per pass and actuator (Pulumi: one `up` for every tier of the stack).
            for actuator in {id(a): a for a in self.actuators.values()}.values():
                batch = getattr(actuator, "batch", None)
                if callable(batch):
                    batches.enter_context(batch())
            for tier in self.config.tiers:
                record = self._decide_and_act(tier, samples.get(tier), state, overrides, now, result)
                if record is not None:
                    result.decisions.append(record)
                if result.deposed:
                    break
        self._record_actuation(state)
        if not result.deposed and self._still_leading(result):
            self._save(state, result)
        fresh = all(d["fresh"] for d in result.decisions)
        failed = result.metrics_error or result.state_error or result.actuation_failed or result.deposed
        if not failed and fresh:
            self.telemetry.mark_good_loop(now)
        self.telemetry.pass_finished(self.clock(), leader=not result.deposed)
        return result

    def settle(self, timeout_s: float) -> dict[str, list[str]]:
        """Wait until the actuators' background updates are done (`swell autoscale --once` must
        not exit with one in flight); return the errors of those that failed, per tier."""
        waited: set[int] = set()
        for actuator in self.actuators.values():
            wait = getattr(actuator, "wait_idle", None)
            if callable(wait) and id(actuator) not in waited:
                waited.add(id(actuator))
                wait(timeout_s)
        errors = {}
        for tier, actuator in self.actuators.items():
            failures = getattr(actuator, "failures", None)
            found = failures(tier) if callable(failures) else []
            if found:
                errors[tier] = found
        return errors

    def close(self) -> None:
        """Stop the actuators' background work (an update in flight is cancelled: see
        autoscaler/adapters/pulumi.py)."""
        closed: set[int] = set()
        for actuator in self.actuators.values():
            close = getattr(actuator, "close", None)
            if callable(close) and id(actuator) not in closed:
                closed.add(id(actuator))
                close()

    def _begin_term(self, now: float) -> LoopState:
        """The state at the start of a term (first pass, or leading again): the store's. With leader
        election, claim it at once (`writer`), so a deposed leader's late write is fenced off."""
        state = self.store.load_loop_state()
        self._store_was_empty = state.is_empty()
        if self._store_was_empty:
            lost = self._saved_once
            self.telemetry.log(
                "state_lost" if lost else "state_empty",
                store=type(self.store).__name__,
                detail="this process saved a loop state before; the store lost it"
                if lost
                else "no loop state in the store: a first start, or a lost store",
                effect="no scale-down until each tier has one stabilization window of history",
            )
        if self.elector is not None:
            state.writer = self.elector.identity
            self.store.save_loop_state(state)
            self._saved_once = True
        self._state = state
        return state

    def _follow(self) -> None:
        self.telemetry.leader.set(0)
        self._state = None  # the leader writes the store now; reload it when leading again

    def _store_failed(self, exc: StateStoreError, result: PassResult) -> None:
        result.state_error = str(exc)
        if isinstance(exc, StateFenceError):
            result.deposed = True
            self._follow()
            self.telemetry.log("deposed", error=str(exc))
        else:
            self.telemetry.log("state_unavailable", error=str(exc))

    def _save(self, state: LoopState, result: PassResult) -> bool:
        """Write the loop state; on failure keep it in memory (the truth) and say so."""
        try:
            self.store.save_loop_state(state)
        except StateStoreError as exc:
            self._store_failed(exc, result)
            return False
        self._saved_once = True
        return True

    def _still_leading(self, result: PassResult) -> bool:
        """The re-check right before acting or writing: a replica that lost the Lease meanwhile
        (paused past it, partitioned) must neither act nor overwrite the new leader's state."""
        if self.elector is None or self.elector.still_leading(self.clock()):
            return True
        result.deposed = True
        result.state_error = result.state_error or "leadership lost during the pass: stopped acting"
        self._follow()
        self.telemetry.log("deposed", identity=self.elector.identity)
        return False

    def _judge(self, sample: Sample | None, now: float) -> tuple[float | None, float, str | None]:
        """(demand the core may use, sample age, why the sample cannot be believed or None)."""
        if sample is None:
            return None, math.inf, None
        age = now - sample.timestamp
        problem = None
        if age < -FUTURE_TOLERANCE_S:
            problem = f"sample stamped {-age:.0f} s in the future (clock skew, or a bad exporter timestamp)"
        elif sample.value is not None and sample.value < 0:
            problem = f"demand negative ({sample.value:g}): a broken rule or exporter"
        elif sample.value is not None and self.config.demand_targets is not None:
            up, expected = sample.targets_up, sample.targets_expected
            if up is None or expected is None:
                problem = "target count missing (the demand_targets queries gave nothing for this tier)"
            elif expected <= 0 or up < expected:
                problem = f"incomplete scrape: {up} of {expected} targets behind the sum"
        age = max(0.0, age)
        return (None if problem else sample.value), age, problem

    def _policy_state(self, tier: str, state: LoopState, now: float) -> tuple[Any, str | None]:
        """The tier's policy state from the loop state, or a fresh one (history starting now) when
        there is none, it was written by another policy, or it cannot be read; then why."""
        policy = self.config.tiers[tier].policy
        spec = POLICIES[policy]
        raw = state.policy_state.get(tier)
        written_by = state.policies.get(tier, policy)
        if raw and written_by == policy:
            try:
                return spec.state_from_dict(raw), None
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                why = f"persisted state of policy {policy} is unreadable ({exc})"
        elif raw:
            why = f"policy changed from {written_by} to {policy}"
        elif self._store_was_empty:
            why = "no history: the state store was empty (a first start, or a lost store)"
        else:
            why = "no history for this tier yet"
        state.history_since[tier] = now
        state.policies[tier] = policy
        self.telemetry.log("history_reset", tier=tier, reason=why)
        return spec.initial_state(), why

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
        is_a_fleet = is_fleet(actuator)
        try:
            capacity = actuator.capacity(tier)
            # A Fleet's instances: its drains and its warm pool are tended every pass.
            members: list[Member] = actuator.members(tier) if is_a_fleet else []  # type: ignore[attr-defined]
        except ActuationError as exc:
            self.telemetry.actuation_errors.labels(tier, actuator.name).inc()
            self.telemetry.log("capacity_unavailable", tier=tier, error=str(exc))
            result.actuation_failed = True
            return None
        demand, age, problem = self._judge(sample, now)
        fresh = demand is not None and age <= self.config.stale_after_s
        floor = override_floor(
            overrides, tier, now, self.schedules, cfg.lead_time_s, self.config.schedule_ramp_down_s
        )
        history = state.recent_decisions.setdefault(tier, [])
        lost = self._lost(tier, capacity.current, state, history, now)
        # The core sizes against the count the loop last set: an instance that died (or a count
        # lowered behind the loop's back) is asked for again in this pass, not when demand next
        # outgrows what is left.
        intended = capacity.current + lost
        policy_state, reset = self._policy_state(tier, state, now)
        obs = Observation(
            tier=tier,
            demand=demand,
            sample_age_s=age,
            current=intended,
            ready=capacity.ready,
            pending=max(0, intended - capacity.ready),
            utilization=None,
            override=floor,
            # The loop's own staleness rule and history bound every policy, whatever its own
            # parameters say: the chain holds scale-downs on either (autoscaler/core/chain.py).
            trusted=fresh,
            history_s=now - state.history_since.get(tier, -math.inf),
        )
        spec = POLICIES[cfg.policy]
        decision, new_state = spec.decide(obs, policy_state, self.params[tier], now)
        desired = decision.desired
        pool = self._pool(tier, new_state, desired, members, state, now)
        limited_by = list(decision.limited_by)
        # The reason keeps its history: what the loop knows beyond the core is added, never put in
        # its place (the core's own hold on missing data stays readable beside the cause).
        reason = decision.reason
        if problem:
            reason = f"{reason}; sample not used: {problem}"
            limited_by = list(dict.fromkeys([*limited_by, "stale_data"]))
        if result.metrics_error:
            reason = f"{reason}; metrics unavailable ({result.metrics_error})"
        if reset:
            reason = f"{reset}; {reason}"
        if lost:
            reason = f"replacing {lost} lost instance{'s' if lost > 1 else ''}; {reason}"
        record: dict[str, Any] = {
            "at": now,
            "tier": tier,
            "demand": demand if problem is None else (sample.value if sample else None),
            "sample_age_s": None if math.isinf(age) else round(age, 3),
            "fresh": fresh,
            "current": capacity.current,
            "lost": lost,
            "ready": capacity.ready,
            "desired": desired,
            "direction": direction_of(desired, capacity.current),
            "reason": reason,
            "limited_by": limited_by,
            "clamps": [{"tag": c.tag, "sentence": c.sentence} for c in decision.clamps],
            "override": floor.reason if floor else None,
            "dry_run": self.dry_run,
            "acted": False,
            "error": None,
        }
        if pool is not None:
            record["pool"] = pool
        previous_failed = bool(history) and history[-1].get("error") is not None
        self._collect_failures(tier, actuator, record, result)
        state.policy_state[tier] = spec.state_to_dict(new_state)
        state.policies[tier] = cfg.policy
        state.last_desired[tier] = desired
        history.append(record)
        del history[:-RECENT_DECISIONS_KEPT]
        # Drains go on whatever the decision: each pass checks the retiring instances' sessions; and
        # a pool is tended every pass (ready filling ones shelved, refills, trims).
        draining = is_a_fleet and (bool(state.drains.get(tier)) or any(m.retiring for m in members))
        pooling = is_a_fleet and (pool is not None or any(m.pool for m in members))
        # An actuator may report the size it was asked for before applying it (Pulumi's config is
        # written before `up`): after a failure, act again even when the sizes look equal.
        if not self.dry_run and (desired != capacity.current or previous_failed or draining or pooling):
            self._record_then_act(tier, record, state, result)
        self.telemetry.record_decision(tier, record)
        return record

    def _record_then_act(
        self, tier: str, record: dict[str, Any], state: LoopState, result: PassResult
    ) -> None:
        """Save the record (and the state it implies) before calling the actuator, so a crash
        mid-actuation leaves the intent on disk; then re-check the lead and act."""
        actuator = self.actuators[tier]
        desired, current = record["desired"], record["current"]
        if not self._save(state, result):
            if result.deposed:
                record["reason"] += "; not acted: another replica leads now"
                return
            if desired < current:
                # Never remove capacity without a record of why: hold until the store takes it.
                record.update(
                    desired=current,
                    direction=direction_of(current, current),
                    reason=f"hold: scale-down to {desired} not applied, its record could not be saved "
                    f"({result.state_error}); {record['reason']}",
                )
                state.last_desired[tier] = current
                return
        if not self._still_leading(result):
            record["reason"] += "; not acted: this replica no longer leads"
            return
        started = self.clock()
        try:
            if is_fleet(actuator):
                self._act_on_fleet(tier, actuator, record, state)  # type: ignore[arg-type]
            else:
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

    def _act_on_fleet(self, tier: str, actuator: Fleet, record: dict[str, Any], state: LoopState) -> None:
        """The two-phase scale-down (autoscaler/core/drain.py): retire, wait for the sessions to end
        or the drain timeout, remove; a scale-up takes retiring instances back first. The drains are
        in the loop state, saved every pass: a restart resumes them."""
        cfg = self.config.tiers[tier]
        now = self.clock()
        members = actuator.members(tier)
        retiring = [m.index for m in members if m.retiring]
        sessions: Mapping[int, int | None] = {}
        if retiring:
            source = self.sessions.get(tier, actuator.sessions)
            try:
                sessions = source(tier, retiring)
            except Exception as exc:  # unknown sessions: the drain waits for its deadline
                self.telemetry.log("sessions_unavailable", tier=tier, error=f"{type(exc).__name__}: {exc}")
        drains = {int(i): Drain.from_dict(int(i), d) for i, d in state.drains.get(tier, {}).items()}
        pool = record.get("pool") or {}
        plan = plan_fleet(
            record["desired"],
            members,
            drains,
            sessions,
            now,
            cfg.drain_timeout_s,
            cfg.retire,
            pool_target=int(pool.get("target", 0)),
            pool_keep=int(pool.get("keep", 0)),
        )
        record["drain"] = _drain_summary(plan)
        if pool:
            pool.update(_pool_summary(plan))
        if plan.changed:
            retiring_now = [d.index for d in plan.retiring]
            if plan.warm or plan.filling:
                actuator.apply(tier, plan.serving, retiring_now, plan.warm, plan.filling)
            else:
                # Without a pool, the call the actuators have always had.
                actuator.apply(tier, plan.serving, retiring_now)
        state.drains[tier] = {str(d.index): d.to_dict() for d in plan.retiring}
        for note in plan.notes:
            self.telemetry.log("drain_timeout", tier=tier, detail=note)
        if plan.removed or plan.retired or plan.taken_back:
            self.telemetry.log("drain", tier=tier, **record["drain"])
        if plan.activated or plan.refilled or plan.shelved or plan.trimmed:
            self.telemetry.log("warm_pool", tier=tier, **_pool_summary(plan))

    def _pool(
        self,
        tier: str,
        policy_state: Any,
        desired: int,
        members: Sequence[Member],
        state: LoopState,
        now: float,
    ) -> dict[str, Any] | None:
        """The tier's warm pool this pass: its target (swell's `warm_pool_target`, or the fixed
        `warm_pool.size`), capped so that `desired` + pool stays within the tier's max and quota; what it
        keeps (the hysteresis, autoscaler/core/warm_pool.py); why; and the warm and filling
        instances it has now. None without a pool (disabled, or an actuator that names no
        instances: logged once)."""
        cfg = self.config.tiers[tier]
        wp = cfg.warm_pool
        if not wp.enabled:
            state.pools.pop(tier, None)
            return None
        if not is_fleet(self.actuators[tier]):
            if tier not in self._pool_ignored:
                self._pool_ignored.add(tier)
                self.telemetry.log(
                    "warm_pool_ignored",
                    tier=tier,
                    reason=f"actuator {self.actuators[tier].name} names no instances: it cannot keep a pool",
                )
            return None
        # A shelved (shelved_offloaded) server still counts in the project's `instances` quota, and
        # in its cores and RAM too unless Nova counts usage from placement (Nova's option
        # `[quota] count_usage_from_placement`, docs.openstack.org/nova/latest/configuration/config.html):
        # the pool stays within the tier's max and its quota, beside the active instances.
        hi = self.limits[tier][1]
        bound, name = (hi, "max") if cfg.quota is None or cfg.quota >= hi else (cfg.quota, "quota")
        room = max(0, bound - desired)
        if wp.size is not None:
            size, why = wp.size, f"warm pool {wp.size}: fixed (warm_pool.size)"
        else:
            size, why = warm_pool_target(policy_state, self.params[tier], desired, wp.cold_lead_s, bound, now)
        target = min(size, room)
        if target < size:
            why = f"{why}; capped at {target}: {desired} active + pool within {name} {bound}"
        keep, window = pool_keep(state.pools.get(tier, []), target, now, wp.shrink_after_s)
        state.pools[tier] = window
        return {
            "target": target,
            "keep": max(target, min(keep, room)),
            "reason": why,
            "warm": sum(1 for m in members if m.pool == POOL_WARM),
            "filling": sum(1 for m in members if m.pool == POOL_FILLING),
        }

    def _collect_failures(
        self, tier: str, actuator: Actuator, record: dict[str, Any], result: PassResult
    ) -> None:
        """Updates that ran in the background and failed since the last pass (Pulumi): recorded and
        counted on this pass's decision, which asks again (the actuator's target fell back)."""
        failures = getattr(actuator, "failures", None)
        if not callable(failures):
            return
        errors = failures(tier)
        if errors:
            record["error"] = "; ".join(errors)
            result.actuation_failed = True
            self.telemetry.actuation_errors.labels(tier, actuator.name).inc()

    def _record_actuation(self, state: LoopState) -> None:
        """What each actuator is doing (an update in flight, queued targets, the last result), kept
        in the loop state for `swell status` in another process."""
        seen: set[int] = set()
        for actuator in self.actuators.values():
            status = getattr(actuator, "status", None)
            if id(actuator) in seen or not callable(status):
                continue
            seen.add(id(actuator))
            report = status()
            state.actuation[str(report.get("stack", actuator.name))] = report

    def _lost(
        self, tier: str, current: int, state: LoopState, history: list[dict[str, Any]], now: float
    ) -> int:
        """Instances the actuator no longer reports though the loop's last decision, taken within
        the staleness window, set more: the ones that died since. None in a dry run (nothing was
        set), after a long pause (the count may have been changed on purpose meanwhile), or when
        the last decision was recorded but never applied."""
        last_set = state.last_desired.get(tier)
        if self.dry_run or last_set is None or not history:
            return 0
        last = history[-1]
        if now - float(last.get("at", -math.inf)) > self.config.stale_after_s:
            return 0
        if last.get("desired") != last.get("current") and not last.get("acted"):
            return 0  # an intent never applied (crashed, deposed, refused): not a count that was set
        return max(0, last_set - current)

    def run_forever(self, stop: threading.Event) -> None:
        """Loop until `stop` is set, one pass per interval (a slow pass shortens the next wait).
        Between passes the Lease is renewed every retry period. Whatever a pass raises is logged and
        counted, and the loop goes on: exiting would leave every tier without an autoscaler."""
        while not stop.is_set():
            started = self.clock()
            try:
                self.run_once()
            except Exception as exc:
                self.telemetry.pass_failures.inc()
                self.telemetry.log("pass_failed", error=f"{type(exc).__name__}: {exc}")
            self._wait(stop, started + self.config.interval_s)
        if self.elector is not None:
            self.elector.release()

    def _wait(self, stop: threading.Event, until: float) -> None:
        while not stop.is_set():
            left = until - self.clock()
            if left <= 0:
                return
            step = min(left, self.elector.retry_period_s) if self.elector is not None else left
            if stop.wait(step) or self.elector is None or self.clock() >= until:
                continue
            now = self.clock()
            if self.elector.try_acquire_or_renew(now):
                self.telemetry.leader.set(1)
            elif self._state is not None:
                self._follow()
            self.telemetry.beat(now)


def _with_service_timing(policy: str, params: dict[str, Any], config: AutoscalerConfig) -> dict[str, Any]:
    """The service's interval and staleness rule feed the policies that know about them."""
    merged = dict(params)
    if policy == "swell":
        merged.setdefault("sync_period_s", config.interval_s)
        merged.setdefault("stale_after_s", config.stale_after_s)
    return merged


def _policy_lead_time(tier: TierConfig, fleet: bool) -> float:
    """What the tier's policy plans across: with a warm pool (enabled, and an actuator that can
    keep one), swell plans across the warm lead time (its next instances come from the pool; the
    pool itself covers the cold lead time), as in the simulator (autoscaler/sim/warm.py);
    otherwise, and for other policies, the tier's lead time."""
    if tier.warm_pool.enabled and fleet and tier.policy == "swell":
        return tier.warm_pool.warm_lead_s
    return tier.lead_time_s


def _drain_summary(plan: FleetPlan) -> dict[str, Any]:
    return {
        "retiring": [d.index for d in plan.retiring],
        "retired": list(plan.retired),
        "taken_back": list(plan.taken_back),
        "created": list(plan.created),
        "removed": [d.index for d in plan.removed if d.index not in plan.shelved],
        "cut_sessions": plan.cut_sessions,
    }


def _pool_summary(plan: FleetPlan) -> dict[str, Any]:
    return {
        "warm": len(plan.warm),
        "filling": len(plan.filling),
        "activated": list(plan.activated),
        "refilled": list(plan.refilled),
        "shelved": list(plan.shelved),
        "trimmed": list(plan.trimmed),
    }
