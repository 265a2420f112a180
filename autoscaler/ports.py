"""The ports of the autoscaler service: what it needs from the world, as small Protocols.

Only adapters (Prometheus, Pulumi, Kubernetes, SQLite) import clients or SDKs; the service loop and
the decision core see nothing but these types. One place (`autoscaler.wiring`) builds the adapters
from the configuration. The drill's actuator (local processes) implements them from outside this
package: `loadtests/local_actuator.py`, wired by `loadtests/wiring.py`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Sample:
    """One tier's newest value of a signal, with the time Prometheus stamped it (unix seconds).

    `value` is None when the series is missing, or its value was NaN or infinite: the core treats
    that as missing data and holds. `targets_up` and `targets_expected` are how many scrape targets
    fed the tier's sum and how many should have, when the source counts them (`demand_targets`),
    else None.
    """

    value: float | None
    timestamp: float
    targets_up: int | None = None
    targets_expected: int | None = None

    @classmethod
    def of(
        cls,
        value: float,
        timestamp: float,
        targets_up: int | None = None,
        targets_expected: int | None = None,
    ) -> Sample:
        return cls(value if math.isfinite(value) else None, timestamp, targets_up, targets_expected)

    def age(self, now: float) -> float:
        return max(0.0, now - self.timestamp)


class MetricsSourceError(RuntimeError):
    """The metrics source could not answer at all (unreachable, refused, malformed reply)."""


class MetricsSource(Protocol):
    def demand(self) -> Mapping[str, Sample]:
        """Offered demand of every tier, from one query. Raises MetricsSourceError."""
        ...


class ActuationError(RuntimeError):
    """Applying a size failed; `retryable` says whether trying again later may succeed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Capacity:
    """What the actuator reports for a tier: instances asked for, and those ready to serve; beside
    them, the tier's warm pool (see `Member.pool`): shelved and configured (`warm`), and being
    created and configured for the pool (`filling`). Neither counts in `current`."""

    current: int
    ready: int
    warm: int = 0
    filling: int = 0

    @property
    def pending(self) -> int:
        return max(0, self.current - self.ready)


class Actuator(Protocol):
    """Changes a tier's size. `scale` is idempotent: applying the same count twice changes nothing."""

    name: str

    def capacity(self, tier: str) -> Capacity: ...

    def scale(self, tier: str, desired: int) -> None:
        """Make the tier's requested size `desired`. Raises ActuationError."""
        ...


@dataclass(frozen=True)
class Member:
    """One instance of a tier as a draining actuator knows it: its stable index (its name), when it
    was created (billing starts there), whether it is asked to drain, and whether it serves yet."""

    index: int
    started_at: float
    retiring: bool = False
    ready: bool = False
    # A retiring member whose removal from rotation is not applied yet (a queued update).
    in_rotation: bool = False
    # The warm pool (issue 15): "" for a serving or retiring member; POOL_FILLING for one created
    # for the pool (running, being configured, no load balancer member; `ready` once configured,
    # so it can be shelved); POOL_WARM for one shelved with its configured disk (unshelving it
    # serves within the warm lead time, without configuring again).
    pool: str = ""


POOL_FILLING = "filling"
POOL_WARM = "warm"


def overlapping(sets: Mapping[str, Iterable[int]]) -> list[str]:
    """Each index that a layout puts in two of its sets (serving, retiring, warm, filling), named with
    both: a Fleet refuses such a layout."""
    names = list(sets)
    found = []
    for n, later in enumerate(names):
        for earlier in names[:n]:
            both = sorted(set(sets[later]) & set(sets[earlier]))
            if both:
                found.append(f"{both} in both {earlier} and {later}")
    return found


class Fleet(Actuator, Protocol):
    """An actuator whose scale-down drains: it names the instances that serve and those that retire.

    `capacity` counts the serving instances only. `apply` asks for a layout (which indices serve,
    which are being drained: out of rotation, sessions kept; and the warm pool: which are shelved,
    `warm`, and which are being configured for it, `filling`) and may return before it is in place
    (the Pulumi actuator queues one update per stack); `members` reflects what was asked for.
    `sessions` reports the sessions still open on retiring instances (None: unknown).
    """

    def members(self, tier: str) -> list[Member]: ...

    def apply(
        self,
        tier: str,
        serving: Sequence[int],
        retiring: Sequence[int],
        warm: Sequence[int] = (),
        filling: Sequence[int] = (),
    ) -> None:
        """Raises ActuationError (a layout the actuator refuses, an unknown tier). An index moves
        between the four sets in place (moving a warm one to `serving` unshelves it); an index in
        none of them is deleted."""
        ...

    def sessions(self, tier: str, indices: Sequence[int]) -> Mapping[int, int | None]: ...


def is_fleet(actuator: Actuator) -> bool:
    return all(callable(getattr(actuator, m, None)) for m in ("members", "apply", "sessions"))


