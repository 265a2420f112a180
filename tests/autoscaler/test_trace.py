"""Trace files: what replays, and every way a file can be wrong, named by line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from autoscaler.sim.generate import generate
from autoscaler.sim.trace import TraceError, read_trace, write_trace


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


def test_iso_and_unix_timestamps_and_gaps_are_read(tmp_path: Path) -> None:
    trace = read_trace(
        write(
            tmp_path, "timestamp,demand\n2026-01-01T00:00:00Z,5\n1767225660,\n2026-01-01T00:02:00+00:00,7.5\n"
        )
    )
    assert trace.t.tolist() == [1767225600.0, 1767225660.0, 1767225720.0]
    assert trace.demand[0] == 5 and math.isnan(trace.demand[1]) and trace.demand[2] == 7.5


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "header"),
        ("time,value\n0,1\n", 1, "header"),
        ("timestamp,demand\n", 2, "no data"),
        ("timestamp,demand\n0,1\n60,-3\n", 3, ">= 0"),
        ("timestamp,demand\n0,1\n60,lots\n", 3, "not a number"),
        ("timestamp,demand\n60,1\n0,1\n", 3, "out of order"),
        ("timestamp,demand\n0,1\n0,2\n", 3, "duplicate"),
        ("timestamp,demand\nyesterday,1\n", 2, "ISO-8601"),
        ("timestamp,demand\n0,1,2\n", 2, "2 fields"),
        ("timestamp,demand\n0,inf\n", 2, ">= 0"),
    ],
    ids=[
        "empty",
        "no-header",
        "no-rows",
        "negative",
        "non-numeric",
        "unsorted",
        "duplicate",
        "bad-time",
        "extra-field",
        "infinite",
    ],
)
def test_bad_traces_are_refused_naming_the_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    with pytest.raises(TraceError) as info:
        read_trace(write(tmp_path, text))
    assert f"line {line}:" in str(info.value)
    assert words in str(info.value)


def test_generated_traces_round_trip_through_a_file(tmp_path: Path) -> None:
    t, d = generate("daily", days=1, noise=0.05, seed=3)
    write_trace(tmp_path / "d.csv", t, d)
    back = read_trace(tmp_path / "d.csv")
    assert np.array_equal(back.t, t) and np.allclose(back.demand, d)


def test_daily_curve_peaks_4_to_5_times_its_trough_on_weekdays() -> None:
    _, d = generate("daily", days=2, noise=0.0, seed=1)  # 2026-01-01 and 02: weekdays
    assert 4.0 <= d.max() / d.min() <= 5.0


def test_surge400_grows_x5_within_a_day_and_stays() -> None:
    _, d = generate("surge400", days=4, noise=0.0, seed=1)
    day = 1440
    # Same hour on day 1 and day 4 (both weekdays' shape, day 4 is a Sunday at 70%).
    assert 4.5 <= d[3 * day + 840] / d[840] / 0.7 <= 5.1
    centre = int(1.5 * day)
    assert d[centre + day // 2] / d[centre - day // 2] > 3.0  # most of it within one day


def test_spike_rises_x4_within_ten_minutes() -> None:
    _, d = generate("spike", days=1, noise=0.0, seed=7)
    ratios = d[10:] / d[:-10]
    assert 3.5 <= ratios.max() <= 4.5


def test_same_seed_same_trace_other_seed_other_noise() -> None:
    a = generate("daily", days=1, noise=0.1, seed=1)[1]
    assert np.array_equal(a, generate("daily", days=1, noise=0.1, seed=1)[1])
    assert not np.array_equal(a, generate("daily", days=1, noise=0.1, seed=2)[1])


def test_bursty_counts_are_whole_noisier_than_poisson_and_reproducible() -> None:
    _, d = generate("bursty", days=2, noise=0.25, seed=5)
    assert np.array_equal(d, np.round(d)) and (d >= 0).all()
    # Around a one-hour mean, the spread is well above Poisson's (variance = mean).
    hourly = d[: len(d) // 60 * 60].reshape(-1, 60)
    dispersion = (hourly.var(axis=1) / hourly.mean(axis=1)).mean()
    assert dispersion > 2.0
    assert np.array_equal(d, generate("bursty", days=2, noise=0.25, seed=5)[1])
