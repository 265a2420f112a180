"""The inputs of `swell plan`, checked: every problem raises `PlanInputError` naming the option
(`--calibration`, `--peak`, `--factor`, ...) and what was expected; the command exits 2 on it.

- calibration files: the JSON `swell calibrate` writes (schema `swell.calibration/1`), one per tier;
- peaks: `--peak TIER=VALUE`, VALUE a number (today's peak, in the tier's unit), a CSV trace
  (`timestamp,demand`, autoscaler/sim/trace.py), or `query:PROMQL` evaluated over `--range` on
  `--prometheus` (a range query; exactly one series) and replayed as a trace;
- factors: `--factor 2,4`: growth factors > 0 (x1, today, is always planned too).
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.sim.trace import Trace, TraceError, read_trace
from loadtests.knee import CALIBRATION_SCHEMA, TIERS, UNITS

# Prometheus answers at most 11,000 points per series in a range query.
MAX_POINTS = 11_000


class PlanInputError(ValueError):
    """A bad input; the message names the option."""


@dataclass(frozen=True)
class Calibration:
    """One tier's capacity per instance, as `swell calibrate` measured it."""

    tier: str
    capacity_per_instance: float
    unit: str
    path: Path
    flavor: str | None
    target: str
    measured_at: str | None
    uncertainty: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "capacity_per_instance": self.capacity_per_instance,
            "unit": self.unit,
            "file": str(self.path),
            "flavor": self.flavor,
            "target": self.target,
            "measured_at": self.measured_at,
            "uncertainty": list(self.uncertainty) if self.uncertainty else None,
        }


def load_calibration(path: Path) -> Calibration:
    where = f"--calibration {path}"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise PlanInputError(f"{where}: cannot read: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlanInputError(
            f"{where}: not JSON ({exc}); expected the file `swell calibrate` wrote"
        ) from None
    if not isinstance(data, dict) or data.get("schema") != CALIBRATION_SCHEMA:
        raise PlanInputError(f'{where}: not a calibration (expected "schema": "{CALIBRATION_SCHEMA}")')
    tier = data.get("tier")
    if tier not in TIERS:
        raise PlanInputError(f"{where}: tier {tier!r}: expected one of {', '.join(TIERS)}")
    cap = data.get("capacity_per_instance")
    if cap is None:
        raise PlanInputError(
            f"{where}: capacity_per_instance is null: that calibration found no knee "
            "(see its warnings); calibrate again"
        )
    if isinstance(cap, bool) or not isinstance(cap, int | float) or not (math.isfinite(cap) and cap > 0):
        raise PlanInputError(f"{where}: capacity_per_instance {cap!r}: expected a number > 0")
    unit = data.get("unit")
    if unit != UNITS[tier]:
        raise PlanInputError(f"{where}: unit {unit!r}: {tier} is measured in {UNITS[tier]}")
    found = data.get("conditions")
    conditions: dict[str, Any] = found if isinstance(found, dict) else {}
    unc = data.get("uncertainty")
    uncertainty = None
    if (
        isinstance(unc, dict)
        and isinstance(unc.get("low"), int | float)
        and isinstance(unc.get("high"), int | float)
    ):
        uncertainty = (float(unc["low"]), float(unc["high"]))
    flavor = conditions.get("flavor")
    return Calibration(
        tier=tier,
        capacity_per_instance=float(cap),
        unit=unit,
        path=path,
        flavor=flavor if isinstance(flavor, str) else None,
        target=str(conditions.get("target", "unknown")),
        measured_at=conditions.get("started_at"),
        uncertainty=uncertainty,
    )


def load_calibrations(paths: list[Path]) -> dict[str, Calibration]:
    """One calibration per tier; a directory stands for the `<tier>.json` files in it."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = [path / f"{t}.json" for t in TIERS if (path / f"{t}.json").is_file()]
            if not found:
                raise PlanInputError(f"--calibration {path}: no web.json, chat.json or video.json in it")
            files += found
        else:
            files.append(path)
    out: dict[str, Calibration] = {}
    for path in files:
        cal = load_calibration(path)
        if cal.tier in out:
            raise PlanInputError(
                f"--calibration {path}: a second calibration of {cal.tier} (first: {out[cal.tier].path})"
            )
        out[cal.tier] = cal
    return out


@dataclass(frozen=True)
class Peak:
    """Today's peak demand of a tier; with a trace, the demand over time (replayed by the simulator)."""

    tier: str
    kind: str  # number | trace | query
    source: str
    value: float
    trace: Trace | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "source": self.source, "peak": round(self.value, 3)}
        if self.trace is not None:
            out["samples"] = len(self.trace)
            out["span_h"] = round(trace_hours(self.trace), 2)
        return out


def trace_hours(trace: Trace) -> float:
    step = float(np.median(np.diff(trace.t))) if len(trace) > 1 else 60.0
    return (float(trace.t[-1]) - float(trace.t[0]) + step) / 3600.0


DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str, option: str) -> float:
    m = DURATION.match(text.strip())
    if not m or float(m[1]) <= 0:
        raise PlanInputError(f"{option} {text!r}: expected a duration like 30s, 15m, 6h, 7d or 2w")
    return float(m[1]) * UNIT_S[m[2]]


