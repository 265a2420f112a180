"""A fourth tier defined only in the tier catalog reaches the drill: its plan, its autoscaler
configuration, its Locust users (by kind of traffic), the report's columns, the rendered HAProxy
(accepted by `haproxy -c`) and Prometheus configuration, and one instance of its reference service
serving through HAProxy, started by the local actuator as the drill starts every instance."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from autoscaler.config import parse_config
from loadtests.cli import _view
from loadtests.local_actuator import LocalActuator, LocalActuatorSettings, LocalTierSettings
from loadtests.options import DrillOptions
from loadtests.plumbing import (
    HAProxyPorts,
    haproxy_config,
    http_ok,
    production_rules,
    prometheus_config,
    wait_for,
    write_yaml,
)
from loadtests.processes import start_process, stop_process
from loadtests.wiring import autoscaler_config
from tests.fourth_tier import ENTRY, NAME, use_extended_catalog
from tests.realparts import needs_haproxy, wait_until


@pytest.fixture(autouse=True)
def _extended(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_extended_catalog(monkeypatch, tmp_path)


def test_the_drill_plans_and_scales_the_fourth_tier(tmp_path: Path) -> None:
    options = DrillOptions(out=tmp_path)
    plan = options.plans[NAME]
    assert (plan.min, plan.max, plan.capacity_per_instance, plan.unit) == (1, 4, 3.0, "recordings")
    cfg = parse_config(autoscaler_config(options, "http://127.0.0.1:9", tmp_path / "s.db"), source="test")
    assert NAME in cfg.tiers
    snap = {
        "phase": "load",
        "t": 1,
        "load_s": 2,
        "users": 3,
        "rate": 4,
        "p95_ms": None,
        "errors": 0,
        "cpu": 5,
    }
    snap["tiers"] = {t: {"ready": 1, "requested": 1, "demand": None} for t in options.plans}
    assert [c.header for c in _view({**snap, "decision": "-"}).columns][-1] == NAME


def test_locust_gets_a_user_class_of_the_fourth_tiers_kind_of_traffic() -> None:
    from loadtests.users import SessionUser, user_classes

    users = user_classes()
    recording = users[f"{NAME.capitalize()}User"]
    assert issubclass(recording, SessionUser) and recording.tier == NAME
    assert recording.weight == ENTRY["drill"]["users_weight"]
    assert recording.env_var == f"SWELL_{NAME.upper()}_HOST"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")
def test_promtool_accepts_the_drills_prometheus_configuration(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "prometheus.yml", prometheus_config(9101, tmp_path / "n.json", tmp_path / "j.json")
    )
    run = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(path)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"|{NAME})" in path.read_text()
    # The rules the drill compresses count its demand too (production's, rendered for this catalog).
    demand = {r.get("record"): r["expr"] for g in production_rules()["groups"] for r in g["rules"]}
    assert f'tier="{NAME}"' in demand["tier:swell_offered_demand:current"]


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[tuple[HAProxyPorts, Path]]:
    ports = HAProxyPorts.allocate()
    sock = tmp_path / "haproxy.sock"
    config = haproxy_config(ports, sock, slots=2)
    assert f"frontend {NAME}-https" in config and f"backend {NAME}-pool" in config
    assert f"backend {NAME}-pool\n  mode http\n  balance roundrobin\n" in config
    (tmp_path / "haproxy.cfg").write_text(config)
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    proc = start_process(["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")], tmp_path / "haproxy.log")
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{ports.stats}/metrics"), "haproxy", 15, proc)
        yield ports, sock
    finally:
        stop_process(proc)


@needs_haproxy
def test_one_instance_of_the_fourth_tier_serves_through_haproxy(
    haproxy: tuple[HAProxyPorts, Path], tmp_path: Path
) -> None:
    ports, sock = haproxy
    actuator = LocalActuator(
        LocalActuatorSettings(
            tiers={NAME: LocalTierSettings(f"{NAME}-pool", slots=2, boot_delay_s=0.0)},
            haproxy_socket=sock,
            node_file_sd=tmp_path / "nodes.json",
            jvb_file_sd=tmp_path / "jvb.json",
        )
    ).start()
    try:
        actuator.scale(NAME, 1)
        wait_until(lambda: actuator.capacity(NAME).ready == 1, f"a ready {NAME} instance", 20)
        # A session, as its kind of traffic (sessions) is served: the message comes back.
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{ports.frontend(NAME)}/xmpp-websocket?room=r", timeout=5
        )
        try:
            ws.send("hello")
            assert json.loads(ws.recv())["body"] == "hello"
        finally:
            ws.close()
    finally:
        actuator.close()
