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

With a warm pool (issue 15; `pool_target` > 0 or pool members present), members with `pool` set
("warm": shelved and configured; "filling": created for the pool, being configured) neither serve
nor count in `desired`, and:

1. grow activates, in this order: retiring instances taken back (running, their sessions kept),
   warm ones (unshelved: serving within the warm lead time), filling ones (running already; the
   ready ones first), and only then new indices;
3. a retiring instance whose drain ended goes to the pool (shelved: it is configured already) instead
   of being deleted, while the pool is short of `pool_target`;
4. ready filling instances are shelved (warm); pool instances beyond `pool_keep` are deleted (not yet
   ready filling ones first: they run at the full price and cannot be unshelved yet; then warm ones,
   highest index first); a pool short of `pool_target` is refilled in the same pass with new indices,
   the lowest free ones, as filling (the refill takes the cold lead time: create, configure, shelve).
   Retiring instances count towards the target here: a scale-up takes them back first, and the pool
   gets them when their drain ends (3), so a scale-down creates nothing for the pool.

`pool_keep` (>= `pool_target`) is the hysteresis: the service passes the largest target of a recent
window (autoscaler/core/warm_pool.py), so an activation followed by a fall of the target does not
delete what it just created. With no pool members and `pool_target` 0 the plan is the one without
a pool, field for field.

No I/O, the clock passed in; the service persists the drains (`to_dict`) in its state store, so a
restart resumes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoscaler.core.billing import RETIRE_PAID_HOUR, choose_retirees
from autoscaler.ports import POOL_FILLING, POOL_WARM, Member


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
    # The warm pool: shelved and configured (`warm`), being created and configured for it (`filling`).
    warm: tuple[int, ...] = ()
    filling: tuple[int, ...] = ()
    # What changed this pass, for the decision record and the log.
    retired: tuple[int, ...] = ()
    taken_back: tuple[int, ...] = ()
    created: tuple[int, ...] = ()  # new indices that serve
    removed: tuple[Drain, ...] = ()  # drains that ended; `sessions` > 0: cut at the deadline
    activated: tuple[int, ...] = ()  # pool instances that serve now (warm: unshelved)
    refilled: tuple[int, ...] = ()  # new indices created for the pool (filling)
    shelved: tuple[int, ...] = ()  # ready filling ones, and retiring ones whose drain ended, now warm
    trimmed: tuple[int, ...] = ()  # pool instances deleted: beyond what the pool keeps
    changed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def cut_sessions(self) -> int:
        return sum(d.sessions or 0 for d in self.removed)

    @property
    def deleted(self) -> tuple[int, ...]:
        """The indices deleted this pass: drains that ended and were not shelved, and pool trims."""
        kept = set(self.shelved)
        return tuple(sorted([d.index for d in self.removed if d.index not in kept] + list(self.trimmed)))


def plan_fleet(
    desired: int,
    members: Sequence[Member],
    drains: Mapping[int, Drain],
    sessions: Mapping[int, int | None],
    now: float,
    drain_timeout_s: float,
    mode: str = RETIRE_PAID_HOUR,
    pool_target: int = 0,
    pool_keep: int | None = None,
) -> FleetPlan:
    """The layout for this pass (see the module docstring). A retiring member still `in_rotation`
    (its removal from rotation not applied yet) may get new sessions: its drain does not end.
    `pool_keep` (default `pool_target`, never below it) is how many pool instances may stay."""
    target = max(0, pool_target)
    keep = max(target, target if pool_keep is None else pool_keep)
    serving = sorted(m.index for m in members if not m.retiring and not m.pool)
    warm = sorted(m.index for m in members if m.pool == POOL_WARM and not m.retiring)
    filling = sorted(m.index for m in members if m.pool == POOL_FILLING and not m.retiring)
    configured = {m.index for m in members if m.pool == POOL_FILLING and m.ready}
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
    activated: list[int] = []
    refilled: list[int] = []
    shelved: list[int] = []
    trimmed: list[int] = []
    notes: list[str] = []
    want = max(0, desired)
    used = set(serving) | set(retiring) | set(warm) | set(filling)
    if want > len(serving):
        # Busiest first: their sessions stay, and they are ready and paid for.
        for d in sorted(retiring.values(), key=lambda d: (-(d.sessions or 0), -d.deadline)):
            if len(serving) >= want:
                break
            serving.append(d.index)
            taken_back.append(d.index)
            del retiring[d.index]
        # Then the pool: warm ones unshelve within the warm lead time; filling ones run already
        # (the configured ones first: they serve as soon as the load balancer sees them).
        for i in [*warm, *sorted(filling, key=lambda i: (i not in configured, i))]:
            if len(serving) >= want:
                break
            serving.append(i)
            activated.append(i)
        warm = [i for i in warm if i not in activated]
        filling = [i for i in filling if i not in activated]
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
            if len(warm) + len(filling) < target:
                # Configured already: shelving it refills the pool without the cold lead time.
                warm.append(d.index)
                shelved.append(d.index)
    for i in [i for i in filling if i in configured]:
        filling.remove(i)
        warm.append(i)
        shelved.append(i)
    excess = len(warm) + len(filling) - keep
    if excess > 0:
        # Not yet configured ones first (full price, not usable warm yet), then warm, highest first.
        order = sorted(filling, reverse=True) + sorted(warm, reverse=True)
        trimmed = sorted(order[:excess])
        warm = [i for i in warm if i not in trimmed]
        filling = [i for i in filling if i not in trimmed]
        shelved = [i for i in shelved if i not in trimmed]  # deleted, not shelved
    index = 0
    # Instances still draining count towards the pool here: a scale-up takes them back before any
    # warm one, and the pool gets them when their drain ends; creating for them now would pay the
    # cold lead time twice.
    while len(warm) + len(filling) + len(retiring) < target:
        while index in used:
            index += 1
        filling.append(index)
        refilled.append(index)
        used.add(index)
    changed = bool(retired or taken_back or created or removed or activated or refilled or shelved or trimmed)
    return FleetPlan(
        serving=tuple(sorted(serving)),
        retiring=tuple(sorted(retiring.values(), key=lambda d: d.index)),
        warm=tuple(sorted(warm)),
        filling=tuple(sorted(filling)),
        retired=tuple(retired),
        taken_back=tuple(sorted(taken_back)),
        created=tuple(created),
        removed=tuple(removed),
        activated=tuple(sorted(activated)),
        refilled=tuple(refilled),
        shelved=tuple(sorted(shelved)),
        trimmed=tuple(trimmed),
        changed=changed,
        notes=notes,
    )
