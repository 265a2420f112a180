"""The Pulumi actuator through the real Automation API, against a stand-in `pulumi` executable put on
PATH (tests/autoscaler/pulumi_standin.py): the Pulumi CLI cannot be installed here. The stand-in
records each call and answers in the CLI's formats, keeps the config of the last successful update
as a backend does, and can be slow, locked or failing. These tests check what the actuator sends
(one update per batch, --parallel, --policy-pack), that the loop never waits for it, that a newer
target supersedes a queued one, the timeout and cancel path, that the stack's config is read back
before every update and put back after a failure, that a layout the stack refuses is never written,
and that no child process outlives the actuator's process, even on SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.adapters.pulumi import PulumiActuator, PulumiSettings
from autoscaler.ports import ActuationError, Capacity
from tests.autoscaler.conftest import ROOT

POLICY = ROOT / "stacks" / "policy"


def _calls(work_dir: Path) -> list[list[str]]:
    # The Automation API puts --non-interactive first on most commands; drop it to read the verb.
    path = work_dir / ".pulumi-standin" / "calls.jsonl"
    if not path.exists():
        return []
    return [
        [a for a in json.loads(line) if a != "--non-interactive"] for line in path.read_text().splitlines()
    ]


def _ups(work_dir: Path) -> list[list[str]]:
    return [c for c in _calls(work_dir) if c[:1] == ["up"]]


def _writes(work_dir: Path) -> list[list[str]]:
    return [c for c in _calls(work_dir) if c[:2] in (["config", "set"], ["config", "set-all"])]


def _tiers(work_dir: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((work_dir / "Pulumi.dev.yaml").read_text())["config"]["swell:tiers"])


def _actuator(work_dir: Path, **kw: Any) -> PulumiActuator:
    settings = PulumiSettings(
        work_dir=work_dir, stack="dev", lock_backoff_s=0.01, policy_packs=(POLICY,), cancel_grace_s=2, **kw
    )
    return PulumiActuator(settings)


def _flag(call: list[str], name: str) -> str | None:
    return call[call.index(name) + 1] if name in call else None


def test_one_update_writes_the_layout_in_one_write_with_parallel_and_the_policy_pack(work_dir: Path) -> None:
    actuator = _actuator(work_dir, parallel=7)
    actuator.apply("web", [0, 1, 3], [2])
    assert actuator.wait_idle(30)
    web = _tiers(work_dir)["web"]
    assert (web["count"], web["instances"], web["retiring"]) == (3, [0, 1, 3], [2])
    assert web["flavor"] == "b3-8" and web["max"] == 32, "the rest of the tier is left as it was"
    assert len(_writes(work_dir)) == 1 and _writes(work_dir)[0][:2] == ["config", "set-all"]
    [up] = _ups(work_dir)
    assert ("--yes" in up, "--skip-preview" in up) == (True, True)
    assert (_flag(up, "--parallel"), _flag(up, "--policy-pack")) == ("7", str(POLICY))
    assert actuator.capacity("web").current == 3 and actuator.capacity("web").ready == 3
    assert [(m.index, m.retiring, m.ready) for m in actuator.members("web")] == [
        (0, False, True),
        (1, False, True),
        (2, True, False),
        (3, False, True),
    ]
    assert all(m.started_at > 1.7e9 for m in actuator.members("web")), "Nova created times from the outputs"
    assert actuator.status()["last"]["result"] == "succeeded"


def test_the_loop_never_waits_and_a_newer_target_supersedes_a_queued_one(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWELL_STANDIN_UP_DELAY_S", "1.5")
    actuator = _actuator(work_dir)
    actuator.capacity("web")  # the first use reads the stack (once)
    started = time.monotonic()
    actuator.scale("web", 4)  # starts an update at once
    first = time.monotonic() - started
    time.sleep(0.8)
    started = time.monotonic()
    actuator.scale("web", 6)  # queued behind it
    actuator.scale("chat", 3)
    actuator.scale("web", 8)  # supersedes the queued 6
    asked = first + time.monotonic() - started
    status = actuator.status()
    assert status["in_flight"]["targets"] == {"web": 4} and status["queued"] == {"web": 8, "chat": 3}
    assert actuator.capacity("web") == Capacity(current=8, ready=0), "asked for, none deployed yet"
    assert asked < 0.1, f"asking took {asked:.2f} s: the loop waited for the CLI"
    assert actuator.wait_idle(30)
    messages = [_flag(u, "--message") for u in _ups(work_dir)]
    assert messages == ["swell autoscaler: web -> 4", "swell autoscaler: chat -> 3, web -> 8"]
    assert (_tiers(work_dir)["web"]["count"], _tiers(work_dir)["chat"]["count"]) == (8, 3)


def test_asking_again_for_what_is_asked_or_deployed_changes_nothing(work_dir: Path) -> None:
    actuator = _actuator(work_dir)
    actuator.scale("web", 4)
    actuator.wait_idle(30)
    actuator.scale("web", 4)
    actuator.apply("web", [0, 1, 2, 3], [])
    actuator.wait_idle(30)
    assert len(_ups(work_dir)) == 1


def test_a_failed_update_leaves_the_previous_config_and_is_reported_once(work_dir: Path) -> None:
    actuator = _actuator(work_dir)
    actuator.scale("web", 3)  # a first deployment: the backend now holds count 3
    actuator.wait_idle(30)
    (work_dir / ".pulumi-standin" / "fail").write_text("1")
    actuator.scale("web", 6)
    actuator.wait_idle(30)
    assert _tiers(work_dir)["web"]["count"] == 3, "the config of the last successful update is back"
    assert actuator.capacity("web").current == 3, "the target falls back: the loop will ask again"
    [error] = actuator.failures("web")
    assert "Quota exceeded" in error and actuator.failures("web") == []
    assert actuator.status()["last"]["result"] == "failed"
    actuator.scale("web", 6)  # the next pass asks again
    actuator.wait_idle(30)
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
    actuator.scale("web", 5)
    actuator.wait_idle(30)
    if succeeds:
        assert actuator.capacity("web").ready == 5 and actuator.failures("web") == []
    else:
        assert "locked by another update after 5 attempts" in actuator.failures("web")[0]
    assert len(_ups(work_dir)) == ups


REFUSED = [
    ("above-the-stacks-max", "web", 33, "allow 1..32"),
    ("below-the-stacks-min", "chat", 0, "allow 1..8"),
]


@pytest.mark.parametrize(("tier", "count", "says"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_count_outside_the_stacks_own_limits_is_refused_before_anything_is_written(
    work_dir: Path, tier: str, count: int, says: str
) -> None:
    actuator = _actuator(work_dir)
    with pytest.raises(ActuationError, match=says) as refused:
        actuator.scale(tier, count)
    assert not refused.value.retryable
    assert actuator.limits("web") == (1, 32), "min and max are the stack's"
    assert _writes(work_dir) == [] and _ups(work_dir) == []


def test_a_layout_the_stacks_validation_refuses_is_never_written(work_dir: Path) -> None:
    """The quota (60 instances here) is checked by the stack's own parser before the write."""
    actuator = _actuator(work_dir)
    actuator.apply("web", list(range(30)), list(range(30, 60)))
    actuator.wait_idle(30)
    [error] = actuator.failures("web")
    assert "not written" in error and "swell:quota" in error
    assert _writes(work_dir) == [] and _ups(work_dir) == []


