"""The normalization chain: a policy proposes a count, the chain turns it into the decision.

Every policy, in the service and in the simulator alike, goes through `normalize` (the registry's
`PolicySpec.decide` is nothing else), so the order below is stated and applied once, as the
Kubernetes HPA's normalizeDesiredReplicasWithBehaviors does for its controller:

0. stale_data hold  missing or stale data (the policy's own `stale_after_s`): the policy is not
                    asked, `current` is proposed and the state kept (a policy that needs no data,
                    `static`, is asked all the same; step 7 still holds its scale-downs);
1. tolerance        keep `current` when the proposal is within the policy's band around it;
2. rate_limit       the platform's x`max_up_factor` (4) up and at most `max_down_factor` down per
                    decision, and the policy's own scale-up rate when it has one (HPA behavior);
3. stabilization    on the way down, the highest recommendation of the policy's window;
4. min, max, quota  the configured bounds, then the OpenStack quota left for the tier;
5. override         a manual floor with an expiry, itself capped by max and quota;
6. stale_data       never scale down on stale or missing data, by the policy's rule or the caller's
                    (`Observation.trusted`: the service's own staleness limit);
7. safety_net       the platform's invariants whatever came before: at most x`safety_up_factor`
                    of current (or min, or the override floor), within min and max. Once the
                    service's own layer; a bug in a policy still cannot make things worse;
8. history          no scale-down before one stabilization window of history
                    (`Observation.history_s`: the service's store was empty, the policy changed).

Each step is a small pure function returning (value, Clamp or None): None when it changed nothing,
else the tag `limited_by` lists and a sentence saying what it did. The reason keeps its history:
the policy's reason, then what a clamp has to add to it (the override's, the window's note, the
missing history), then `(limited by ...)`; callers append, never replace (the service appends a
metrics failure). Tolerance is in `clamps` but not in `limited_by`: it is no cap the operator can
change, and the policy's reason already says the count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from autoscaler.core.types import Clamp, Decision, Limits, Observation, direction_of

if TYPE_CHECKING:
    from autoscaler.core.registry import PolicySpec


@dataclass(frozen=True)
class Guards:
    """The chain's parameters: shared caps plus the rate limits a policy runs under."""

    limits: Limits = field(default_factory=Limits)
    max_up_factor: float = 4.0  # the mission: quadruple at most, in one decision
    max_down_factor: float = 0.5  # at most halving per decision
    # From 0 instances x4 is still 0: allow this many in one decision.
    up_from_zero: int = 4
    # The safety net's own cap (step 7), independent of the rate limit a policy runs under. It
    # allows only max(min, override floor, 1) from zero, stricter than `up_from_zero`: that is what
    # the service's net did before it joined the chain, kept so that no decision moved (issue 12).
    safety_up_factor: float = 4.0

    def __post_init__(self) -> None:
        if self.max_up_factor < 1:
            raise ValueError(f"max_up_factor must be >= 1, got {self.max_up_factor}")
        if not 0 <= self.max_down_factor <= 1:
            raise ValueError(f"max_down_factor must be in [0, 1], got {self.max_down_factor}")
        if self.safety_up_factor < 1:
            raise ValueError(f"safety_up_factor must be >= 1, got {self.safety_up_factor}")


NO_TOLERANCE = (0.0, 0.0)


class Proposal(NamedTuple):
    """What a policy proposes; everything but `desired`, `reason` and `state` is optional.

    `window` holds the recommendations the stabilization step keeps a scale-down at (the policy
    decides what its window remembers: HPA's last 5 minutes, swell's per-slot maxima, or just
    `current` while a surge is open); `window_note` is added to the reason when the window holds.
    `scale_up_limit` is the policy's own scale-up rate as a count (the HPA's max(100%, 4 pods)),
    applied with the platform's. `tolerance` is the (up, down) relative band of step 1.
    """

    desired: int
    reason: str
    state: Any
    window: Sequence[int] = ()
    window_note: str = ""
    scale_up_limit: int | None = None
    tolerance: tuple[float, float] = NO_TOLERANCE


class ChainParams(Protocol):
    """What the chain reads from every policy's parameters."""

    @property
    def guards(self) -> Guards: ...

    @property
    def stale_after_s(self) -> float: ...