@dataclass(frozen=True)
class Override:
    """A manual surge from on-call: keep at least `floor` instances of `tier` until `expires_at`.

    `floor` is `ceil(factor x the tier's count when the override was made)`, or a count given.
    A scheduled one (`swell surge --at`) has `starts_at`: it rises then (the event's start minus the
    tier's lead time) and ends on the configured ramp instead of at once.
    """

    id: str
    tier: str
    factor: float
    floor: int
    created_at: float
    expires_at: float
    reason: str
    starts_at: float | None = None

    def active(self, now: float) -> bool:
        return (self.created_at if self.starts_at is None else self.starts_at) <= now < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tier": self.tier,
            "factor": self.factor,
            "floor": self.floor,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "reason": self.reason,
            "starts_at": self.starts_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Override:
        return cls(
            id=str(data["id"]),
            tier=str(data["tier"]),
            factor=float(data["factor"]),
            floor=int(data["floor"]),
            created_at=float(data["created_at"]),
            expires_at=float(data["expires_at"]),
            reason=str(data["reason"]),
            starts_at=None if data.get("starts_at") is None else float(data["starts_at"]),
        )


@dataclass
class LoopState:
    """What the loop keeps between passes, per tier: the core's state (opaque JSON-able dict, the
    decision history its windows need), which policy wrote it and since when that history runs,
    the last desired count it acted on, the last decisions (bounded) for `swell status`, and the
    drains in progress (which instances, since when, until when: a restart resumes them);
    `writer` is the replica that saved it (its leader election identity), None without election.

    States saved before `policies` and `history_since` existed load with both empty: their history
    is taken as written by the configured policy, and as long enough.
    """

    policy_state: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_desired: dict[str, int] = field(default_factory=dict)
    recent_decisions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)
    history_since: dict[str, float] = field(default_factory=dict)
    writer: str | None = None
    # Per tier, the instances being drained: index (as text, JSON keys) -> {since, deadline, sessions}.
    drains: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # What each actuator reported last pass (update in flight, queued, last result), for `swell status`.
    actuation: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per tier with a warm pool, the recent targets the pool keeps to (autoscaler/core/warm_pool.py):
    # [[time, target], ...], so a restart neither shrinks the pool early nor forgets why it is large.
    pools: dict[str, list[list[float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_state": self.policy_state,
            "last_desired": self.last_desired,
            "recent_decisions": self.recent_decisions,
            "policies": self.policies,
            "history_since": self.history_since,
            "writer": self.writer,
            "drains": self.drains,
            "actuation": self.actuation,
            "pools": self.pools,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoopState:
        writer = data.get("writer")
        return cls(
            policy_state={str(k): dict(v) for k, v in data.get("policy_state", {}).items()},
            last_desired={str(k): int(v) for k, v in data.get("last_desired", {}).items()},
            recent_decisions={str(k): list(v) for k, v in data.get("recent_decisions", {}).items()},
            policies={str(k): str(v) for k, v in data.get("policies", {}).items()},
            history_since={str(k): float(v) for k, v in data.get("history_since", {}).items()},
            writer=None if writer is None else str(writer),
            drains={
                str(t): {str(i): dict(d) for i, d in dict(v).items()}
                for t, v in data.get("drains", {}).items()
            },
            actuation={str(k): dict(v) for k, v in data.get("actuation", {}).items()},
            pools={str(k): [[float(t), float(n)] for t, n in v] for k, v in data.get("pools", {}).items()},
        )

    def is_empty(self) -> bool:
        return not (self.policy_state or self.last_desired or self.recent_decisions or self.drains)


class StateStoreError(RuntimeError):
    """The state store could not be read or written; nothing was half-written."""


class StateFenceError(StateStoreError):
    """The loop state was written by someone else since this replica read it: another replica
    leads now. The write was refused; the caller must reload before deciding again."""


class StateStore(Protocol):
    """Where the loop's state and the on-call overrides survive restarts and leader changes.

    The loop state and the overrides are written separately, so that `swell surge` from a laptop
    never races with the leader's save: neither write can drop the other's data.
    """

    def load_loop_state(self) -> LoopState: ...

    def save_loop_state(self, state: LoopState) -> None:
        """Raises StateStoreError; StateFenceError when a store shared by replicas holds a loop
        state written by someone else since this store last read or wrote it."""
        ...

    def add_override(self, override: Override) -> None: ...

    def cancel_override(self, override_id: str) -> bool:
        """Remove an override; False when no override has that id."""
        ...

    def overrides(self) -> list[Override]:
        """All overrides, expired ones included (the caller filters with `active(now)`)."""
        ...


class LeaderElector(Protocol):
    """Only the leader acts. `try_acquire_or_renew` is called at the start of every pass and every
    `retry_period_s` between passes; `still_leading` right before each actuation and state write."""

    identity: str

    @property
    def retry_period_s(self) -> float:
        """How often to renew between passes."""
        ...

    def try_acquire_or_renew(self, now: float) -> bool:
        """One attempt to take or renew the lead; True while leading (see the adapter for the rules
        on API errors within the renew deadline)."""
        ...

    def still_leading(self, now: float) -> bool:
        """The re-check before acting: True if renewed less than one retry period ago, else the
        result of one more `try_acquire_or_renew(now)`."""
        ...

    def release(self) -> None: ...
