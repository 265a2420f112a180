"""The drill's faults: `--fault` parsing, the actuator that refuses on demand, and the schedule that
turns each fault on and off at its time, keeping the log the report reads.

Times are real seconds after the load starts. A fault acts through the callables it is given
(pause and resume Prometheus, kill one instance), so this module starts and stops nothing itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.ports import ActuationError, Capacity, Member
from loadtests.local_actuator import LocalActuator
from swell import tiers


def kill_target() -> str:
    """The tier `kill-instance` kills in: the first that serves requests, whose users see a killed
    instance at once (refused requests), where a session tier would only reconnect."""
    return tiers.load().with_traffic("requests")[0].name


FAULT_RE = re.compile(
    r"^(?P<kind>prometheus-outage|kill-instance|actuator-error)@(?P<at>\d+(\.\d+)?)s?(:(?P<for>\d+(\.\d+)?)s?)?$"
)


@dataclass(frozen=True)
class Fault:
    """A fault injected `at` seconds after the load starts (real seconds), for `duration` seconds."""

    kind: str
    at: float
    duration: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        m = FAULT_RE.match(text.strip())
        if not m:
            raise ValueError(
                f"--fault {text!r}: expected prometheus-outage@AT:FOR, kill-instance@AT or "
                "actuator-error@AT:FOR (seconds after the load starts)"
            )
        kind, duration = m["kind"], float(m["for"]) if m["for"] else 0.0
        if kind != "kill-instance" and duration <= 0:
            raise ValueError(f"--fault {text!r}: {kind} needs a duration, e.g. {kind}@60:20")
        return cls(kind, float(m["at"]), duration)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at_s": self.at, "for_s": self.duration}


class FaultyActuator:
    """Wraps the local actuator (a `Fleet`): `scale` and `apply` raise ActuationError while
    `failing` is set (fault injection); reads pass through."""

    def __init__(self, inner: LocalActuator) -> None:
        self.inner = inner
        self.name = inner.name
        self.failing = False

    def capacity(self, tier: str) -> Capacity:
        return self.inner.capacity(tier)

    def scale(self, tier: str, desired: int) -> None:
        if self.failing:
            raise ActuationError(INJECTED_ACTUATION_ERROR)
        self.inner.scale(tier, desired)

    def members(self, tier: str) -> list[Member]:
        return self.inner.members(tier)

    def apply(
        self,
        tier: str,
        serving: Sequence[int],
        retiring: Sequence[int],
        warm: Sequence[int] = (),
        filling: Sequence[int] = (),
    ) -> None:
        if self.failing:
            raise ActuationError(INJECTED_ACTUATION_ERROR)
        self.inner.apply(tier, serving, retiring, warm, filling)

    def sessions(self, tier: str, indices: Sequence[int]) -> Mapping[int, int | None]:
        return self.inner.sessions(tier, indices)


# The error a failing actuator raises: the report tells injected failures from real ones by it.
INJECTED_ACTUATION_ERROR = "injected fault: actuator-error (the cloud API refuses)"


@dataclass(frozen=True)
class FaultActions:
    """What a fault does to the drill's parts."""

    pause_prometheus: Callable[[], None]
    resume_prometheus: Callable[[], None]
    kill_instance: Callable[[str], int | None]  # tier -> the killed instance's port


class FaultSchedule:
    """Turns `faults` on at their time and off after their duration; `log` is what happened (the
    report's `faults`: each with `started_s`, `ended_s` and, for a kill, the port)."""

    def __init__(self, faults: Sequence[Fault], actuator: FaultyActuator, actions: FaultActions) -> None:
        self.pending = sorted(faults, key=lambda f: f.at)
        self.active: list[tuple[Fault, float]] = []
        self.actuator = actuator
        self.actions = actions
        self.log: list[dict[str, Any]] = []

    def advance(self, rel: float) -> None:
        """Start and end what is due at `rel` seconds after the load started."""
        while self.pending and rel >= self.pending[0].at:
            fault = self.pending.pop(0)
            self._on(fault, rel)
            self.active.append((fault, rel + fault.duration))
        for fault, until in list(self.active):
            if rel >= until:
                self._off(fault, rel)
                self.active.remove((fault, until))

    def end(self, rel: float) -> None:
        """End every fault still on (the load is over)."""
        for fault, _ in self.active:
            self._off(fault, rel)
        self.active = []

    def _on(self, fault: Fault, rel: float) -> None:
        entry: dict[str, Any] = {**fault.to_dict(), "started_s": round(rel, 3)}
        if fault.kind == "prometheus-outage":
            self.actions.pause_prometheus()  # unreachable: queries time out
        elif fault.kind == "actuator-error":
            self.actuator.failing = True
        else:
            entry["killed_port"] = self.actions.kill_instance(kill_target())
        self.log.append(entry)

    def _off(self, fault: Fault, rel: float) -> None:
        if fault.kind == "prometheus-outage":
            self.actions.resume_prometheus()
        elif fault.kind == "actuator-error":
            self.actuator.failing = False
        for entry in self.log:
            if entry["kind"] == fault.kind and entry["at_s"] == fault.at:
                entry["ended_s"] = round(rel, 3)
