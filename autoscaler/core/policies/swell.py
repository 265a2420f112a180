"""`swell`: the surge-aware policy. Sizes each tier from offered demand, projected across the
provisioning lead time, with headroom in proportion to the measured volatility of demand.

Per decision (every sync period, 15 s), as named steps (`track`, `forecast_demand`, `recommend`,
then the chain in `decide`), each testable on its own:

1. Fresh data only: a missing sample or one older than `stale_after_s` holds (no scale-down,
   no data-driven scale-up).
2. Demand level and trend: four EWMAs of offered demand. `level` (half-life 200 s) is what
   capacity is sized from: smooth enough that noise does not drive the count. `fast` and `slow`
   (45 s, 240 s) give the growth rate g (per second) of an exponential trend, since an EWMA lags
   by its mean age: ln(fast / slow) = g x (age_slow - age_fast). The 30-minute `glacial` EWMA is
   kept as the weighted mean of the samples seen so far (its weight is carried in the state), so
   a cold first sample (a rate window that began on an idle load balancer) does not stand for
   the whole half hour.
3. Volatility: an EWMA (half-life 30 min) of the squared relative residual of each sample against
   the fast level, winsorized at 4 sigmas so that a surge's ramp does not pass for noise, and
   skipped for samples above the fast level while a surge or trend episode is open (the rise is
   the signal, not noise: learning it kept a surge's headroom inflated for half an hour); its
   root sigma sets the headroom, k x sigma (k = 2.8, bounded to [3%, 100%]), instead of one flat
   utilization target: a quiet tier runs close to its capacity, a noisy one keeps the margin its
   noise needs.
4. Forecast across the horizon H = lead time + sample age + one sync period, never below the
   level, and while a surge is open never below the latest sample; the larger of:
   - the level;
   - trend: fast x exp(g x (H + age_fast)), at most x`max_surge_factor`, when the growth is
     significant against the noise (ln(fast/slow) above `trend_z` x the noise of that ratio);
   - slow trend: the same with `slow` against a 30-minute `glacial` EWMA, projected from the
     level, when significant at `slow_trend_z` (5: real demand wanders for tens of minutes):
     hours-long growth (a 400% rise within a day) that fast/slow cannot tell from noise but that
     outgrows the headroom across a 10-minute lead time;
   - every projection capped at the larger of `max_surge_factor` (4) x the 30-minute level and the
     level itself, since surges end: without it a x4-in-10-minutes spike extrapolates to x12. The
     cap never binds below the level, and observed demand is never capped, so a surge past x4 is
     followed as it arrives, not clipped (a cap on the 30-minute level alone fell below the level
     in a fast rise and collapsed the forecast: issue 17);
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
   stabilization window. A jump never goes beyond the same cap (plus headroom), so repeated
   evidence during one surge cannot compound x2 into x8.
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
   the lead-time forecast; and no scale-down at all while demand rises (`is_rising`: the sample
   above the fast EWMA, above the level, above the slow one); then min, max, quota, override floor.

Every duration parameter (`*_s`) but the service's timing is a time constant of the policy:
`compress_time(speed)` divides them all, which is how a drill runs the policy faster, and the
policy then takes the same decisions on a series replayed that much faster (tested).

Tuned on generated traces with seeds 101-103 and 201-203 (`bursty` included, for the noise of real
request counts), never on the benchmark's seeds or on one file (docs/BENCHMARKS.md).

State is bounded: a few floats, at most 2 x 11 window maxima, and a
96-bucket daily profile with per-bucket counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from autoscaler.core.chain import Guards, finish, rate_limit, stabilization, tolerance
from autoscaler.core.state import state_from_dict, state_to_dict
from autoscaler.core.types import Decision, Observation, is_missing

LN2 = math.log(2)
BUCKETS_PER_DAY = 96
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
    # The sample spacing the noise of ln(fast/slow) is derived for: a per-minute series.
    noise_sample_s: float = 60.0
    # Project a surge's rise since its episode began, once it has lasted this long (one sample of a
    # per-minute series): the first sample alone is too little evidence for a slope.
    ramp_projection: bool = True
    ramp_min_s: float = 60.0
    # After a surge, keep this much extra headroom, decaying with the half-life: a tier that just
    # surged is likelier to surge again than one that never did.
    surge_memory_headroom: float = 0.0
    surge_memory_halflife_s: float = 86400.0
    # Warm pool sizing (`warm_pool_target`): the fastest significant growth seen recently (per
    # second), decaying with this half-life, projected across the cold lead time; and a rise the
    # pool always covers, even on a tier that never surged (the growth swell calls a surge).
    warm_memory_halflife_s: float = 86400.0
    warm_min_growth: float = 1.25
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
    day_s: float = 86400.0  # the period of the daily profile (shorter only in a time-compressed drill)
    guards: Guards = field(default_factory=Guards)

    def __post_init__(self) -> None:
        if not self.capacity_per_instance > 0:
            raise ValueError(f"capacity_per_instance must be > 0, got {self.capacity_per_instance}")
        if self.lead_time_s < 0:
            raise ValueError(f"lead_time_s must be >= 0, got {self.lead_time_s}")
        if not 0 < self.fast_halflife_s < self.slow_halflife_s:
            raise ValueError("need 0 < fast_halflife_s < slow_halflife_s")


# Durations the service sets from its own timing (its interval, its staleness rule, the tier's lead
# time): not the policy's own time constants.
SERVICE_TIMING = frozenset({"lead_time_s", "sync_period_s", "stale_after_s"})


def time_constants() -> dict[str, float]:
    """The policy's own time constants with their defaults: every duration field (`*_s`) but the
    service's timing."""
    return {
        f.name: float(f.default)
        for f in fields(SwellParams)
        if f.name.endswith("_s") and f.name not in SERVICE_TIMING and isinstance(f.default, int | float)
    }


