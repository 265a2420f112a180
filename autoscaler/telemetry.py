"""What the autoscaler tells the outside: Prometheus metrics, /healthz (liveness), /readyz
(readiness), and one JSON log line per decision.

Liveness and readiness answer different questions, so that a Prometheus outage never restarts a
replica: /healthz is "the process and its loop are alive and passing" (the loop thread runs and
beat within `stuck_after_s`, whatever the passes decided); /readyz is "its last pass is fresh":
the leader's last good loop (fresh inputs, nothing failed) within `stale_after_s`, a follower's
last pass as standby within `stale_after_s`.

Metric names are the contract the alerts in dashboards/ read (ARCHITECTURE.md). Every text that
leaves the process (log lines, errors) goes through `Redactor`, so a token or a password that
reached an error message is replaced before anyone sees it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LIMITS_ALERTED = ("max", "quota")


class Redactor:
    """Replaces every known secret value in a text with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole. Very short values would
        # mangle ordinary text and are no real secret.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class Telemetry:
    def __init__(self, redact: Redactor, log_stream: Any = None) -> None:
        self.redact = redact
        self.registry = CollectorRegistry()
        r = self.registry
        self.desired = Gauge(
            "swell_autoscaler_desired_instances", "Desired instances per tier", ["tier"], registry=r
        )
        self.current = Gauge(
            "swell_autoscaler_current_instances", "Requested instances per tier", ["tier"], registry=r
        )
        self.ready = Gauge(
            "swell_autoscaler_ready_instances", "Ready instances per tier", ["tier"], registry=r
        )
        # The warm pool (issue 15), for tiers that have one: shelved and configured (`warm`), being
        # created and configured for it (`filling`), and the size the loop keeps it at.
        self.warm_pool = Gauge(
            "swell_autoscaler_warm_pool_instances",
            "Warm pool instances per tier: warm (shelved, configured) or filling (being configured)",
            ["tier", "state"],
            registry=r,
        )
        self.warm_pool_target = Gauge(
            "swell_autoscaler_warm_pool_target_instances",
            "The warm pool's target size per tier (after the cap at max - desired)",
            ["tier"],
            registry=r,
        )
        self.decisions = Counter(
            "swell_autoscaler_decisions",
            "Decisions by tier, direction and reason",
            ["tier", "direction", "reason"],
            registry=r,
        )
        self.limited = Gauge(
            "swell_autoscaler_limited",
            "1 while the tier's decision is limited by `limit`",
            ["tier", "limit"],
            registry=r,
        )
        self.actuation_seconds = Histogram(
            "swell_autoscaler_actuation_duration_seconds",
            "Time to apply a new size",
            ["tier", "actuator"],
            buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200),
            registry=r,
        )
        self.actuation_errors = Counter(
            "swell_autoscaler_actuation_errors",
            "Failed attempts to apply a size",
            ["tier", "actuator"],
            registry=r,
        )
        self.metrics_errors = Counter(
            "swell_autoscaler_metrics_errors", "Passes where the demand query failed", registry=r
        )
        self.last_good_loop = Gauge(
            "swell_autoscaler_last_successful_loop_timestamp_seconds",
            "When the last pass with fresh inputs completed",
            registry=r,
        )
        self.leader = Gauge("swell_autoscaler_leader", "1 while this replica leads and acts", registry=r)
        self.sample_age = Gauge(
            "swell_autoscaler_sample_age_seconds", "Age of the demand sample", ["tier"], registry=r
        )
        self.pass_failures = Counter(
            "swell_autoscaler_pass_failures", "Passes that raised (logged as pass_failed)", registry=r
        )
        self.last_pass = Gauge(
            "swell_autoscaler_last_pass_timestamp_seconds",
            "When the last pass completed, whatever its outcome, as leader or as follower",
            registry=r,
        )
        self.last_good_loop_at: float | None = None
        self.last_beat_at: float | None = None  # the loop's last sign of life (pass or renewal)
        self.last_pass_at: float | None = None
        self.last_pass_leader: bool | None = None
        # A logger of its own (not from the global registry): each Telemetry writes to its stream.
        self._log = logging.Logger("swell.autoscaler", logging.INFO)
        handler = logging.StreamHandler(log_stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._log.addHandler(handler)

    def log(self, event: str, **fields: Any) -> None:
        self._log.info(self.redact(json.dumps({"event": event, **fields}, default=str, sort_keys=True)))

    def record_decision(self, tier: str, record: dict[str, Any]) -> None:
        self.desired.labels(tier).set(record["desired"])
        self.current.labels(tier).set(record["current"])
        self.ready.labels(tier).set(record["ready"])
        if record.get("sample_age_s") is not None:
            self.sample_age.labels(tier).set(record["sample_age_s"])
        pool = record.get("pool")
        if pool is not None:
            self.warm_pool_target.labels(tier).set(pool["target"])
            for state in ("warm", "filling"):
                self.warm_pool.labels(tier, state).set(pool[state])
        reason = ",".join(record["limited_by"]) or "demand"
        self.decisions.labels(tier, record["direction"], reason).inc()
        for limit in LIMITS_ALERTED:
            self.limited.labels(tier, limit).set(1 if limit in record["limited_by"] else 0)
        self.log("decision", **record)

    def mark_good_loop(self, now: float) -> None:
        self.last_good_loop.set(now)
        self.last_good_loop_at = now

    def beat(self, now: float) -> None:
        """The loop is alive: a pass starts or ends, or it renewed the Lease between passes."""
        self.last_beat_at = now

    def pass_finished(self, now: float, *, leader: bool) -> None:
        self.last_beat_at = now
        self.last_pass_at = now
        self.last_pass_leader = leader
        self.last_pass.set(now)

    def liveness(
        self, now: float, started_at: float, stuck_after_s: float, loop_alive: bool
    ) -> dict[str, Any]:
        beat = self.last_beat_at if self.last_beat_at is not None else started_at
        live = loop_alive and now - beat <= stuck_after_s
        return {"live": live, "loop_thread_alive": loop_alive, "last_beat_s_ago": round(now - beat, 1)}

    def readiness(self, now: float, started_at: float, stale_after_s: float) -> dict[str, Any]:
        role = {True: "leader", False: "standby", None: "starting"}[self.last_pass_leader]
        if self.last_pass_leader:
            last = self.last_good_loop_at
            ready = (last is not None and now - last <= stale_after_s) or (
                last is None and now - started_at <= stale_after_s
            )
        else:
            last = self.last_pass_at
            ready = last is not None and now - last <= stale_after_s
        return {
            "ready": ready,
            "role": role,
            "last_good_loop": self.last_good_loop_at,
            "last_pass": self.last_pass_at,
        }

    def metrics_text(self) -> bytes:
        return generate_latest(self.registry)


class TelemetryServer:
    """/metrics, /healthz and /readyz over HTTP, in a daemon thread (see the module docstring).

    `loop_alive` says whether the loop's thread runs (None: not checked, e.g. a test driving passes
    itself); `stuck_after_s` defaults to 20 x `stale_after_s`.
    """

    def __init__(
        self,
        telemetry: Telemetry,
        host: str,
        port: int,
        stale_after_s: float,
        clock: Any,
        *,
        stuck_after_s: float | None = None,
        loop_alive: Callable[[], bool] | None = None,
    ) -> None:
        started_at = clock()
        tel = telemetry
        stuck = stuck_after_s if stuck_after_s is not None else 20 * stale_after_s

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, tel.metrics_text(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    alive = loop_alive() if loop_alive is not None else True
                    body = tel.liveness(clock(), started_at, stuck, alive)
                    self._json(200 if body["live"] else 503, body)
                elif self.path == "/readyz":
                    body = tel.readiness(clock(), started_at, stale_after_s)
                    self._json(200 if body["ready"] else 503, body)
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _json(self, code: int, body: dict[str, Any]) -> None:
                self._send(code, json.dumps(body).encode(), "application/json")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep stderr for decision lines
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> TelemetryServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