def test_the_config_is_read_back_from_the_backend_so_a_stale_file_never_reverts_a_surge(
    work_dir: Path,
) -> None:
    actuator = _actuator(work_dir)
    actuator.scale("web", 12)  # a surge, deployed
    actuator.wait_idle(30)
    stale = yaml.safe_load((work_dir / "Pulumi.dev.yaml").read_text())
    stale["config"]["swell:tiers"]["web"].update(count=2, instances=[0, 1])  # a checkout from git
    (work_dir / "Pulumi.dev.yaml").write_text(yaml.safe_dump(stale))
    actuator.scale("chat", 2)
    actuator.wait_idle(30)
    assert _tiers(work_dir)["web"]["count"] == 12, "the backend's count, not the stale file's"
    refreshes = [c for c in _calls(work_dir) if c[:2] == ["config", "refresh"]]
    assert len(refreshes) >= 2, "read back before every update"


def test_an_update_past_its_timeout_is_cancelled_and_its_lock_released(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWELL_STANDIN_UP_DELAY_S", "60")
    actuator = _actuator(work_dir, update_timeout_s=1.5)
    started = time.monotonic()
    actuator.scale("web", 5)
    assert actuator.wait_idle(20)
    took = time.monotonic() - started
    assert took < 10, f"{took:.1f} s"
    [error] = actuator.failures("web")
    assert "took longer than 1.5 s" in error
    assert not (work_dir / ".pulumi-standin" / "dev.lock").exists()
    assert _tiers(work_dir)["web"]["count"] == 2
    monkeypatch.setenv("SWELL_STANDIN_UP_DELAY_S", "0")
    actuator.scale("web", 5)  # the stack is usable again
    actuator.wait_idle(30)
    assert actuator.capacity("web").ready == 5


def test_close_cancels_the_update_in_progress(work_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWELL_STANDIN_UP_DELAY_S", "60")
    actuator = _actuator(work_dir)
    actuator.scale("web", 5)
    time.sleep(1.0)
    started = time.monotonic()
    actuator.close()
    assert time.monotonic() - started < 8
    assert not (work_dir / ".pulumi-standin" / "dev.lock").exists(), "SIGINT: Pulumi released its lock"


def test_an_unknown_stack_is_a_clear_non_retryable_error(work_dir: Path) -> None:
    actuator = PulumiActuator(PulumiSettings(work_dir=work_dir, stack="prod-nowhere"))
    with pytest.raises(ActuationError, match="'prod-nowhere' not found") as failed:
        actuator.capacity("web")
    assert not failed.value.retryable


def test_a_negative_count_is_refused_before_touching_the_stack(work_dir: Path) -> None:
    with pytest.raises(ActuationError, match="refusing"):
        _actuator(work_dir).scale("web", -1)
    assert not (work_dir / ".pulumi-standin" / "calls.jsonl").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_no_child_outlives_the_autoscaler_even_on_sigkill(work_dir: Path, tmp_path: Path) -> None:
    """A process runs the actuator while `pulumi up` (and a child it started, as the CLI starts
    plugins) runs; SIGKILL that process: the CLI and its child are gone within the grace period."""
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            from pathlib import Path
            from autoscaler.adapters.pulumi import PulumiActuator, PulumiSettings
            s = PulumiSettings(work_dir=Path({str(work_dir)!r}), stack="dev", cancel_grace_s=1)
            a = PulumiActuator(s)
            a.scale("web", 5)
            time.sleep(600)
            """
        )
    )
    env = {**os.environ, "SWELL_STANDIN_UP_DELAY_S": "300", "SWELL_STANDIN_UP_GRANDCHILD": "1"}
    owner = subprocess.Popen([sys.executable, str(script)], env=env, cwd=ROOT)
    lock, grandchild = (
        work_dir / ".pulumi-standin" / "dev.lock",
        work_dir / ".pulumi-standin" / "grandchild.pid",
    )
    deadline = time.monotonic() + 30
    while not (lock.exists() and grandchild.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lock.exists() and grandchild.exists(), "the stand-in `pulumi up` did not start"
    time.sleep(0.2)
    cli, child = int(lock.read_text()), int(grandchild.read_text())
    assert _alive(cli) and _alive(child)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 10
    while (_alive(cli) or _alive(child)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(cli), "the Pulumi CLI outlived the autoscaler"
    assert not _alive(child), "a process the CLI started outlived the autoscaler"
