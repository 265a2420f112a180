"""The load profiles as data: each a piecewise-linear curve of (nominal seconds, multiplier of the
base users), ending at its last point. `loadtests/shapes.py` turns them into Locust shapes; the drill
reads their lengths here, because the drill's process must never import locust (gevent
monkey-patches the interpreter).
"""

from __future__ import annotations

import itertools
import math

from autoscaler.sim.generate import SPIKE_RISE_S

HOUR = 3600.0

Curve = tuple[tuple[float, float], ...]

CURVES: dict[str, Curve] = {
    # x5 within the run, then holding: 10 minutes at base, rise to x5 over 40 minutes, hold 25.
    "surge400": ((0.0, 1.0), (600.0, 1.0), (3000.0, 5.0), (4500.0, 5.0)),
    # A 4-5x daily curve: night trough, morning rise to x4.5, lunch dip, afternoon, evening fall.
    "daily": (
        (0.0, 1.0),
        (6 * HOUR, 1.0),
        (9 * HOUR, 4.5),
        (12 * HOUR, 3.5),
        (14 * HOUR, 4.5),
        (18 * HOUR, 3.0),
        (22 * HOUR, 1.2),
        (24 * HOUR, 1.0),
    ),
    # The benchmark's spike (`autoscaler.sim.generate`, x4 within `SPIKE_RISE_S`, 10 minutes):
    # 5 minutes at base, the rise, 10 minutes held, back down over 5 minutes.
    "spike": (
        (0.0, 1.0),
        (300.0, 1.0),
        (300.0 + SPIKE_RISE_S, 4.0),
        (900.0 + SPIKE_RISE_S, 4.0),
        (1200.0 + SPIKE_RISE_S, 1.0),
    ),
    # A flash crowd: x4 within one minute, held 10 minutes, back down.
    "flash": ((0.0, 1.0), (300.0, 1.0), (360.0, 4.0), (960.0, 4.0), (1020.0, 1.0), (1200.0, 1.0)),
    # Calibration: +1 x base every 5 minutes up to x6, to find where an instance saturates.
    "step": tuple(
        p for k in range(6) for p in ((300.0 * k, float(k + 1)), (300.0 * (k + 1) - 1e-3, float(k + 1)))
    ),
    # Four hours flat at x2: leaks and slow drifts.
    "soak": ((0.0, 2.0), (4 * HOUR, 2.0)),
}


def nominal_length_s(profile: str) -> float:
    """How long `profile` runs, in nominal seconds (its last point)."""
    return CURVES[profile][-1][0]


def profile_growth_per_s(profile: str) -> float:
    """The profile's steepest rise as a growth rate (per nominal second): the largest
    ln(m_b / m_a) / (t_b - t_a) over consecutive points. The spike's x4 within 10 minutes is
    ln 4 / 600 s: projected across a 600 s cold lead time, x4 again. What swell's warm-pool sizer
    would remember (`growth_memory`) after a day with the same rise; 0 for a profile that never rises."""
    curve = CURVES[profile]
    return max(
        (
            math.log(b / a) / (tb - ta)
            for (ta, a), (tb, b) in itertools.pairwise(curve)
            if tb > ta and b > a > 0
        ),
        default=0.0,
    )
