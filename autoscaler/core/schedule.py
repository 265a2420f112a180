"""Scheduled surges: known events (a launch, an exam day, the Monday 9:00 peak) planned, not detected.

A schedule is a floor of `instances` for one tier during a window that starts at each time its cron
expression names, in its own time zone (as KEDA's cron scaler and AWS scheduled actions), and lasts
`duration_s`. Two rules make it useful rather than merely punctual:

- it rises one lead time early: instances ordered at the start would serve only after the lead
  time (boot plus configuration), while the crowd arrives at the start;
- it ends on a ramp: past the window the floor falls linearly to nothing over `ramp_down_s`, so
  that a tier whose policy never saw the event's demand (it was served from the floor) is not
  halved pass after pass down to its quiet-day count while the event's stragglers are still there.
  The policy's own scale-down rules apply beneath the ramp.

Pure: the clock is passed in; cron arithmetic is cronsim's (time zones through zoneinfo, so a
9:00 schedule stays at 9:00 local time across daylight-saving changes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from autoscaler.core.types import Override

# How far back to look for a window still open (or still ramping down) at `now`: a window longer
# than this is refused by the configuration.
MAX_WINDOW_S = 7 * 86400


class ScheduleError(ValueError):
    """A schedule that cannot be evaluated; the message names what is wrong."""


@dataclass(frozen=True)
class Schedule:
    name: str
    tier: str
    cron: str
    timezone: str
    duration_s: float
    instances: int
    reason: str = ""

    def __post_init__(self) -> None:
        check_cron(self.cron)
        zone(self.timezone)
        if not 0 < self.duration_s <= MAX_WINDOW_S:
            raise ScheduleError(
                f"duration_s must be above 0 and at most {MAX_WINDOW_S:.0f}, got {self.duration_s}"
            )
        if self.instances < 1:
            raise ScheduleError(f"instances must be at least 1, got {self.instances}")


@dataclass(frozen=True)
class Window:
    """One planned floor of `instances`: it rises at `raises_at` (the start minus the lead time),
    holds until `ends_at`, then ramps down until `ramp_ends_at`. `schedule` is the configured
    schedule it is an occurrence of (None for a one-off `swell surge --at`)."""

    instances: int
    raises_at: float
    starts_at: float
    ends_at: float
    ramp_ends_at: float
    schedule: Schedule | None = None

    def floor_at(self, now: float) -> int:
        """The floor this window asks for at `now` (0 outside it)."""
        if now < self.raises_at or now >= self.ramp_ends_at:
            return 0
        if now < self.ends_at:
            return self.instances
        left = (self.ramp_ends_at - now) / (self.ramp_ends_at - self.ends_at)
        return math.ceil(self.instances * left)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"unknown time zone {name!r}; expected an IANA name such as Europe/Paris"
        ) from exc


def check_cron(expr: str) -> None:
    try:
        CronSim(expr, datetime(2026, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ScheduleError(
            f"{expr!r} is not a cron expression (minute hour day month weekday): {exc}"
        ) from exc


def _starts(schedule: Schedule, after: float, reverse: bool = False) -> CronSim:
    local = datetime.fromtimestamp(after, zone(schedule.timezone))
    return CronSim(schedule.cron, local, reverse=reverse)


def _window(schedule: Schedule, start: datetime, lead_s: float, ramp_s: float) -> Window:
    at = start.timestamp()
    end = at + schedule.duration_s
    return Window(schedule.instances, at - lead_s, at, end, end + ramp_s, schedule)


def windows(schedule: Schedule, now: float, lead_s: float, ramp_s: float, horizon_s: float) -> list[Window]:
    """The windows whose floor is up at `now` or rises within `horizon_s`, in order."""
    found: list[Window] = []
    # Still open or ramping: started at most duration + ramp ago (and rose a lead time before).
    earliest = now - schedule.duration_s - ramp_s
    # cronsim excludes the instant it starts from, both ways: back from one second later, so that a
    # window rising exactly now is found.
    for start in _starts(schedule, now + lead_s + 1, reverse=True):
        if start.timestamp() <= earliest:
            break
        found.insert(0, _window(schedule, start, lead_s, ramp_s))
    found = [w for w in found if w.ramp_ends_at > now]
    for start in _starts(schedule, now + lead_s):
        window = _window(schedule, start, lead_s, ramp_s)
        if window.raises_at > now + horizon_s:
            break
        if window.raises_at >= now and all(w.starts_at != window.starts_at for w in found):
            found.append(window)
    return found


def scheduled_floor(
    schedules: list[Schedule], tier: str, now: float, lead_s: float, ramp_s: float
) -> Override | None:
    """The strongest scheduled floor for `tier` at `now`, as the chain's override (valid for this
    decision: the next pass asks again, so a ramp steps down pass by pass)."""
    best: tuple[int, Window, Schedule] | None = None
    for schedule in schedules:
        if schedule.tier != tier:
            continue
        for window in windows(schedule, now, lead_s, ramp_s, horizon_s=0):
            floor = window.floor_at(now)
            if floor > 0 and (best is None or floor > best[0]):
                best = (floor, window, schedule)
    if best is None:
        return None
    floor, window, schedule = best
    phase = (
        "ramping down"
        if now >= window.ends_at
        else ("ahead of its start by the lead time" if now < window.starts_at else "on")
    )
    start = datetime.fromtimestamp(window.starts_at, zone(schedule.timezone))
    reason = f"schedule {schedule.name} ({start:%Y-%m-%d %H:%M %Z}, {phase})"
    if schedule.reason:
        reason += f": {schedule.reason}"
    return Override(floor, window.ramp_ends_at, reason)