def compress_time(speed: float) -> dict[str, float]:
    """Parameter overrides that run the policy `speed` times faster, as a time-compressed drill
    does: every time constant divided by `speed`. With the service's timing compressed alike, the
    policy then takes the same decisions on a series replayed `speed` times faster (tested)."""
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    return {name: value / speed for name, value in time_constants().items()}


class SwellState(NamedTuple):
    last_t: float | None = None
    fast: float = 0.0
    level: float = 0.0
    slow: float = 0.0
    glacial: float = 0.0
    # Weight the glacial EWMA has accumulated (1 - 0.5^(time seen / half-life)): it is a weighted
    # mean of the samples seen so far, so the first sample, often a cold signal, does not count for
    # the whole history. 1 for a state persisted before this field: fully weighted.
    glacial_weight: float = 1.0
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
    # The fastest significant growth rate of demand seen (per second), decaying by
    # `warm_memory_halflife_s`: what a warm pool has to cover across the cold lead time.
    growth_memory: float = 0.0
    # The largest count recently asked for, decaying by `warm_memory_halflife_s`: yesterday's peak,
    # which a warm pool keeps within reach.
    count_memory: float = 0.0

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


def _season_ratio(state: SwellState, now: float, horizon: float, params: SwellParams) -> float:
    """The daily profile at now + horizon over the profile now, interpolated between the bucket
    centres, once every bucket involved has been seen on `min_days` days; 1 otherwise."""
    seen = state.seen
    if not seen:
        return 1.0
    profile = state.profile
    min_days = params.season_min_days
    bucket_s = params.day_s / BUCKETS_PER_DAY
    values = []
    for x in (now, now + horizon):
        pos = x / bucket_s - 0.5
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


class Tracked(NamedTuple):
    """Steps 2-3: the demand sample and the EWMAs of demand and of its squared relative residual,
    after this sample."""

    demand: float
    fast: float
    level: float
    slow: float
    glacial: float
    var: float
    samples: int
    glacial_weight: float

    @property
    def sigma(self) -> float:
        return math.sqrt(self.var)


