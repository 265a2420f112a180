"""`swell drill`: rehearse a surge on one machine with the real loop. This module runs it: it starts
the parts, runs the loop and the faults while sampling every second, stops everything, and returns
a `DrillRecord` for `loadtests.report`.

It starts, on 127.0.0.1 in a temporary directory: HAProxy (standing in for the Octavia load
balancer), the minimum instances of each tier (`loadtests.local_actuator`: local processes of
`loadtests.tier_service`), Prometheus with the project's recording rules, the autoscaler loop (the
real service, wired in `loadtests.wiring`), and Locust headless in its own process. Every child
starts through `loadtests.processes`: stopped together on success, failure, Ctrl-C or SIGTERM, and
killed by the kernel should the drill itself be killed.

Time is compressed by `speed`: the load shape, the boot delays (cold and warm), every time
constant of the policy (`compress_time`) and every range, offset and `for:` of production's rules
(`compress_rules`: a 1-minute rate window stays one nominal minute) are divided by it. The web
tier's lead times add half the compressed rate window, as the signal lags by that much.
Prometheus starts once the base load runs, and the loop's first pass waits one rate window:
production's series have been there for hours, and a window that began on an idle load balancer
would ramp from zero, which the policy would take for a surge (and pre-scale on it, as earlier
drills did). For the same reason the warm pool the first pass asks for is filled at once
(production's has been there for hours), and swell starts remembering the profile's steepest rise
(`loadtests.wiring.remembered_state`), unless `--no-memory`.

This module never imports locust (it monkey-patches the interpreter with gevent).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import psutil

from autoscaler.service import Autoscaler
from autoscaler.telemetry import TelemetryServer
from loadtests.faults import FaultActions, FaultSchedule, kill_target
from loadtests.local_actuator import LocalActuator, LocalActuatorSettings, LocalTierSettings
from loadtests.options import DrillOptions
from loadtests.plumbing import (
    HAProxyPorts,
    OpenStackDiscoveryStandIn,
    by_tier,
    compress_rules,
    drill_rate_window_lag_s,
    free_port,
    haproxy_config,
    http_ok,
    production_rules,
    prometheus_config,
    redis_command,
    redis_ready,
    wait_for,
    write_yaml,
)
from loadtests.processes import Children, interrupt_on_sigterm, signals_held
from loadtests.record import DrillRecord, Timeline
from loadtests.requestlog import RequestLog, percentile
from loadtests.wiring import build_loop
from swell import chat_store, tiers

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEMAND = "tier:swell_offered_demand:current"
READY = "tier:swell_ready_instances:count"
# The live view's latency and error window (real seconds).
LIVE_WINDOW_S = 10.0


class DrillError(RuntimeError):
    """The drill could not run (a part did not start); the message says which."""


class Drill:
    def __init__(
        self, options: DrillOptions, progress: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        options.validate()
        self.o = options
        self.progress = progress or (lambda _: None)
        self.work = Path(tempfile.mkdtemp(prefix="swell-drill-"))
        self.logs = options.out / "logs"
        self.children = Children()
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.prometheus: subprocess.Popen[bytes] | None = None
        self.locust: subprocess.Popen[bytes] | None = None
        self.allocator: subprocess.Popen[bytes] | None = None
        self.actuator: LocalActuator | None = None
        self.discovery: OpenStackDiscoveryStandIn | None = None
        self.telemetry_server: TelemetryServer | None = None
        self.decision_log: IO[str] | None = None
        self.autoscaler_metrics_port = 0
        self.decisions: list[dict[str, Any]] = []
        self.faults: FaultSchedule | None = None
        self.timeline = Timeline()
        self.requests = RequestLog(options.out / "requests.csv")
        self.started_at = 0.0
        self.load_started_at = 0.0
        self.autoscaler_starts_at = 0.0
        self.prom_url = ""
        self.allocator_url = ""
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
        self.haproxy = self.children.start(
            ["haproxy", "-db", "-f", str(self.work / "haproxy.cfg")], self.logs / "haproxy.log"
        )
        wait_for(lambda: http_ok(f"http://127.0.0.1:{self.ports.stats}/metrics"), "HAProxy", 15, self.haproxy)
        node_sd, jvb_sd = self.work / "nodes.json", self.work / "jvb.json"
        chat_tiers = {t for t in o.plans if tiers.load().get(t).traffic == "sessions"}
        redis_args = ("--redis", self._start_redis()) if chat_tiers else ()
        bridge_tiers = {t for t in o.plans if tiers.load().get(t).traffic == "participants"}
        bridge_args = self._start_allocator() if bridge_tiers else ()
        self.actuator = LocalActuator(
            LocalActuatorSettings(
                tiers={
                    t: LocalTierSettings(
                        backend=f"{t}-pool",
                        slots=slots,
                        boot_delay_s=o.cold_delay_s(t),
                        warm_delay_s=o.warm_delay_s(t),
                        bridge_metrics=tiers.load().get(t).bridge_metrics,
                        service_args=redis_args
                        if t in chat_tiers
                        else bridge_args
                        if t in bridge_tiers
                        else (),
                    )
                    for t in o.plans
                },
                haproxy_socket=sock,
                node_file_sd=node_sd,
                jvb_file_sd=jvb_sd,
                log_dir=self.logs / "instances",
            ),
            children=self.children,
        ).start()
        self.actuator.bootstrap({t: p.min for t, p in o.plans.items()})

    def _start_redis(self) -> str:
        """The chat tier's shared Redis (rooms, sequence numbers, history), a child of the drill
        like HAProxy: every chat instance gets its URL."""
        port = free_port()
        (self.work / "redis").mkdir()
        proc = self.children.start(redis_command(port, self.work / "redis"), self.logs / "redis.log")
        wait_for(lambda: redis_ready(port), "Redis (redis-server)", 15, proc)
        return chat_store.redis_url("127.0.0.1", port)

    def _start_allocator(self) -> tuple[str, ...]:
        """The video tier's allocator (`loadtests/allocator.py`, a stand-in for Jicofo's bridge
        selection), a child of the drill: every bridge registers with it and reports every
        `report_interval` (5 s / speed, at least 1 s), and video users ask it for their bridge.
        Returns the bridges' extra arguments."""
        # Here, not at the top: it imports aiohttp, which must not precede gevent's monkey-patching
        # in a test process that imports this module and locust.
        from loadtests import allocator

        port = free_port()
        interval = max(allocator.REPORT_INTERVAL_S / self.o.effective_speed, 1.0)
        self.allocator = self.children.start(
            allocator.command(port, self.o.effective_speed, interval, self.logs / "allocator.exit.json"),
            self.logs / "allocator.log",
        )
        self.allocator_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{self.allocator_url}/healthz"), "the video allocator", 15, self.allocator)
        return ("--allocator", self.allocator_url, "--report-interval", repr(interval))

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
        write_yaml(rules, compress_rules(production_rules(), o.effective_speed))
        write_yaml(
            self.work / "prometheus.yml",
            prometheus_config(self.ports.stats, node_sd, jvb_sd, rules, self.autoscaler_metrics_port),
        )
        self.prometheus = self.children.start(
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
        """What runs, for people and tests checking that a stopped (or killed) drill left nothing
        behind: the parts' pids, every port, the instances' logs and the temporary directory."""
        procs = {
            "haproxy": self.haproxy,
            "prometheus": self.prometheus,
            "locust": self.locust,
            "allocator": self.allocator,
        }
        parts = {
            "pids": {name: p.pid for name, p in procs.items() if p is not None},
            "ports": {
                **({"prometheus": int(self.prom_url.rsplit(":", 1)[1])} if self.prom_url else {}),
                **({"allocator": int(self.allocator_url.rsplit(":", 1)[1])} if self.allocator_url else {}),
                **{f"haproxy_{t}": self.ports.frontend(t) for t in self.o.plans},
                "haproxy_stats": self.ports.stats,
            },
            "instance_logs": str(self.logs / "instances"),
            "work": str(self.work),
        }
        (self.o.out / "parts.json").write_text(json.dumps(parts, indent=1))

    def _start_loop(self) -> Autoscaler:
        assert self.actuator is not None and self.prometheus is not None
        self.decision_log = open(self.o.out / "decisions.log", "w")  # noqa: SIM115 (closed by stop)
        scaler, faulty, self.telemetry_server = build_loop(
            self.o,
            self.prom_url,
            self.work / "state.db",
            self.actuator,
            self.decision_log,
            self.autoscaler_metrics_port,
        )
        prometheus, actuator = self.prometheus, self.actuator

        def resume_prometheus() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(prometheus.pid, signal.SIGCONT)

        self.faults = FaultSchedule(
            self.o.faults,
            faulty,
            FaultActions(
                pause_prometheus=lambda: os.killpg(prometheus.pid, signal.SIGSTOP),
                resume_prometheus=resume_prometheus,
                kill_instance=actuator.kill_one,
            ),
        )
        return scaler

    def _start_locust(self) -> None:
        o = self.o
        env = dict(os.environ)
        env.update(
            SWELL_PROFILE=o.profile,
            SWELL_SPEED=str(o.effective_speed),
            SWELL_BASE_USERS=str(o.base_users),
            SWELL_REQUEST_LOG=str(self.requests.path),
        )
        # Each tier's users reach its HAProxy frontend (loadtests/users.py); video users the
        # allocator, which names their bridge (reached directly, as in production).
        for t in tiers.load().tiers:
            scheme = "http" if t.traffic == "requests" else "ws"
            env[t.users_host_env] = f"{scheme}://127.0.0.1:{self.ports.frontend(t.name)}"
            if t.traffic == "participants" and self.allocator_url:
                env[t.users_host_env] = self.allocator_url
        self.requests.path.unlink(missing_ok=True)
        self.locust = self.children.start(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--host",
                f"http://127.0.0.1:{self.ports.frontend(kill_target())}",
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
        """Stop everything started; never raises, and takes seconds however loaded the machine
        (`Children.stop_all`: every process at once, one grace, then SIGKILL)."""
        steps: list[Callable[[], object]] = []
        if self.actuator is not None:
            steps.append(self.actuator.halt)  # its instances are among the children
        steps.append(self.children.stop_all)
        for part in (self.telemetry_server, self.discovery):
            if part is not None:
                steps.append(part.stop)
        if self.decision_log is not None:
            steps.append(self.decision_log.close)
        with signals_held():
            for step in steps:
                with contextlib.suppress(Exception):
                    step()
        shutil.rmtree(self.work, ignore_errors=True)

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> DrillRecord:
        self.o.out.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self.cpu_at_start = os.times()
        psutil.cpu_percent(interval=None)  # start the CPU busy counter
        with interrupt_on_sigterm():
            try:
                self.progress({"phase": "starting HAProxy, instances, Prometheus"})
                self._start_parts()
                self._start_locust()
                self._start_prometheus()
                self._loop(self._start_loop())
            finally:
                self.stop()
                self.finished_at = time.time()
                self.cpu_at_end = os.times()
        self.requests.poll()
        return self.record()

    def record(self) -> DrillRecord:
        actuator = self.actuator
        return DrillRecord(
            options=self.o,
            timeline=self.timeline,
            requests=self.requests.requests,
            users=self.requests.users,
            decisions=self.decisions,
            faults=self.faults.log if self.faults is not None else [],
            instance_events=actuator.events() if actuator is not None else [],
            dropped_sessions=actuator.dropped_sessions() if actuator is not None else {},
            started_at=self.started_at,
            load_started_at=self.load_started_at,
            finished_at=self.finished_at,
            cpu_at_start=self.cpu_at_start,
            cpu_at_end=self.cpu_at_end,
            chat_messages=self.requests.chat,
            allocation=self._allocation(),
        )

    def _allocation(self) -> dict[str, Any]:
        """What the allocator placed, from the report it writes when stopped (none: {})."""
        try:
            return dict(json.loads((self.logs / "allocator.exit.json").read_text()))
        except (OSError, ValueError):
            return {}

    def _loop(self, scaler: Autoscaler) -> None:
        o = self.o
        deadline = self.load_started_at + o.load_s + 60.0  # Locust ends with its shape; bound it anyway
        next_pass = time.time()
        assert self.locust is not None and self.faults is not None and self.actuator is not None
        while time.time() < deadline:
            now = time.time()
            rel = now - self.load_started_at
            self.faults.advance(rel)
            if o.autoscale and now >= next_pass and now >= self.autoscaler_starts_at:
                # The pool the first pass asks for is there at once, as production's has been for
                # hours (the drill starts warm); later refills take the cold delay.
                self.actuator.fill_at_once = not self.decisions
                result = scaler.run_once()
                self.actuator.fill_at_once = False
                for d in result.decisions:
                    d["t"] = round(d["at"] - self.load_started_at, 3)
                    self.decisions.append(d)
                next_pass = now + o.interval_s
            self._sample(rel)
            if self.locust.poll() is not None:
                break
            time.sleep(max(0.05, 1.0 - (time.time() - now)))
        self.faults.end(time.time() - self.load_started_at)
        if self.locust.poll() is None:
            raise DrillError(f"Locust still running {o.load_s + 60:.0f} s after the start: stopped")
        if self.locust.returncode not in (0, 1):  # 1: some requests failed, which the report shows
            raise DrillError(f"Locust exited with code {self.locust.returncode}: see {self.logs}/locust.log")

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
        for tier in self.o.plans:
            cap = self.actuator.capacity(tier)
            tl.demand[tier].append(demand.get(tier))
            tl.ready[tier].append(cap.ready)
            tl.requested[tier].append(cap.current)
            tl.warm[tier].append(cap.warm)
            tl.filling[tier].append(cap.filling)
            tl.ready_seen[tier].append(None if ready_seen is None else ready_seen.get(tier, 0.0))
            snapshot["tiers"][tier] = {
                "demand": demand.get(tier),
                "ready": cap.ready,
                "requested": cap.current,
                "warm": cap.warm,
            }
        self.requests.poll()
        recent = [r for r in self.requests.requests if r.t >= time.time() - LIVE_WINDOW_S]
        snapshot["rate"] = len(recent) / LIVE_WINDOW_S
        snapshot["p95_ms"] = percentile([r.ms for r in recent], 95)
        snapshot["errors"] = (sum(1 for r in recent if not r.ok) / len(recent)) if recent else 0.0
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
