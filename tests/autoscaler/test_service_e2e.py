"""The loop end to end against a real Prometheus (Debian package, started on 127.0.0.1 in a temporary
directory) scraping an exporter the test drives: a surge gives x2 then x4, stale samples hold,
a restart keeps overrides and does not scale down, and a killed Prometheus holds with exit code 3,
turns /readyz unready and leaves /healthz (liveness) alone. The actuator is a fake at the port
(tests/autoscaler/fakes.py); /metrics, /healthz and /readyz are real HTTP."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoscaler.adapters.sqlite_store import SQLiteStateStore
from autoscaler.config import parse_config
from autoscaler.ports import MetricsSource, Override, Sample
from autoscaler.service import EXIT_METRICS_UNAVAILABLE, Autoscaler
from autoscaler.telemetry import TelemetryServer
from autoscaler.wiring import build_source
from tests.autoscaler.fakes import FakeActuator, telemetry
from tests.realparts import http_get, needs_prometheus, running_prometheus, wait_until

pytestmark = [needs_prometheus, pytest.mark.slow]


class DemandExporter:
    """Serves `demand{tier=...}`; with `frozen_at_ms` set, samples carry that old timestamp."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.frozen_at_ms: int | None = None
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stamp = f" {exporter.frozen_at_ms}" if exporter.frozen_at_ms else ""
                body = "".join(f'demand{{tier="{t}"}} {v}{stamp}\n' for t, v in exporter.values.items())
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _web(source: MetricsSource) -> Sample | None:
    return source.demand().get("web")


@pytest.fixture
def exporter() -> Iterator[DemandExporter]:
    e = DemandExporter()
    yield e
    e.server.shutdown()


def test_the_loop_against_a_real_prometheus(tmp_path: Path, exporter: DemandExporter) -> None:
    exporter.values = {"web": 150.0}
    prom_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "demand", "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
        ],
    }
    with running_prometheus(tmp_path / "prom", prom_config) as (url, proc):
        cfg = parse_config(
            {
                "prometheus": {"url": url, "timeout_s": 2},
                "demand_query": "demand",  # raw series keep their sample times; an aggregate is stamped now
                "interval_s": 1,  # stale after 3 s
                "state": {"kind": "sqlite", "path": str(tmp_path / "state.db")},
                "tiers": {
                    "web": {
                        "capacity_per_instance": 50,
                        "min": 2,
                        "max": 200,
                        "actuator": {"kind": "pulumi", "stack": "x"},
                    }
                },
            }
        )
        actuator = FakeActuator({"web": 4})
        tel, log = telemetry()

        def new_loop() -> Autoscaler:
            return Autoscaler(
                cfg,
                build_source(cfg),
                {"web": actuator},
                SQLiteStateStore(tmp_path / "state.db"),
                tel,
                time.time,
            )

        loop = new_loop()
        source = loop.source

        def settle(value: float) -> dict:
            exporter.values = {"web": value}
            wait_until(
                lambda: source.demand().get("web") and source.demand()["web"].value == value,
                f"demand {value}",
            )
            return loop.run_once().decisions[0]

        server = TelemetryServer(tel, "127.0.0.1", 0, cfg.stale_after_s, time.time).start()
        try:
            for _ in range(3):
                calm = settle(150.0)
            start = actuator.sizes["web"]
            assert calm["fresh"] and start >= 3

            # Surge: demand doubles, then quadruples again.
            doubled = settle(300.0)
            assert doubled["direction"] == "up" and actuator.sizes["web"] >= 2 * start, doubled["reason"]
            quadrupled = settle(600.0)  # x4 of calm
            assert actuator.sizes["web"] > 3 * start and actuator.sizes["web"] * 50 >= 600, quadrupled[
                "reason"
            ]
            peak = actuator.sizes["web"]
            metrics = http_get(f"http://127.0.0.1:{server.port}/metrics").decode()
            assert f'swell_autoscaler_desired_instances{{tier="web"}} {float(peak)}' in metrics
            assert json.loads(http_get(f"http://127.0.0.1:{server.port}/healthz"))["live"] is True
            assert json.loads(http_get(f"http://127.0.0.1:{server.port}/readyz"))["ready"] is True

            # Stale: the exporter's samples stop advancing in time; demand falls, nothing is removed.
            # The frozen time is a little ahead: Prometheus puts a staleness marker at the next scrape
            # when the series switches to explicit timestamps, and rejects samples older than it.
            exporter.frozen_at_ms = int((time.time() + 2) * 1000)
            exporter.values = {"web": 20.0}

            # (Switching to explicit timestamps makes Prometheus mark the series stale for a scrape.)
            def stale_sample_of(value: float) -> bool:
                sample = _web(source)
                return (
                    sample is not None
                    and sample.value == value
                    and sample.age(time.time()) > cfg.stale_after_s
                )

            wait_until(lambda: stale_sample_of(20.0), "the sample to go stale", 15)
            stale = loop.run_once().decisions[0]
            assert stale["direction"] == "hold" and actuator.sizes["web"] == peak and "old" in stale["reason"]
            exporter.frozen_at_ms = None

            # Restart mid-surge with an override on record: demand dips, the new process keeps the peak.
            loop.store.add_override(
                Override("sg-e2e", "web", 2.0, peak, time.time(), time.time() + 600, "launch")
            )
            loop = new_loop()
            source = loop.source
            after_restart = settle(400.0)
            assert actuator.sizes["web"] == peak and after_restart["desired"] == peak, after_restart["reason"]

            # Prometheus killed: every tier holds, the pass says why, exit code 3.
            proc.terminate()
            proc.wait(timeout=20)
            down = loop.run_once()
            assert down.exit_code == EXIT_METRICS_UNAVAILABLE
            assert down.decisions[0]["direction"] == "hold" and "unreachable" in down.decisions[0]["reason"]
            assert actuator.sizes["web"] == peak
            # No good loop since: /readyz turns unready after 3 intervals, while the loop, still
            # passing, stays live: a Prometheus outage must not make the kubelet restart replicas.
            time.sleep(cfg.stale_after_s + 0.5)
            loop.run_once()
            with pytest.raises(urllib.error.HTTPError) as unready:
                http_get(f"http://127.0.0.1:{server.port}/readyz")
            assert unready.value.code == 503
            assert json.loads(unready.value.read())["role"] == "leader"
            assert json.loads(http_get(f"http://127.0.0.1:{server.port}/healthz"))["live"] is True
        finally:
            server.stop()
        decision_lines = [json.loads(line) for line in log.getvalue().splitlines() if '"decision"' in line]
        assert len(decision_lines) >= 8 and all(
            "reason" in line and "demand" in line for line in decision_lines
        )
