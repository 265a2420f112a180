"""Demand from Prometheus: one paired query returns every tier's value, sample time and (optionally)
its target counts; NaN, Inf and series without timestamps are missing data; an unreachable
Prometheus, or one answering 200 without `data`, is a MetricsSourceError that names the server
without its credentials. The end-to-end cases run a real Prometheus (Debian package) scraping small
exporters the test drives; the malformed replies come from a fake HTTP server, since a real
Prometheus never sends them (a proxy in front of it may)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler.adapters.prometheus import (
    PrometheusDemand,
    PrometheusSettings,
    TargetQueries,
    parse_paired_result,
    safe_url,
)
from autoscaler.ports import MetricsSourceError, Sample
from tests.realparts import free_port, needs_prometheus, running_prometheus, wait_until

Q = "sum by (tier) (demand)"


def _series(tier: str | None, value: str, ts: float = 100.0, field: str | None = None) -> dict[str, Any]:
    metric: dict[str, str] = {}
    if tier is not None:
        metric["tier"] = tier
    if field:
        metric["swell_field"] = field
    return {"metric": metric, "value": [ts, value]}


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            [_series("web", "120.5"), _series("web", "95", field="timestamp")],
            {"web": Sample(120.5, 95.0)},
        ),
        ([_series("web", "NaN")], {"web": Sample(None, float("-inf"))}),
        ([_series("web", "+Inf"), _series("web", "99", field="timestamp")], {"web": Sample(None, 99.0)}),
        ([_series("web", "3")], {"web": Sample(3.0, float("-inf"))}),
        ([], {}),
        (
            [
                _series("video", "40"),
                _series("video", "95", field="timestamp"),
                _series("video", "3", field="targets_up"),
                _series("video", "4", field="targets_expected"),
                _series(None, "1", field="targets_up"),  # a target without a tier: not attributable
            ],
            {"video": Sample(40.0, 95.0, 3, 4)},
        ),
    ],
    ids=[
        "value-and-time",
        "nan-is-missing",
        "inf-is-missing",
        "no-timestamp-is-infinitely-old",
        "empty",
        "target-counts",
    ],
)
def test_paired_results_become_samples(result: list[dict[str, Any]], expected: dict[str, Sample]) -> None:
    assert parse_paired_result(result, Q) == expected


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([_series(None, "1")], "without a `tier` label"),
        ([_series("web", "1"), _series("web", "2")], "several series for tier 'web'"),
        ([{"metric": {"tier": "web"}, "value": [1]}], "malformed sample for tier 'web'"),
        ("not a list", "not a vector of samples"),
        ([["web", 1]], "not a vector of samples"),
        ([{"value": [1, "2"]}], "a sample without labels"),
    ],
    ids=[
        "no-tier-label",
        "duplicate-tier",
        "malformed",
        "result-not-a-list",
        "sample-not-an-object",
        "no-labels",
    ],
)
def test_bad_results_are_errors_naming_the_problem(result: Any, message: str) -> None:
    with pytest.raises(MetricsSourceError, match=message):
        parse_paired_result(result, Q)


def test_urls_lose_their_credentials_in_messages() -> None:
    assert safe_url("https://ops:hunter2@prom.example:9090/prom?x=1") == "https://prom.example:9090/prom"


def test_an_unreachable_prometheus_is_an_error_without_secrets() -> None:
    url = f"http://scraper:canary-secret-7f3a@127.0.0.1:{free_port()}"
    source = PrometheusDemand(PrometheusSettings(url=url, bearer_token="canary-token-91c2", timeout_s=1.0), Q)
    started = time.monotonic()
    with pytest.raises(MetricsSourceError) as failed:
        source.demand()
    assert time.monotonic() - started < 5, "a dead Prometheus must fail fast"
    text = f"{failed.value!s} {failed.value!r} {source.settings!r}"
    assert "unreachable" in text and "127.0.0.1" in text
    assert "canary" not in text


class _FakePrometheus:
    """Answers every /api/v1/query with HTTP 200 and a fixed body: what a misbehaving proxy in front
    of Prometheus, or a broken server, may send. Not a Prometheus: only the malformed replies."""

    def __init__(self, body: bytes) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"status": "success"}', "without data.result"),
        (b'{"status": "success", "data": null}', "without data.result"),
        (b'{"status": "success", "data": {"resultType": "vector"}}', "without data.result"),
        (b'{"status": "success", "data": {"resultType": "vector", "result": "oops"}}', "not a vector"),
        (b"<html>502 Bad Gateway</html>", "malformed reply"),
    ],
    ids=["no-data", "null-data", "no-result", "result-not-a-list", "not-json"],
)
def test_a_200_reply_without_data_is_a_metrics_error_not_a_crash(body: bytes, message: str) -> None:
    fake = _FakePrometheus(body)
    try:
        source = PrometheusDemand(PrometheusSettings(url=fake.url, timeout_s=2.0), Q)
        with pytest.raises(MetricsSourceError, match=message):
            source.demand()
    finally:
        fake.server.shutdown()


class _Exporter:
    """A tiny exporter whose per-tier demand the test sets."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = "".join(f'demand{{tier="{t}"}} {v}\n' for t, v in exporter.values.items()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def exporter() -> Iterator[_Exporter]:
    e = _Exporter()
    yield e
    e.server.shutdown()


