"""The loop with actuators that work in the background and drain: a scale-down retires instances
(billing in mind) and removes them only when their sessions end or their drain times out; a
scale-up takes retiring instances back first; drains survive a restart (SQLite and ConfigMap
stores); a pass never waits for `pulumi up` (the real Pulumi actuator against the stand-in, slowed
down); `swell status` shows the update in flight and the drains."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoscaler.adapters.pulumi import PulumiActuator, PulumiSettings
from autoscaler.adapters.sqlite_store import SQLiteStateStore
from autoscaler.ports import StateStore
from autoscaler.service import Autoscaler
from swell.cli import app
from tests.autoscaler.fakes import FakeClock, FakeFleet, FakeSource, config, telemetry


def _loop(tmp_path: Path, fleet: FakeFleet, store: StateStore | None = None, clock: FakeClock | None = None):
    clock = clock or FakeClock()
    source = FakeSource(clock)
    tel, log = telemetry()
    cfg = config(tmp_path, web={"drain_timeout_s": 300, "max": 16}, video={"drain_timeout_s": 300})
    loop = Autoscaler(
        cfg,
        source=source,
        actuators=dict.fromkeys(cfg.tiers, fleet),
        store=store or SQLiteStateStore(cfg.state.path),  # type: ignore[union-attr]
        telemetry=tel,
        clock=clock,
    )
    return loop, source, clock, log


def _calm_then(loop: Autoscaler, source: FakeSource, clock: FakeClock, web: float, passes: int = 50) -> None:
    for _ in range(passes):
        source.demand_by_tier = {"web": web, "video": 100.0}
        loop.run_once()
        clock.advance(15)


def test_a_scale_down_drains_and_removes_exactly_the_retirees_once_empty(tmp_path: Path) -> None:
    fleet = FakeFleet({"web": [0, 1, 2, 3, 4, 5], "video": [0]}, open_sessions={})
    loop, source, clock, log = _loop(tmp_path, fleet)
    fleet.open_sessions = dict.fromkeys(range(6), 5)  # every instance busy: nothing leaves
    _calm_then(loop, source, clock, web=100.0)  # demand for 2-3 instances, after the window
    retiring = fleet.retiring["web"]
    assert retiring, "a scale-down marks instances retiring"
    assert len(fleet.serving["web"]) + len(retiring) == 6, "none removed while sessions are open"
    state = loop.store.load_loop_state()
    assert {int(i) for i in state.drains["web"]} == set(retiring), "the drains are in the store"
    for i in retiring:
        fleet.open_sessions[i] = 0
    loop.run_once()
    assert fleet.retiring["web"] == [] and sorted(fleet.serving["web"]) == sorted(
        set(range(6)) - set(retiring)
    ), "exactly the drained ones are removed"
    assert '"event": "drain"' in log.getvalue()


def test_a_drain_ends_at_its_timeout_and_counts_the_sessions_it_cut(tmp_path: Path) -> None:
    fleet = FakeFleet({"web": [0, 1, 2, 3, 4, 5], "video": [0]}, open_sessions=dict.fromkeys(range(6), 3))
    loop, source, clock, log = _loop(tmp_path, fleet)
    _calm_then(loop, source, clock, web=100.0)
    first = dict(fleet.retiring)["web"]
    assert first
    clock.advance(301)
    loop.run_once()
    assert not set(first) & set(fleet.retiring["web"]), "the deadline passed: removed"
    assert '"event": "drain_timeout"' in log.getvalue()


def test_a_scale_up_during_a_drain_takes_the_retirees_back_first(tmp_path: Path) -> None:
    fleet = FakeFleet({"web": [0, 1, 2, 3, 4, 5], "video": [0]}, open_sessions=dict.fromkeys(range(6), 3))
    loop, source, clock, _ = _loop(tmp_path, fleet)
    _calm_then(loop, source, clock, web=100.0)
    retiring = set(fleet.retiring["web"])
    assert retiring
    source.demand_by_tier = {"web": 600.0, "video": 100.0}
    loop.run_once()
    assert retiring <= set(fleet.serving["web"]), "taken back before anything new"
    tier, serving, _ = fleet.applied[-1]
    assert tier == "web" and len(serving) > 6 - len(retiring)


def test_drains_resume_after_a_restart(tmp_path: Path) -> None:
    fleet = FakeFleet({"web": [0, 1, 2, 3, 4, 5], "video": [0]}, open_sessions=dict.fromkeys(range(6), 3))
    loop, source, clock, _ = _loop(tmp_path, fleet)
    _calm_then(loop, source, clock, web=100.0)
    before = loop.store.load_loop_state().drains["web"]
    assert before
    # A new process: same store, same fleet, a later clock.
    again, source2, _, _ = _loop(tmp_path, fleet, clock=clock)
    source2.demand_by_tier = {"web": 100.0, "video": 100.0}
    again.run_once()
    after = again.store.load_loop_state().drains["web"]
    assert {i: d["deadline"] for i, d in after.items()} == {
        i: d["deadline"] for i, d in before.items() if i in after
    }, "the deadlines survive the restart"


def test_a_pass_never_waits_for_pulumi_up(
    tmp_path: Path, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scale-up of both tiers while the stand-in's `up` takes 8 s: each pass returns at once,
    the update covers both tiers in one `up`, and `swell status` shows it in flight."""
    monkeypatch.setenv("SWELL_STANDIN_UP_DELAY_S", "8")
    clock = FakeClock(time.time())
    source = FakeSource(clock)
    tel, _ = telemetry()
    cfg = config(
        tmp_path,
        web={"actuator": {"kind": "pulumi", "stack": "dev", "work_dir": str(work_dir)}, "max": 32},
        video={"actuator": {"kind": "pulumi", "stack": "dev", "work_dir": str(work_dir)}, "max": 8},
    )
    actuator = PulumiActuator(PulumiSettings(work_dir=work_dir, stack="dev", cancel_grace_s=2), clock=clock)
    loop = Autoscaler(
        cfg, source, dict.fromkeys(cfg.tiers, actuator), SQLiteStateStore(tmp_path / "state.db"), tel, clock
    )
    try:
        actuator.capacity("web")  # the first read of the stack, at start-up
        source.demand_by_tier = {"web": 300.0, "video": 800.0}
        durations = []
        for _ in range(3):
            started = time.monotonic()
            loop.run_once()
            durations.append(time.monotonic() - started)
            clock.advance(15)
        assert max(durations) < 1.0, durations
        status = json.loads(
            CliRunner().invoke(app, ["status", "-c", str(_write(tmp_path, cfg)), "--json"]).stdout
        )
        web = next(r for r in status if r["tier"] == "web")
        assert web["update"]["state"] == "running" and set(web["update"]["targets"]) == {"web", "video"}
        assert web["pending"] > 0
        assert actuator.wait_idle(60)
        calls = (work_dir / ".pulumi-standin" / "calls.jsonl").read_text().splitlines()
        messages = [c[c.index("--message") + 1] for c in map(json.loads, calls) if "up" in c]
        assert "video ->" in messages[0] and "web ->" in messages[0], "one update covers both tiers"
    finally:
        actuator.close()


def _write(tmp_path: Path, cfg: object) -> Path:
    import yaml

    path = tmp_path / "autoscaler.yaml"
    path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json(exclude_none=True))))  # type: ignore[attr-defined]
    return path
