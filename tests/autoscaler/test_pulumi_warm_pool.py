"""The Pulumi actuator's warm pool, through the real Automation API against the stand-in `pulumi`
executable (tests/autoscaler/pulumi_standin.py; the CLI cannot be installed here): `apply` writes
`warm` and `filling` beside `instances` and `retiring` in one update, `members` and `capacity` report
each index's pool, a filling instance is ready to shelve `cold_lead_s` after its creation, and a
layout that would shelve what is not configured, put an index in two sets or pass max is refused
before anything is written."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.adapters.pulumi import PulumiActuator, PulumiSettings
from autoscaler.ports import POOL_FILLING, POOL_WARM, ActuationError, Capacity

COLD_LEAD_S = 600.0


class Clock:
    """Wall time plus a shift: the stand-in stamps Nova creation times with the real time."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


def _actuator(work_dir: Path, clock: Clock, **kw: Any) -> PulumiActuator:
    settings = PulumiSettings(
        work_dir=work_dir, stack="dev", lock_backoff_s=0.01, cancel_grace_s=2, cold_lead_s=COLD_LEAD_S, **kw
    )
    return PulumiActuator(settings, clock=clock)


def _tiers(work_dir: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((work_dir / "Pulumi.dev.yaml").read_text())["config"]["swell:tiers"])


def _calls(work_dir: Path, verb: list[str]) -> list[list[str]]:
    path = work_dir / ".pulumi-standin" / "calls.jsonl"
    if not path.exists():
        return []
    calls = [
        [a for a in json.loads(line) if a != "--non-interactive"] for line in path.read_text().splitlines()
    ]
    return [c for c in calls if c[: len(verb)] == verb]


def _pools(actuator: PulumiActuator, tier: str = "web") -> dict[int, tuple[str, bool]]:
    return {m.index: (m.pool, m.ready) for m in actuator.members(tier)}


def test_a_refill_is_written_beside_the_serving_set_and_becomes_ready_after_the_cold_lead_time(
    work_dir: Path,
) -> None:
    clock = Clock()
    actuator = _actuator(work_dir, clock)
    actuator.apply("web", [0, 1], [], filling=[2, 3])
    assert actuator.wait_idle(30) and actuator.failures("web") == []
    web = _tiers(work_dir)["web"]
    assert (web["instances"], web["retiring"], web["warm"], web["filling"]) == ([0, 1], [], [], [2, 3])
    assert _pools(actuator) == {
        0: ("", True),
        1: ("", True),
        2: (POOL_FILLING, False),
        3: (POOL_FILLING, False),
    }
    assert actuator.capacity("web") == Capacity(current=2, ready=2, warm=0, filling=2)
    clock.shift = COLD_LEAD_S + 1  # cloud-init and ansible-pull have had their time
    assert _pools(actuator)[2] == (POOL_FILLING, True)


def test_a_filling_instance_is_not_shelved_before_it_is_configured(work_dir: Path) -> None:
    clock = Clock()
    actuator = _actuator(work_dir, clock)
    actuator.apply("web", [0, 1], [], filling=[2])
    assert actuator.wait_idle(30)
    clock.shift = 100.0
    with pytest.raises(
        ActuationError, match=r"still being configured: 2 \(ready (49\d|50\d) s from now\)"
    ) as early:
        actuator.apply("web", [0, 1], [], warm=[2])
    assert early.value.retryable, "asking again once it is configured succeeds"
    assert len(_calls(work_dir, ["up"])) == 1
    clock.shift = COLD_LEAD_S + 1
    actuator.apply("web", [0, 1], [], warm=[2])  # shelve it: the pool is warm
    assert actuator.wait_idle(30) and actuator.failures("web") == []
    assert _tiers(work_dir)["web"]["warm"] == [2] and _tiers(work_dir)["web"]["filling"] == []
    assert _pools(actuator)[2] == (POOL_WARM, True), "the shelve has landed"
    assert actuator.capacity("web") == Capacity(current=2, ready=2, warm=1, filling=0)


