"""The drill's configuration derives from production's: the autoscaler config the drill runs (policy
time constants compressed by one function), the Prometheus rules it loads (production's rule file,
every range, offset and `for:` compressed), its HAProxy (rendered from the stack's listener spec,
compared here field by field) and its Prometheus (production's scrape configuration, its instances
listed as openstack_sd would list them)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from autoscaler.config import WarmPoolConfig, parse_config
from autoscaler.core.policies.swell import SERVICE_TIMING, SwellParams, SwellState
from autoscaler.core.state import state_from_dict
from dashboards.prometheus import PRODUCTION, Site, drill_scrape_config, openstack_sd_targets
from loadtests.curves import profile_growth_per_s
from loadtests.options import (
    DEFAULT_SPEED,
    NOMINAL_COLD_BOOT_S,
    NOMINAL_WARM_BOOT_S,
    DrillOptions,
    catalog_plans,
)
from loadtests.plumbing import (
    DRILL_OMITTED,
    RULES,
    HAProxyPorts,
    OpenStackDiscoveryStandIn,
    compress_rules,
    drill_rate_window_lag_s,
    duration_s,
    haproxy_config,
    prometheus_config,
    write_yaml,
)
from loadtests.wiring import autoscaler_config, remembered_state
from stacks import listeners
from tests.realparts import wait_until


@pytest.mark.parametrize("profile", sorted(DEFAULT_SPEED), ids=sorted(DEFAULT_SPEED))
def test_every_time_constant_of_the_policy_is_compressed_with_the_speed(profile: str, tmp_path: Path) -> None:
    options = DrillOptions(out=tmp_path, profile=profile)
    speed = options.effective_speed
    raw = autoscaler_config(options, "http://127.0.0.1:9", tmp_path / "state.db")
    cfg = parse_config(raw, source="drill")  # the service accepts it as it ships
    defaults = SwellParams(capacity_per_instance=1.0)
    for tier in cfg.tiers.values():
        for f in fields(SwellParams):
            if f.name.endswith("_s") and f.name not in SERVICE_TIMING:
                assert tier.policy_params[f.name] == pytest.approx(getattr(defaults, f.name) / speed), f.name
        assert tier.warm_pool.shrink_after_s == pytest.approx(WarmPoolConfig().shrink_after_s / speed)
    web, chat = cfg.tiers["web"], cfg.tiers["chat"]
    lag = drill_rate_window_lag_s(speed)
    assert web.lead_time_s == pytest.approx(options.cold_delay_s("web") + lag)
    assert chat.lead_time_s == pytest.approx(options.cold_delay_s("chat"))


@pytest.mark.parametrize("warm_pool", [True, False], ids=["warm-pool", "no-warm-pool"])
def test_the_autoscaler_plans_across_the_delays_the_local_actuator_waits(
    warm_pool: bool, tmp_path: Path
) -> None:
    """One definition: each tier's nominal cold and warm delays (production's defaults, those of the
    autoscaler's `warm_pool` block) are what the drill's instances wait and what its autoscaler
    plans across, both compressed by the speed; `--no-warm-pool` turns only the pool off."""
    options = DrillOptions(out=tmp_path, profile="spike", warm_pool=warm_pool)
    speed = options.effective_speed
    cfg = parse_config(autoscaler_config(options, "http://127.0.0.1:9", tmp_path / "s.db"), source="drill")
    defaults = WarmPoolConfig()
    for name, tier in cfg.tiers.items():
        lag = tier.lead_time_s - options.cold_delay_s(name)
        assert lag == pytest.approx(drill_rate_window_lag_s(speed) if name == "web" else 0.0)
        assert tier.warm_pool.enabled is warm_pool
        assert options.plans[name].cold_boot_s == NOMINAL_COLD_BOOT_S == defaults.cold_lead_s
        assert options.plans[name].warm_boot_s == NOMINAL_WARM_BOOT_S == defaults.warm_lead_s
        assert tier.warm_pool.cold_lead_s == pytest.approx(NOMINAL_COLD_BOOT_S / speed + lag)
        assert tier.warm_pool.warm_lead_s == pytest.approx(NOMINAL_WARM_BOOT_S / speed + lag)
        assert tier.actuator.boot_delay_s == pytest.approx(options.cold_delay_s(name))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("profile", "rise", "within_s"),
    [("spike", 4.0, 600.0), ("surge400", 5.0, 2400.0), ("flash", 4.0, 60.0), ("daily", 4.5, 3 * 3600.0)],
    ids=["spike", "surge400", "flash", "daily"],
)
def test_swell_starts_remembering_the_profiles_steepest_rise(
    profile: str, rise: float, within_s: float, tmp_path: Path
) -> None:
    """The drill's memory (as after a day like this one): swell's growth memory is the profile's
    steepest rise per real second, which its warm-pool sizer projects across the cold lead time;
    nothing else of the state is set, and `--no-memory` starts from nothing."""
    assert profile_growth_per_s(profile) == pytest.approx(math.log(rise) / within_s)
    options = DrillOptions(out=tmp_path, profile=profile)
    state = remembered_state(options, now=1000.0)
    for name in options.plans:
        swell = state_from_dict(SwellState, state.policy_state[name])
        assert swell.growth_memory == pytest.approx(math.log(rise) / within_s * options.effective_speed)
        assert swell._replace(growth_memory=0.0) == SwellState()
        assert state.history_since[name] == 1000.0
    assert remembered_state(dataclasses.replace(options, memory=False), now=1000.0).is_empty()
    assert profile_growth_per_s("soak") == 0.0


def test_a_warm_delay_not_shorter_than_the_cold_one_is_refused(tmp_path: Path) -> None:
    plans = catalog_plans()
    plans["chat"] = dataclasses.replace(plans["chat"], warm_boot_s=600.0)
    with pytest.raises(ValueError, match="tier chat: warm_boot_s"):
        DrillOptions(out=tmp_path, plans=plans).validate()


def strip_durations(text: str) -> str:
    # A count over a floored window is scaled back to its nominal window (compress_rules).
    text = re.sub(r"\(increase\((.*?\])\) \* [0-9.e-]+\)", r"increase(\1)", text)
    return re.sub(r"(\[|offset )[0-9a-z]+", r"\1D", text)


@pytest.mark.parametrize("speed", [1.0, 5.0, 20.0, 360.0], ids=lambda s: f"x{s:g}")
def test_the_drill_rules_are_productions_with_every_duration_compressed(speed: float) -> None:
    production = yaml.safe_load(RULES.read_text())
    drill = compress_rules(production, speed)
    pairs = [
        (p, d)
        for pg, dg in zip(production["groups"], drill["groups"], strict=True)
        for p, d in zip(pg["rules"], dg["rules"], strict=True)
    ]
    assert pairs
    for prod, compressed in pairs:
        assert {k: v for k, v in prod.items() if k not in ("expr", "for")} == {
            k: v for k, v in compressed.items() if k not in ("expr", "for")
        }
        assert strip_durations(prod["expr"]) == strip_durations(compressed["expr"])
        ranges = zip(
            re.findall(r"\[([0-9a-z]+)\]", prod["expr"]),
            re.findall(r"\[([0-9a-z]+)\]", compressed["expr"]),
            strict=True,
        )
        for nominal, short in ranges:
            assert duration_s(short) == pytest.approx(max(duration_s(nominal) / speed, 3.0), abs=1e-3)
        for factor in re.findall(r"\(increase\(.*?\]\) \* ([0-9.e-]+)\)", compressed["expr"]):
            assert float(factor) == pytest.approx(60.0 / speed / 3.0, rel=1e-4)  # a 1m count, floored
        if "for" in prod:
            assert duration_s(compressed["for"]) == pytest.approx(duration_s(prod["for"]) / speed, abs=1e-3)


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool (Debian package prometheus)")
def test_promtool_accepts_the_compressed_rules(tmp_path: Path) -> None:
    path = tmp_path / "swell.rules.yml"
    write_yaml(path, compress_rules(yaml.safe_load(RULES.read_text()), 7.5))
    run = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _sections(haproxy: str) -> dict[str, set[str]]:
    """HAProxy sections: a line at column 0 -> the set of its (stripped) lines."""
    out = {}
    for block in re.split(r"\n(?=\S)", haproxy.strip()):
        head, *body = block.splitlines()
        out[head] = {line.strip() for line in body}
    return out


def _expected_sections(
    tier: str, spec: listeners.BalancedTier, speed: float, ports: HAProxyPorts
) -> dict[str, set[str]]:
    """What Octavia's amphora runs for `spec` (macros.j2), in the drill: HTTP, 127.0.0.1, slots."""
    pool, monitor, traffic = spec.pool, spec.pool.monitor, spec.traffic
    backend = {
        "mode http",
        f"balance {listeners.HAPROXY_BALANCE[pool.lb_method]}",
        f"timeout check {monitor.timeout_s}s",
        f"option httpchk {monitor.http_method} {monitor.url_path}",
        f"http-check expect rstatus {monitor.expected_codes}",
        f"timeout connect {traffic.timeout_member_connect_ms}ms",
        f"timeout server {traffic.timeout_member_data_ms}ms",
        f"default-server check inter {round(max(monitor.delay_s / speed, 0.1) * 1000)}ms"
        f" fall {monitor.max_retries_down} rise {monitor.max_retries} disabled",
        "server-template s 1-4 127.0.0.1:9",
    }
    if "X-Forwarded-For" in traffic.insert_headers:
        backend.add("option forwardfor")
    if "X-Forwarded-Proto" in traffic.insert_headers:
        backend.add("http-request set-header X-Forwarded-Proto https")
    if pool.persistence == "HTTP_COOKIE":
        backend |= {"cookie SRV insert indirect nocache dynamic", "dynamic-cookie-key swell-drill"}
    out = {f"backend {tier}-pool": backend}
    for listener in spec.listeners:
        if listener.monitoring_only or listener.name in DRILL_OMITTED:
            continue
        port = ports.frontend(tier) if listener.forwards_to_pool else ports.redirects[tier]
        lines = {f"bind 127.0.0.1:{port}", "mode http", f"timeout client {listener.timeout_client_data_ms}ms"}
        if listener.forwards_to_pool:
            lines.add(f"default_backend {tier}-pool")
        if listener.redirect is not None:
            r = listener.redirect
            lines.add(
                f"http-request redirect scheme {r.scheme} code {r.http_code} if {{ path_beg {r.rule_value} }}"
            )
        out[f"frontend {tier}-{listener.name}"] = lines
    return out


