"""Bad data never scales a tier down, and nothing kills the loop (issue 11, part 4).

Each case reproduces a defect found in the loop: the inputs that, if believed, would remove
capacity (negative demand, a sample stamped in the future, a partial scrape, an empty or lost
state store, a failed save, a changed policy) and the ones that used to raise out of a pass. The
loop runs with fakes at its ports (tests/autoscaler/fakes.py) and the real SQLite store.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autoscaler.adapters.sqlite_store import SQLiteStateStore
from autoscaler.config import AutoscalerConfig
from autoscaler.ports import LoopState, StateStoreError
from autoscaler.service import EXIT_METRICS_UNAVAILABLE, EXIT_STATE_UNAVAILABLE, Autoscaler
from tests.autoscaler.fakes import FakeActuator, FakeClock, FakeSource, config, telemetry

CALM = {"web": 380.0, "video": 250.0}  # web needs about 8 x 50, video 2 x 200
# Passes long enough for every stabilization window to run out (swell's is 10 minutes).
LONG = 60


def _loop(
    tmp_path: Path,
    sizes: dict[str, int],
    *,
    cfg: AutoscalerConfig | None = None,
    store: Any = None,
    clock: FakeClock | None = None,
) -> tuple[Autoscaler, FakeSource, FakeActuator, FakeClock]:
    clock = clock or FakeClock()
    source = FakeSource(clock)
    actuator = FakeActuator(dict(sizes))
    tel, _ = telemetry()
    cfg = cfg or config(tmp_path)
    loop = Autoscaler(
        cfg,
        source=source,
        actuators=dict.fromkeys(cfg.tiers, actuator),
        store=store or SQLiteStateStore(tmp_path / "state.db"),
        telemetry=tel,
        clock=clock,
    )
    return loop, source, actuator, clock


def _passes(loop: Autoscaler, clock: FakeClock, n: int) -> list[dict[str, Any]]:
    """Run n passes 15 s apart; every decision made, in order."""
    decisions = []
    for _ in range(n):
        decisions += loop.run_once().decisions
        clock.advance(15)
    return decisions


def _web(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in decisions if d["tier"] == "web"]


def _negative(source: FakeSource) -> str:
    source.demand_by_tier = {"web": -50.0, "video": -1.0}
    return "negative"


def _future(source: FakeSource) -> str:
    source.demand_by_tier, source.age_s = {"web": 10.0, "video": 10.0}, -600.0  # 10 minutes ahead
    return "in the future"


def _partial(source: FakeSource) -> str:
    # One exporter of four timed out: the sum lost a quarter, its timestamp is fresh.
    source.demand_by_tier, source.targets = {"web": 20.0, "video": 20.0}, {"web": (3, 4), "video": (1, 2)}
    return "incomplete"


def _targets_unknown(source: FakeSource) -> str:
    source.demand_by_tier, source.targets = {"web": 20.0, "video": 20.0}, {}
    return "target count missing"


@pytest.mark.parametrize(
    ("bad_input", "targets_checked"),
    [(_negative, False), (_future, False), (_partial, True), (_targets_unknown, True)],
    ids=["negative-demand", "sample-in-the-future", "partial-scrape", "target-counts-missing"],
)
def test_bad_demand_holds_for_good_and_says_why(
    tmp_path: Path, bad_input: Callable[[FakeSource], str], targets_checked: bool
) -> None:
    """Believed, each of these inputs would take web from 8 to its minimum within the window."""
    extra: dict[str, Any] = (
        {
            "demand_targets": {
                "up": "tier:swell_demand_targets:up",
                "expected": "tier:swell_demand_targets:count",
            }
        }
        if targets_checked
        else {}
    )
    cfg = config(tmp_path, top=extra)
    loop, source, actuator, clock = _loop(tmp_path, {"web": 8, "video": 2}, cfg=cfg)
    source.demand_by_tier = dict(CALM)
    if targets_checked:
        source.targets = {"web": (4, 4), "video": (2, 2)}
    _passes(loop, clock, LONG)  # warm: a full window of history
    before = dict(actuator.sizes)
    why = bad_input(source)
    decisions = _passes(loop, clock, LONG)
    assert actuator.sizes == before
    for d in decisions:
        assert d["direction"] == "hold" and not d["fresh"], d
        assert why in d["reason"], d["reason"]
        assert "stale_data" in d["limited_by"]


def test_a_first_start_with_an_empty_store_never_scales_down_before_a_window_of_history(
    tmp_path: Path,
) -> None:
    """A fresh (or lost, or wiped) store: believing the first samples would halve web at once."""
    loop, source, actuator, clock = _loop(tmp_path, {"web": 16, "video": 4})
    source.demand_by_tier = {"web": 100.0, "video": 100.0}  # web needs 3, video 1
    first = _web(_passes(loop, clock, 39))  # 9 min 45 s: inside swell's 10-minute window
    assert actuator.sizes == {"web": 16, "video": 4}
    assert all(d["desired"] == 16 for d in first)
    assert "no history" in first[0]["reason"] and "state store was empty" in first[0]["reason"]
    assert "stabilization" in first[0]["limited_by"]
    later = _web(_passes(loop, clock, 4))
    assert later[-1]["desired"] < 16, "once a window of history exists, demand decides again"


def test_a_restart_on_a_lost_store_says_so_and_holds(tmp_path: Path) -> None:
    loop, source, actuator, clock = _loop(tmp_path, {"web": 8, "video": 2})
    source.demand_by_tier = dict(CALM)
    _passes(loop, clock, 4)
    held = actuator.sizes["web"]
    (tmp_path / "state.db").unlink()  # the volume was lost; a new process starts on an empty store
    for leftover in tmp_path.glob("state.db-*"):
        leftover.unlink()
    restarted, source2, _, _ = _loop(tmp_path, {}, clock=clock)
    restarted.actuators = loop.actuators
    source2.demand_by_tier = {"web": 50.0, "video": 50.0}
    web = _web(_passes(restarted, clock, 3))
    assert [d["desired"] for d in web] == [held] * 3
    assert "no history: the state store was empty" in web[0]["reason"]


class FlakyStore(SQLiteStateStore):
    """The real SQLite store, whose next `fail_saves` saves fail (a full disk, a 409 storm)."""

    fail_saves = 0

    def save_loop_state(self, state: LoopState) -> None:
        if self.fail_saves > 0:
            self.fail_saves -= 1
            raise StateStoreError(f"state store {self.path}: cannot save the loop state: disk I/O error")
        super().save_loop_state(state)


def test_a_failed_save_never_makes_the_next_pass_act_on_an_older_window(tmp_path: Path) -> None:
    """The surge pass's save fails: the next pass must still remember the surge it answered."""
    store = FlakyStore(tmp_path / "state.db")
    loop, source, actuator, clock = _loop(tmp_path, {"web": 4, "video": 2}, store=store)
    source.demand_by_tier = {"web": 150.0, "video": 250.0}
    _passes(loop, clock, LONG)
    source.demand_by_tier = {"web": 1200.0, "video": 250.0}  # a surge
    store.fail_saves = 100  # every save of this pass, and of the next ones, fails
    surge = loop.run_once()
    assert surge.exit_code == EXIT_STATE_UNAVAILABLE
    peak = actuator.sizes["web"]
    assert peak >= 16, "capacity is added even when the record cannot be saved"
    clock.advance(15)
    source.demand_by_tier = {"web": 150.0, "video": 250.0}  # back to calm right after
    for _ in range(4):
        dip = _web(loop.run_once().decisions)[0]
        clock.advance(15)
        assert dip["desired"] >= peak, dip["reason"]
    store.fail_saves = 0
    loop.run_once()
    saved = SQLiteStateStore(tmp_path / "state.db").load_loop_state()
    assert saved.last_desired["web"] >= peak, "the retried save wrote the state the loop acted on"


