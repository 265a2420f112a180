"""Load shapes: `tick()` follows the nominal curve at the configured speed and base users, with
`get_run_time` patched (no Locust runner needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.options import DEFAULT_SPEED, DrillOptions
from loadtests.shapes import SHAPES, Daily, Flash, Spike, Step, Surge400, configured


def tick_at(shape_cls: type, run_time: float, monkeypatch: pytest.MonkeyPatch) -> tuple[int, float] | None:
    shape = shape_cls()
    monkeypatch.setattr(shape, "get_run_time", lambda: run_time)
    result: tuple[int, float] | None = shape.tick()
    return result


@pytest.mark.parametrize(
    ("shape", "speed", "base", "run_time", "users"),
    [
        (Surge400, 20, 30, 0.0, 30),  # starts at base
        (Surge400, 20, 30, 29.0, 30),  # still at base before nominal minute 10
        (Surge400, 20, 30, 90.0, 90),  # halfway up the rise: x3
        (Surge400, 20, 30, 150.0, 150),  # x5 at nominal minute 50
        (Surge400, 20, 30, 220.0, 150),  # holding
        (Surge400, 1, 10, 3000.0, 50),  # uncompressed: x5 after 50 minutes
        (Spike, 1, 10, 300.0, 10),
        (Spike, 1, 10, 900.0, 40),  # x4 within 10 minutes, as the benchmark's spike
        (Spike, 1, 10, 600.0, 25),
        (Flash, 1, 10, 360.0, 40),  # x4 within a minute
        (Daily, 360, 20, 0.0, 20),  # night
        (Daily, 360, 20, 9 * 3600 / 360, 90),  # morning peak x4.5
        (Step, 1, 10, 301.0, 20),  # second step
    ],
    ids=[
        "surge-start",
        "surge-before-rise",
        "surge-halfway",
        "surge-x5",
        "surge-holds",
        "surge-uncompressed",
        "spike-before",
        "spike-x4-within-10-minutes",
        "spike-midway",
        "flash-x4-within-a-minute",
        "daily-night",
        "daily-peak",
        "step-two",
    ],
)
def test_tick_follows_the_curve(
    shape: type, speed: float, base: int, run_time: float, users: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = tick_at(configured(shape, speed=speed, base_users=base), run_time, monkeypatch)
    assert result is not None
    assert result[0] == users
    assert result[1] > 0


@pytest.mark.parametrize("name", sorted(SHAPES), ids=sorted(SHAPES))
def test_every_shape_stops_after_its_last_point(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shape = configured(SHAPES[name], speed=10, base_users=5)
    assert tick_at(shape, shape.duration_s() - 0.5, monkeypatch) is not None
    assert tick_at(shape, shape.duration_s() + 0.5, monkeypatch) is None


@pytest.mark.parametrize(
    ("speed", "base", "message"),
    [(0, 10, "speed"), (-1, 10, "speed"), (1, 0, "base_users")],
    ids=["zero-speed", "negative-speed", "no-users"],
)
def test_bad_settings_are_refused(speed: float, base: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        configured(Surge400, speed=speed, base_users=base)


@pytest.mark.parametrize("name", sorted(DEFAULT_SPEED), ids=sorted(DEFAULT_SPEED))
def test_the_drill_runs_each_profile_as_long_as_its_shape(name: str, tmp_path: Path) -> None:
    # The drill never imports locust: it reads the length from the curve the shape runs.
    options = DrillOptions(out=tmp_path, profile=name)
    shape = configured(SHAPES[name], speed=options.effective_speed, base_users=options.base_users)
    assert options.load_s == pytest.approx(shape.duration_s())