@pytest.mark.parametrize("speed", [1.0, 20.0, 360.0], ids=lambda s: f"x{s:g}")
@pytest.mark.parametrize("tier", sorted(listeners.specs()))
def test_the_drills_haproxy_is_the_stacks_listener_spec_field_by_field(tier: str, speed: float) -> None:
    ports = HAProxyPorts(
        {"web": 1001, "chat": 1002, "video": 1003}, 1004, redirects={"web": 1005, "chat": 1006}
    )
    rendered = _sections(haproxy_config(ports, Path("/run/haproxy.sock"), slots=4, speed=speed))
    expected = _expected_sections(tier, listeners.spec(tier), speed, ports)
    assert {head: rendered[head] for head in expected} == expected
    # Nothing else of this tier runs: the omitted listeners are absent, not half rendered.
    assert {head for head in rendered if re.match(rf"(frontend|backend) {tier}-", head)} == set(expected)
    # One PROMETHEUS listener for the whole process, as the drill's scrape configuration expects.
    assert rendered["frontend prometheus"] == {
        "bind 127.0.0.1:1004",
        "mode http",
        "http-request use-service prometheus-exporter if { path /metrics }",
    }


def test_the_drill_leaves_out_only_the_listeners_it_names_and_says_why() -> None:
    # Every omission is a listener a catalog can declare (not a stale name), with a reason a reader
    # can act on. The packaged catalog declares none of them since Prosody moved to the Jitsi shards.
    declared = {x.name for spec in listeners.specs().values() for x in spec.listeners}
    assert set(DRILL_OMITTED) <= declared | set(listeners.EXTRA_LISTENERS)
    assert set(DRILL_OMITTED) == {"xmpp"}
    assert all(len(reason) > 40 for reason in DRILL_OMITTED.values())
    rendered = haproxy_config(
        HAProxyPorts({"web": 1, "chat": 2, "video": 3}, 4, redirects={"web": 5, "chat": 6}), Path("/s"), 2
    )
    assert "frontend chat-xmpp" not in rendered and ":5222" not in rendered