@dataclass(frozen=True)
class PrometheusRange:
    url: str | None
    range_s: float
    step_s: float
    end: float | None = None  # unix seconds; None: now


def query_range(promql: str, prom: PrometheusRange, now: float) -> Trace:
    """`promql` over the range, as a trace (one series required)."""
    option = f"--peak query:{promql}"
    if not prom.url:
        raise PlanInputError(f"{option}: give --prometheus URL to evaluate it")
    end = prom.end if prom.end is not None else now
    points = prom.range_s / prom.step_s
    if points > MAX_POINTS:
        raise PlanInputError(
            f"--range/--step: {points:,.0f} points per series, more than Prometheus's {MAX_POINTS:,}; "
            "use a longer --step"
        )
    params = urllib.parse.urlencode(
        {
            "query": promql,
            "start": f"{end - prom.range_s:.3f}",
            "end": f"{end:.3f}",
            "step": f"{prom.step_s:g}",
        }
    )
    url = f"{prom.url.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200]
        raise PlanInputError(f"{option}: Prometheus refused it (HTTP {exc.code}): {detail}") from None
    except (OSError, ValueError) as exc:
        raise PlanInputError(f"--prometheus {prom.url}: cannot query: {exc}") from None
    result = body.get("data", {}).get("result", []) if isinstance(body, dict) else []
    if len(result) != 1:
        raise PlanInputError(
            f"{option}: expected exactly one series, got {len(result)}; aggregate it "
            '(e.g. sum(...) or a tier:*{tier="web"} recording rule)'
        )
    values = result[0].get("values", [])
    t = np.asarray([float(v[0]) for v in values], dtype=float)
    demand = np.asarray([float(v[1]) for v in values], dtype=float)
    demand[~np.isfinite(demand)] = np.nan
    if not len(t) or np.all(np.isnan(demand)):
        raise PlanInputError(f"{option}: no samples in the last {prom.range_s / 86400:g} days")
    if np.nanmin(demand) < 0:
        raise PlanInputError(f"{option}: negative demand in the series; expected offered load >= 0")
    return Trace(f"query {promql}", t, demand)


def parse_peak(text: str, prom: PrometheusRange, now: float) -> Peak:
    tier, sep, value = text.partition("=")
    tier = tier.strip()
    if not sep or not value.strip():
        raise PlanInputError(f"--peak {text!r}: expected TIER=NUMBER, TIER=TRACE.csv or TIER=query:PROMQL")
    if tier not in TIERS:
        raise PlanInputError(f"--peak {text!r}: unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
    value = value.strip()
    if value.startswith("query:"):
        trace = query_range(value.removeprefix("query:"), prom, now)
        kind, source = "query", value.removeprefix("query:")
    else:
        try:
            number = float(value)
        except ValueError:
            path = Path(value)
            if not path.is_file():
                raise PlanInputError(
                    f"--peak {text!r}: {value!r} is neither a number nor a trace file (CSV timestamp,demand) "
                    "nor query:PROMQL"
                ) from None
            try:
                trace = read_trace(path)
            except TraceError as exc:
                raise PlanInputError(f"--peak {tier}=...: {exc}") from None
            kind, source = "trace", str(path)
        else:
            if not (math.isfinite(number) and number > 0):
                raise PlanInputError(f"--peak {text!r}: today's peak must be a number > 0")
            return Peak(tier, "number", value, number)
    valid = trace.demand[~np.isnan(trace.demand)]
    peak = float(valid.max()) if len(valid) else 0.0
    if not peak > 0:
        raise PlanInputError(f"--peak {text!r}: the demand never rises above 0; nothing to plan")
    return Peak(tier, kind, source, peak, trace)


def parse_peaks(texts: list[str], prom: PrometheusRange, now: float) -> dict[str, Peak]:
    if not texts:
        raise PlanInputError("--peak: give today's peak of at least one tier, e.g. --peak web=420")
    out: dict[str, Peak] = {}
    for text in texts:
        peak = parse_peak(text, prom, now)
        if peak.tier in out:
            raise PlanInputError(f"--peak {text!r}: {peak.tier} is given twice")
        out[peak.tier] = peak
    return out


def parse_factors(text: str) -> tuple[float, ...]:
    """`2,4` -> (1, 2, 4): x1 (today) always comes first."""
    values: list[float] = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part.removeprefix("x"))  # x4 reads as 4
        except ValueError:
            raise PlanInputError(f"--factor {text!r}: {part!r} is not a number; expected e.g. 2,4") from None
        if not (math.isfinite(value) and 0 < value <= 100):
            raise PlanInputError(f"--factor {text!r}: {part!r}: expected a growth factor > 0 and <= 100")
        values.append(value)
    return tuple(sorted({1.0, *values}))


def parse_regions(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if text is None:
        return default
    regions = tuple(r.strip().upper() for r in text.split(",") if r.strip())
    if not regions or any(not re.match(r"^[A-Z][A-Z0-9-]{1,31}$", r) for r in regions):
        raise PlanInputError(f"--regions {text!r}: expected OpenStack region names like GRA11,SBG5,DE1")
    return regions
