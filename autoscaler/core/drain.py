"""Two-phase scale-down as a pure function: which instances serve, which drain, which go.

A tier never loses an instance with sessions on it at once. Each pass, given the desired count,
the instances the actuator has (index, start time, retiring or not, still in rotation or not), the
drains in progress (since, deadline) and the sessions still open on the retiring ones:

1. grow: take retiring instances back first (ready at once, their hour already paid, their
   sessions kept), the busiest first; then new indices, the lowest free ones;
2. shrink: choose the instances to retire with `billing.choose_retirees` (by default `paid-hour`:
   the ones nearest the end of their paid hour, since OVHcloud bills each commenced hour) and mark
   them retiring: out of rotation, their sessions kept, until `now + drain_timeout_s`;
3. finish: a retiring instance that is out of rotation goes when its sessions reach 0, or at its
   deadline (then the sessions still open are cut, and said so). Unknown sessions wait for the
   deadline.

No I/O, the clock passed in; the service persists the drains (`to_dict`) in its state store, so a
restart resumes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoscaler.core.billing import RETIRE_PAID_HOUR, choose_retirees
from autoscaler.ports import Member


@dataclass(frozen=True)
class Drain:
    """An instance being drained: since when, until when at most, and the sessions last seen on it."""

    index: int
    since: float
    deadline: float
    sessions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since, "deadline": self.deadline, "sessions": self.sessions}

    @classmethod
    def from_dict(cls, index: int, data: Mapping[str, Any]) -> Drain:
        sessions = data.get("sessions")
        return cls(
            index, float(data["since"]), float(data["deadline"]), None if sessions is None else int(sessions)
        )


@dataclass(frozen=True)
class FleetPlan:
    serving: tuple[int, ...]
    retiring: tuple[Drain, ...]
    # What changed this pass, for the decision record and the log.
    retired: tuple[int, ...] = ()
    taken_back: tuple[int, ...] = ()
    created: tuple[int, ...] = ()
    removed: tuple[Drain, ...] = ()  # drains that ended; `sessions` > 0: cut at the deadline
    changed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def cut_sessions(self) -> int:
        return sum(d.sessions or 0 for d in self.removed)


def plan_fleet(
    desired: int,
    members: Sequence[Member],
    drains: Mapping[int, Drain],
    sessions: Mapping[int, int | None],
    now: float,
    drain_timeout_s: float,
    mode: str = RETIRE_PAID_HOUR,
) -> FleetPlan:
    """The layout for this pass (see the module docstring). A retiring member still `in_rotation`
    (its removal from rotation not applied yet) may get new sessions: its drain does not end."""
    serving = sorted(m.index for m in members if not m.retiring)
    started = {m.index: m.started_at for m in members}
    rotating = {m.index for m in members if m.retiring and m.in_rotation}
    retiring: dict[int, Drain] = {}
    for m in members:
        if m.retiring:
            known = drains.get(m.index) or Drain(m.index, now, now + drain_timeout_s)
            seen = sessions.get(m.index, known.sessions)
            retiring[m.index] = Drain(m.index, known.since, known.deadline, seen)
    retired: list[int] = []
    taken_back: list[int] = []
    created: list[int] = []
    removed: list[Drain] = []
    notes: list[str] = []
    want = max(0, desired)
    if want > len(serving):
        # Busiest first: their sessions stay, and they are ready and paid for.
        for d in sorted(retiring.values(), key=lambda d: (-(d.sessions or 0), -d.deadline)):
            if len(serving) >= want:
                break
            serving.append(d.index)
            taken_back.append(d.index)
            del retiring[d.index]
        used = set(serving) | set(retiring)
        index = 0
        while len(serving) < want:
            while index in used:
                index += 1
            serving.append(index)
            created.append(index)
            used.add(index)
    elif want < len(serving):
        picks = choose_retirees([started[i] for i in serving], len(serving) - want, now, mode)
        for i in sorted(serving[p] for p in picks):
            serving.remove(i)
            retired.append(i)
            retiring[i] = Drain(i, now, now + drain_timeout_s, None)
    for d in sorted(retiring.values(), key=lambda d: d.index):
        if d.index in retired:
            continue
        if d.index in rotating:
            continue  # still taking new sessions: its drain has not begun where it counts
        if d.sessions == 0 or now >= d.deadline:
            removed.append(d)
            del retiring[d.index]
            if d.sessions:
                notes.append(f"{d.index}: drain timeout, {d.sessions} sessions cut")
    changed = bool(retired or taken_back or created or removed)
    return FleetPlan(
        serving=tuple(sorted(serving)),
        retiring=tuple(sorted(retiring.values(), key=lambda d: d.index)),
        retired=tuple(retired),
        taken_back=tuple(sorted(taken_back)),
        created=tuple(created),
        removed=tuple(removed),
        changed=changed,
        notes=notes,
    )