def test_a_listener_the_drill_cannot_render_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # A new listener of another kind must be rendered or named in DRILL_OMITTED, never dropped quietly.
    specs = listeners.specs()
    chat = specs["chat"]
    sneaky = dataclasses.replace(listeners.XMPP, name="xmpp-federation")
    changed = dataclasses.replace(chat, listeners=(*chat.listeners, sneaky))
    monkeypatch.setattr(listeners, "specs", lambda: {**specs, "chat": changed})
    with pytest.raises(ValueError, match=r"chat-xmpp-federation: .* DRILL_OMITTED"):
        haproxy_config(
            HAProxyPorts({"web": 1, "chat": 2, "video": 3}, 4, redirects={"web": 5, "chat": 6}), Path("/s"), 2
        )


@pytest.mark.skipif(not shutil.which("haproxy"), reason="needs haproxy (Debian package)")
def test_haproxy_accepts_the_drills_configuration(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(
        haproxy_config(
            HAProxyPorts({"web": 20001, "chat": 20002, "video": 20003}, 20004), tmp_path / "s.sock", 16, 20.0
        )
    )
    run = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_drills_prometheus_runs_the_committed_production_configuration(tmp_path: Path) -> None:
    drill = prometheus_config(9001, tmp_path / "n.json", tmp_path / "j.json", tmp_path / "r.yml", 9002)
    assert drill == drill_scrape_config(
        yaml.safe_load(PRODUCTION.read_text()),
        node_file_sd=tmp_path / "n.json",
        jvb_file_sd=tmp_path / "j.json",
        lb_targets=["127.0.0.1:9001"],
        autoscaler_targets=["127.0.0.1:9002"],
        rule_file=tmp_path / "r.yml",
    )


def test_the_drills_instances_reach_prometheus_as_openstack_sd_would_list_them(tmp_path: Path) -> None:
    source, dest = tmp_path / "nodes.json", tmp_path / "nodes.openstack.json"
    stand_in = OpenStackDiscoveryStandIn([(source, dest)], poll_s=0.01)
    stand_in.sync()
    assert json.loads(dest.read_text()) == []  # nothing listed yet
    # What the local actuator writes for two ready instances.
    groups = [
        {"targets": ["127.0.0.1:4101"], "labels": {"tier": "web", "instance_port": "4101"}},
        {"targets": ["127.0.0.1:4201"], "labels": {"tier": "video", "instance_port": "4201"}},
    ]
    source.write_text(json.dumps(groups))
    stand_in.start()
    try:
        wait_until(lambda: len(json.loads(dest.read_text())) == 2, "the stand-in's copy", 5)
        site = Site()
        assert json.loads(dest.read_text()) == openstack_sd_targets(
            [
                ("web", "127.0.0.1:4101", f"swell-{site.stack}-web-127.0.0.1:4101"),
                ("video", "127.0.0.1:4201", f"swell-{site.stack}-video-127.0.0.1:4201"),
            ]
        )
        source.write_text(json.dumps(groups[:1]))  # one instance retired
        wait_until(lambda: len(json.loads(dest.read_text())) == 1, "the retirement", 5)
    finally:
        stand_in.stop()
