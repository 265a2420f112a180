"""The autoscaler loop with fakes at its ports (demand, actuator, clock, elector) and the real SQLite
store: surges are met with x2 and x4, bad inputs hold, failures are retried, state survives a
restart, only the leader acts, and no secret reaches the log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoscaler.adapters.sqlite_store import SQLiteStateStore
from autoscaler.ports import Override
from autoscaler.service import (
    EXIT_ACTUATION_FAILED,
    EXIT_METRICS_UNAVAILABLE,
    EXIT_OK,
    Autoscaler,
)
from tests.autoscaler.fakes import FakeActuator, FakeClock, FakeElector, FakeSource, config, telemetry


def _loop(
    tmp_path: Path, sizes: dict[str, int], **kw: object
) -> tuple[Autoscaler, FakeSource, FakeActuator, FakeClock]:
    clock = FakeClock()
    source = FakeSource(clock)
    actuator = FakeActuator(dict(sizes))
    tel, _ = telemetry()
    cfg = config(tmp_path)
    loop = Autoscaler(
        cfg,
        source=source,
        actuators=dict.fromkeys(cfg.tiers, actuator),
        store=SQLiteStateStore(cfg.state.path),  # type: ignore[union-attr]
        telemetry=tel,
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )
    return loop, source, actuator, clock


def _steady(
    loop: Autoscaler, source: FakeSource, clock: FakeClock, demand: dict[str, float], passes: int
) -> None:
    source.demand_by_tier = dict(demand)
    for _ in range(passes):
        loop.run_once()
        clock.advance(15)


def _by_tier(result: object) -> dict[str, dict]:
    return {d["tier"]: d for d in result.decisions}  # type: ignore[attr-defined]


def test_a_surge_doubles_then_quadruples_the_tier(tmp_path: Path) -> None:
    loop, source, actuator, clock = _loop(tmp_path, {"web": 4, "video": 2})
    _steady(loop, source, clock, {"web": 150.0, "video": 250.0}, passes=40)  # 10 min of calm
    calm = actuator.sizes["web"]
    source.demand_by_tier = {"web": 300.0, "video": 250.0}  # x2
    doubled = _by_tier(loop.run_once())["web"]
    assert doubled["direction"] == "up" and doubled["desired"] >= 2 * calm
    clock.advance(15)
    source.demand_by_tier = {"web": 600.0, "video": 250.0}  # x4 of calm
    quadrupled = _by_tier(loop.run_once())["web"]
    # x4 of what the calm demand needs (the calm count itself also carries volatility headroom).
    assert quadrupled["desired"] >= 4 * (150 // 50) and quadrupled["desired"] > 3 * calm, quadrupled["reason"]
    assert quadrupled["desired"] * 50 >= 600, "capacity covers the offered demand"
    assert quadrupled["desired"] <= 4 * doubled["desired"], "never more than x4 in one decision"
    assert actuator.sizes["web"] == quadrupled["desired"]


@pytest.mark.parametrize(
    ("situation", "expected_reason"),
    [
        ("prometheus-down", "metrics unavailable"),
        ("nan", "missing"),
        ("stale", "old"),
        ("tier-absent", "missing"),
    ],
    ids=lambda v: v,
)
def test_bad_inputs_hold_and_never_scale_down(tmp_path: Path, situation: str, expected_reason: str) -> None:
    loop, source, actuator, clock = _loop(tmp_path, {"web": 8, "video": 2})
    _steady(loop, source, clock, {"web": 380.0, "video": 250.0}, passes=4)
    before = dict(actuator.sizes)
    calls = len(actuator.calls)
    # Inputs that, if believed, would halve web.
    if situation == "prometheus-down":
        source.down = True
    elif situation == "nan":
        source.demand_by_tier = {"web": None, "video": None}
    elif situation == "stale":
        source.demand_by_tier, source.age_s = {"web": 10.0, "video": 10.0}, 46.0  # > 3 x 15 s
    else:
        source.demand_by_tier = {}
    for _ in range(3):
        result = loop.run_once()
        clock.advance(15)
        for d in result.decisions:
            assert d["direction"] == "hold" and d["desired"] == before[d["tier"]]
            assert expected_reason in d["reason"], d["reason"]
            assert (
                "stale_data" in d["limited_by"]
                or situation == "prometheus-down"
                or d["desired"] == d["current"]
            )
    assert actuator.sizes == before and len(actuator.calls) == calls
    assert result.exit_code == (EXIT_METRICS_UNAVAILABLE if situation == "prometheus-down" else EXIT_OK)


def test_an_override_raises_the_tier_to_its_floor_until_it_expires(tmp_path: Path) -> None:
    loop, source, actuator, clock = _loop(tmp_path, {"web": 4, "video": 2})
    _steady(loop, source, clock, {"web": 150.0, "video": 250.0}, passes=2)
    loop.store.add_override(Override("sg-1", "video", 4.0, 8, clock(), clock() + 600, "keynote at 10:00"))
    decision = _by_tier(loop.run_once())["video"]
    assert decision["desired"] == 8 and "override" in decision["limited_by"]
    assert "keynote" in decision["override"]
    assert actuator.sizes["video"] == 8


def test_dry_run_records_decisions_but_never_acts(tmp_path: Path) -> None:
    loop, source, actuator, _ = _loop(tmp_path, {"web": 2, "video": 1}, dry_run=True)
    source.demand_by_tier = {"web": 1000.0, "video": 900.0}
    result = loop.run_once()
    assert {d["direction"] for d in result.decisions} == {"up"}
    assert actuator.calls == []
    assert loop.store.load_loop_state().recent_decisions["web"][-1]["dry_run"] is True


def test_a_failed_actuation_is_reported_and_retried_next_pass(tmp_path: Path) -> None:
    loop, source, actuator, clock = _loop(tmp_path, {"web": 2, "video": 1})
    source.demand_by_tier = {"web": 300.0, "video": 100.0}
    actuator.fail_next = 1
    failed = loop.run_once()
    assert failed.exit_code == EXIT_ACTUATION_FAILED
    web = _by_tier(failed)["web"]
    assert web["error"] and "Quota exceeded" in web["error"] and not web["acted"]
    assert loop.telemetry.actuation_errors.labels("web", "fake")._value.get() == 1
    clock.advance(15)
    retried = _by_tier(loop.run_once())["web"]
    assert retried["acted"] and actuator.sizes["web"] == retried["desired"] >= web["desired"]


def test_a_restart_mid_surge_keeps_overrides_and_does_not_scale_down(tmp_path: Path) -> None:
    loop, source, actuator, clock = _loop(tmp_path, {"web": 4, "video": 2})
    _steady(loop, source, clock, {"web": 150.0, "video": 250.0}, passes=10)
    source.demand_by_tier = {"web": 1200.0, "video": 250.0}
    loop.run_once()
    peak = actuator.sizes["web"]
    loop.store.add_override(Override("sg-2", "video", 2.0, 4, clock(), clock() + 3600, "launch"))
    # A new process: same store file, same actuator (the cloud kept its instances), demand dips.
    restarted, source2, _, _ = _loop(tmp_path, {})
    restarted.actuators = dict.fromkeys(restarted.config.tiers, actuator)
    restarted.clock = source2.clock = clock
    clock.advance(15)
    source2.demand_by_tier = {"web": 300.0, "video": 250.0}
    after = _by_tier(restarted.run_once())
    assert after["web"]["desired"] >= peak, after["web"]["reason"]
    assert after["video"]["desired"] >= 4 and "override" in after["video"]["limited_by"]


def test_only_the_leader_acts(tmp_path: Path) -> None:
    follower, source, actuator, _ = _loop(tmp_path, {"web": 2, "video": 1}, elector=FakeElector(leads=False))
    source.demand_by_tier = {"web": 1000.0, "video": 900.0}
    result = follower.run_once()
    assert not result.leader and result.decisions == [] and actuator.calls == []
    assert follower.telemetry.leader._value.get() == 0


def test_no_secret_reaches_the_decision_log(tmp_path: Path) -> None:
    canary = "canary-7d1f0a-secret"
    clock = FakeClock()
    source = FakeSource(clock, {"web": 500.0, "video": 100.0})
    actuator = FakeActuator({"web": 2, "video": 1}, fail_next=1)
    # The actuator's error text carries the secret, as a careless SDK message might.
    original = actuator.scale

    def leaky_scale(tier: str, desired: int) -> None:
        try:
            original(tier, desired)
        except Exception as exc:
            raise type(exc)(f"{exc} (token={canary})") from None

    actuator.scale = leaky_scale  # type: ignore[method-assign]
    tel, stream = telemetry(secrets=(canary,))
    cfg = config(tmp_path)
    loop = Autoscaler(
        cfg, source, dict.fromkeys(cfg.tiers, actuator), SQLiteStateStore(tmp_path / "s.db"), tel, clock
    )
    loop.run_once()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(line.get("error") for line in lines)
    assert canary not in stream.getvalue()
    assert canary not in tel.metrics_text().decode()


@pytest.mark.parametrize(
    ("situation", "replaced"),
    [("next-pass", True), ("after-a-pause", False), ("dry-run", False)],
    ids=lambda v: str(v),
)
def test_instances_that_died_are_asked_for_again_in_the_next_pass(
    tmp_path: Path, situation: str, replaced: bool
) -> None:
    """Demand falling meanwhile, the recommendation is below the count: the dead instances must come
    back at once all the same (issue 17: the drill's killed web instance waited 46 s)."""
    loop, source, actuator, clock = _loop(tmp_path, {"web": 12, "video": 2}, dry_run=situation == "dry-run")
    _steady(loop, source, clock, {"web": 500.0, "video": 250.0}, passes=8)
    held = actuator.sizes["web"]
    source.demand_by_tier = {"web": 100.0, "video": 250.0}  # the stabilization window holds the count
    actuator.sizes["web"] -= 2  # two instances died
    if situation == "after-a-pause":
        clock.advance(600)  # a restart much later: the count may have been lowered on purpose
    web = _by_tier(loop.run_once())["web"]
    assert web["current"] == held - 2
    if replaced:
        assert web["lost"] == 2 and web["desired"] == held, web
        assert web["reason"].startswith("replacing 2 lost instances; "), web["reason"]
        assert actuator.sizes["web"] == held
    elif situation == "dry-run":
        assert web["lost"] == 0 and actuator.sizes["web"] == held - 2, web  # nothing was set, nothing acted
    else:
        assert web["lost"] == 0 and web["desired"] <= held - 2, web


def test_between_passes_the_lease_is_renewed_every_retry_period(tmp_path: Path) -> None:
    """client-go's cadence: a 15 s Lease outlives a 15 s interval only if renewed in between. A lead
    lost between passes drops the in-memory state, so the next lead reloads the store."""
    import threading

    clock = FakeClock()
    tries: list[float] = []

    class Elector(FakeElector):
        def try_acquire_or_renew(self, now: float) -> bool:
            tries.append(now - t0)
            return self.leads

    elector = Elector(leads=True)
    loop, source, _, _ = _loop(tmp_path, {"web": 4, "video": 2}, elector=elector)
    loop.clock = source.clock = clock
    source.demand_by_tier = {"web": 150.0, "video": 250.0}
    t0 = clock()

    class NoWait(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            clock.advance(timeout or 0.0)
            if clock() - t0 >= 20:
                elector.leads = False  # another replica took the Lease meanwhile
            if clock() - t0 >= 29:
                self.set()
            return self.is_set()

    loop.run_forever(NoWait())
    assert tries[:9] == [0, 2, 4, 6, 8, 10, 12, 14, 15], tries  # a pass at 0 and 15, renewals between
    assert loop._state is None, "the lead was lost between passes: reload the store when leading again"
    assert elector.released
