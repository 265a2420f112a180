"""Load shapes as data: Locust `LoadTestShape` subclasses configured by class attributes, whose
`tick()` depends only on `get_run_time()` (after Locust's examples/custom_shape).

Each shape is a piecewise-linear curve of (nominal seconds, multiplier of `base_users`), ending
after its last point; the curves themselves are data in `loadtests/curves.py`, which the drill reads
without importing locust. Two class attributes make it fit any run:

- `speed`: time compression. At speed 10, one minute of the nominal curve passes in 6 seconds
  (the drill compresses hours of a surge into minutes; the autoscaler's clocks are compressed alike).
- `base_users`: users at multiplier 1.

`configured(Shape, speed=..., base_users=...)` returns a subclass with those set; the locustfile
builds it from the environment (`SWELL_PROFILE`, `SWELL_SPEED`, `SWELL_BASE_USERS`).
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

from locust import LoadTestShape

from loadtests.curves import CURVES


class CurveShape(LoadTestShape):
    """Users = base_users x the curve at run_time x speed; None (stop) after the last point."""

    abstract = True
    points: ClassVar[tuple[tuple[float, float], ...]] = ((0.0, 1.0), (60.0, 1.0))
    speed: ClassVar[float] = 1.0
    base_users: ClassVar[int] = 10
    # Users started per second (real time), high enough to follow the curve at any speed.
    spawn_rate: ClassVar[float] = 20.0

    @classmethod
    def duration_s(cls) -> float:
        """Real seconds the shape runs at its speed."""
        return cls.points[-1][0] / cls.speed

    @classmethod
    def multiplier(cls, nominal_s: float) -> float:
        pts = cls.points
        if nominal_s <= pts[0][0]:
            return pts[0][1]
        for (t0, m0), (t1, m1) in itertools.pairwise(pts):
            if nominal_s <= t1:
                return m0 + (m1 - m0) * (nominal_s - t0) / (t1 - t0) if t1 > t0 else m1
        return pts[-1][1]

    @classmethod
    def users_at(cls, run_time_s: float) -> int | None:
        nominal = run_time_s * cls.speed
        if nominal > cls.points[-1][0]:
            return None
        return max(1, math.ceil(cls.base_users * cls.multiplier(nominal) - 1e-9))

    def tick(self) -> tuple[int, float] | None:
        users = self.users_at(self.get_run_time())
        return None if users is None else (users, self.spawn_rate)


class Surge400(CurveShape):
    """x5 within the run, then holding: 10 minutes at base, rise to x5 over 40 minutes, hold 25."""

    abstract = False
    points = CURVES["surge400"]


class Daily(CurveShape):
    """A 4-5x daily curve: night trough, morning rise to x4.5, lunch dip, afternoon, evening fall."""

    abstract = False
    points = CURVES["daily"]


class Spike(CurveShape):
    """The benchmark's spike (`autoscaler.sim.generate`, x4 within `SPIKE_RISE_S`, 10 minutes):
    5 minutes at base, the rise, 10 minutes held, back down over 5 minutes."""

    abstract = False
    points = CURVES["spike"]


class Flash(CurveShape):
    """A flash crowd: x4 within one minute, held 10 minutes, back down. Faster than any instance
    can boot: without capacity standing before it (`swell surge` ahead of a known event) the SLO
    breaks during the first lead time, whatever the policy (docs/drill.md)."""

    abstract = False
    points = CURVES["flash"]


class Step(CurveShape):
    """Calibration: +1 x base every 5 minutes up to x6, to find where an instance saturates."""

    abstract = False
    points = CURVES["step"]


class Soak(CurveShape):
    """Four hours flat at x2: leaks and slow drifts."""

    abstract = False
    points = CURVES["soak"]


SHAPES: dict[str, type[CurveShape]] = {
    "surge400": Surge400,
    "daily": Daily,
    "spike": Spike,
    "flash": Flash,
    "step": Step,
    "soak": Soak,
}


def configured(shape: type[CurveShape], *, speed: float, base_users: int) -> type[CurveShape]:
    """A subclass of `shape` with its speed and base users set (validated)."""
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if base_users < 1:
        raise ValueError(f"base_users must be >= 1, got {base_users}")
    return type(shape.__name__, (shape,), {"speed": float(speed), "base_users": int(base_users)})
