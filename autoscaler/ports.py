"""The ports of the autoscaler service: what it needs from the world, as small Protocols.

Only adapters (Prometheus, Pulumi, Kubernetes, SQLite, local processes) import clients or SDKs;
the service loop and the decision core see nothing but these types. One place
(`autoscaler.wiring`) builds the adapters from the configuration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Sample:
    """One tier's newest value of a signal, with the time Prometheus stamped it (unix seconds).

    `value` is None when the series is missing, or its value was NaN or infinite: the core treats
    that as missing data and holds.
    """

    value: float | None
    timestamp: float

    @classmethod
    def of(cls, value: float, timestamp: float) -> Sample:
        return cls(value if math.isfinite(value) else None, timestamp)

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
    """What the actuator reports for a tier: instances asked for, and those ready to serve."""

    current: int
    ready: int

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
class Override:
    """A manual surge from on-call: keep at least `floor` instances of `tier` until `expires_at`.

    `floor` is `ceil(factor x the tier's count when the override was made)`.
    """

    id: str
    tier: str
    factor: float
    floor: int
    created_at: float
    expires_at: float
    reason: str

    def active(self, now: float) -> bool:
        return self.created_at <= now < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tier": self.tier,
            "factor": self.factor,
            "floor": self.floor,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "reason": self.reason,
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
        )


@dataclass
class LoopState:
    """What the loop keeps between passes, per tier: the core's state (opaque JSON-able dict, the
    decision history its windows need), the last desired count it acted on, and the last decisions
    (bounded) for `swell status`."""

    policy_state: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_desired: dict[str, int] = field(default_factory=dict)
    recent_decisions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_state": self.policy_state,
            "last_desired": self.last_desired,
            "recent_decisions": self.recent_decisions,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoopState:
        return cls(
            policy_state={str(k): dict(v) for k, v in data.get("policy_state", {}).items()},
            last_desired={str(k): int(v) for k, v in data.get("last_desired", {}).items()},
            recent_decisions={str(k): list(v) for k, v in data.get("recent_decisions", {}).items()},
        )


class StateStoreError(RuntimeError):
    """The state store could not be read or written; nothing was half-written."""


class StateStore(Protocol):
    """Where the loop's state and the on-call overrides survive restarts and leader changes.

    The loop state and the overrides are written separately, so that `swell surge` from a laptop
    never races with the leader's save: neither write can drop the other's data.
    """

    def load_loop_state(self) -> LoopState: ...

    def save_loop_state(self, state: LoopState) -> None: ...

    def add_override(self, override: Override) -> None: ...

    def cancel_override(self, override_id: str) -> bool:
        """Remove an override; False when no override has that id."""
        ...

    def overrides(self) -> list[Override]:
        """All overrides, expired ones included (the caller filters with `active(now)`)."""
        ...


class LeaderElector(Protocol):
    """Only the leader acts. `try_acquire_or_renew` is called every loop, before deciding."""

    identity: str

    def try_acquire_or_renew(self, now: float) -> bool: ...

    def release(self) -> None: ...
