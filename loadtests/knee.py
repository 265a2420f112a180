"""Finding the knee of one instance: the step profile as data, each step's measurement, and the rule
that turns measured steps into a capacity. Pure (no Locust, no I/O): the calibration locustfile
measures with it inside Locust, and `swell calibrate` judges with it in its own process.

- `StepPlan`: users per step, the step length, and the measurement window of each step (the
  first `settle_s` of a step are left out: users are still arriving and queues filling). In
  Locust's distributed mode the master sees the workers' requests up to one report interval late,
  so every window shifts by `lag_s`.
- `Snapshot` / `measure`: Locust's aggregated stats (request and failure counts, the response-time
  histogram) read at a window's start and end; their difference is that step alone.
- `find_knee`: the knee is the highest step whose p95 and error rate hold, below the first break
  that the next step confirms (`confirm` consecutive broken steps, or a broken last step). A broken
  step the next one contradicts is noise on a shared machine and is reported as such, not taken
  for the knee.
- `refine`: a second, finer pass from the last good to the first bad step.

Offered load is known by construction: users x `OFFERED_PER_USER`, in the unit of the tier's demand
signal (the autoscaler's `capacity_per_instance`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from swell import tiers as _catalog

TIERS = _catalog.names()
# The calibration file `swell calibrate` writes and `swell plan` reads.
CALIBRATION_SCHEMA = "swell.calibration/1"
# Each measured step is printed on Locust's stdout as this prefix and one JSON object (on Kubernetes,
# `kubectl logs` of the master carries them to `swell calibrate --from-log`).
STEP_PREFIX = "swell-step "
# The unit of each tier's demand signal, from the tier catalog (requests/s at the load balancer's
# pool, sessions a pool holds, participants on the bridges).
UNITS = {t.name: t.unit for t in _catalog.load().tiers}
# Offered load one Locust user makes, in that unit (loadtests/users.py): a requests user paces one
# request a second (`constant_pacing(1.0)`); a sessions user holds one session and a participants
# user is one participant. A test checks the web figure against the users' real request rate.
OFFERED_PER_USER = dict.fromkeys(TIERS, 1.0)
# Users that send requests are paced by the calibration; session-holding ones pace themselves.
PACED = frozenset(t.name for t in _catalog.load().tiers if t.traffic == "requests")
# Evenly paced arrivals: the k-th paced user sends at frac(k x GOLDEN) of each period, so any number
# of users is spread over the period with no cluster (the calibration locustfile paces so).
GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class SLO:
    """What one instance must hold at a step: p95 latency and the share of failed requests."""

    p95_ms: float
    error_rate: float

    def __post_init__(self) -> None:
        if not (self.p95_ms > 0 and math.isfinite(self.p95_ms)):
            raise ValueError(f"p95_ms must be a finite number > 0, got {self.p95_ms}")
        if not 0 <= self.error_rate < 1:
            raise ValueError(f"error_rate must be in [0, 1), got {self.error_rate}")


@dataclass(frozen=True)
class StepPlan:
    """Users per step, each step `step_s` long, measured from `settle_s` into it to its end, both
    shifted by `lag_s`; the shape runs `tail_s` past the last window so that it is measured."""

    users: tuple[int, ...]
    step_s: float
    settle_s: float
    lag_s: float = 0.0
    tail_s: float = 1.0
    # New users of a step start over this many seconds: paced users keep the phase they started
    # at, so users started at once would send in bursts forever (a synchronized crowd queues at
    # a fraction of the capacity); spread over the pacing period, they arrive evenly.
    spread_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.users or any(u < 1 for u in self.users):
            raise ValueError(f"users must be a non-empty list of counts >= 1, got {list(self.users)}")
        if not (self.step_s > 0 and math.isfinite(self.step_s)):
            raise ValueError(f"step_s must be a finite number > 0, got {self.step_s}")
        if not 0 <= self.settle_s < self.step_s:
            raise ValueError(f"settle_s must be >= 0 and shorter than the step ({self.step_s:g} s)")
        if self.lag_s < 0 or self.tail_s < 0 or not self.spread_s > 0:
            raise ValueError("lag_s and tail_s must be >= 0, spread_s > 0")

    def window(self, index: int) -> tuple[float, float]:
        """Run-time seconds (of the shape) between which step `index` is measured."""
        start = index * self.step_s
        return start + self.settle_s + self.lag_s, start + self.step_s + self.lag_s

    @property
    def duration_s(self) -> float:
        return len(self.users) * self.step_s + self.lag_s + self.tail_s

    def users_at(self, run_time_s: float) -> tuple[int, float] | None:
        """Users the shape asks for at `run_time_s` and the rate to start them at (the step's new
        users over `spread_s`); None once the plan is over (Locust stops)."""
        if run_time_s >= self.duration_s:
            return None
        index = min(int(run_time_s // self.step_s), len(self.users) - 1)
        added = self.users[index] - (self.users[index - 1] if index else 0)
        return self.users[index], max(1.0, abs(added) / self.spread_s)

    def to_env(self) -> dict[str, str]:
        return {
            "SWELL_CALIBRATE_USERS": ",".join(str(u) for u in self.users),
            "SWELL_CALIBRATE_STEP_S": f"{self.step_s:g}",
            "SWELL_CALIBRATE_SETTLE_S": f"{self.settle_s:g}",
            "SWELL_CALIBRATE_LAG_S": f"{self.lag_s:g}",
            "SWELL_CALIBRATE_SPREAD_S": f"{self.spread_s:g}",
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StepPlan:
        """The plan the environment describes (the calibration locustfile, also on Kubernetes)."""
        try:
            users = tuple(int(u) for u in env["SWELL_CALIBRATE_USERS"].split(",") if u.strip())
            step_s = float(env.get("SWELL_CALIBRATE_STEP_S", "60"))
            return cls(
                users=users,
                step_s=step_s,
                settle_s=float(env.get("SWELL_CALIBRATE_SETTLE_S", f"{step_s / 4:g}")),
                lag_s=float(env.get("SWELL_CALIBRATE_LAG_S", "0")),
                spread_s=float(env.get("SWELL_CALIBRATE_SPREAD_S", "1")),
            )
        except KeyError:
            raise ValueError(
                "SWELL_CALIBRATE_USERS is not set: give the users per step, e.g. 10,20,30"
            ) from None


@dataclass(frozen=True)
class Snapshot:
    """Locust's aggregated stats at one moment: counts and the response-time histogram (ms, as
    Locust rounds them: to 1 ms below 100 ms, 10 ms below 1 s, 100 ms above)."""

    requests: int
    failures: int
    histogram: Mapping[int, int]


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """Nearest-rank percentile `q` (0-100) of a {ms: count} histogram; None when it is empty."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen >= rank:
            return float(ms)
    return float(max(histogram))