def track(state: SwellState, params: SwellParams, demand: float, now: float) -> Tracked:
    """Level, trend and volatility: fold one fresh sample into the EWMAs."""
    d = demand if demand > 0 else 0.0
    if state.last_t is None or state.samples == 0:
        first_weight = _ema_alpha(params.sync_period_s, params.glacial_halflife_s)
        return Tracked(d, d, d, d, d, params.initial_volatility**2, 1, first_weight)
    dt = now - state.last_t
    if dt <= 0:
        dt = params.sync_period_s
    fast, level, slow, glacial = state.fast, state.level, state.slow, state.glacial
    resid = d / fast - 1.0 if fast > 0 else (0.0 if d == 0 else 1.0)
    # Winsorize at `resid_clip_sigmas`: a surge's ramp or one outlier must not set the headroom for
    # the next half hour; a real rise in noise still raises it, step by step.
    clip = max(params.resid_clip_sigmas * math.sqrt(state.var), 0.1)
    resid = min(max(resid, -clip), clip)
    var = state.var
    if not (resid > 0 and now < state.episode_until):
        # A rise during an open surge or trend episode is the signal, not noise: learning it as
        # volatility would keep a surge's headroom inflated for the next half hour.
        var += _ema_alpha(dt, params.volatility_halflife_s) * (resid * resid - var)
    fast += _ema_alpha(dt, params.fast_halflife_s) * (d - fast)
    level += _ema_alpha(dt, params.level_halflife_s) * (d - level)
    slow += _ema_alpha(dt, params.slow_halflife_s) * (d - slow)
    # The weighted mean of the samples seen so far, weights decaying with the half-life.
    a_glacial = _ema_alpha(dt, params.glacial_halflife_s)
    kept = state.glacial_weight * (1.0 - a_glacial)
    weight = kept + a_glacial
    glacial = (glacial * kept + d * a_glacial) / weight
    return Tracked(d, fast, level, slow, glacial, var, state.samples + 1, weight)


class Forecast(NamedTuple):
    """Step 4-5: demand expected when instances ordered now are ready, and whether it is a surge."""

    value: float  # never below the level
    base: float  # the same without the fast trend and the jump: what stays if an episode is refuted
    surge: bool  # significant fast growth or a jump: jump the count at once
    signal: bool  # the fast trend or a jump is in the forecast (opens or extends an episode)
    surge_cap: float  # no projection goes beyond this: max(max_surge_factor x glacial, level)
    growth: float = 0.0  # the significant fast growth rate (per second) behind the trend, 0 when none


