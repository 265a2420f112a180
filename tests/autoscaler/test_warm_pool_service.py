"""The warm pool in the autoscaler loop (issue 15): a surge unshelves warm instances first and the
pool refills in the same update; the pool is sized by swell from what it measured (or fixed) and
never past the tier's max; it is in the decision record and the metrics; a tier without the pool
behaves as before; a bad `warm_pool` block is refused with the key named. The loop runs with fakes
at its ports (tests/autoscaler/fakes.py) and a fake clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autoscaler.adapters.sqlite_store import SQLiteStateStore
from autoscaler.config import ConfigError
from autoscaler.service import Autoscaler
from swell.cli import app
from tests.autoscaler.fakes import FakeActuator, FakeClock, FakeFleet, FakeSource, config, telemetry

runner = CliRunner()
POOL = {"enabled": True, "cold_lead_s": 600, "warm_lead_s": 120}


def _loop(
    tmp_path: Path, fleet: Any, clock: FakeClock | None = None, **web: Any
) -> tuple[Autoscaler, FakeSource, FakeClock, Any]:
    clock = clock or FakeClock()
    source = FakeSource(clock)
    tel, log = telemetry()
    cfg = config(tmp_path, web={"drain_timeout_s": 300, "max": 16, **web}, video={"drain_timeout_s": 300})
    loop = Autoscaler(
        cfg,
        source=source,
        actuators=dict.fromkeys(cfg.tiers, fleet),
        store=SQLiteStateStore(cfg.state.path),  # type: ignore[union-attr]
        telemetry=tel,
        clock=clock,
    )
    return loop, source, clock, log


def _passes(
    loop: Autoscaler, source: FakeSource, clock: FakeClock, web: float, n: int
) -> list[dict[str, Any]]:
    records = []
    for _ in range(n):
        source.demand_by_tier = {"web": web, "video": 100.0}
        records += [r for r in loop.run_once().decisions if r["tier"] == "web"]
        clock.advance(15)
    return records


def test_a_surge_unshelves_the_warm_instances_first_and_refills_the_pool_in_the_same_update(
    tmp_path: Path,
) -> None:
    fleet = FakeFleet({"web": [0, 1], "video": [0]}, configured=set(range(100)))
    loop, source, clock, _ = _loop(tmp_path, fleet, warm_pool={**POOL, "size": 3})
    _passes(loop, source, clock, web=100.0, n=10)  # 2-3 instances; the pool fills, then is shelved
    warm_before = list(fleet.warm["web"])
    serving_before = list(fleet.serving["web"])
    assert len(warm_before) == 3 and fleet.filling["web"] == [], "filled, configured, shelved"
    calls_before = len(fleet.calls)
    (record,) = _passes(loop, source, clock, web=600.0, n=1)
    surge = [c for c in fleet.calls[calls_before:] if c[0] == "web"]
    assert len(surge) == 1, "one update for the tier"
    _, serving, _, warm, filling = surge[0]
    assert set(warm_before) <= set(serving), "every warm instance serves"
    created = sorted(set(serving) - set(serving_before) - set(warm_before))
    assert len(serving) > len(serving_before) + len(warm_before) or not created, (
        "new ones only after the pool"
    )
    assert warm == [] and filling is not None and len(filling) == 3, "the pool refills in the same update"
    assert not set(filling) & (set(serving) | set(warm_before)), "refilled with new indices"
    pool = record["pool"]
    assert pool["activated"] == sorted(warm_before) and pool["refilled"] == filling
    assert (pool["target"], pool["warm"], pool["filling"]) == (3, 0, 3)


def test_swell_sizes_the_pool_from_what_it_measured_and_within_the_tiers_max(tmp_path: Path) -> None:
    fleet = FakeFleet({"web": [0, 1], "video": [0]})
    loop, source, clock, _ = _loop(tmp_path, fleet, warm_pool=POOL, max=4)
    records = _passes(loop, source, clock, web=100.0, n=40)
    last = records[-1]
    assert 1 <= last["pool"]["target"] <= 4 - last["desired"], last["pool"]
    assert "x1.25" in last["pool"]["reason"], "flat demand: the minimum rise"
    assert len(fleet.serving["web"]) + len(fleet.warm["web"]) + len(fleet.filling["web"]) <= 4


def test_the_pool_is_in_the_metrics_and_the_stored_decisions(tmp_path: Path) -> None:
    fleet = FakeFleet({"web": [0, 1], "video": [0]})
    loop, source, clock, _ = _loop(tmp_path, fleet, warm_pool={**POOL, "size": 2})
    _passes(loop, source, clock, web=100.0, n=2)
    metrics = loop.telemetry.metrics_text().decode()
    assert 'swell_autoscaler_warm_pool_target_instances{tier="web"} 2.0' in metrics
    assert 'swell_autoscaler_warm_pool_instances{state="filling",tier="web"} 2.0' in metrics
    assert 'tier="video"' not in metrics.split("swell_autoscaler_warm_pool_instances")[-1].split("\n# ")[0]
    stored = loop.store.load_loop_state().recent_decisions["web"][-1]
    assert stored["pool"]["reason"] == "warm pool 2: fixed (warm_pool.size)"
    assert "pool" not in loop.store.load_loop_state().recent_decisions["video"][-1]


def _script(tmp_path: Path, **web: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """The same demand (calm, a surge, calm again with drains) against a fresh fleet: the calls
    the fleet received and the decisions, times left out."""
    fleet = FakeFleet({"web": [0, 1, 2, 3, 4, 5], "video": [0]}, open_sessions=dict.fromkeys(range(40), 0))
    loop, source, clock, _ = _loop(tmp_path, fleet, **web)
    records = []
    for web_demand, n in ((100.0, 40), (600.0, 3), (100.0, 60)):
        records += _passes(loop, source, clock, web=web_demand, n=n)
    return fleet.calls, [{k: v for k, v in r.items() if k != "at"} for r in records]


def test_with_the_pool_disabled_the_loop_acts_exactly_as_without_the_block(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    without_calls, without = _script(tmp_path / "a")
    disabled_calls, disabled = _script(tmp_path / "b", warm_pool={"enabled": False, "size": 4})
    assert without_calls, "the script scales"
    assert disabled_calls == without_calls and disabled == without
    assert all(warm is None and filling is None for *_, warm, filling in without_calls), "the old call"
    assert all("pool" not in r for r in without)


def test_an_actuator_that_names_no_instances_ignores_the_pool_and_says_so_once(tmp_path: Path) -> None:
    actuator = FakeActuator({"web": 2, "video": 1})
    loop, source, clock, log = _loop(tmp_path, actuator, warm_pool={**POOL, "size": 2})
    records = _passes(loop, source, clock, web=600.0, n=3)
    assert actuator.calls and all("pool" not in r for r in records)
    notes = [json.loads(line) for line in log.getvalue().splitlines() if "warm_pool_ignored" in line]
    assert len(notes) == 1 and notes[0]["tier"] == "web"


@pytest.mark.parametrize(
    ("web", "message"),
    [
        (
            {
                "warm_pool": {"enabled": True},
                "actuator": {"kind": "kubernetes", "namespace": "a", "deployment": "b"},
            },
            "tiers.web: warm_pool.enabled: a Kubernetes Deployment has no warm pool",
        ),
        (
            {"warm_pool": {"enabled": True}, "policy": "target-tracking"},
            "tiers.web: warm_pool.size: required for policy 'target-tracking'",
        ),
        (
            {"warm_pool": {"enabled": True, "warm_lead_s": 600}},
            "tiers.web.warm_pool: warm_lead_s (600) must be shorter than cold_lead_s (600)",
        ),
        ({"warm_pool": {"enabled": True, "warm_lead": 60}}, "tiers.web.warm_pool.warm_lead: unknown key"),
        ({"warm_pool": {"size": -1}}, "tiers.web.warm_pool.size: Input should be greater than or equal to 0"),
    ],
    ids=["kubernetes", "fixed-size-needed", "warm-not-shorter", "misspelled", "negative-size"],
)
def test_a_bad_warm_pool_block_is_refused_naming_the_key(
    tmp_path: Path, web: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, web=web)
    assert message in str(caught.value)


def test_with_the_pool_swell_plans_across_the_warm_lead_time(tmp_path: Path) -> None:
    fleet = FakeFleet({"web": [0, 1], "video": [0]})
    with_pool, *_ = _loop(tmp_path, fleet, warm_pool=POOL, lead_time_s=600)
    without, *_ = _loop(tmp_path, fleet, lead_time_s=600)
    ignored, *_ = _loop(tmp_path, FakeActuator({"web": 2, "video": 1}), warm_pool=POOL, lead_time_s=600)
    assert with_pool.params["web"].lead_time_s == 120 and without.params["web"].lead_time_s == 600
    assert ignored.params["web"].lead_time_s == 600, "no pool where the actuator cannot keep one"


def test_swell_status_shows_active_warm_and_pending_per_tier(tmp_path: Path) -> None:
    """Through the real CLI, reading the store the loop wrote: web has a pool (warm, and filling
    ones after a surge), video has none."""
    fleet = FakeFleet({"web": [0, 1], "video": [0]}, configured=set(range(100)))
    loop, source, clock, _ = _loop(tmp_path, fleet, warm_pool={**POOL, "size": 3}, max=64)
    _passes(loop, source, clock, web=100.0, n=10)
    _passes(loop, source, clock, web=200.0, n=1)  # unshelves some, refills as many (filling)
    fleet.configured.discard(max(fleet.filling["web"]))
    _passes(loop, source, clock, web=200.0, n=1)  # the configured ones shelved, one still filling
    warm, filling = len(fleet.warm["web"]), len(fleet.filling["web"])
    assert warm >= 1 and filling == 1
    path = tmp_path / "autoscaler.yaml"
    path.write_text(json.dumps(loop.config.model_dump(mode="json", exclude_none=True)))
    rows = json.loads(runner.invoke(app, ["status", "-c", str(path), "--json"]).stdout)
    web, video = (next(r for r in rows if r["tier"] == t) for t in ("web", "video"))
    assert (web["pool"]["warm"], web["pool"]["filling"], web["pool"]["target"]) == (warm, filling, 3)
    assert web["pending"] == web["current"] - web["ready"] and video["pool"] is None
    table = runner.invoke(app, ["status", "-c", str(path)], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    header = next(line for line in table.output.splitlines() if "tier" in line)
    assert [c.strip() for c in header.split("┃")[2:7]] == ["active", "desired", "ready", "pending", "warm"]
    web_row = next(line for line in table.output.splitlines() if line.startswith("│ web"))
    assert [c.strip() for c in web_row.split("│")[2:7]] == [
        str(web["current"]),
        str(web["desired"]),
        str(web["ready"]),
        str(web["pending"]),
        f"{warm} (+1 filling)",
    ]
    video_row = next(line for line in table.output.splitlines() if line.startswith("│ video"))
    assert video_row.split("│")[6].strip() == "-", "no pool"


def test_the_pool_shrinks_only_after_its_target_was_lower_for_shrink_after_s_across_a_restart(
    tmp_path: Path,
) -> None:
    fleet = FakeFleet({"web": [0, 1], "video": [0]}, configured=set(range(100)))
    pool = {**POOL, "shrink_after_s": 600}
    loop, source, clock, _ = _loop(tmp_path, fleet, warm_pool={**pool, "size": 3})
    _passes(loop, source, clock, web=100.0, n=4)
    warm = list(fleet.warm["web"])
    assert len(warm) == 3
    # A new process with a smaller pool: the window in the store still holds 3 for 600 s.
    restarted, source, _, _ = _loop(tmp_path, fleet, clock, warm_pool={**pool, "size": 1})
    records = _passes(restarted, source, clock, web=100.0, n=60)
    kept = [r["pool"]["warm"] for r in records]
    trimmed_at = next(i for i, n in enumerate(kept) if n == 1)
    assert all(n == 3 for n in kept[:trimmed_at]) and set(kept[trimmed_at:]) == {1}
    assert 600 - 4 * 15 <= trimmed_at * 15 <= 600, "after the window, not before"
    assert records[trimmed_at]["pool"]["trimmed"] == sorted(warm)[1:], "the highest warm ones go"


def test_the_pool_stays_within_the_tiers_quota_beside_the_active_instances(tmp_path: Path) -> None:
    """A shelved server still counts in Nova's instances quota."""
    fleet = FakeFleet({"web": [0, 1], "video": [0]})
    loop, source, clock, _ = _loop(tmp_path, fleet, warm_pool={**POOL, "size": 10}, quota=5)
    (record,) = _passes(loop, source, clock, web=100.0, n=1)
    assert record["pool"]["target"] == 5 - record["desired"]
    assert record["pool"]["reason"].endswith("within quota 5")


