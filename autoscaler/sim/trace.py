"""Demand trace files: CSV with header `timestamp,demand`.

`timestamp` is ISO-8601 (a trailing Z or an offset; naive means UTC) or unix seconds; `demand` is
offered load per row interval, or empty for a gap (a missing sample, left out of the metrics).
Rows must be strictly increasing in time. Every error names the line and what was expected.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message names the file and line."""


@dataclass(frozen=True)
class Trace:
    name: str
    t: np.ndarray  # unix seconds, strictly increasing
    demand: np.ndarray  # NaN marks a gap

    def __len__(self) -> int:
        return len(self.t)

    def median_demand(self) -> float:
        valid = self.demand[~np.isnan(self.demand)]
        return float(np.median(valid)) if len(valid) else 0.0


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def read_trace(path: Path) -> Trace:
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TraceError(f"{where}: cannot read: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TraceError(
            f"{where}: line {line}: not UTF-8 text (byte {data[exc.start]:#04x}); expected a UTF-8 CSV"
        ) from None
    handle = io.StringIO(text, newline="")
    times: list[float] = []
    values: list[float] = []
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{where}: line 1: empty file; expected the header 'timestamp,demand'")
        if [h.strip().lower() for h in header] != ["timestamp", "demand"]:
            raise TraceError(
                f"{where}: line 1: expected the header 'timestamp,demand', got {','.join(header)!r}"
            )
        last = -math.inf
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 2:
                raise TraceError(
                    f"{where}: line {line}: expected 2 fields 'timestamp,demand', got {len(row)}"
                )
            stamp_text, demand_text = row[0].strip(), row[1].strip()
            try:
                stamp = _parse_time(stamp_text)
            except ValueError:
                raise TraceError(
                    f"{where}: line {line}: timestamp {stamp_text!r} is neither ISO-8601 nor unix seconds"
                ) from None
            if not math.isfinite(stamp):
                raise TraceError(f"{where}: line {line}: timestamp {stamp_text!r} is not finite")
            if stamp <= last:
                what = "duplicate" if stamp == last else "out of order (timestamps must increase)"
                raise TraceError(f"{where}: line {line}: timestamp {stamp_text!r} is {what}")
            last = stamp
            if demand_text == "":
                value = math.nan
            else:
                try:
                    value = float(demand_text)
                except ValueError:
                    raise TraceError(
                        f"{where}: line {line}: demand {demand_text!r} is not a number (empty marks a gap)"
                    ) from None
                if math.isnan(value) or math.isinf(value) or value < 0:
                    raise TraceError(f"{where}: line {line}: demand {demand_text!r} must be a number >= 0")
            times.append(stamp)
            values.append(value)
    if not times:
        raise TraceError(f"{where}: line 2: no data rows after the header")
    return Trace(path.name, np.asarray(times, dtype=float), np.asarray(values, dtype=float))


def write_trace(path: Path, t: np.ndarray, demand: np.ndarray) -> None:
    """ISO-8601 UTC timestamps, demand with two decimals, empty for NaN."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as out:
        out.write("timestamp,demand\n")
        for stamp, value in zip(t.tolist(), demand.tolist(), strict=True):
            iso = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.write(f"{iso},{'' if math.isnan(value) else f'{value:.2f}'}\n")
    tmp.replace(path)  # a reader never sees half a file
