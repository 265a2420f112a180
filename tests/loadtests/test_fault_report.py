"""The drill report's account of an injected actuator-error fault: which tiers failed because of it
and whether each got its scaling applied afterwards. The failures are told by the injected error,
so a pass that started just before the fault's end and failed after it still counts (under load a
pass can straddle the end; the window alone made the drill's fault test flaky)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from loadtests.faults import INJECTED_ACTUATION_ERROR
from loadtests.options import DrillOptions
from loadtests.record import DrillRecord, Timeline
from loadtests.report import _fault_outcomes

FAULT = {"kind": "actuator-error", "at_s": 27.0, "started_s": 27.0, "ended_s": 33.0}
REAL_ERROR = "pulumi up failed: quota exceeded"


def _d(t: float, tier: str, error: str | None = None, acted: bool = False) -> dict[str, Any]:
    return {"t": t, "tier": tier, "error": error, "acted": acted, "reason": "scale", "direction": "up"}


def _outcome(tmp_path: Path, decisions: list[dict[str, Any]]) -> dict[str, Any]:
    times = os.times()
    record = DrillRecord(
        options=DrillOptions(out=tmp_path),
        timeline=Timeline(),
        requests=[],
        users=[],
        decisions=decisions,
        faults=[FAULT],
        instance_events=[],
        dropped_sessions={},
        started_at=0.0,
        load_started_at=0.0,
        finished_at=60.0,
        cpu_at_start=times,
        cpu_at_end=times,
    )
    (outcome,) = _fault_outcomes(record)
    return outcome


@pytest.mark.parametrize(
    ("decisions", "errors", "retried"),
    [
        # Failed during the fault, applied on the next pass after it.
        ([_d(28, "web", INJECTED_ACTUATION_ERROR), _d(34, "web", acted=True)], 1, ["web"]),
        # A pass stamped after the end that still met the fault: counted, and retried later.
        (
            [
                _d(28, "web", INJECTED_ACTUATION_ERROR),
                _d(33.5, "web", INJECTED_ACTUATION_ERROR),
                _d(36, "web", acted=True),
            ],
            2,
            ["web"],
        ),
        # Acted only before its last failure: not retried.
        ([_d(29, "chat", acted=True), _d(30, "chat", INJECTED_ACTUATION_ERROR)], 1, []),
        # A real error during the window is not the fault's.
        ([_d(28, "video", REAL_ERROR), _d(40, "video", acted=True)], 0, []),
        # Long after the fault: not this fault's failure.
        ([_d(50, "web", INJECTED_ACTUATION_ERROR), _d(52, "web", acted=True)], 0, []),
    ],
)
def test_actuator_error_outcome(
    tmp_path: Path, decisions: list[dict[str, Any]], errors: int, retried: list[str]
) -> None:
    outcome = _outcome(tmp_path, decisions)
    assert outcome["errors"] == errors
    assert outcome["retried"] == retried
    if errors:
        assert "failed actuations" in outcome["outcome"]
    else:
        assert "nothing to fail" in outcome["outcome"]
