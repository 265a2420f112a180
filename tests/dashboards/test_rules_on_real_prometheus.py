"""The rules against real parts configured as the drill configures them: a real HAProxy rendered from
the stack's listener spec (`haproxy_config`; Octavia runs HAProxy, this is not Octavia), scraped by a
real Prometheus running production's scrape configuration through `drill_scrape_config`, with the
project's rules (durations compressed as in the drill, so a rate window is 3 s). Both are Debian
packages started here on 127.0.0.1.

The web demand recording rule must return the requests per second sent to the tier, served or refused
alike, and nothing of what the load balancer answers itself (the plain-HTTP redirect)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from dashboards.mixin import DEMAND_RECORD
from loadtests.local_actuator import haproxy_command
from loadtests.plumbing import (
    RULES,
    HAProxyPorts,
    compress_rules,
    haproxy_config,
    prometheus_config,
    write_yaml,
)
from tests.realparts import http_get, instant_query, running_prometheus, wait_until

pytestmark = [
    pytest.mark.skipif(
        not (shutil.which("prometheus") and shutil.which("haproxy")),
        reason="needs the Debian packages prometheus and haproxy",
    ),
    pytest.mark.slow,
]
SPEED = 20.0  # the drill's surge400 speed: the 1-minute rate window becomes 3 s
RATE = 12.0  # requests per second sent to each listener


@dataclass
class Parts:
    ports: HAProxyPorts
    socket: Path
    prometheus: str


class _App(BaseHTTPRequestHandler):
    """A member: answers every path (the app and /healthz) with 200."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    ports = HAProxyPorts.allocate()
    sock = tmp_path / "haproxy.sock"
    (tmp_path / "haproxy.cfg").write_text(haproxy_config(ports, sock, slots=2, speed=SPEED))
    haproxy = subprocess.Popen(
        ["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{ports.stats}/metrics"), "haproxy metrics")
        rules = write_yaml(tmp_path / "rules.yml", compress_rules(yaml.safe_load(RULES.read_text()), SPEED))
        config = prometheus_config(ports.stats, tmp_path / "nodes.json", tmp_path / "jvb.json", rules)
        with running_prometheus(tmp_path / "prometheus", config) as (url, _):
            # Counting starts with the first scrape of the load balancer.
            wait_until(lambda: instant_query(url, 'up{job="swell-lb"} == 1'), "a first scrape of HAProxy")
            yield Parts(ports, sock, url)
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=10)


def _send(url: str, until: float) -> tuple[int, int]:
    """GET `url` at RATE per second until `until`; (answered 2xx/3xx, refused 5xx)."""
    ok = refused = 0
    opener = urllib.request.build_opener(_NoRedirect)
    next_at = time.monotonic()
    while time.monotonic() < until:
        try:
            with opener.open(url, timeout=2):
                ok += 1
        except urllib.error.HTTPError as e:
            if e.code >= 500:
                refused += 1
            else:
                ok += 1
        next_at += 1 / RATE
        time.sleep(max(0.0, next_at - time.monotonic()))
    return ok, refused


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 301 is the answer we count, not a request to follow


def _web_demand(url: str) -> float | None:
    samples = {s["metric"].get("tier"): float(s["value"][1]) for s in instant_query(url, DEMAND_RECORD)}
    return samples.get("web")


def _demand_while_sending(parts: Parts, seconds: float = 9.0) -> tuple[list[float], tuple[int, int], int]:
    """Send to the web listener (and as many to its redirect listener) for `seconds`; the web demand
    seen after the first 5 s (a 3 s rate window, 1 s scrapes and evaluations behind it), what the web
    listener answered, and how many redirects were sent."""
    until = time.monotonic() + seconds
    redirects: list[tuple[int, int]] = []
    thread = threading.Thread(
        target=lambda: redirects.append(_send(f"http://127.0.0.1:{parts.ports.redirects['web']}/page", until))
    )
    thread.start()
    seen: list[float] = []
    sampler = threading.Thread(target=lambda: _sample(parts.prometheus, until, 5.0, seen))
    sampler.start()
    answered = _send(f"http://127.0.0.1:{parts.ports.frontend('web')}/page", until)
    thread.join()
    sampler.join()
    return seen, answered, sum(redirects[0])


def _sample(url: str, until: float, after: float, out: list[float]) -> None:
    start = time.monotonic()
    while time.monotonic() < until:
        value = _web_demand(url)
        if value is not None and time.monotonic() - start >= after:
            out.append(value)
        time.sleep(0.5)


def test_refused_requests_count_as_offered_web_demand(parts: Parts) -> None:
    # No member ready: every request is refused with 503, as by a tier with no capacity.
    seen, (ok, refused), redirected = _demand_while_sending(parts)
    assert (ok, refused > 0, redirected > 0) == (0, True, True)
    assert seen and RATE * 0.75 <= sorted(seen)[len(seen) // 2] <= RATE * 1.25, seen
    ratio = instant_query(parts.prometheus, 'tier:swell_refused_requests:ratio_rate1m{tier="web"}')
    # Every request was refused; the two counters are scraped at slightly different instants.
    assert ratio and float(ratio[0]["value"][1]) > 0.9


def test_served_requests_are_web_demand_and_the_redirects_are_not(parts: Parts) -> None:
    app = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    try:
        # What the local actuator does for a ready instance.
        haproxy_command(parts.socket, f"set server web-pool/s1 addr 127.0.0.1 port {app.server_address[1]}")
        haproxy_command(parts.socket, "set server web-pool/s1 state ready")
        seen, (ok, refused), redirected = _demand_while_sending(parts)
    finally:
        app.shutdown()
        app.server_close()
    assert (ok > 0, refused, redirected > 0) == (True, 0, True)
    # Sent at RATE to each listener: counting the redirects would double the demand.
    assert seen and RATE * 0.75 <= sorted(seen)[len(seen) // 2] <= RATE * 1.25, seen
    refused_ratio = instant_query(parts.prometheus, 'tier:swell_refused_requests:ratio_rate1m{tier="web"}')
    assert refused_ratio and float(refused_ratio[0]["value"][1]) == 0.0
    # The load balancer saw the redirects, under Octavia's names: they are just not the tier's demand.
    redirect_listener = instant_query(
        parts.prometheus,
        'octavia_listener_http_requests_total{job="swell-lb",tier="web",listener="web-http"}',
    )
    assert redirect_listener and float(redirect_listener[0]["value"][1]) >= redirected * 0.5
    assert "proxy" not in redirect_listener[0]["metric"]
