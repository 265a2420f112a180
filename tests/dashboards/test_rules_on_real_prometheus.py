"""The rules against real parts: a real HAProxy (Octavia runs HAProxy) scraped by a real Prometheus,
both Debian packages started here on 127.0.0.1, with the metric renames of Octavia's prometheus-proxy
(`HAPROXY_AS_OCTAVIA_RELABEL`) and the project's rule file loaded. Requests sent through HAProxy,
refused ones included, must come out as the tier's offered demand."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards.mixin import DEMAND_RECORD, HAPROXY_AS_OCTAVIA_RELABEL
from tests.realparts import free_port, http_get, instant_query, running_prometheus, wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dashboards" / "rules" / "swell.rules.yml"

pytestmark = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("haproxy")),
    reason="needs the Debian packages prometheus and haproxy",
)


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[dict[str, int]]:
    ports = {"web": free_port(), "stats": free_port()}
    # No server in the backend: every request is refused with 503, as by a tier with no capacity.
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        f"""
global
  maxconn 200
defaults
  mode http
  timeout connect 1s
  timeout client 5s
  timeout server 5s
frontend web-https
  bind 127.0.0.1:{ports["web"]}
  default_backend web
backend web
frontend stats
  bind 127.0.0.1:{ports["stats"]}
  http-request use-service prometheus-exporter if {{ path /metrics }}
"""
    )
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{ports['stats']}/metrics"), "haproxy metrics")
        yield ports
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def prometheus(tmp_path: Path, haproxy: dict[str, int]) -> Iterator[str]:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "swell-lb",
                "static_configs": [{"targets": [f"127.0.0.1:{haproxy['stats']}"], "labels": {"tier": "web"}}],
                "metric_relabel_configs": HAPROXY_AS_OCTAVIA_RELABEL,
            }
        ],
    }
    with running_prometheus(tmp_path / "prometheus", config) as (url, _):
        yield url


@pytest.mark.slow
def test_refused_requests_through_haproxy_count_as_offered_web_demand(
    haproxy: dict[str, int], prometheus: str
) -> None:
    # Requests are sent for a bounded time (at most 12 s) until the recording rule sees them.
    deadline = time.monotonic() + 12
    sent = 0
    demand: list[dict] = []
    while time.monotonic() < deadline and not demand:
        for _ in range(20):
            try:
                http_get(f"http://127.0.0.1:{haproxy['web']}/")
            except OSError:
                sent += 1  # 503: refused, yet offered
        time.sleep(0.2)
        demand = [s for s in instant_query(prometheus, DEMAND_RECORD) if float(s["value"][1]) > 0]
    assert sent > 0
    assert demand, "no offered demand recorded for web"
    assert demand[0]["metric"] == {"__name__": DEMAND_RECORD, "tier": "web"}
    refused = instant_query(prometheus, "tier:swell_refused_requests:ratio_rate1m")
    # Every request was refused; the two counters are scraped at slightly different instants.
    assert refused and float(refused[0]["value"][1]) > 0.9
    # The renamed series keep HAProxy's proxy name under Octavia's label.
    raw = instant_query(prometheus, 'octavia_listener_http_requests_total{listener="web-https"}')
    assert raw and "proxy" not in raw[0]["metric"]