def test_a_scale_down_is_never_applied_without_its_record(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "state.db")
    loop, source, actuator, clock = _loop(tmp_path, {"web": 16, "video": 2}, store=store)
    source.demand_by_tier = {"web": 380.0, "video": 250.0}
    _passes(loop, clock, LONG)  # web comes down to its need, about 8-9
    settled = actuator.sizes["web"]
    source.demand_by_tier = {"web": 100.0, "video": 250.0}
    store.fail_saves = 10_000
    _passes(loop, clock, LONG)
    assert actuator.sizes["web"] == settled


def test_changing_a_tiers_policy_starts_its_history_again_without_raising(tmp_path: Path) -> None:
    loop, source, actuator, clock = _loop(tmp_path, {"web": 8, "video": 2})
    source.demand_by_tier = dict(CALM)
    _passes(loop, clock, 8)
    held = actuator.sizes["web"]
    changed = config(tmp_path, web={"policy": "keda"})
    restarted, source2, _, _ = _loop(tmp_path, {}, cfg=changed, clock=clock)
    restarted.actuators = loop.actuators
    source2.demand_by_tier = {"web": 100.0, "video": 250.0}
    web = _web(_passes(restarted, clock, 3))
    assert [d["desired"] for d in web] == [held] * 3
    assert "policy changed from swell to keda" in web[0]["reason"], web[0]["reason"]
    state = SQLiteStateStore(tmp_path / "state.db").load_loop_state()
    assert set(state.policy_state["web"]) <= {"recommendations"}, "keda's own state replaced swell's"


