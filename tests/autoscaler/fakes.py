"""Fakes at the autoscaler's own ports (autoscaler/ports.py), for loop tests: a demand source the
test sets, an actuator that records what it was asked, a clock the test moves, an elector."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.config import AutoscalerConfig, parse_config
from autoscaler.ports import (
    POOL_FILLING,
    POOL_WARM,
    ActuationError,
    Capacity,
    Member,
    MetricsSourceError,
    Sample,
)
from autoscaler.telemetry import Redactor, Telemetry


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeSource:
    clock: FakeClock
    demand_by_tier: dict[str, float | None] = field(default_factory=dict)
    age_s: float = 5.0
    down: bool = False
    # (targets scraped, targets expected) per tier, as the demand_targets queries report them.
    targets: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Raised as is by demand(): an adapter bug the loop must survive.
    crash: Exception | None = None

    def demand(self) -> Mapping[str, Sample]:
        if self.down:
            raise MetricsSourceError("Prometheus at http://127.0.0.1:9 is unreachable (ConnectionError)")
        if self.crash is not None:
            raise self.crash
        stamp = self.clock() - self.age_s
        return {
            t: Sample(v, stamp, *self.targets[t]) if t in self.targets else Sample(v, stamp)
            for t, v in self.demand_by_tier.items()
        }


@dataclass
class FakeActuator:
    sizes: dict[str, int]
    name: str = "fake"
    fail_next: int = 0
    calls: list[tuple[str, int]] = field(default_factory=list)

    def capacity(self, tier: str) -> Capacity:
        return Capacity(current=self.sizes[tier], ready=self.sizes[tier])

    def scale(self, tier: str, desired: int) -> None:
        self.calls.append((tier, desired))
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ActuationError(f"pulumi up of stack 'dev' ({tier} -> {desired}) failed: Quota exceeded")
        self.sizes[tier] = desired


@dataclass
class FakeElector:
    leads: bool
    identity: str = "replica-a"
    released: bool = False
    retry_period_s: float = 2.0

    def try_acquire_or_renew(self, now: float) -> bool:
        return self.leads

    def still_leading(self, now: float) -> bool:
        return self.leads

    def release(self) -> None:
        self.released = True


def config(
    tmp_path: object, top: dict[str, object] | None = None, **tier_overrides: object
) -> AutoscalerConfig:
    """The test configuration: tiers web and video on a SQLite store; `top` adds top-level keys,
    and each keyword argument changes the keys of one tier."""
    tiers = {
        "web": {
            "capacity_per_instance": 50,
            "min": 2,
            "max": 64,
            "actuator": {"kind": "pulumi", "stack": "dev"},
        },
        "video": {
            "capacity_per_instance": 200,
            "min": 1,
            "max": 16,
            "actuator": {"kind": "pulumi", "stack": "dev"},
        },
    }
    for tier, extra in tier_overrides.items():
        tiers[tier] = {**tiers[tier], **extra}  # type: ignore[dict-item]
    return parse_config(
        {
            "prometheus": {"url": "http://127.0.0.1:9090"},
            "interval_s": 15,
            "state": {"kind": "sqlite", "path": str(tmp_path) + "/state.db"},
            "tiers": tiers,
            **(top or {}),
        }
    )


def telemetry(secrets: tuple[str, ...] = ()) -> tuple[Telemetry, io.StringIO]:
    stream = io.StringIO()
    return Telemetry(Redactor(secrets), log_stream=stream), stream


@dataclass
class FakeFleet:
    """A stand-in for a draining actuator (`Fleet`): instances by index with start times, a
    retiring set, the sessions the test says are left on each instance, and a warm pool (warm:
    shelved; filling: being configured, ready once the test puts its index in `configured`)."""

    serving: dict[str, list[int]]
    started_at: float = 1_800_000_000.0 - 600
    name: str = "fake-fleet"
    retiring: dict[str, list[int]] = field(default_factory=dict)
    open_sessions: dict[int, int | None] = field(default_factory=dict)
    applied: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    warm: dict[str, list[int]] = field(default_factory=dict)
    filling: dict[str, list[int]] = field(default_factory=dict)
    configured: set[int] = field(default_factory=set)
    # Every apply as called: (tier, serving, retiring, warm, filling), warm and filling None when
    # the caller left them out (the call without a pool).
    calls: list[tuple[str, list[int], list[int], list[int] | None, list[int] | None]] = field(
        default_factory=list
    )

    def capacity(self, tier: str) -> Capacity:
        return Capacity(
            current=len(self.serving[tier]),
            ready=len(self.serving[tier]),
            warm=len(self.warm.get(tier, [])),
            filling=len(self.filling.get(tier, [])),
        )

    def scale(self, tier: str, desired: int) -> None:  # pragma: no cover - the loop uses apply
        raise AssertionError("a Fleet is driven through apply()")

    def members(self, tier: str) -> list[Member]:
        out = [Member(i, self.started_at + i, retiring=False, ready=True) for i in self.serving[tier]]
        out += [Member(i, self.started_at + i, retiring=True) for i in self.retiring.get(tier, [])]
        out += [Member(i, self.started_at + i, ready=True, pool=POOL_WARM) for i in self.warm.get(tier, [])]
        return out + [
            Member(i, self.started_at + i, ready=i in self.configured, pool=POOL_FILLING)
            for i in self.filling.get(tier, [])
        ]

    def apply(
        self,
        tier: str,
        serving: Sequence[int],
        retiring: Sequence[int],
        warm: Sequence[int] | None = None,
        filling: Sequence[int] | None = None,
    ) -> None:
        self.applied.append((tier, list(serving), list(retiring)))
        self.calls.append(
            (
                tier,
                list(serving),
                list(retiring),
                None if warm is None else list(warm),
                None if filling is None else list(filling),
            )
        )
        self.serving[tier], self.retiring[tier] = list(serving), list(retiring)
        self.warm[tier], self.filling[tier] = list(warm or []), list(filling or [])

    def sessions(self, tier: str, indices: Sequence[int]) -> Mapping[int, int | None]:
        return {i: self.open_sessions.get(i) for i in indices}