def forecast_demand(
    tracked: Tracked, state: SwellState, params: SwellParams, sample_age_s: float, now: float
) -> Forecast:
    """The forecast across the horizon H = lead time + sample age + one sync period (module
    docstring, step 4), and the surge evidence (step 5)."""
    d, fast, level, slow, glacial = tracked.demand, tracked.fast, tracked.level, tracked.slow, tracked.glacial
    sigma = tracked.sigma
    horizon = params.lead_time_s + sample_age_s + params.sync_period_s
    age_fast = params.fast_halflife_s / LN2
    age_slow = params.slow_halflife_s / LN2
    # Surges end: no projection goes beyond x`max_surge_factor` the 30-minute level (x4-5 is what
    # the platform plans for), but never below the level itself, and while a surge is open never
    # below the latest sample: a surge past x4 is followed, not clipped. The glacial EWMA lags a
    # fast rise by tens of minutes; before this floor the cap fell below the level and the forecast
    # collapsed with it (issue 17). The multiple applies to the 30-minute level, not to the level:
    # x4 the level lets a fast ramp's projection run to x12 of the baseline, which measured
    # +4-19% instance-hours against keda on fast surges for no theta_U gain (docs/BENCHMARKS.md).
    surge_cap = max(params.max_surge_factor * glacial, level)
    forecast = level
    surge = False
    signal = False
    trend_growth = 0.0
    log_ratio = math.log(fast / slow) if fast > 0 and slow > 0 else 0.0
    # Noise of ln(fast/slow) for iid relative noise sigma: about sigma x sqrt(a / (2 - a)) of the
    # fast EWMA at a one-minute sample rate (the slow one adds little).
    a_min = _ema_alpha(params.noise_sample_s, params.fast_halflife_s)
    ratio_noise = sigma * math.sqrt(a_min / (2.0 - a_min))
    if (
        log_ratio > params.trend_z * ratio_noise
        and tracked.samples * params.sync_period_s >= params.slow_halflife_s
    ):
        growth = log_ratio / (age_slow - age_fast)
        trend_growth = growth
        projected = min(params.max_surge_factor, math.exp(growth * (horizon + age_fast)))
        forecast = max(forecast, min(fast * projected, surge_cap))
        signal = True
        surge = log_ratio > params.surge_z * ratio_noise and projected >= params.surge_ratio
    # A sample far above the level is the first evidence of a surge: size from it at once rather
    # than waiting for the EWMAs (up fast, down slow).
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
            forecast = max(forecast, min(d + slope * horizon, surge_cap))
    if surge or now < state.surge_until:
        # While a surge is open, demand is still climbing: the latest sample is a floor.
        forecast = max(forecast, d)
    # The slow trend: hours-long growth too gentle for fast/slow to tell from noise, but enough to
    # outgrow the headroom across a 10-minute lead time (a 400% rise within a day).
    base = level
    age_level = params.level_halflife_s / LN2
    age_glacial = params.glacial_halflife_s / LN2
    slow_ratio = math.log(slow / glacial) if slow > 0 and glacial > 0 else 0.0
    a_slow = _ema_alpha(params.noise_sample_s, params.slow_halflife_s)
    slow_noise = sigma * math.sqrt(a_slow / (2.0 - a_slow))
    if (
        slow_ratio > params.slow_trend_z * slow_noise
        and tracked.samples * params.sync_period_s >= params.glacial_halflife_s
    ):
        slow_growth = slow_ratio / (age_glacial - age_slow)
        slow_forecast = min(level * math.exp(slow_growth * (horizon + age_level)), surge_cap)
        forecast = max(forecast, slow_forecast)
        base = max(base, slow_forecast)
    season = _season_ratio(state, now, horizon, params)
    if season > 1.0:
        seasonal = level * min(season, params.max_surge_factor)
        forecast = max(forecast, seasonal)
        base = max(base, seasonal)
    return Forecast(forecast, base, surge, signal, surge_cap, trend_growth)


class Recommendation(NamedTuple):
    """Step 6 before the chain: the count the forecast asks for, and why."""

    instances: int  # ceil(forecast x (1 + headroom) / capacity), or the surge jump when higher
    base_instances: int  # the same for the forecast without the fast trend and the jump
    headroom: float
    surge_memory: float
    reason: str


def _decayed(value: float, since: float | None, now: float, halflife_s: float) -> float:
    if value <= 0 or since is None or now <= since:
        return value
    return value * 0.5 ** ((now - since) / halflife_s)