def test_unreadable_persisted_policy_state_starts_again_and_says_so(tmp_path: Path) -> None:
    loop, source, actuator, clock = _loop(tmp_path, {"web": 8, "video": 2})
    source.demand_by_tier = dict(CALM)
    _passes(loop, clock, 4)
    held = actuator.sizes["web"]
    store = SQLiteStateStore(tmp_path / "state.db")
    state = store.load_loop_state()
    state.policy_state["web"] = {"level": "not a number", "bogus": 1}
    store.save_loop_state(state)
    restarted, source2, _, _ = _loop(tmp_path, {}, clock=clock)
    restarted.actuators = loop.actuators
    source2.demand_by_tier = {"web": 50.0, "video": 250.0}
    web = _web(_passes(restarted, clock, 2))
    assert [d["desired"] for d in web] == [held] * 2
    assert "persisted state of policy swell is unreadable" in web[0]["reason"], web[0]["reason"]


class Crash(BaseException):
    """The process dying mid-actuation (not an error the loop could catch)."""


def test_the_decision_is_on_disk_before_the_actuator_is_called_and_survives_a_crash(
    tmp_path: Path,
) -> None:
    loop, source, actuator, _clock = _loop(tmp_path, {"web": 2, "video": 1})
    source.demand_by_tier = {"web": 300.0, "video": 100.0}
    seen: list[dict[str, Any]] = []

    def scale(tier: str, desired: int) -> None:
        on_disk = SQLiteStateStore(tmp_path / "state.db").load_loop_state()
        record = on_disk.recent_decisions[tier][-1]
        seen.append(record)
        assert record["desired"] == desired and not record["acted"]
        assert on_disk.last_desired[tier] == desired
        assert on_disk.policy_state[tier], "the policy state the decision implies is saved with it"
        raise Crash

    actuator.scale = scale  # type: ignore[method-assign]
    with pytest.raises(Crash):
        loop.run_once()
    assert len(seen) == 1
    after_crash = SQLiteStateStore(tmp_path / "state.db").load_loop_state()
    assert after_crash.recent_decisions[seen[0]["tier"]][-1]["desired"] == seen[0]["desired"]


@pytest.mark.parametrize(
    "crash",
    [KeyError("data"), TypeError("'NoneType' object is not subscriptable"), RuntimeError("bug")],
    ids=["key-error", "type-error", "runtime-error"],
)
def test_a_metrics_source_bug_holds_every_tier_instead_of_killing_the_pass(
    tmp_path: Path, crash: Exception
) -> None:
    loop, source, _actuator, clock = _loop(tmp_path, {"web": 8, "video": 2})
    source.demand_by_tier = dict(CALM)
    _passes(loop, clock, 4)
    source.crash = crash
    result = loop.run_once()
    assert result.exit_code == EXIT_METRICS_UNAVAILABLE
    assert {d["direction"] for d in result.decisions} == {"hold"}
    assert all("metrics unavailable" in d["reason"] for d in result.decisions)


def test_run_forever_survives_a_pass_that_raises(tmp_path: Path) -> None:
    """Whatever escapes a pass is logged and the loop goes on: a process that exits leaves every
    tier without an autoscaler until the kubelet or systemd restarts it."""
    loop, source, _actuator, clock = _loop(tmp_path, {"web": 8, "video": 2})
    source.demand_by_tier = dict(CALM)

    class NoWait(threading.Event):
        """Waits on the fake clock: the loop's waits take no real time."""

        def wait(self, timeout: float | None = None) -> bool:
            clock.advance(timeout or 0.0)
            return self.is_set()

    stop = NoWait()
    passes = {"n": 0}
    original = loop.run_once

    def flaky_pass() -> Any:
        passes["n"] += 1
        if passes["n"] == 2:
            raise ValueError("a bug in a pass")
        if passes["n"] >= 4:
            stop.set()
        return original()

    loop.run_once = flaky_pass  # type: ignore[method-assign]
    loop.run_forever(stop)
    assert passes["n"] == 4
    log = loop.telemetry._log.handlers[0].stream.getvalue()  # type: ignore[attr-defined]
    failed = [json.loads(line) for line in log.splitlines() if '"pass_failed"' in line]
    assert len(failed) == 1 and "a bug in a pass" in failed[0]["error"]
