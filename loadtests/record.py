"""What a drill run leaves behind for its report: the timeline it sampled every second, the
requests Locust made, the loop's decisions, the faults, the instance events and what the run cost.
Plain data: the drill fills it, `loadtests.report` reads it, and neither imports the other."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from loadtests.options import DrillOptions
from loadtests.requestlog import ChatMessages, Request
from swell import tiers


@dataclass
class Timeline:
    t: list[float] = field(default_factory=list)
    demand: dict[str, list[float | None]] = field(default_factory=lambda: {t: [] for t in tiers.names()})
    ready: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in tiers.names()})
    requested: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in tiers.names()})
    ready_seen: dict[str, list[float | None]] = field(default_factory=lambda: {t: [] for t in tiers.names()})
    # The warm pool: shelved instances, and those being filled for it.
    warm: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in tiers.names()})
    filling: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in tiers.names()})
    cpu_busy: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "cpu_busy_pct": self.cpu_busy,
            "tiers": {
                tier: {
                    "demand": self.demand[tier],
                    "ready": self.ready[tier],
                    "requested": self.requested[tier],
                    "ready_in_prometheus": self.ready_seen[tier],
                    "warm": self.warm[tier],
                    "filling": self.filling[tier],
                }
                for tier in self.demand
            },
        }


@dataclass
class DrillRecord:
    """One finished run. Times are Unix seconds; `cpu_at_*` are `os.times()` around the run."""

    options: DrillOptions
    timeline: Timeline
    requests: list[Request]
    users: list[tuple[float, int]]
    decisions: list[dict[str, Any]]
    faults: list[dict[str, Any]]
    instance_events: list[dict[str, Any]]
    dropped_sessions: dict[str, int]
    started_at: float
    load_started_at: float
    finished_at: float
    cpu_at_start: os.times_result
    cpu_at_end: os.times_result
    chat_messages: list[ChatMessages] = field(default_factory=list)
    # What the video allocator (the Jicofo stand-in) placed: its `--exit-report` (empty without one).
    allocation: dict[str, Any] = field(default_factory=dict)