def warm_pool_target(
    state: SwellState, params: SwellParams, current: int, cold_lead_s: float, max_count: int, now: float
) -> tuple[int, str]:
    """How many shelved, configured instances to keep beside the `current` ones (AWS calls it a
    warm pool; on OpenStack, instances shelved with their disk kept): enough for the rise that the
    cold lead time (create, boot, configure) could bring, so that the instances such a rise needs are
    unshelved in the warm lead time instead.

    The rise across the cold lead time L is the largest of: the fastest significant growth seen
    recently (`growth_memory`, per second, halving every `warm_memory_halflife_s`), projected:
    exp(g x L), at most x`max_surge_factor`; the daily profile's rise over L; and
    `warm_min_growth` (x1.25: what swell calls a surge). The pool is the count that rise needs at
    the level with today's headroom, minus the count the level needs now; never below 0, never
    beyond `max_count` - `current`. Returns the size and why."""
    level = state.level
    if level <= 0 or state.samples == 0:
        return 0, "no demand measured yet"
    memory = _decayed(state.growth_memory, state.last_t, now, params.warm_memory_halflife_s)
    from_growth = min(params.max_surge_factor, math.exp(memory * cold_lead_s))
    season = min(_season_ratio(state, now, cold_lead_s, params), params.max_surge_factor)
    rise = max(from_growth, season, params.warm_min_growth)
    headroom = headroom_for(math.sqrt(state.var), 0.0, params)
    cap = params.capacity_per_instance
    need_now = math.ceil(level * (1.0 + headroom) / cap - 1e-9)
    need_then = math.ceil(level * rise * (1.0 + headroom) / cap - 1e-9)
    recent_peak = math.floor(_decayed(state.count_memory, state.last_t, now, params.warm_memory_halflife_s))
    size = max(0, min(max(need_then - need_now, recent_peak - current), max_count - current))
    source = "recent growth" if rise == from_growth else "daily profile" if rise == season else "minimum rise"
    if recent_peak - current > need_then - need_now:
        source = f"the recent peak of {recent_peak}"
    return size, f"warm pool {size}: x{rise:.2f} within {cold_lead_s:.0f} s, or back to {source}"


def headroom_for(sigma: float, surge_memory: float, params: SwellParams) -> float:
    """k x sigma within [min_headroom, max_headroom], plus the optional decaying surge memory."""
    return min(
        max(params.headroom_sigmas * sigma, params.min_headroom)
        + params.surge_memory_headroom * surge_memory,
        params.max_headroom,
    )


def recommend(
    tracked: Tracked, forecast: Forecast, state: SwellState, params: SwellParams, current: int, now: float
) -> Recommendation:
    """The count for the forecast with volatility headroom; on a surge, x2 of the current count
    (x`max_surge_factor` when the forecast needs more than x2), never beyond the surge cap."""
    memory = state.surge_memory
    if memory > 0 and state.last_t is not None:
        memory *= 0.5 ** ((now - state.last_t) / params.surge_memory_halflife_s)
    if forecast.surge and now >= state.surge_until:
        memory = 1.0
    headroom = headroom_for(tracked.sigma, memory, params)
    cap = params.capacity_per_instance
    count = math.ceil(forecast.value * (1.0 + headroom) / cap - 1e-9)
    base_count = math.ceil(forecast.base * (1.0 + headroom) / cap - 1e-9)
    reason = f"forecast {forecast.value:.1f} (level {tracked.level:.1f}) +{headroom:.0%} headroom -> {count}"
    # Jump x2 or x4 at once, but never past the surge cap: repeated evidence during one surge
    # (instances of the last jump still booting) must not compound x2 into x8.
    if forecast.surge and params.surge_jump and count > current:
        factor = 2.0 if count <= 2 * current else params.max_surge_factor
        ceiling = math.ceil(forecast.surge_cap * (1.0 + headroom) / cap)
        target = min(math.floor(current * factor), ceiling)
        if target > count:
            count = target
            reason = f"surge: x{factor:g} of {current} -> {target}; {reason}"
    return Recommendation(count, base_count, headroom, memory, reason)


def is_rising(tracked: Tracked) -> bool:
    """The demand above the fast EWMA, above the level, above the slow EWMA: true at every sample
    of a strictly rising series (an EWMA of a rising series is below its latest value, and a faster
    EWMA above a slower one), never on a constant, and in flat noise about one sample in six."""
    return tracked.demand > tracked.fast > tracked.level > tracked.slow