@needs_prometheus
@pytest.mark.slow
def test_real_prometheus_returns_every_tier_in_one_query(tmp_path: Path, exporter: _Exporter) -> None:
    exporter.values = {"web": "240", "chat": "35", "video": "NaN"}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "demand", "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
        ],
    }
    with running_prometheus(tmp_path / "prom", config) as (url, proc):
        source = PrometheusDemand(PrometheusSettings(url=url), Q)
        wait_until(lambda: "web" in source.demand(), "the first scrape")
        samples = source.demand()
        now = time.time()
        assert samples["web"].value == 240.0 and samples["chat"].value == 35.0
        assert samples["video"].value is None
        assert samples["web"].age(now) < 5
        proc.terminate()
        proc.wait(timeout=20)
        with pytest.raises(MetricsSourceError, match="unreachable"):
            source.demand()


@needs_prometheus
@pytest.mark.slow
def test_a_partial_scrape_drops_the_sum_but_the_target_counts_tell(tmp_path: Path) -> None:
    """Two bridges behind the video tier's sum; one stops answering its scrape. The sum halves with
    a fresh timestamp (it would read as demand halving); the target counts say 1 of 2."""
    bridges = [_Exporter(), _Exporter()]
    for bridge in bridges:
        bridge.values = {"video": "100"}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "500ms"},
        "scrape_configs": [
            {
                "job_name": "demand",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{b.port}" for b in bridges], "labels": {"tier": "video"}}
                ],
            }
        ],
    }
    targets = TargetQueries(
        up='sum by (tier) (up{job="demand"})', expected='count by (tier) (up{job="demand"})'
    )
    try:
        with running_prometheus(tmp_path / "prom", config) as (url, _):
            source = PrometheusDemand(PrometheusSettings(url=url), Q, targets)

            def counts() -> tuple[int | None, int | None] | None:
                video = source.demand().get("video")
                return None if video is None else (video.targets_up, video.targets_expected)

            wait_until(lambda: counts() == (2, 2) and source.demand()["video"].value == 200.0, "both")
            bridges[1].server.shutdown()
            bridges[1].server.server_close()
            wait_until(lambda: counts() == (1, 2), "the failed scrape")
            video = source.demand()["video"]
            assert video.value == 100.0 and video.age(time.time()) < 5, "halved, and fresh"
            assert (video.targets_up, video.targets_expected) == (1, 2)
    finally:
        bridges[0].server.shutdown()
