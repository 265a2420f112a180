"""What the autoscaler tells the outside: Prometheus metrics, /healthz, and one JSON log line per decision.

Metric names are the contract the alerts in dashboards/ read (ARCHITECTURE.md). Every text that
leaves the process (log lines, errors) goes through `Redactor`, so a token or a password that
reached an error message is replaced before anyone sees it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable
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
        self.last_good_loop_at: float | None = None
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
        reason = ",".join(record["limited_by"]) or "demand"
        self.decisions.labels(tier, record["direction"], reason).inc()
        for limit in LIMITS_ALERTED:
            self.limited.labels(tier, limit).set(1 if limit in record["limited_by"] else 0)
        self.log("decision", **record)

    def mark_good_loop(self, now: float) -> None:
        self.last_good_loop.set(now)
        self.last_good_loop_at = now

    def metrics_text(self) -> bytes:
        return generate_latest(self.registry)


class TelemetryServer:
    """/metrics and /healthz over HTTP, in a daemon thread. /healthz answers 503 once no good loop
    completed for `stale_after_s` (and none since `started_at + stale_after_s`)."""

    def __init__(self, telemetry: Telemetry, host: str, port: int, stale_after_s: float, clock: Any) -> None:
        started_at = clock()
        tel = telemetry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, tel.metrics_text(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    now = clock()
                    last = tel.last_good_loop_at
                    healthy = (last is not None and now - last <= stale_after_s) or (
                        last is None and now - started_at <= stale_after_s
                    )
                    body = json.dumps({"healthy": healthy, "last_good_loop": last}).encode()
                    self._send(200 if healthy else 503, body, "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

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