def decide(
    obs: Observation, state: SwellState, params: SwellParams, now: float
) -> tuple[Decision, SwellState]:
    current = obs.current
    demand = obs.demand
    if is_missing(demand) or obs.sample_age_s > params.stale_after_s:
        why = "missing" if is_missing(demand) else f"{obs.sample_age_s:.0f} s old"
        return finish(current, obs, params.guards, now, f"hold: demand {why}", [], False), state
    assert demand is not None

    tracked = track(state, params, demand, now)
    forecast = forecast_demand(tracked, state, params, obs.sample_age_s, now)
    rec = recommend(tracked, forecast, state, params, current, now)
    reason = rec.reason
    sigma = tracked.sigma

    surge_until = state.surge_until
    if forecast.surge:
        surge_until = now + params.stabilization_down_s
    episode_until, episode_ref, episode_minute = state.episode_until, state.episode_ref, state.episode_minute
    episode_t = state.episode_t
    slot_s = max(params.stabilization_down_s / WINDOW_SLOTS, 1e-3)  # 1 ms: only guards a zero window
    slot = int(now // slot_s)
    refuted = False
    if forecast.signal:
        if now >= episode_until:
            episode_ref = state.level if state.level > 0 else tracked.level
            episode_minute = slot
            episode_t = now
        episode_until = now + params.stabilization_down_s
    elif (
        params.release_refuted
        and now < episode_until
        and max(tracked.fast, tracked.demand) <= episode_ref * (1.0 + params.release_band_sigmas * sigma)
    ):
        refuted = True
        episode_until = now
        surge_until = min(surge_until, now)
        reason = f"released: demand back to {tracked.fast:.1f}, {reason}"

    # 6. The chain: tolerance, rate limit, stabilization.
    limited: list[str] = []
    desired, _ = tolerance(rec.instances, current, 0.0, params.down_tolerance)
    desired, tag = rate_limit(desired, current, params.guards)
    if tag:
        limited.append(tag)
    cutoff = slot - WINDOW_SLOTS
    window = _window_add(state.minute_max, slot, rec.instances, cutoff)
    base_window = _window_add(state.base_max, slot, rec.base_instances, cutoff)
    if refuted:
        # The episode's recommendations leave the window: from its first slot on, only what the
        # forecast without the fast trend and the jump asked for.
        kept = dict(base_window)
        window = tuple(
            (m, r) if m < episode_minute else (m, kept.get(m, min(r, rec.base_instances))) for m, r in window
        )
    if desired < current:
        if is_rising(tracked):
            # Never shed capacity while demand still climbs, whatever the headroom learned meanwhile.
            desired = current
            limited.append("stabilization")
            reason = f"{reason}, demand still rising"
        else:
            # During a surge (and one window after it) the highest recommendation is the count itself.
            recent = (current,) if now < surge_until else tuple(m[1] for m in window)
            desired, tag = stabilization(desired, current, recent)
            if tag:
                limited.append(tag)

    # Seasonal profile: close the bucket when a new one starts.
    d = tracked.demand
    bucket = int(now // (params.day_s / BUCKETS_PER_DAY))
    profile, seen = state.profile, state.seen
    if bucket != state.bucket:
        if state.bucket_n > 0 and bucket == state.bucket + 1:
            profile, seen = _close_bucket(state, params.season_weight)
        bucket_sum, bucket_n = d, 1
    else:
        bucket_sum, bucket_n = state.bucket_sum + d, state.bucket_n + 1

    new_state = SwellState(
        last_t=now,
        fast=tracked.fast,
        level=tracked.level,
        slow=tracked.slow,
        glacial=tracked.glacial,
        glacial_weight=tracked.glacial_weight,
        var=tracked.var,
        samples=tracked.samples,
        surge_until=surge_until,
        surge_memory=rec.surge_memory,
        minute_max=window,
        profile=profile,
        seen=seen,
        bucket=bucket,
        bucket_sum=bucket_sum,
        bucket_n=bucket_n,
        base_max=base_window,
        episode_until=episode_until,
        episode_ref=episode_ref,
        episode_minute=episode_minute,
        episode_t=episode_t,
        growth_memory=max(
            _decayed(state.growth_memory, state.last_t, now, params.warm_memory_halflife_s), forecast.growth
        ),
        count_memory=max(
            _decayed(state.count_memory, state.last_t, now, params.warm_memory_halflife_s), float(desired)
        ),
    )
    return finish(desired, obs, params.guards, now, reason, limited, True), new_state
