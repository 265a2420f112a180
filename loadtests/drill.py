"""`swell drill`: rehearse a surge on one machine with the real loop.

It starts, on 127.0.0.1 in a temporary directory: HAProxy (standing in for the Octavia load
balancer), the minimum instances of each tier (local processes of `loadtests.tier_service`),
Prometheus with the project's recording rules, the autoscaler loop (the real service, `swell`
policy, with the local actuator and a boot delay standing in for VM provisioning), and Locust
headless in its own process. It shows live progress, stops everything it started (on success,
failure and Ctrl-C), and writes a report directory (`loadtests.report`).

Time is compressed by `speed`: the load shape, the boot delay, every time constant of the policy
(`compress_time`) and every range, offset and `for:` of production's rules (`compress_rules`: a
1-minute rate window stays one nominal minute) are divided by it. The web tier's lead time adds
half the compressed rate window, as the signal lags by that much. Prometheus starts once the base
load runs, and the loop's first pass waits one rate window: production's series have been there
for hours, and a window that began on an idle load balancer would ramp from zero, which the
policy would take for a surge (and pre-scale on it, as earlier drills did).

This module never imports locust (it monkey-patches the interpreter with gevent).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from autoscaler.adapters.local import LocalActuator, LocalActuatorSettings, LocalTierSettings, free_port
from autoscaler.adapters.sqlite_store import SQLiteStateStore
from autoscaler.config import parse_config
from autoscaler.core.policies.swell import compress_time
from autoscaler.ports import ActuationError, Actuator, Capacity, Member
from autoscaler.service import Autoscaler
from autoscaler.telemetry import Redactor, Telemetry, TelemetryServer
from autoscaler.wiring import build_source
from loadtests.plumbing import (
    RULES,
    TIERS,
    HAProxyPorts,
    OpenStackDiscoveryStandIn,
    by_tier,
    compress_rules,
    drill_rate_window_lag_s,
    haproxy_config,
    http_ok,
    prometheus_config,
    start_process,
    stop_process,
    wait_for,
    write_yaml,
)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEMAND = "tier:swell_offered_demand:current"
READY = "tier:swell_ready_instances:count"
# Nominal lengths of the shapes (seconds), mirrored from loadtests/shapes.py without importing
# locust; a test checks they agree.
PROFILE_NOMINAL_S = {"surge400": 4500.0, "daily": 86400.0, "spike": 1800.0, "flash": 1200.0}
DEFAULT_SPEED = {"surge400": 20.0, "daily": 360.0, "spike": 7.5, "flash": 5.0}
NOMINAL_BOOT_S = 180.0  # VM boot plus cloud-init configuration
# Drains are not compressed: the drill's sessions last 10-25 real seconds (Locust's users send one
# message a second), so a retiring instance gets real time for them to end.
DRILL_DRAIN_TIMEOUT_S = 60.0


class DrillError(RuntimeError):
    """The drill could not run (a part did not start); the message says which."""


@dataclass(frozen=True)
class TierPlan:
    """One tier in the drill: instance limits and what one instance serves (the autoscaler's
    `capacity_per_instance`, below the service's hard limits so that the SLO holds at it)."""

    min: int
    max: int
    capacity_per_instance: float
    unit: str


PLANS = {
    "web": TierPlan(min=2, max=16, capacity_per_instance=10.0, unit="requests/s"),
    "chat": TierPlan(min=1, max=8, capacity_per_instance=8.0, unit="sessions"),
    "video": TierPlan(min=1, max=8, capacity_per_instance=6.0, unit="participants"),
}

FAULT_RE = re.compile(
    r"^(?P<kind>prometheus-outage|kill-instance|actuator-error)@(?P<at>\d+(\.\d+)?)s?(:(?P<for>\d+(\.\d+)?)s?)?$"
)


@dataclass(frozen=True)
class Fault:
    """A fault injected `at` seconds after the load starts (real seconds), for `duration` seconds."""

    kind: str
    at: float
    duration: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        m = FAULT_RE.match(text.strip())
        if not m:
            raise ValueError(
                f"--fault {text!r}: expected prometheus-outage@AT:FOR, kill-instance@AT or "
                "actuator-error@AT:FOR (seconds after the load starts)"
            )
        kind, duration = m["kind"], float(m["for"]) if m["for"] else 0.0
        if kind != "kill-instance" and duration <= 0:
            raise ValueError(f"--fault {text!r}: {kind} needs a duration, e.g. {kind}@60:20")
        return cls(kind, float(m["at"]), duration)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at_s": self.at, "for_s": self.duration}


@dataclass(frozen=True)
class DrillOptions:
    out: Path
    profile: str = "surge400"
    speed: float | None = None
    autoscale: bool = True
    faults: tuple[Fault, ...] = ()
    base_users: int = 30
    interval_s: float = 2.0
    warmup_s: float = 15.0
    p95_limit_ms: float = 500.0
    error_rate_limit: float = 0.01
    plans: dict[str, TierPlan] = field(default_factory=lambda: dict(PLANS))

    @property
    def effective_speed(self) -> float:
        return self.speed if self.speed is not None else DEFAULT_SPEED[self.profile]

    @property
    def load_s(self) -> float:
        return PROFILE_NOMINAL_S[self.profile] / self.effective_speed

    @property
    def boot_delay_s(self) -> float:
        return NOMINAL_BOOT_S / self.effective_speed

    def validate(self) -> None:
        if self.profile not in PROFILE_NOMINAL_S:
            raise ValueError(f"--profile {self.profile!r}: expected one of {', '.join(PROFILE_NOMINAL_S)}")
        if not self.effective_speed > 0:
            raise ValueError(f"--speed must be > 0, got {self.speed}")
        if self.load_s > 3600:
            raise ValueError(f"--speed {self.speed}: the load would run {self.load_s:.0f} s (more than 1 h)")


def autoscaler_config(o: DrillOptions, prom_url: str, state_path: Path) -> dict[str, Any]:
    """The drill's autoscaler configuration: production's `swell` policy with every one of its time
    constants compressed by the drill's speed (`compress_time`), the boot delay plus, for web, the
    rules' (compressed) rate-window lag as lead time, and the local actuator."""
    speed = o.effective_speed
    return {
        "prometheus": {"url": prom_url, "timeout_s": 1.5},
        "interval_s": o.interval_s,
        "state": {"kind": "sqlite", "path": str(state_path)},
        "tiers": {
            t: {
                "capacity_per_instance": p.capacity_per_instance,
                "min": p.min,
                "max": p.max,
                "lead_time_s": o.boot_delay_s + (drill_rate_window_lag_s(speed) if t == "web" else 0.0),
                "policy": "swell",
                "policy_params": compress_time(speed),
                "drain_timeout_s": DRILL_DRAIN_TIMEOUT_S,
                "actuator": {"kind": "local", "boot_delay_s": o.boot_delay_s},
            }
            for t, p in o.plans.items()
        },
    }


class FaultyActuator:
    """Wraps the local actuator (a `Fleet`): `scale` and `apply` raise ActuationError while
    `failing` is set (fault injection); reads pass through."""

    def __init__(self, inner: LocalActuator) -> None:
        self.inner = inner
        self.name = inner.name
        self.failing = False

    def capacity(self, tier: str) -> Capacity:
        return self.inner.capacity(tier)

    def scale(self, tier: str, desired: int) -> None:
        if self.failing:
            raise ActuationError("injected fault: actuator-error (the cloud API refuses)")
        self.inner.scale(tier, desired)

    def members(self, tier: str) -> list[Member]:
        return self.inner.members(tier)

    def apply(self, tier: str, serving: Sequence[int], retiring: Sequence[int]) -> None:
        if self.failing:
            raise ActuationError("injected fault: actuator-error (the cloud API refuses)")
        self.inner.apply(tier, serving, retiring)

    def sessions(self, tier: str, indices: Sequence[int]) -> Mapping[int, int | None]:
        return self.inner.sessions(tier, indices)


class RequestLog:
    """Reads Locust's request log (written by loadtests/locustfile.py) as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.requests: list[tuple[float, str, float, bool]] = []  # (t, tier, ms, ok)
        self.users: list[tuple[float, int]] = []
        self._partial = ""

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path) as f:
            f.seek(self.offset)
            chunk = f.read()
            self.offset = f.tell()
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            parts = line.split(",")
            try:
                if parts[0] == "R" and len(parts) == 6:
                    self.requests.append((float(parts[1]), parts[2], float(parts[4]), parts[5] == "1"))
                elif parts[0] == "U" and len(parts) == 3:
                    self.users.append((float(parts[1]), int(parts[2])))
            except ValueError:
                continue  # a line cut by a crash: skip it


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]  # nearest rank


@dataclass
class Timeline:
    t: list[float] = field(default_factory=list)
    demand: dict[str, list[float | None]] = field(default_factory=lambda: {t: [] for t in TIERS})
    ready: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in TIERS})
    requested: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in TIERS})
    ready_seen: dict[str, list[float | None]] = field(default_factory=lambda: {t: [] for t in TIERS})
    cpu_busy: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "cpu_busy_pct": self.cpu_busy,
            "tiers": {
                tier: {
                    "demand": self.demand[tier],
                    "ready": self.ready[tier],
                    "requested": self.requested[tier],
                    "ready_in_prometheus": self.ready_seen[tier],
                }
                for tier in TIERS
            },
        }


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the drill like Ctrl-C: through the same cleanup."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Drill:
    def __init__(
        self, options: DrillOptions, progress: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        options.validate()
        self.o = options
        self.progress = progress or (lambda _: None)
        self.work = Path(tempfile.mkdtemp(prefix="swell-drill-"))
        self.logs = options.out / "logs"
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.prometheus: subprocess.Popen[bytes] | None = None
        self.locust: subprocess.Popen[bytes] | None = None
        self.actuator: LocalActuator | None = None
        self.discovery: OpenStackDiscoveryStandIn | None = None
        self.telemetry_server: TelemetryServer | None = None
        self.autoscaler_metrics_port = 0
        self.decisions: list[dict[str, Any]] = []
        self.fault_log: list[dict[str, Any]] = []
        self.timeline = Timeline()
        self.requests = RequestLog(options.out / "requests.csv")
        self.started_at = 0.0
        self.load_started_at = 0.0
        self.autoscaler_starts_at = 0.0
        self.prom_url = ""
        self.finished_at = 0.0
        self.cpu_at_start = self.cpu_at_end = os.times()

    # --- start and stop ------------------------------------------------------------------------
    def _start_parts(self) -> None:
        o = self.o
        self.logs.mkdir(parents=True, exist_ok=True)
        self.ports = HAProxyPorts.allocate()
        sock = self.work / "haproxy.sock"
        # Room for retiring instances next to a tier at its max.
        slots = 2 * max(p.max for p in o.plans.values())
        (self.work / "haproxy.cfg").write_text(haproxy_config(self.ports, sock, slots, o.effective_speed))
        self.haproxy = start_process(
            ["haproxy", "-db", "-f", str(self.work / "haproxy.cfg")], self.logs / "haproxy.log"
        )
        wait_for(lambda: http_ok(f"http://127.0.0.1:{self.ports.stats}/metrics"), "HAProxy", 15, self.haproxy)
        node_sd, jvb_sd = self.work / "nodes.json", self.work / "jvb.json"
        self.actuator = LocalActuator(
            LocalActuatorSettings(
                tiers={
                    t: LocalTierSettings(
                        kind=t, backend=f"{t}-pool", slots=slots, boot_delay_s=o.boot_delay_s
                    )
                    for t in o.plans
                },
                haproxy_socket=sock,
                node_file_sd=node_sd,
                jvb_file_sd=jvb_sd,
                log_dir=self.logs / "instances",
            )
        ).start()
        self.actuator.bootstrap({t: p.min for t, p in o.plans.items()})

    def _start_prometheus(self) -> None:
        """Prometheus starts once the base load runs: a rate window that began on an idle HAProxy
        would show the web tier a ramp from zero in its first minute, a cold start production (an
        LB that has been serving for hours) never sees."""
        o = self.o
        # The actuator lists its instances in nodes.json and jvb.json; Prometheus reads them as
        # openstack_sd would list them, so production's relabel rules apply unchanged.
        node_sd, jvb_sd = self.work / "nodes.openstack.json", self.work / "jvb.openstack.json"
        self.discovery = OpenStackDiscoveryStandIn(
            [(self.work / "nodes.json", node_sd), (self.work / "jvb.json", jvb_sd)]
        ).start()
        prom_port = free_port()
        self.autoscaler_metrics_port = free_port()
        rules = self.work / "swell.rules.yml"
        write_yaml(rules, compress_rules(yaml.safe_load(RULES.read_text()), o.effective_speed))
        write_yaml(
            self.work / "prometheus.yml",
            prometheus_config(self.ports.stats, node_sd, jvb_sd, rules, self.autoscaler_metrics_port),
        )
        self.prometheus = start_process(
            [
                "prometheus",
                f"--config.file={self.work / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            self.logs / "prometheus.log",
        )
        self.prom_url = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: http_ok(f"{self.prom_url}/-/ready"), "Prometheus", 30, self.prometheus)

        def all_ready() -> bool:
            try:
                seen = by_tier(self.prom_url, READY)
            except OSError:
                return False
            return all(seen.get(t, 0) >= p.min for t, p in o.plans.items())

        wait_for(all_ready, "Prometheus to see the first instances ready", 30, self.prometheus)
        # The autoscaler's first pass waits until the web rate window holds only loaded samples: a
        # new series ramps from zero across its first window, which the policy would take for a
        # surge (production's series have been there for hours).
        self.autoscaler_starts_at = time.time() + 2 * drill_rate_window_lag_s(o.effective_speed)
        self._write_parts()

    def _write_parts(self) -> None:
        """What runs, for people and tests checking that a stopped drill left nothing behind."""
        procs = {"haproxy": self.haproxy, "prometheus": self.prometheus, "locust": self.locust}
        parts = {
            "pids": {name: p.pid for name, p in procs.items() if p is not None},
            "ports": {
                **({"prometheus": int(self.prom_url.rsplit(":", 1)[1])} if self.prom_url else {}),
                **{f"haproxy_{t}": self.ports.frontend(t) for t in TIERS},
                "haproxy_stats": self.ports.stats,
            },
            "instance_logs": str(self.logs / "instances"),
        }
        (self.o.out / "parts.json").write_text(json.dumps(parts, indent=1))

    def _autoscaler(self) -> tuple[Autoscaler, FaultyActuator]:
        o = self.o
        cfg = parse_config(autoscaler_config(o, self.prom_url, self.work / "state.db"), source="drill")
        assert self.actuator is not None
        faulty = FaultyActuator(self.actuator)
        actuators: dict[str, Actuator] = dict.fromkeys(o.plans, faulty)
        log = open(self.o.out / "decisions.log", "w")  # noqa: SIM115 (closed with the drill)
        self._decision_log = log
        telemetry = Telemetry(Redactor([]), log_stream=log)
        # Scraped as job swell-autoscaler, as production's autoscaler is.
        self.telemetry_server = TelemetryServer(
            telemetry, "127.0.0.1", self.autoscaler_metrics_port, 4 * o.interval_s, time.time
        ).start()
        scaler = Autoscaler(
            cfg,
            build_source(cfg),
            actuators,
            SQLiteStateStore(self.work / "state.db"),
            telemetry,
            time.time,
        )
        return scaler, faulty

    def _start_locust(self) -> None:
        o = self.o
        env = dict(os.environ)
        env.update(
            SWELL_PROFILE=o.profile,
            SWELL_SPEED=str(o.effective_speed),
            SWELL_BASE_USERS=str(o.base_users),
            SWELL_CHAT_HOST=f"ws://127.0.0.1:{self.ports.chat}",
            SWELL_VIDEO_HOST=f"ws://127.0.0.1:{self.ports.video}",
            SWELL_REQUEST_LOG=str(self.requests.path),
        )
        self.requests.path.unlink(missing_ok=True)
        self.locust = start_process(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--host",
                f"http://127.0.0.1:{self.ports.web}",
                "--csv",
                str(self.o.out / "locust"),
                "--only-summary",
                "--stop-timeout",
                "3",
                "--loglevel",
                "WARNING",
            ],
            self.logs / "locust.log",
            env=env,
        )
        self.load_started_at = time.time()
        self._write_parts()

    def stop(self) -> None:
        """Stop everything started, in reverse order; never raises."""
        actuator, log = self.actuator, getattr(self, "_decision_log", None)
        steps: list[Callable[[], None]] = [lambda: stop_process(self.locust, 10)]
        if actuator is not None:
            steps.append(actuator.close)
        for part in (self.telemetry_server, self.discovery):
            if part is not None:
                steps.append(part.stop)
        steps += [lambda: stop_process(self.prometheus, 10), lambda: stop_process(self.haproxy, 10)]
        if log is not None:
            steps.append(log.close)
        for step in steps:
            with contextlib.suppress(Exception):
                step()
        shutil.rmtree(self.work, ignore_errors=True)

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from loadtests.report import build_report

        self.o.out.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self.cpu_at_start = os.times()
        psutil.cpu_percent(interval=None)  # start the CPU busy counter
        with _sigterm_as_interrupt():
            try:
                self.progress({"phase": "starting HAProxy, instances, Prometheus"})
                self._start_parts()
                self._start_locust()
                self._start_prometheus()
                scaler, faulty = self._autoscaler()
                self._loop(scaler, faulty)
            finally:
                self.stop()
                self.finished_at = time.time()
                self.cpu_at_end = os.times()
        self.requests.poll()
        return build_report(self)

    def _loop(self, scaler: Autoscaler, faulty: FaultyActuator) -> None:
        o = self.o
        deadline = self.load_started_at + o.load_s + 60.0  # Locust ends with its shape; bound it anyway
        next_pass = time.time()
        pending = sorted(o.faults, key=lambda f: f.at)
        active: list[tuple[Fault, float]] = []
        assert self.locust is not None and self.actuator is not None
        while time.time() < deadline:
            now = time.time()
            rel = now - self.load_started_at
            while pending and rel >= pending[0].at:
                fault = pending.pop(0)
                self._fault_on(fault, faulty, rel)
                active.append((fault, rel + fault.duration))
            for fault, until in list(active):
                if rel >= until:
                    self._fault_off(fault, faulty, rel)
                    active.remove((fault, until))
            if o.autoscale and now >= next_pass and now >= self.autoscaler_starts_at:
                result = scaler.run_once()
                for d in result.decisions:
                    d["t"] = round(d["at"] - self.load_started_at, 3)
                    self.decisions.append(d)
                next_pass = now + o.interval_s
            self._sample(rel)
            if self.locust.poll() is not None:
                break
            time.sleep(max(0.05, 1.0 - (time.time() - now)))
        for fault, _ in active:
            self._fault_off(fault, faulty, time.time() - self.load_started_at)
        if self.locust.poll() is None:
            raise DrillError(f"Locust still running {o.load_s + 60:.0f} s after the start: stopped")
        if self.locust.returncode not in (0, 1):  # 1: some requests failed, which the report shows
            raise DrillError(f"Locust exited with code {self.locust.returncode}: see {self.logs}/locust.log")

    def _fault_on(self, fault: Fault, faulty: FaultyActuator, rel: float) -> None:
        assert self.actuator is not None and self.prometheus is not None
        entry: dict[str, Any] = {**fault.to_dict(), "started_s": round(rel, 3)}
        if fault.kind == "prometheus-outage":
            os.killpg(self.prometheus.pid, signal.SIGSTOP)  # unreachable: queries time out
        elif fault.kind == "actuator-error":
            faulty.failing = True
        else:
            entry["killed_port"] = self.actuator.kill_one("web")
        self.fault_log.append(entry)

    def _fault_off(self, fault: Fault, faulty: FaultyActuator, rel: float) -> None:
        assert self.prometheus is not None
        if fault.kind == "prometheus-outage":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.prometheus.pid, signal.SIGCONT)
        elif fault.kind == "actuator-error":
            faulty.failing = False
        for entry in self.fault_log:
            if entry["kind"] == fault.kind and entry["at_s"] == fault.at:
                entry["ended_s"] = round(rel, 3)

    def _sample(self, rel: float) -> None:
        assert self.actuator is not None
        tl = self.timeline
        try:
            # Short timeouts: a paused Prometheus (fault) must not slow the loop's passes.
            demand = by_tier(self.prom_url, DEMAND, timeout=0.4)
            ready_seen: dict[str, float] | None = by_tier(self.prom_url, READY, timeout=0.4)
        except (OSError, ValueError):
            demand, ready_seen = {}, None
        tl.t.append(round(rel, 3))
        tl.cpu_busy.append(psutil.cpu_percent(interval=None))
        snapshot: dict[str, Any] = {"phase": "load", "t": rel, "load_s": self.o.load_s, "tiers": {}}
        for tier in TIERS:
            cap = self.actuator.capacity(tier)
            tl.demand[tier].append(demand.get(tier))
            tl.ready[tier].append(cap.ready)
            tl.requested[tier].append(cap.current)
            tl.ready_seen[tier].append(None if ready_seen is None else ready_seen.get(tier, 0.0))
            snapshot["tiers"][tier] = {
                "demand": demand.get(tier),
                "ready": cap.ready,
                "requested": cap.current,
            }
        self.requests.poll()
        recent = [r for r in self.requests.requests if r[0] >= time.time() - 10]
        snapshot["rate"] = len(recent) / 10.0
        snapshot["p95_ms"] = _percentile([r[2] for r in recent], 95)
        snapshot["errors"] = (sum(1 for r in recent if not r[3]) / len(recent)) if recent else 0.0
        snapshot["users"] = self.requests.users[-1][1] if self.requests.users else 0
        snapshot["cpu"] = tl.cpu_busy[-1]
        acted = [d for d in self.decisions if d["acted"] or d["error"]]
        last = acted[-1] if acted else None
        snapshot["decision"] = (
            f"{last['t']:.0f} s {last['tier']} {last['current']}->{last['desired']}: {last['reason']}"
            if last
            else "-"
        )
        self.progress(snapshot)