@dataclass(frozen=True)
class StepMeasure:
    """One step: its users and offered load, and what the window saw."""

    index: int
    users: int
    offered: float
    window_s: float
    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def throughput(self) -> float:
        """Requests (and WebSocket round trips) completed per second in the window."""
        return self.requests / self.window_s if self.window_s > 0 else 0.0

    @property
    def served(self) -> float:
        """Requests (round trips) that succeeded per second: what the instance really served (a
        refused request completes fast and says nothing of capacity)."""
        return (self.requests - self.failures) / self.window_s if self.window_s > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    def held(self, slo: SLO) -> bool:
        """The SLO held: some requests, p95 and error rate within it (no request is no proof)."""
        return (
            self.requests > 0
            and self.p95_ms is not None
            and self.p95_ms <= slo.p95_ms
            and self.error_rate <= slo.error_rate
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "throughput": round(self.throughput, 3),
            "served": round(self.served, 3),
            "error_rate": round(self.error_rate, 5),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepMeasure:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def parse_step_lines(text: str) -> list[dict[str, Any]]:
    """The step records in a log: lines holding `STEP_PREFIX` and a JSON object (anything before the
    prefix, such as a `kubectl logs --timestamps` stamp, is ignored), or bare JSON lines."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        _, found, rest = line.partition(STEP_PREFIX)
        body = rest if found else line
        if not body.strip().startswith("{"):
            continue
        try:
            record = json.loads(body)
        except ValueError:
            raise ValueError(f"line {number}: a step record that is not JSON: {body[:80]!r}") from None
        if not isinstance(record, dict) or not set(StepMeasure.__dataclass_fields__) <= set(record):
            raise ValueError(
                f"line {number}: not a step record (keys {sorted(StepMeasure.__dataclass_fields__)})"
            )
        records.append(record)
    return records


def measure(
    index: int, users: int, offered: float, window_s: float, before: Snapshot, after: Snapshot
) -> StepMeasure:
    histogram = {
        ms: n - before.histogram.get(ms, 0)
        for ms, n in after.histogram.items()
        if n - before.histogram.get(ms, 0) > 0
    }
    return StepMeasure(
        index=index,
        users=users,
        offered=offered,
        window_s=window_s,
        requests=after.requests - before.requests,
        failures=after.failures - before.failures,
        p50_ms=percentile(histogram, 50),
        p95_ms=percentile(histogram, 95),
        p99_ms=percentile(histogram, 99),
    )


@dataclass(frozen=True)
class Knee:
    """`knee`: the highest held step below the first confirmed break (None when the first step
    broke); `broken`: that break's first step (None when the SLO held everywhere); `isolated`:
    broken steps below the knee that the next step contradicted."""

    knee: StepMeasure | None
    broken: StepMeasure | None
    isolated: tuple[StepMeasure, ...] = ()

    @property
    def bracketed(self) -> bool:
        """Both sides of the knee were seen: a held step and a broken one above it."""
        return self.knee is not None and self.broken is not None


def find_knee(steps: Iterable[StepMeasure], slo: SLO, confirm: int = 2) -> Knee:
    """The knee of `steps` (any order): see the module docstring."""
    ordered = sorted(steps, key=lambda s: (s.offered, s.index))
    held = [s.held(slo) for s in ordered]
    first_break = None
    for i, ok in enumerate(held):
        if not ok and all(not h for h in held[i : i + confirm]):
            first_break = i
            break
    below = ordered if first_break is None else ordered[:first_break]
    good = [s for s, ok in zip(below, held, strict=False) if ok]
    isolated = tuple(s for s, ok in zip(below, held, strict=False) if not ok)
    return Knee(
        knee=good[-1] if good else None,
        broken=None if first_break is None else ordered[first_break],
        isolated=isolated,
    )


def confirmed_break(steps: Sequence[StepMeasure], slo: SLO, confirm: int = 2) -> bool:
    """The last `confirm` steps measured all broke: the pass can stop, higher steps add nothing."""
    return len(steps) >= confirm and all(not s.held(slo) for s in steps[-confirm:])


def grid(start: int, increment: int, steps: int) -> tuple[int, ...]:
    """Users per step of the coarse pass: start, start + increment, ..."""
    if start < 1 or increment < 1 or steps < 1:
        raise ValueError("start, increment and steps must be >= 1")
    return tuple(start + k * increment for k in range(steps))


def refine(good_users: int, bad_users: int, substeps: int = 4) -> tuple[int, ...]:
    """Users per step of the finer pass: the last good step again, then up to the first bad one
    (measured again too: a break seen twice is a break), about `substeps` steps; () when the coarse
    pass already resolved the knee to one user. The pass starts at the good step, not above it: a
    pass that started past saturation with an empty queue would hold for seconds it should not."""
    if bad_users - good_users <= 1:
        return ()
    delta = max(1, math.ceil((bad_users - good_users) / max(1, substeps)))
    return (good_users, *range(good_users + delta, bad_users, delta), bad_users)