def test_activation_and_refill_are_one_update_and_the_activated_one_serves_once_it_lands(
    work_dir: Path,
) -> None:
    clock = Clock()
    actuator = _actuator(work_dir, clock)
    actuator.apply("web", [0, 1], [], filling=[2, 3])
    assert actuator.wait_idle(30)
    clock.shift = COLD_LEAD_S + 1
    actuator.apply("web", [0, 1], [], warm=[2, 3])
    assert actuator.wait_idle(30)
    clock.shift = 0.0
    ups = len(_calls(work_dir, ["up"]))
    actuator.apply("web", [0, 1, 2, 3], [], filling=[4, 5])  # the surge: both warm ones, and refill
    queued = actuator.members("web")
    assert [(m.index, m.pool, m.ready) for m in queued if m.index in (2, 3)] == [
        (2, "", False),
        (3, "", False),
    ]
    assert actuator.wait_idle(30) and actuator.failures("web") == []
    [up] = _calls(work_dir, ["up"])[ups:]
    assert up[up.index("--message") + 1] == "swell autoscaler: web -> 4 (filling 2)"
    web = _tiers(work_dir)["web"]
    assert (web["count"], web["instances"], web["warm"], web["filling"]) == (4, [0, 1, 2, 3], [], [4, 5])
    assert actuator.capacity("web") == Capacity(current=4, ready=4, warm=0, filling=2)
    assert _pools(actuator)[4] == (POOL_FILLING, False), "created now: configured a cold lead time later"


def test_a_drained_instance_refills_the_pool_without_the_cold_lead_time(work_dir: Path) -> None:
    actuator = _actuator(work_dir, Clock())
    actuator.apply("web", [0], [1])
    assert actuator.wait_idle(30)
    actuator.apply("web", [0], [], warm=[1])  # configured already: shelved at once
    assert actuator.wait_idle(30) and actuator.failures("web") == []
    assert _pools(actuator) == {0: ("", True), 1: (POOL_WARM, True)}


def test_scale_without_a_drain_unshelves_warm_instances_before_creating_any(work_dir: Path) -> None:
    clock = Clock()
    actuator = _actuator(work_dir, clock)
    actuator.apply("web", [0], [1], warm=[], filling=[2])
    assert actuator.wait_idle(30)
    clock.shift = COLD_LEAD_S + 1
    actuator.apply("web", [0], [1], warm=[2])
    assert actuator.wait_idle(30)
    actuator.scale("web", 3)
    assert actuator.wait_idle(30)
    web = _tiers(work_dir)["web"]
    assert (web["instances"], web["retiring"], web["warm"], web["filling"]) == ([0, 1, 2], [], [], [])
    actuator.scale("web", 4)  # nothing spare left: a new index
    assert actuator.wait_idle(30)
    assert _tiers(work_dir)["web"]["instances"] == [0, 1, 2, 3]


REFUSED = [
    ("warm-and-serving", ([0, 1], [], [1], []), r"\[1\] in both serving and warm"),
    ("filling-and-retiring", ([0], [2], [], [2]), r"\[2\] in both retiring and filling"),
    ("negative-pool-index", ([0], [], [], [-3]), r"negative indices \[-3\]"),
    (
        "new-index-straight-to-warm",
        ([0, 1], [], [7], []),
        r"\[7\] have no instance yet; a new instance goes to filling",
    ),
    (
        "pool-above-max",
        ([0, 1], [], [], list(range(2, 33))),
        r"2 serving \+ 0 warm \+ 31 filling is 33, above",
    ),
]


@pytest.mark.parametrize(("layout", "says"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_pool_layout_that_cannot_be_right_is_refused_before_anything_is_written(
    work_dir: Path, layout: tuple[list[int], list[int], list[int], list[int]], says: str
) -> None:
    actuator = _actuator(work_dir, Clock())
    with pytest.raises(ActuationError, match=says) as refused:
        actuator.apply("web", *layout)
    assert not refused.value.retryable
    assert _calls(work_dir, ["config", "set-all"]) == [] and _calls(work_dir, ["up"]) == []
