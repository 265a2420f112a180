"""`swell`: the surge-aware policy. Sizes each tier from offered demand, projected across the
provisioning lead time, with headroom in proportion to the measured volatility of demand.

Per decision (every sync period, 15 s):

1. Fresh data only: a missing sample or one older than `stale_after_s` holds (no scale-down,
   no data-driven scale-up).
2. Demand level and trend: four EWMAs of offered demand. `level` (half-life 200 s) is what
   capacity is sized from: smooth enough that noise does not drive the count. `fast` and `slow`
   (45 s, 240 s) give the growth rate g (per second) of an exponential trend, since an EWMA lags
   by its mean age: ln(fast / slow) = g x (age_slow - age_fast).
3. Volatility: an EWMA (half-life 30 min) of the squared relative residual of each sample against
   the fast level, winsorized at 4 sigmas so that a surge's ramp does not pass for noise; its
   root sigma sets the headroom, k x sigma (k = 2.8, bounded to [3%, 100%]), instead of one flat
   utilization target: a quiet tier runs close to its capacity, a noisy one keeps the margin its
   noise needs.
4. Forecast across the horizon H = lead time + sample age + one sync period, the larger of:
   - the level;
   - trend: fast x exp(g x (H + age_fast)), capped at x4, when the growth is significant against
     the noise (ln(fast/slow) above `trend_z` x the noise of that ratio);
   - slow trend: the same with `slow` against a 30-minute `glacial` EWMA, projected from the
     level, when significant at `slow_trend_z` (5: real demand wanders for tens of minutes):
     hours-long growth (a 400% rise within a day) that fast/slow cannot tell from noise but that
     outgrows the headroom across a 10-minute lead time;
   - both projections capped at `max_surge_factor` (4) x the 30-minute level, since surges end:
     without it a x4-in-10-minutes spike extrapolates to x12 (observed demand is never capped);
   - seasonality: once the 15-minute buckets around now and now + H have been seen on
     `season_min_days` days, level x (the daily profile at now + H / the profile now), the
     profile interpolated between bucket centres: pre-scaling ahead of the daily rise (the
     4-5x daily curve) by just what the coming lead time needs.
5. Surge: a growth significant at `surge_z` that projects at least `surge_ratio` across H, or one
   sample above the level by more than `jump_z` (4) sigmas and `surge_ratio` (the first evidence,
   before the EWMAs move; 4 sigmas so that noise alone does it about once a month). Once an
   episode has lasted `ramp_min_s` (60 s, one sample of a per-minute series), such a sample is
   also projected along the rise since the episode began: d + slope x H, capped like the trend;
   a x4-in-10-minutes ramp then gets its x4 a few minutes before the EWMAs would see it. Then the
   decision jumps to x2 of the current count (x4 when the forecast needs more than x2), so new
   instances are ready when the load arrives, and the tier is not scaled down for one
   stabilization window. A jump never goes beyond `max_surge_factor` x the 30-minute level (plus
   headroom), so repeated evidence during one surge cannot compound x2 into x8.
   Optional (`surge_memory_headroom`, off by default): extra headroom after a surge, decaying
   with a one-day half-life, for tiers whose surges recur; it buys theta_U with instance-hours.
   Release: a fast episode (trend or jump) that the demand takes back, both the last sample and
   the fast EWMA back within `release_band_sigmas` (1.5) sigmas of the level the episode started
   from, is over: its hold ends and its recommendations leave the stabilization window, so the
   instances bought for a burst of a few minutes are cancelled, mostly while still pending,
   instead of being held for a window. A real surge keeps demand above the band and is never
   released.
6. Recommendation: ceil(forecast x (1 + headroom) / capacity). On the way down the chain applies a
   tolerance (5%), at most halving, and a stabilization window (the highest recommendation of the
   last `stabilization_down_s`, 10 min, kept as maxima per tenth of the window: a minute at the
   default, a few seconds in a time-compressed drill), so the count never falls below
   the lead-time forecast; then min, max, quota, override floor.

Tuned on generated traces with seeds 101-103 and 201-203 (`bursty` included, for the noise of real
request counts), never on the benchmark's seeds or on one file (docs/BENCHMARKS.md).

State is bounded: a few floats, at most 2 x 11 window maxima, and a
96-bucket daily profile with per-bucket counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from autoscaler.core.chain import Guards, finish, rate_limit, stabilization, tolerance
from autoscaler.core.state import state_from_dict, state_to_dict
from autoscaler.core.types import Decision, Observation, is_missing

LN2 = math.log(2)
BUCKETS_PER_DAY = 96
BUCKET_S = 86400 / BUCKETS_PER_DAY
# The stabilization window keeps one maximum per tenth of its length: per minute at 10 minutes,
# and just as fine when a drill compresses the window to 30 s.
WINDOW_SLOTS = 10


@dataclass(frozen=True)
class SwellParams:
    capacity_per_instance: float
    lead_time_s: float = 180.0
    sync_period_s: float = 15.0
    stale_after_s: float = 120.0
    fast_halflife_s: float = 45.0
    level_halflife_s: float = 200.0
    slow_halflife_s: float = 240.0
    # The slow trend (a surge over hours, the morning rise): slow against this much slower EWMA.
    glacial_halflife_s: float = 1800.0
    volatility_halflife_s: float = 1800.0
    initial_volatility: float = 0.15  # until measured: assume noisy
    headroom_sigmas: float = 2.8
    min_headroom: float = 0.03
    max_headroom: float = 1.0
    trend_z: float = 2.0
    # The slow trend's noise is derived for independent samples, but real demand wanders for tens
    # of minutes at a time, which that figure underestimates; at 2 the slow trend projected wander
    # across a 10-minute lead time. 5 was picked on bursty tuning traces (docs/BENCHMARKS.md).
    slow_trend_z: float = 5.0
    surge_z: float = 3.0
    surge_ratio: float = 1.25
    # A projection never exceeds this multiple of the 30-minute level: surges end (x4-5 is what
    # the platform plans for); observed demand itself is never capped.
    max_surge_factor: float = 4.0
    resid_clip_sigmas: float = 4.0
    jump_z: float = 4.0  # one sample this many sigmas above the level is a surge's first evidence
    surge_jump: bool = True
    # Project a surge's rise since its episode began, once it has lasted this long (one sample of a
    # per-minute series): the first sample alone is too little evidence for a slope.
    ramp_projection: bool = True
    ramp_min_s: float = 60.0
    # After a surge, keep this much extra headroom, decaying with the half-life: a tier that just
    # surged is likelier to surge again than one that never did.
    surge_memory_headroom: float = 0.0
    surge_memory_halflife_s: float = 86400.0
    # A surge or trend the demand took back (the fast EWMA back within `release_band_sigmas` of
    # the level the episode started from) is released: its hold ends and its recommendations leave
    # the stabilization window, so instances bought for a burst that is already over are
    # cancelled, most of them while still pending, instead of being held for a whole window.
    release_refuted: bool = True
    release_band_sigmas: float = 1.5
    down_tolerance: float = 0.05
    stabilization_down_s: float = 600.0
    season_min_days: int = 2
    season_weight: float = 0.35  # weight of the newest day in each bucket's mean
    guards: Guards = field(default_factory=Guards)

    def __post_init__(self) -> None:
        if not self.capacity_per_instance > 0:
            raise ValueError(f"capacity_per_instance must be > 0, got {self.capacity_per_instance}")
        if self.lead_time_s < 0:
            raise ValueError(f"lead_time_s must be >= 0, got {self.lead_time_s}")
        if not 0 < self.fast_halflife_s < self.slow_halflife_s:
            raise ValueError("need 0 < fast_halflife_s < slow_halflife_s")


class SwellState(NamedTuple):
    last_t: float | None = None
    fast: float = 0.0
    level: float = 0.0
    slow: float = 0.0
    glacial: float = 0.0
    var: float = 0.0
    samples: int = 0
    surge_until: float = 0.0
    surge_memory: float = 0.0  # 1 at a surge's onset, halving every surge_memory_halflife_s
    # Stabilization window: (slot index, highest recommendation in that slot), oldest first; a slot
    # is a tenth of `stabilization_down_s` (a minute at the default; the name predates that).
    minute_max: tuple[tuple[int, int], ...] = ()
    # Daily profile: mean demand per 15-minute bucket (EWMA across days) and days seen per bucket.
    profile: tuple[float, ...] = ()
    seen: tuple[int, ...] = ()
    bucket: int = -1  # absolute index of the bucket being accumulated
    bucket_sum: float = 0.0
    bucket_n: int = 0
    # The same window without the fast trend and the jump: what stays if an episode is refuted.
    base_max: tuple[tuple[int, int], ...] = ()
    # The current fast episode (trend or jump): until when, the level it started from, its slot.
    episode_until: float = 0.0
    episode_ref: float = 0.0
    episode_minute: int = -1
    episode_t: float = 0.0  # when the current fast episode began

    def to_dict(self) -> dict[str, Any]:
        return state_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SwellState:
        return state_from_dict(cls, data)


def _window_add(
    window: tuple[tuple[int, int], ...], slot: int, rec: int, cutoff: int
) -> tuple[tuple[int, int], ...]:
    """Per-slot maxima of the recommendation, slots after `cutoff` only, oldest first."""
    if window and window[0][0] <= cutoff:
        window = tuple(m for m in window if m[0] > cutoff)
    if window and window[-1][0] == slot:
        if rec > window[-1][1]:
            window = (*window[:-1], (slot, rec))
        return window
    return (*window, (slot, rec))


def _ema_alpha(dt: float, halflife: float) -> float:
    return 1.0 - 0.5 ** (dt / halflife)


def _season_ratio(state: SwellState, now: float, horizon: float, min_days: int) -> float:
    """The daily profile at now + horizon over the profile now, interpolated between the bucket
    centres, once every bucket involved has been seen on `min_days` days; 1 otherwise."""
    seen = state.seen
    if not seen:
        return 1.0
    profile = state.profile
    values = []
    for x in (now, now + horizon):
        pos = x / BUCKET_S - 0.5
        j = math.floor(pos)
        frac = pos - j
        i0, i1 = j % BUCKETS_PER_DAY, (j + 1) % BUCKETS_PER_DAY
        if seen[i0] < min_days or seen[i1] < min_days:
            return 1.0
        values.append(profile[i0] * (1.0 - frac) + profile[i1] * frac)
    return values[1] / values[0] if values[0] > 0 else 1.0


def _close_bucket(state: SwellState, weight: float) -> tuple[tuple[float, ...], tuple[int, ...]]:
    profile = list(state.profile) if state.profile else [0.0] * BUCKETS_PER_DAY
    seen = list(state.seen) if state.seen else [0] * BUCKETS_PER_DAY
    i = state.bucket % BUCKETS_PER_DAY
    mean = state.bucket_sum / state.bucket_n
    profile[i] = mean if seen[i] == 0 else profile[i] + weight * (mean - profile[i])
    seen[i] = min(seen[i] + 1, 10_000)
    return tuple(profile), tuple(seen)


def decide(
    obs: Observation, state: SwellState, params: SwellParams, now: float
) -> tuple[Decision, SwellState]:
    current = obs.current
    demand = obs.demand
    if is_missing(demand) or obs.sample_age_s > params.stale_after_s:
        why = "missing" if is_missing(demand) else f"{obs.sample_age_s:.0f} s old"
        return finish(current, obs, params.guards, now, f"hold: demand {why}", [], False), state
    assert demand is not None
    d = demand if demand > 0 else 0.0

    # 2-3. Level, trend and volatility.
    if state.last_t is None or state.samples == 0:
        fast = level = slow = glacial = d
        var = params.initial_volatility**2
        samples = 1
    else:
        dt = now - state.last_t
        if dt <= 0:
            dt = params.sync_period_s
        fast, level, slow, glacial = state.fast, state.level, state.slow, state.glacial
        resid = d / fast - 1.0 if fast > 0 else (0.0 if d == 0 else 1.0)
        # Winsorize at `resid_clip_sigmas`: a surge's ramp or one outlier must not set the
        # headroom for the next half hour; a real rise in noise still raises it, step by step.
        clip = max(params.resid_clip_sigmas * math.sqrt(state.var), 0.1)
        if resid > clip:
            resid = clip
        elif resid < -clip:
            resid = -clip
        var = state.var + _ema_alpha(dt, params.volatility_halflife_s) * (resid * resid - state.var)
        fast += _ema_alpha(dt, params.fast_halflife_s) * (d - fast)
        level += _ema_alpha(dt, params.level_halflife_s) * (d - level)
        slow += _ema_alpha(dt, params.slow_halflife_s) * (d - slow)
        glacial += _ema_alpha(dt, params.glacial_halflife_s) * (d - glacial)
        samples = state.samples + 1
    sigma = math.sqrt(var)

    # 4. Forecast across the horizon.
    horizon = params.lead_time_s + obs.sample_age_s + params.sync_period_s
    age_fast = params.fast_halflife_s / LN2
    age_slow = params.slow_halflife_s / LN2
    forecast = level
    surge = False
    signal = False  # the fast trend or a jump is in the forecast
    log_ratio = math.log(fast / slow) if fast > 0 and slow > 0 else 0.0
    # Noise of ln(fast/slow) for iid relative noise sigma: about sigma x sqrt(a / (2 - a)) of the
    # fast EWMA at a one-minute sample rate (the slow one adds little).
    a_min = _ema_alpha(60.0, params.fast_halflife_s)
    ratio_noise = sigma * math.sqrt(a_min / (2.0 - a_min))
    if log_ratio > params.trend_z * ratio_noise and samples * params.sync_period_s >= params.slow_halflife_s:
        growth = log_ratio / (age_slow - age_fast)
        projected = min(4.0, math.exp(growth * (horizon + age_fast)))
        forecast = min(fast * projected, params.max_surge_factor * glacial)
        signal = True
        surge = log_ratio > params.surge_z * ratio_noise and projected >= params.surge_ratio
    # A sample far above the level is the first evidence of a surge: size from it at once
    # rather than waiting for the EWMAs (up fast, down slow).
    jump = d / level - 1.0 if level > 0 else 0.0
    if jump > params.jump_z * sigma and jump >= params.surge_ratio - 1.0:
        forecast = max(forecast, d)
        surge = True
        signal = True
        # A surge in progress: still far above the level a minute or more into an episode. Its rise
        # since the episode began, projected across the horizon, is what demand will be when the
        # instances ordered now are ready; the EWMAs take minutes to see a x4-in-10-minutes ramp.
        elapsed = now - state.episode_t
        if (
            params.ramp_projection
            and now < state.episode_until
            and elapsed >= params.ramp_min_s
            and d > state.episode_ref > 0
        ):
            slope = (d - state.episode_ref) / elapsed
            forecast = max(forecast, min(d + slope * horizon, params.max_surge_factor * glacial))
    # The slow trend: hours-long growth too gentle for fast/slow to tell from noise, but enough to
    # outgrow the headroom across a 10-minute lead time (a 400% rise within a day).
    base = level  # the forecast without the fast trend and the jump
    age_level = params.level_halflife_s / LN2
    age_glacial = params.glacial_halflife_s / LN2
    slow_ratio = math.log(slow / glacial) if slow > 0 and glacial > 0 else 0.0
    a_slow = _ema_alpha(60.0, params.slow_halflife_s)
    slow_noise = sigma * math.sqrt(a_slow / (2.0 - a_slow))
    if (
        slow_ratio > params.slow_trend_z * slow_noise
        and samples * params.sync_period_s >= params.glacial_halflife_s
    ):
        slow_growth = slow_ratio / (age_glacial - age_slow)
        slow_forecast = min(
            level * math.exp(slow_growth * (horizon + age_level)), params.max_surge_factor * glacial
        )
        forecast = max(forecast, slow_forecast)
        base = max(base, slow_forecast)
    season = _season_ratio(state, now, horizon, params.season_min_days)
    if season > 1.0:
        forecast = max(forecast, level * min(season, 4.0))
        base = max(base, level * min(season, 4.0))
    memory = state.surge_memory
    if memory > 0 and state.last_t is not None:
        memory *= 0.5 ** ((now - state.last_t) / params.surge_memory_halflife_s)
    if surge and now >= state.surge_until:
        memory = 1.0
    headroom = min(
        max(params.headroom_sigmas * sigma, params.min_headroom) + params.surge_memory_headroom * memory,
        params.max_headroom,
    )
    cap = params.capacity_per_instance
    rec = math.ceil(forecast * (1.0 + headroom) / cap - 1e-9)
    base_rec = math.ceil(base * (1.0 + headroom) / cap - 1e-9)
    reason = f"forecast {forecast:.1f} (level {level:.1f}) +{headroom:.0%} headroom -> {rec}"

    surge_until = state.surge_until
    # Jump x2 or x4 at once, but never past x`max_surge_factor` the 30-minute level: repeated
    # evidence during one surge (instances of the last jump still booting) must not compound.
    if surge and params.surge_jump and rec > current:
        jump = 2 if rec <= 2 * current else 4
        ceiling = math.ceil(params.max_surge_factor * glacial * (1.0 + headroom) / cap)
        target = min(current * jump, ceiling)
        if target > rec:
            rec = target
            reason = f"surge: x{jump}, {reason}"
    if surge:
        surge_until = now + params.stabilization_down_s
    episode_until, episode_ref, episode_minute = state.episode_until, state.episode_ref, state.episode_minute
    episode_t = state.episode_t
    slot_s = max(params.stabilization_down_s / WINDOW_SLOTS, 1.0)
    slot = int(now // slot_s)
    refuted = False
    if signal:
        if now >= episode_until:
            episode_ref = state.level if state.level > 0 else level
            episode_minute = slot
            episode_t = now
        episode_until = now + params.stabilization_down_s
    elif (
        params.release_refuted
        and now < episode_until
        and max(fast, d) <= episode_ref * (1.0 + params.release_band_sigmas * sigma)
    ):
        refuted = True
        episode_until = now
        surge_until = min(surge_until, now)
        reason = f"released: demand back to {fast:.1f}, {reason}"

    # 6. The chain: tolerance, rate limit, stabilization.
    limited: list[str] = []
    desired, _ = tolerance(rec, current, 0.0, params.down_tolerance)
    desired, tag = rate_limit(desired, current, params.guards)
    if tag:
        limited.append(tag)
    cutoff = slot - WINDOW_SLOTS
    window = _window_add(state.minute_max, slot, rec, cutoff)
    base_window = _window_add(state.base_max, slot, base_rec, cutoff)
    if refuted:
        # The episode's recommendations leave the window: from its first slot on, only what the
        # forecast without the fast trend and the jump asked for.
        kept = {m: r for m, r in base_window}
        window = tuple(
            (m, r) if m < episode_minute else (m, kept.get(m, min(r, base_rec))) for m, r in window
        )
    if desired < current:
        # During a surge (and one window after it) the highest recommendation is the count itself.
        recent = (current,) if now < surge_until else tuple(m[1] for m in window)
        desired, tag = stabilization(desired, current, recent)
        if tag:
            limited.append(tag)

    # Seasonal profile: close the bucket when a new one starts.
    bucket = int(now // BUCKET_S)
    profile, seen = state.profile, state.seen
    if bucket != state.bucket:
        if state.bucket_n > 0 and bucket == state.bucket + 1:
            profile, seen = _close_bucket(state, params.season_weight)
        bucket_sum, bucket_n = d, 1
    else:
        bucket_sum, bucket_n = state.bucket_sum + d, state.bucket_n + 1

    new_state = SwellState(
        now,
        fast,
        level,
        slow,
        glacial,
        var,
        samples,
        surge_until,
        memory,
        window,
        profile,
        seen,
        bucket,
        bucket_sum,
        bucket_n,
        base_window,
        episode_until,
        episode_ref,
        episode_minute,
        episode_t,
    )
    return finish(desired, obs, params.guards, now, reason, limited, True), new_state
