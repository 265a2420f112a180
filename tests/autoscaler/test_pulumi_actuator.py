"""The Pulumi actuator through the real Automation API, against a stand-in `pulumi` executable put on
PATH (tests/autoscaler/pulumi_standin.py): the Pulumi CLI cannot be installed here. The stand-in
records each call and answers in the CLI's formats; these tests check the commands the actuator
sends, the config it writes, its idempotence, and its handling of a locked stack and a failed up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from autoscaler.adapters.pulumi import PulumiActuator, PulumiSettings
from autoscaler.ports import ActuationError


def _calls(work_dir: Path) -> list[list[str]]:
    # The Automation API puts --non-interactive first on most commands; drop it to read the verb.
    lines = (work_dir / ".pulumi-standin" / "calls.jsonl").read_text().splitlines()
    return [[a for a in json.loads(line) if a != "--non-interactive"] for line in lines]


def _ups(work_dir: Path) -> list[list[str]]:
    return [c for c in _calls(work_dir) if c[:1] == ["up"]]


def _actuator(work_dir: Path, **kw: object) -> PulumiActuator:
    return PulumiActuator(PulumiSettings(work_dir=work_dir, stack="dev", lock_backoff_s=0.01, **kw))  # type: ignore[arg-type]


def test_scale_writes_the_count_by_path_and_runs_up(work_dir: Path) -> None:
    actuator = _actuator(work_dir)
    actuator.scale("web", 8)
    config = yaml.safe_load((work_dir / "Pulumi.dev.yaml").read_text())["config"]
    assert config["swell:tiers"]["web"] == {"flavor": "b3-8", "count": 8, "max": 32}
    assert config["swell:tiers"]["chat"]["count"] == 1, "other tiers are left alone"
    set_calls = [c for c in _calls(work_dir) if c[:2] == ["config", "set"]]
    assert set_calls == [
        [
            "config",
            "set",
            "--path",
            "swell:tiers.web.count",
            "--plaintext",
            "--stack",
            "dev",
            "--",
            "8",
        ]
    ]
    ups = _ups(work_dir)
    assert len(ups) == 1 and "--yes" in ups[0] and "--skip-preview" in ups[0]
    assert actuator.capacity("web").current == 8
    assert actuator.capacity("web").ready == 8


def test_acting_twice_on_the_same_decision_changes_nothing(work_dir: Path) -> None:
    actuator = _actuator(work_dir)
    actuator.scale("web", 4)
    actuator.scale("web", 4)
    assert len(_ups(work_dir)) == 1


def test_a_count_written_but_never_applied_is_applied_on_retry(work_dir: Path) -> None:
    (work_dir / ".pulumi-standin").mkdir()
    (work_dir / ".pulumi-standin" / "fail").write_text("1")
    actuator = _actuator(work_dir)
    with pytest.raises(ActuationError, match="Quota exceeded") as failed:
        actuator.scale("web", 6)
    assert failed.value.retryable
    actuator.scale("web", 6)  # same decision, next pass: the config already says 6, outputs do not
    assert len(_ups(work_dir)) == 2
    assert actuator.capacity("web").ready == 6


@pytest.mark.parametrize(
    ("locked", "ups", "succeeds"),
    [("2", 3, True), ("always", 5, False)],
    ids=["locked-twice-then-free", "locked-for-good"],
)
def test_a_locked_stack_is_retried_with_backoff(
    work_dir: Path, locked: str, ups: int, succeeds: bool
) -> None:
    (work_dir / ".pulumi-standin").mkdir()
    (work_dir / ".pulumi-standin" / "locked").write_text(locked)
    actuator = _actuator(work_dir, lock_attempts=5)
    if succeeds:
        actuator.scale("web", 5)
        assert actuator.capacity("web").ready == 5
    else:
        with pytest.raises(ActuationError, match="locked by another update after 5 attempts"):
            actuator.scale("web", 5)
    assert len(_ups(work_dir)) == ups


def test_an_unknown_stack_is_a_clear_non_retryable_error(work_dir: Path) -> None:
    actuator = PulumiActuator(PulumiSettings(work_dir=work_dir, stack="prod-nowhere"))
    with pytest.raises(ActuationError, match="'prod-nowhere' not found") as failed:
        actuator.capacity("web")
    assert not failed.value.retryable


def test_a_negative_count_is_refused_before_touching_the_stack(work_dir: Path) -> None:
    with pytest.raises(ActuationError, match="refusing"):
        _actuator(work_dir).scale("web", -1)
    assert not (work_dir / ".pulumi-standin" / "calls.jsonl").exists()