def test_turning_the_pool_off_deletes_what_is_left_of_it(tmp_path: Path) -> None:
    fleet = FakeFleet({"web": [0, 1], "video": [0]}, warm={"web": [2, 3]}, filling={"web": [4]})
    loop, source, clock, _ = _loop(tmp_path, fleet)
    (record,) = _passes(loop, source, clock, web=100.0, n=1)
    assert fleet.warm["web"] == fleet.filling["web"] == []
    assert sorted(fleet.serving["web"]) == [0, 1, 2, 3][: record["desired"]], "a scale-up unshelves first"
    assert fleet.calls[-1][3:] == (None, None), "the call without a pool"
    assert "pool" not in record


def test_the_pulumi_actuator_takes_a_filling_instance_as_configured_after_the_tiers_cold_lead() -> None:
    """Wiring: one definition of the cold lead time per tier, for sizing the pool and for the Pulumi
    actuator's readiness of a filling instance (docs/stacks.md, "Warm pool")."""
    from autoscaler.adapters.pulumi import PulumiActuator
    from autoscaler.wiring import build_actuators

    cfg = config(
        "/tmp/unused",
        web={"warm_pool": {**POOL, "size": 2, "cold_lead_s": 900}},
        video={"warm_pool": {**POOL, "size": 1, "cold_lead_s": 300, "warm_lead_s": 60}},
    )
    actuators = build_actuators(cfg)
    pulumi = actuators["web"]
    assert isinstance(pulumi, PulumiActuator) and actuators["video"] is pulumi  # one stack, one actuator
    assert (pulumi.settings.cold_lead("web"), pulumi.settings.cold_lead("video")) == (900.0, 300.0)
    pulumi.close()
