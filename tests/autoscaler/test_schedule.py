"""Scheduled surges: a known event's floor rises one lead time before its start, holds, and ends on a
ramp; configured with cron and a time zone, or planned once with `swell surge --at`; listed by
`swell status`. The service runs with fakes at its ports and a fake clock (tests/autoscaler/fakes.py)."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from autoscaler.adapters.sqlite_store import SQLiteStateStore
from autoscaler.core.schedule import Schedule, ScheduleError, scheduled_floor, windows
from autoscaler.service import Autoscaler
from swell.cli import app
from tests.autoscaler.fakes import FakeActuator, FakeClock, FakeSource, config, telemetry

PARIS = ZoneInfo("Europe/Paris")
MONDAY = Schedule("monday", "web", "30 8 * * 1", "Europe/Paris", 3 * 3600, 24, "Monday peak")
START = datetime(2026, 12, 7, 8, 30, tzinfo=PARIS).timestamp()  # a Monday
LEAD, RAMP = 180.0, 1800.0
END = START + 3 * 3600


@pytest.mark.parametrize(
    ("at", "floor", "phase"),
    [
        (START - LEAD - 1, None, None),
        (START - LEAD, 24, "ahead of its start by the lead time"),
        (START, 24, "on"),
        (END - 1, 24, "on"),
        (END, 24, "ramping down"),
        (END + RAMP / 2, 12, "ramping down"),
        (END + RAMP - 1, 1, "ramping down"),
        (END + RAMP, None, None),
        (START + 86400, None, None),  # Tuesday
        (START + 7 * 86400 - LEAD, 24, "ahead of its start by the lead time"),  # next Monday
    ],
    ids=[
        "before",
        "rises",
        "starts",
        "last-second",
        "ends",
        "half-ramp",
        "ramp-end",
        "after",
        "tuesday",
        "next",
    ],
)
def test_the_floor_over_one_window(at: float, floor: int | None, phase: str | None) -> None:
    found = scheduled_floor([MONDAY], "web", at, LEAD, RAMP)
    assert (found and found.floor) == floor
    if found:
        assert (
            f"schedule monday (2026-12-{7 if at < START + 86400 else 14:02d} 08:30 CET, {phase}): Monday peak"
            in (found.reason)
        )
    assert scheduled_floor([MONDAY], "video", at, LEAD, RAMP) is None  # another tier's schedule


def test_local_time_holds_across_a_daylight_saving_change() -> None:
    # Europe/Paris moves to CEST on Sunday 28 March 2027: the Monday after is still 08:30 local.
    before = datetime(2027, 3, 20, tzinfo=PARIS).timestamp()
    starts = [
        datetime.fromtimestamp(w.starts_at, PARIS) for w in windows(MONDAY, before, LEAD, RAMP, 14 * 86400)
    ]
    assert [(s.day, s.hour, s.minute, s.utcoffset()) for s in starts] == [
        (22, 8, 30, timedelta(hours=1)),
        (29, 8, 30, timedelta(hours=2)),
    ]


def test_the_strongest_of_overlapping_schedules_wins() -> None:
    small = Schedule("lunch", "web", "0 8 * * *", "Europe/Paris", 6 * 3600, 10)
    assert scheduled_floor([small, MONDAY], "web", START, LEAD, RAMP).floor == 24  # type: ignore[union-attr]
    tuesday = START + 86400
    assert scheduled_floor([small, MONDAY], "web", tuesday, LEAD, RAMP).floor == 10  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cron": "61 8 * * 1"}, "is not a cron expression"),
        ({"cron": "every monday"}, "is not a cron expression"),
        ({"timezone": "Paris"}, "unknown time zone 'Paris'"),
        ({"duration_s": 0}, "duration_s must be above 0"),
        ({"duration_s": 8 * 86400}, "at most 604800"),
        ({"instances": 0}, "instances must be at least 1"),
    ],
)
def test_a_schedule_that_cannot_be_evaluated_is_refused(change: dict[str, object], message: str) -> None:
    fields = {**MONDAY.__dict__, **change}
    with pytest.raises(ScheduleError, match=message):
        Schedule(**fields)


def test_the_service_raises_the_floor_one_lead_time_early_and_ramps_down(tmp_path: Path) -> None:
    schedule = {
        "name": "monday",
        "tier": "web",
        "cron": "30 8 * * 1",
        "timezone": "Europe/Paris",
        "duration_s": 3600,
        "instances": 24,
        "reason": "Monday peak",
    }
    cfg = config(
        tmp_path, top={"schedules": [schedule], "schedule_ramp_down_s": 900}, web={"lead_time_s": 300}
    )
    clock = FakeClock(START - 300 - 15 * 20)  # 20 passes before the floor rises
    source = FakeSource(clock)
    source.demand_by_tier = {"web": 150.0, "video": 200.0}  # 3 web instances' worth, all along
    actuator = FakeActuator({"web": 4, "video": 2})
    loop = Autoscaler(
        cfg,
        source=source,
        actuators=dict.fromkeys(cfg.tiers, actuator),
        store=SQLiteStateStore(tmp_path / "state.db"),
        telemetry=telemetry()[0],
        clock=clock,
    )
    seen: list[tuple[float, int, str]] = []
    while clock.now < START + 3600 + 900 + 15 * 20:
        web = next(d for d in loop.run_once().decisions if d["tier"] == "web")
        seen.append((clock.now, actuator.sizes["web"], web["reason"]))
        clock.advance(15)
    before = [n for t, n, _ in seen if t < START - 300]
    assert max(before) < 24, "nothing is scheduled yet"
    rising = next((t, n, r) for t, n, r in seen if t >= START - 300)
    assert rising[1] == 24 and "schedule monday" in rising[2], "the floor rises one lead time early"
    assert all(n >= 24 for t, n, _ in seen if START - 300 <= t < START + 3600)
    ramp = [n for t, n, _ in seen if START + 3600 <= t <= START + 3600 + 900]
    drops = [a - b for a, b in itertools.pairwise(ramp)]
    # No cliff: 24 instances over 900 s at one pass every 15 s fall at most ceil(24 x 15 / 900) a pass.
    assert max(drops) <= 1 and ramp[-1] < 24
    assert seen[-1][1] < 24, "after the ramp the policy sizes the tier again"


def _cli_config(tmp_path: Path, work_dir: Path) -> Path:
    data = {
        "prometheus": {"url": "http://127.0.0.1:9", "timeout_s": 1},
        "state": {"kind": "sqlite", "path": str(tmp_path / "state.db")},
        "tiers": {
            "web": {
                "capacity_per_instance": 50,
                "min": 2,
                "max": 32,
                "lead_time_s": 240,
                "actuator": {"kind": "pulumi", "work_dir": str(work_dir), "stack": "dev"},
            }
        },
        "schedules": [
            {"name": "daily", "tier": "web", "cron": "0 9 * * *", "duration_s": 3600, "instances": 6}
        ],
    }
    path = tmp_path / "autoscaler.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_planned_surge_rises_one_lead_time_before_it_and_status_lists_it(
    tmp_path: Path, work_dir: Path
) -> None:
    """`swell surge --at` against the stand-in `pulumi` of the other CLI tests (its stack has 2 web)."""
    runner = CliRunner()
    cfg = _cli_config(tmp_path, work_dir)
    at = (datetime.now(PARIS) + timedelta(days=2)).replace(microsecond=0)
    added = runner.invoke(
        app,
        ["surge", "-c", str(cfg), "--tier", "web", "--factor", "3", "--for", "3h", "--at", at.isoformat(),
         "--reason", "launch", "--json"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    override = json.loads(added.stdout)
    assert override["floor"] == 6
    assert override["starts_at"] == pytest.approx(at.timestamp() - 240)
    assert override["expires_at"] == pytest.approx(at.timestamp() + 3 * 3600)
    listed = runner.invoke(app, ["surge", "-c", str(cfg), "--list"], env={"COLUMNS": "250"})
    assert "planned, rises" in listed.output
    rows = json.loads(runner.invoke(app, ["status", "-c", str(cfg), "--json"]).stdout)
    scheduled = rows[0]["scheduled"]
    assert [w["what"] for w in scheduled].count("override " + override["id"] + ": launch") == 1
    assert sum(w["what"] == "schedule daily" for w in scheduled) in (7, 8)  # daily, over 7 days
    assert scheduled == sorted(scheduled, key=lambda w: w["rises_at"])
    table = runner.invoke(app, ["status", "-c", str(cfg)], env={"COLUMNS": "250"})
    assert "scheduled surges, next 7 days" in table.output and "launch" in table.output


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("next monday", "is not an ISO 8601 time"),
        ("2030-01-01T08:30", "has no UTC offset"),
        ("2020-01-01T08:30+01:00", "must be in the future"),
        ("2099-01-01T08:30+01:00", "at most 366d ahead"),
    ],
)
def test_a_planned_surge_needs_a_future_time_with_its_offset(
    tmp_path: Path, work_dir: Path, at: str, message: str
) -> None:
    runner = CliRunner()
    cfg = _cli_config(tmp_path, work_dir)
    result = runner.invoke(
        app, ["surge", "-c", str(cfg), "--tier", "web", "--factor", "2", "--for", "1h", "--at", at]
    )
    assert result.exit_code == 2 and message in " ".join(result.output.split())
