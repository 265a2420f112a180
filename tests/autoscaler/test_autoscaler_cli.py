"""`swell autoscale`, `swell surge` and `swell status` as on-call types them. The actuator is the
Pulumi one, driven through the Automation API against the stand-in `pulumi` executable
(tests/autoscaler/pulumi_standin.py; the real CLI cannot be installed here)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autoscaler.config import load_config
from swell.cli import app
from tests.realparts import free_port

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _write_config(tmp_path: Path, work_dir: Path, **top: object) -> Path:
    data = {
        "prometheus": {"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 1},
        "state": {"kind": "sqlite", "path": str(tmp_path / "state.db")},
        "tiers": {
            "web": {
                "capacity_per_instance": 50,
                "min": 2,
                "max": 32,
                "actuator": {"kind": "pulumi", "work_dir": str(work_dir), "stack": "dev"},
            },
            "chat": {
                "capacity_per_instance": 2000,
                "min": 1,
                "max": 8,
                "actuator": {"kind": "pulumi", "work_dir": str(work_dir), "stack": "dev"},
            },
        },
        **top,
    }
    path = tmp_path / "autoscaler.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_documented_example_config_is_valid() -> None:
    cfg = load_config(ROOT / "autoscaler.example.yaml")
    assert set(cfg.tiers) == {"web", "chat", "video"}


def test_once_with_prometheus_unreachable_holds_every_tier_and_exits_3(
    tmp_path: Path, work_dir: Path
) -> None:
    config = _write_config(tmp_path, work_dir)
    result = runner.invoke(app, ["autoscale", "--config", str(config), "--once", "--json"])
    assert result.exit_code == 3, result.output
    decisions = json.loads(result.stdout)
    assert {d["tier"] for d in decisions} == {"web", "chat"}
    for d in decisions:
        assert d["direction"] == "hold" and d["desired"] == d["current"]
        assert "metrics unavailable" in d["reason"] and "unreachable" in d["reason"]
        assert set(d) >= {"tier", "current", "desired", "direction", "reason", "limited_by"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda c: c["tiers"]["web"].update(capacity_per_instanse=5),
            "tiers.web.capacity_per_instanse: unknown key",
        ),
        (
            lambda c: c["tiers"]["web"].update(max=96),
            "tiers.web.max: 96 is above the stack's max (32); it may only narrow the stack's limits",
        ),
        (lambda c: c["tiers"]["web"].update(min=0), "tiers.web.min: 0 is below the stack's min (1)"),
        (
            lambda c: (
                c["tiers"]["web"].update(actuator={"kind": "kubernetes", "namespace": "a", "deployment": "b"})
                or c["tiers"]["web"].pop("max")
            ),
            "max is required for a kubernetes actuator",
        ),
        (lambda c: c["tiers"]["web"].update(policy="magic"), "tiers.web.policy: unknown policy 'magic'"),
        (lambda c: c["tiers"]["web"].update(min=9, max=3), "max (3) must be >= min (9)"),
        (
            lambda c: c["tiers"]["web"]["actuator"].update(kind="terraform"),
            "tiers.web.actuator: unknown kind",
        ),
        (lambda c: c.update(interval_s=0), "interval_s"),
        (
            lambda c: c["tiers"]["web"].update(policy_params={"headroom_sigma": 3}),
            "tiers.web.policy_params.headroom_sigma: not a parameter of policy 'swell'",
        ),
        (
            lambda c: c["tiers"]["web"].update(capacity_per_instance=float("inf")),
            "tiers.web.capacity_per_instance: Input should be a finite number",
        ),
        (
            lambda c: c["tiers"]["web"].update(capacity_per_instance=float("nan")),
            "tiers.web.capacity_per_instance: Input should be a finite number",
        ),
        (
            lambda c: c["tiers"]["web"].update(policy_params={"headroom_sigmas": "3"}),
            "tiers.web.policy_params.headroom_sigmas: expected a finite number, got '3'",
        ),
        (
            lambda c: c["tiers"]["web"].update(policy_params={"surge_jump": "no"}),
            "tiers.web.policy_params.surge_jump: expected true or false",
        ),
        (
            lambda c: c["tiers"]["web"].update(policy_params={"stabilization_down_s": -60}),
            "tiers.web.policy_params.stabilization_down_s: a duration must be >= 0",
        ),
        (
            lambda c: c["tiers"]["web"].update(policy_params={"guards": {}}),
            "tiers.web.policy_params.guards: not a parameter",
        ),
        (
            lambda c: c["tiers"]["web"].update(policy="hpa"),
            "tiers.web.policy: 'hpa' sizes from CPU-like utilization, which the service does not read",
        ),
        (
            lambda c: c["tiers"]["web"].update(policy="step"),
            "tiers.web.policy: 'step' sizes from CPU-like utilization",
        ),
        (
            lambda c: c["tiers"]["web"].update(policy="static"),
            "tiers.web.policy: 'static' is a simulator-only",
        ),
        (
            lambda c: c["tiers"]["web"].update(policy="oracle"),
            "tiers.web.policy: 'oracle' is a simulator-only",
        ),
        (
            lambda c: c.update(leader_election={"namespace": "ops", "lease_duration_s": 10}),
            "renew_deadline_s (10) must be shorter than lease_duration_s (10)",
        ),
        (
            lambda c: c.update(leader_election={"namespace": "ops", "retry_period_s": 9}),
            "must be longer than 1.2 x retry_period_s (9)",
        ),
        (lambda c: c.update(serve={"stuck_after_s": 10}), "serve.stuck_after_s (10) must be longer than"),
    ],
    ids=[
        "misspelled-key",
        "max-wider-than-the-stacks",
        "min-wider-than-the-stacks",
        "kubernetes-tier-without-max",
        "unknown-policy",
        "max-below-min",
        "unknown-actuator",
        "bad-interval",
        "unknown-param",
        "infinite-capacity",
        "nan-capacity",
        "param-string-for-number",
        "param-string-for-bool",
        "param-negative-duration",
        "param-guards",
        "policy-hpa-needs-utilization",
        "policy-step-needs-utilization",
        "policy-static-simulator-only",
        "policy-oracle-simulator-only",
        "renew-deadline-not-below-lease",
        "retry-period-too-long",
        "stuck-after-shorter-than-a-pass",
    ],
)
def test_bad_config_names_the_key_and_exits_2(
    tmp_path: Path, work_dir: Path, mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
    path = _write_config(tmp_path, work_dir)
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["autoscale", "--config", str(path), "--once"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output


def test_surge_add_list_cancel_and_status(tmp_path: Path, work_dir: Path) -> None:
    config = _write_config(tmp_path, work_dir)
    added = runner.invoke(
        app,
        [
            "surge",
            "-c",
            str(config),
            "--tier",
            "web",
            "--factor",
            "4",
            "--for",
            "2h",
            "--reason",
            "keynote",
            "--json",
        ],
    )
    assert added.exit_code == 0, added.output
    override = json.loads(added.stdout)
    assert override["floor"] == 8  # x4 of the stack's count of 2
    assert override["expires_at"] - override["created_at"] == pytest.approx(7200)
    listed = json.loads(runner.invoke(app, ["surge", "-c", str(config), "--list", "--json"]).stdout)
    assert [o["id"] for o in listed] == [override["id"]] and listed[0]["active"]
    status = json.loads(runner.invoke(app, ["status", "-c", str(config), "--json"]).stdout)
    web = next(r for r in status if r["tier"] == "web")
    assert web["overrides"][0]["floor"] == 8 and web["reason"] == "no decision yet"
    table = runner.invoke(app, ["status", "-c", str(config)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "web" in table.output and ">= 8 until" in table.output
    assert runner.invoke(app, ["surge", "-c", str(config), "--cancel", override["id"]]).exit_code == 0
    assert json.loads(runner.invoke(app, ["surge", "-c", str(config), "--list", "--json"]).stdout) == []
    again = runner.invoke(app, ["surge", "-c", str(config), "--cancel", override["id"]])
    assert again.exit_code == 1 and "no override" in again.output


def test_surge_on_a_vm_tier_does_not_need_the_cluster_of_a_kubernetes_tier(
    tmp_path: Path, work_dir: Path
) -> None:
    """On-call raising the web tier (Pulumi) must not be stopped by a Kubernetes tier whose
    kubeconfig this laptop does not have; that tier's own surge says what is missing."""
    config = _write_config(
        tmp_path,
        work_dir,
        kubernetes={"kubeconfig": str(tmp_path / "no-such-kubeconfig")},
    )
    data = yaml.safe_load(config.read_text())
    data["tiers"]["video"] = {
        "capacity_per_instance": 40,
        "min": 1,
        "max": 8,
        "actuator": {"kind": "kubernetes", "namespace": "video", "deployment": "jvb"},
    }
    config.write_text(yaml.safe_dump(data))
    web = runner.invoke(app, ["surge", "-c", str(config), "--tier", "web", "--factor", "2", "--for", "1h"])
    assert web.exit_code == 0, web.output
    video = runner.invoke(
        app, ["surge", "-c", str(config), "--tier", "video", "--factor", "2", "--for", "1h"]
    )
    assert video.exit_code == 5
    assert "cannot read the current size of video" in video.output and "kubeconfig" in video.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tier", "mail", "--factor", "2", "--for", "1h"], "unknown tier 'mail'"),
        (["--tier", "web", "--factor", "11", "--for", "1h"], "--factor must be above 1 and at most 10"),
        (["--tier", "web", "--factor", "nan", "--for", "1h"], "--factor must be above 1 and at most 10"),
        (["--tier", "web", "--factor", "2", "--for", "soon"], "is not a duration"),
        (
            ["--tier", "web", "--factor", "2", "--for", "99999999999999d"],
            "--for must be above 0 and at most 31d",
        ),
        (["--tier", "web", "--factor", "2", "--for", "0s"], "--for must be above 0 and at most 31d"),
        (["--tier", "web"], "give --tier, --factor and --for"),
    ],
    ids=[
        "unknown-tier",
        "factor-too-big",
        "factor-nan",
        "bad-duration",
        "duration-huge",
        "duration-zero",
        "incomplete",
    ],
)
def test_surge_refuses_bad_requests(tmp_path: Path, work_dir: Path, args: list[str], message: str) -> None:
    config = _write_config(tmp_path, work_dir)
    result = runner.invoke(app, ["surge", "-c", str(config), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert runner.invoke(app, ["surge", "-c", str(config), "--list", "--json"]).stdout.strip() == "[]"


def test_a_400_percent_surge_is_x5(tmp_path: Path, work_dir: Path) -> None:
    config = _write_config(tmp_path, work_dir)
    added = runner.invoke(
        app, ["surge", "-c", str(config), "--tier", "web", "--factor", "5", "--for", "1h", "--json"]
    )
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["floor"] == 10  # x5 of the stack's count of 2


def test_reasons_and_stored_values_print_as_text(tmp_path: Path, work_dir: Path) -> None:
    """On-call's --reason and stored values are shown as typed: rich markup in them neither crashes
    the tables nor styles them, and an override stored with an expiry past the calendar still lists."""
    from autoscaler.adapters.sqlite_store import SQLiteStateStore
    from autoscaler.ports import Override

    config = _write_config(tmp_path, work_dir)
    reason = "launch [/x] [bold]day[/bold]"
    added = runner.invoke(
        app, ["surge", "-c", str(config), "--tier", "web", "--factor", "2", "--for", "1h", "--reason", reason]
    )
    assert added.exit_code == 0, added.output
    SQLiteStateStore(tmp_path / "state.db").add_override(
        Override(id="sg-old", tier="chat", factor=2, floor=2, created_at=0, expires_at=1e300, reason="[/]")
    )
    wide = {"COLUMNS": "250"}
    listed = runner.invoke(app, ["surge", "-c", str(config), "--list"], env=wide)
    assert listed.exit_code == 0, listed.output
    assert reason in listed.output and "far future" in listed.output and "[/]" in listed.output
    status = runner.invoke(app, ["status", "-c", str(config)], env=wide)
    assert status.exit_code == 0, status.output
    assert "far future" in status.output


def test_a_corrupt_state_store_is_an_error_naming_it(tmp_path: Path, work_dir: Path) -> None:
    config = _write_config(tmp_path, work_dir)
    (tmp_path / "state.db").write_bytes(b"this is not a database" * 100)
    for args in (["status"], ["surge", "--list"]):
        result = runner.invoke(app, [*args, "-c", str(config)])
        assert result.exit_code == 5, result.output
        assert "state store" in result.output and "state.db" in result.output
        assert "Traceback" not in result.output


def test_a_canary_secret_never_appears_in_any_output(
    tmp_path: Path, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plant a canary in every secret the service reads (Prometheus token, basic-auth password, the
    OpenStack password in the environment), make a pass fail, and search every output for it."""
    canary = "canary-5e0c1b7a"
    monkeypatch.setenv("PROMETHEUS_TOKEN", canary + "-token")
    monkeypatch.setenv("PROM_PASSWORD", canary + "-password")
    monkeypatch.setenv("OS_PASSWORD", canary + "-openstack")
    config = _write_config(
        tmp_path,
        work_dir,
        prometheus={
            "url": f"http://127.0.0.1:{free_port()}/prom",
            "bearer_token": {"env": "PROMETHEUS_TOKEN"},
            "basic_auth": {"username": "swell", "password": {"env": "PROM_PASSWORD"}},
            "timeout_s": 1,
        },
    )
    results = [
        runner.invoke(app, ["autoscale", "--config", str(config), "--once", "--json"]),
        runner.invoke(app, ["autoscale", "--config", str(config), "--once"]),
        runner.invoke(app, ["status", "--config", str(config), "--json"]),
        runner.invoke(app, ["status", "--config", str(config)], env={"COLUMNS": "200"}),
    ]
    assert results[0].exit_code == 3
    everything = "".join(r.output + (r.stderr or "") for r in results)
    for stored in tmp_path.glob("state.db*"):  # the database and its write-ahead log
        everything += stored.read_bytes().decode(errors="replace")
    assert "unreachable" in everything
    assert canary not in everything
