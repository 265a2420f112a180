"""How many warm-pool instances a tier keeps: the hysteresis between the pool's target and deletion.

The pool's target moves every pass (swell's `warm_pool_target` follows the measured growth and the
daily profile; an activation lowers the room left under the tier's max). Deleting a pool instance
as soon as the target falls would churn: the next rise creates it again, paying a commenced hour
and the cold lead time for it. So the pool keeps the largest target asked for over the last
`shrink_after_s` (the `warm_pool.shrink_after_s` option; default 10 h, the simulator's rule: a
refill costs one running hour, a shelved hour costs about a tenth of one): an excess instance is
deleted only once the target has stayed below the pool's size for that long.

The window is a monotonic queue of (time, target) pairs, kept in the loop state (`LoopState.pools`),
so a restart resumes it. Pure: the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def pool_keep(
    window: Sequence[Sequence[Any]], target: int, now: float, shrink_after_s: float
) -> tuple[int, list[list[float]]]:
    """(the largest target of the last `shrink_after_s` including this one, the window to keep).

    `window` is what the last call returned (pairs [time, target], targets decreasing); a pair from
    the future (a clock set back) is dropped rather than trusted to hold the pool forever."""
    kept = [[float(t), int(n)] for t, n in window if now - shrink_after_s < float(t) <= now]
    while kept and kept[-1][1] <= target:
        kept.pop()
    kept.append([now, max(0, target)])
    return int(kept[0][1]), kept