def tolerance(proposed: int, current: int, up_tol: float, down_tol: float) -> tuple[int, Clamp | None]:
    """Keep `current` when the proposal is within the tolerance band (as the HPA's 0.1)."""
    if proposed > current and proposed <= current * (1 + up_tol):
        return current, Clamp(
            "tolerance", f"{proposed} is within {up_tol:.0%} above {current}: kept {current}"
        )
    if proposed < current and proposed >= current * (1 - down_tol):
        return current, Clamp(
            "tolerance", f"{proposed} is within {down_tol:.0%} below {current}: kept {current}"
        )
    return proposed, None


def rate_limit(
    proposed: int, current: int, guards: Guards, policy_cap: int | None = None
) -> tuple[int, Clamp | None]:
    """The platform's rate per decision, and the policy's own scale-up rate (`policy_cap`)."""
    if proposed > current:
        factor = guards.max_up_factor
        # An infinite factor (the oracle) has no cap: x inf of 0 is not a number.
        cap = (
            math.inf
            if math.isinf(factor)
            else max(math.floor(current * factor), guards.up_from_zero if current == 0 else current)
        )
        if policy_cap is not None and policy_cap < cap:
            if proposed > policy_cap:
                return policy_cap, Clamp(
                    "rate_limit", f"the policy's scale-up rate allows {policy_cap} from {current}"
                )
        elif proposed > cap:
            limited = int(cap)
            return limited, Clamp(
                "rate_limit", f"at most x{factor:g} per decision ({limited} from {current})"
            )
    elif proposed < current:
        floor = math.ceil(current * guards.max_down_factor)
        if proposed < floor:
            down = 1 - guards.max_down_factor
            return floor, Clamp(
                "rate_limit", f"at most {down:.0%} down per decision ({floor} from {current})"
            )
    return proposed, None


def stabilization(proposed: int, current: int, window: Sequence[int]) -> tuple[int, Clamp | None]:
    """On the way down, take the highest recommendation still inside the window (HPA-style)."""
    if proposed < current and window:
        top = max(window)
        if top > proposed:
            top = min(top, current)
            return top, Clamp(
                "stabilization", f"the window's highest recommendation keeps {top}, not {proposed}"
            )
    return proposed, None


def bounds(proposed: int, limits: Limits) -> tuple[int, list[Clamp]]:
    """min, then max, then the quota left (each its own clamp: the quota can undercut min)."""
    clamps: list[Clamp] = []
    desired = proposed
    if desired < limits.min:
        desired = limits.min
        clamps.append(Clamp("min", f"raised to the tier's minimum {limits.min}"))
    if desired > limits.max:
        desired = limits.max
        clamps.append(Clamp("max", f"capped at the tier's maximum {limits.max}"))
    if limits.quota is not None and desired > limits.quota:
        desired = limits.quota
        clamps.append(Clamp("quota", f"capped at the {limits.quota} instances the quota leaves"))
    return desired, clamps


def override(proposed: int, obs: Observation, limits: Limits, now: float) -> tuple[int, Clamp | None]:
    """The active manual floor, never beyond max or the quota; its sentence goes into the reason."""
    ov = obs.override
    if ov is not None and ov.active(now) and proposed < ov.floor:
        floor = min(ov.floor, limits.max, limits.quota if limits.quota is not None else ov.floor)
        if floor > proposed:
            return floor, Clamp("override", f"{ov.reason}: floor {ov.floor} until {ov.expires_at:.0f}")
    return proposed, None


def stale_data(proposed: int, current: int, fresh: bool) -> tuple[int, Clamp | None]:
    if not fresh and proposed < current:
        return current, Clamp("stale_data", f"no scale-down on stale or missing data: kept {current}")
    return proposed, None


def safety_net(
    proposed: int, current: int, fresh: bool, floor: int, limits: Limits, up_factor: float
) -> tuple[int, list[Clamp]]:
    """The platform's invariants on whatever the steps before returned."""
    clamps: list[Clamp] = []
    desired = proposed
    # Written out for an infinite factor (the oracle's): inf x 0 is not a number.
    cap = math.inf if math.isinf(up_factor) else max(current * up_factor, limits.min, floor, 1)
    if desired > cap:
        desired = int(cap)
        clamps.append(Clamp("rate_limit", f"safety net: at most x{up_factor:g} of {current} ({desired})"))
    if not fresh and desired < current:
        desired = current
        clamps.append(Clamp("stale_data", f"safety net: no scale-down on stale data: kept {current}"))
    if desired > limits.max:
        desired = limits.max
        clamps.append(Clamp("max", f"safety net: capped at the tier's maximum {limits.max}"))
    if desired < limits.min:
        desired = limits.min
        clamps.append(Clamp("min", f"safety net: raised to the tier's minimum {limits.min}"))
    return desired, clamps


