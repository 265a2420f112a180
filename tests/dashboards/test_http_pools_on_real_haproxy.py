"""Bridges' XMPP sessions are not chat demand, shown on a real HAProxy (Debian's; Octavia's amphora
runs HAProxy too) and the project's real rule file.

A balanced tier's load balancer may carry a TCP pool besides its HTTP one: a catalog entry's
`extra_listeners: [xmpp]` (stacks/listeners.py, `XMPP`), as chat's did for the video bridges' XMPP
logins before the bridges moved to their Jitsi shard's Prosody (issue 14). In production the `pool`
label is `<pool id>:<listener id>` (UUIDs), so the rules cannot leave such a pool out by name; they
count only the pools that export `http_requests_total` (dashboards/mixin.py, `http_pools`). This
test checks that premise where it comes from: HAProxy rendered from chat's spec with that TCP
listener added, three bridges connected through it, the exposition scraped, renamed as Octavia's
prometheus-proxy renames it, and given to promtool with the committed rules: chat's demand stays the
HTTP pool's sessions, while the plain sum over pools would count the bridges.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dashboards.mixin import DEMAND_RECORD
from loadtests.plumbing import RULES
from stacks import listeners
from tests.realparts import free_port, http_get, wait_until

pytestmark = pytest.mark.skipif(
    not (shutil.which("haproxy") and shutil.which("promtool")),
    reason="needs the Debian packages haproxy and prometheus (promtool)",
)
BRIDGES = 3


def amphora_config(metrics_port: int, https_port: int, xmpp_port: int, member_port: int) -> str:
    """Chat's traffic listener (HTTP, TLS off as in the drill) and an XMPP listener (TCP) beside it,
    as the amphora renders them (macros.j2: `mode <protocol>`, `balance`, timeouts), on 127.0.0.1."""
    chat = listeners.spec("chat")
    spec = dataclasses.replace(chat, listeners=(*chat.listeners, listeners.XMPP))
    (xmpp, own) = next((x, p) for x, p in spec.own_pools if x.name == "xmpp")
    traffic = spec.traffic
    return "\n".join(
        [
            "global",
            "  maxconn 100",
            "defaults",
            "  timeout connect 5s",
            "frontend prometheus",
            f"  bind 127.0.0.1:{metrics_port}",
            "  mode http",
            "  timeout client 10s",
            "  http-request use-service prometheus-exporter if { path /metrics }",
            f"frontend chat-{traffic.name}",
            f"  bind 127.0.0.1:{https_port}",
            "  mode http",
            f"  timeout client {traffic.timeout_client_data_ms}ms",
            "  default_backend chat-pool",
            "backend chat-pool",
            "  mode http",
            f"  balance {listeners.HAPROXY_BALANCE[spec.pool.lb_method]}",
            f"  timeout server {traffic.timeout_member_data_ms}ms",
            f"  server chat-0 127.0.0.1:{member_port}",
            f"frontend chat-{xmpp.name}",
            f"  bind 127.0.0.1:{xmpp_port}",
            f"  mode {xmpp.protocol.lower()}",
            f"  timeout client {xmpp.timeout_client_data_ms}ms",
            f"  default_backend chat-{xmpp.name}-pool",
            f"backend chat-{xmpp.name}-pool",
            f"  mode {own.protocol.lower()}",
            f"  balance {listeners.HAPROXY_BALANCE[own.lb_method]}",
            f"  timeout server {xmpp.timeout_member_data_ms}ms",
            f"  server chat-0 127.0.0.1:{member_port}",
            "",
        ]
    )


@contextlib.contextmanager
def holding_member() -> Iterator[int]:
    """A member that accepts connections and keeps them open (a Prosody that never speaks first)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def scrape(url: str) -> dict[tuple[str, str], float]:
    """(metric, proxy) -> value for the backend series."""
    out = {}
    for line in http_get(url).decode().splitlines():
        match = re.match(r'^(haproxy_backend_\w+)\{proxy="([^"]+)"\} (\S+)$', line)
        if match:
            out[(match[1], match[2])] = float(match[3])
    return out


def test_the_bridges_xmpp_pool_is_left_out_of_chat_demand_by_protocol(tmp_path: Path) -> None:
    metrics, https, xmpp = free_port(), free_port(), free_port()
    with holding_member() as member:
        config = tmp_path / "haproxy.cfg"
        config.write_text(amphora_config(metrics, https, xmpp, member))
        proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        bridges: list[socket.socket] = []
        try:
            url = f"http://127.0.0.1:{metrics}/metrics"
            wait_until(lambda: http_get(url), "haproxy's metrics")
            bridges = [socket.create_connection(("127.0.0.1", xmpp), timeout=5) for _ in range(BRIDGES)]
            wait_until(
                lambda: scrape(url).get(("haproxy_backend_current_sessions", "chat-xmpp-pool")) == BRIDGES,
                "the bridges' sessions on the XMPP pool",
            )
            series = scrape(url)
        finally:
            for bridge in bridges:
                bridge.close()
            proc.terminate()
            proc.wait(timeout=10)
    # The premise: HAProxy exports the HTTP request counter for the HTTP pool only.
    assert ("haproxy_backend_http_requests_total", "chat-pool") in series
    assert ("haproxy_backend_http_requests_total", "chat-xmpp-pool") not in series
    http_sessions = series[("haproxy_backend_current_sessions", "chat-pool")]

    # The scraped values, renamed as Octavia's prometheus-proxy does (haproxy_backend_* ->
    # octavia_pool_*, proxy -> pool) and labelled as the swell-lb job labels them, through the rules.
    input_series = [
        {
            "series": (
                f"{metric.replace('haproxy_backend_', 'octavia_pool_')}"
                f'{{job="swell-lb",tier="chat",pool="{proxy}"}}'
            ),
            "values": f"{value:g}x20",
        }
        for (metric, proxy), value in series.items()
        if metric in ("haproxy_backend_current_sessions", "haproxy_backend_http_requests_total")
    ]

    def expect(expr: str, labels: str, value: float) -> dict[str, object]:
        return {"expr": expr, "eval_time": "2m", "exp_samples": [{"labels": labels, "value": value}]}

    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": input_series,
                "promql_expr_test": [
                    expect(DEMAND_RECORD, f'{DEMAND_RECORD}{{tier="chat"}}', http_sessions),
                    # Positive control: the plain sum over the pools would count the bridges.
                    expect(
                        'sum by (tier) (octavia_pool_current_sessions{job="swell-lb"})',
                        '{tier="chat"}',
                        http_sessions + BRIDGES,
                    ),
                ],
            }
        ],
    }
    path = tmp_path / "real_haproxy_test.yml"
    path.write_text(yaml.safe_dump(tests))
    run = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