def history(proposed: int, current: int, history_s: float, window_s: float) -> tuple[int, Clamp | None, str]:
    """No scale-down on less than one stabilization window of history: the first samples alone
    would halve a tier that is busy for a reason. The note is said whether or not it holds."""
    if history_s >= window_s:
        return proposed, None, ""
    note = f"no scale-down before {window_s:.0f} s of history ({window_s - history_s:.0f} s left)"
    if proposed < current:
        return current, Clamp("stabilization", f"kept {current}: {note}"), note
    return proposed, None, note


def normalize(
    spec: PolicySpec, obs: Observation, state: Any, params: ChainParams, now: float
) -> tuple[Decision, Any]:
    """Ask the policy (or hold on stale data), then steps 1-8 of the module docstring."""
    guards = params.guards
    limits = guards.limits
    current = obs.current
    signal = obs.demand if spec.signal == "demand" else obs.utilization
    missing = signal is None or math.isnan(signal)  # is_missing, inlined: the simulator's hot loop
    fresh = not missing and obs.sample_age_s <= params.stale_after_s
    if fresh or not spec.needs_signal:
        proposal = spec.propose(obs, state, params, now)
    else:
        why = "missing" if missing else f"{obs.sample_age_s:.0f} s old"
        proposal = Proposal(current, f"hold: {spec.signal} {why}", state)

    # Each step is called only when it could act: the simulator takes millions of decisions, and
    # most of them hold within the bounds (the steps themselves check the same conditions again).
    clamps: list[Clamp] = []
    clamp: Clamp | None
    desired = proposal.desired
    reason = proposal.reason
    if desired != current:
        if proposal.tolerance is not NO_TOLERANCE:
            desired, clamp = tolerance(desired, current, *proposal.tolerance)
            if clamp:
                clamps.append(clamp)
        desired, clamp = rate_limit(desired, current, guards, proposal.scale_up_limit)
        if clamp:
            clamps.append(clamp)
        if desired < current and proposal.window:
            desired, clamp = stabilization(desired, current, proposal.window)
            if clamp:
                clamps.append(clamp)
                if proposal.window_note:
                    reason = f"{reason}, {proposal.window_note}"
    if desired < limits.min or desired > limits.max or limits.quota is not None:
        desired, bound = bounds(desired, limits)
        clamps += bound
    ov = obs.override
    floor = 0
    if ov is not None and ov.active(now):
        floor = ov.floor
        desired, clamp = override(desired, obs, limits, now)
        if clamp:
            clamps.append(clamp)
            reason = f"{reason}; {clamp.sentence}"
    fresh = fresh and obs.trusted
    if not fresh:
        desired, clamp = stale_data(desired, current, fresh)
        if clamp:
            clamps.append(clamp)
    if desired > current * guards.safety_up_factor or not limits.min <= desired <= limits.max:
        desired, net = safety_net(desired, current, fresh, floor, limits, guards.safety_up_factor)
        clamps += net
    if obs.history_s < math.inf:  # the simulator's case skips it: its history is the whole trace
        # A policy without a window (step, target-tracking: cooldowns instead) needs no history.
        window_s = float(getattr(params, "stabilization_down_s", 0.0))
        desired, clamp, note = history(desired, current, obs.history_s, window_s)
        if clamp:
            clamps.append(clamp)
        if note:
            reason = f"{reason}; {note}"
    if not clamps:
        return Decision(desired, direction_of(desired, current), reason), proposal.state
    # One tag per kind of limit, in chain order (the safety net may repeat one).
    limited_by = tuple(dict.fromkeys(c.tag for c in clamps if c.tag != "tolerance"))
    if limited_by:
        reason = f"{reason} (limited by {', '.join(limited_by)})"
    decision = Decision(desired, direction_of(desired, current), reason, limited_by, tuple(clamps))
    return decision, proposal.state
