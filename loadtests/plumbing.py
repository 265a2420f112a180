"""The drill's real parts on 127.0.0.1: HAProxy (standing in for the Octavia load balancers, which
run HAProxy) and Prometheus, configured here from production's definitions (started and stopped as
child processes by `loadtests.processes`).

HAProxy is rendered from the stack's listener spec (`stacks/listeners.py`) by `haproxy_config`, the
one place that says how the drill differs from Octavia's amphora: no TLS, one process for every tier,
local addresses, a compressed health check cadence (see its docstring). Each backend `<tier>-pool`
holds `server-template` slots in maintenance until the local actuator registers an instance through
the runtime API (stats socket, level admin).

Prometheus runs production's scrape configuration through `dashboards.prometheus.drill_scrape_config`
and production's rules through `compress_rules` (time is the one difference). Both are rendered by
the functions that write the committed dashboards/prometheus/prometheus.yml and
dashboards/rules/swell.rules.yml (the suite keeps them equal), so a tier catalog given through
`SWELL_TIERS` reaches the drill's Prometheus without regenerating the committed files.
`OpenStackDiscoveryStandIn` lists the drill's instances as openstack_sd would,
so production's relabel rules select and label them unchanged.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dashboards.mixin import OFFERED_REQUESTS_METRIC, render_rules, rules_document
from dashboards.prometheus import Site, drill_scrape_config, openstack_sd_targets, production_config
from stacks import listeners
from stacks.listeners import BalancedTier, HealthMonitor, Listener, Pool
from swell import tiers

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "dashboards" / "rules" / "swell.rules.yml"


# Durations in PromQL and in `for:`: `1m`, `30s`, `1h30m`.
DURATION = r"(?:\d+(?:ms|[smhdwy]))+"
UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
# A compressed range still spans a few 1 s scrapes: rate() needs two samples, and more are smoother.
MIN_RANGE_S = 3.0


def duration_s(text: str) -> float:
    return sum(float(n) * UNIT_S[u] for n, u in re.findall(r"(\d+)(ms|[smhdwy])", text))


def compressed_duration(text: str, speed: float, floor_s: float = 0.0) -> str:
    return f"{round(max(duration_s(text) / speed, floor_s) * 1000)}ms"


def compress_rules(rules: dict[str, Any], speed: float) -> dict[str, Any]:
    """Production's rules for a drill running `speed` times faster: every range, offset and `for:`
    divided by the speed (ranges no shorter than `MIN_RANGE_S`). The one difference between the
    drill's rules and production's, and it is only time: a 1-minute rate window stays one nominal
    minute, as the policy's time constants do (`compress_time`). A count over a window that the
    floor lengthened (`increase(x[1m])` at a high speed: the joins of the last minute, video's
    demand) is scaled back to the nominal window, `(increase(x[3000ms]) * 0.2222)`: a rate needs no
    such correction, a count does."""

    def one_range(m: re.Match[str]) -> str:
        if m["plain"] is not None:
            return f"[{compressed_duration(m['plain'], speed, MIN_RANGE_S)}]"
        nominal = duration_s(m["window"]) / speed
        window = compressed_duration(m["window"], speed, MIN_RANGE_S)
        if nominal >= MIN_RANGE_S:
            return f"increase({m['arg']}[{window}])"
        return f"(increase({m['arg']}[{window}]) * {nominal / MIN_RANGE_S:.6g})"

    def expr(text: str) -> str:
        text = re.sub(
            rf"increase\((?P<arg>[^()\[\]]*)\[(?P<window>{DURATION})\]\)|\[(?P<plain>{DURATION})\]",
            one_range,
            text,
        )
        return re.sub(rf"\boffset ({DURATION})", lambda m: f"offset {compressed_duration(m[1], speed)}", text)

    out = json.loads(json.dumps(rules))  # a deep copy of plain data
    for group in out.get("groups", []):
        for rule in group.get("rules", []):
            rule["expr"] = expr(str(rule["expr"]))
            if "for" in rule:
                rule["for"] = compressed_duration(str(rule["for"]), speed)
    return out


def drill_rate_window_lag_s(speed: float) -> float:
    """How far the web demand signal lags: half its rate window, as compressed for the drill."""
    window = re.search(rf"rate\({OFFERED_REQUESTS_METRIC}[^\[]*\[({DURATION})\]", render_rules())
    nominal = duration_s(window[1]) if window else 60.0
    return max(nominal / speed, MIN_RANGE_S) / 2


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1. The sockets stay bound until all are chosen: asked
    one at a time, the kernel may hand the port just released out again, and two listeners would
    then share it (seen: the web listener and its redirect listener on one port)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass(frozen=True)
class HAProxyPorts:
    """Where the drill's HAProxy listens: each tier's traffic listener (`frontends`, by tier), and
    the PROMETHEUS listener (`stats`: one for the whole process). `redirects`: the spec's plain-HTTP
    listeners (balanced tiers), which only redirect to HTTPS; no drill traffic goes there, they run
    so the drill runs every listener the stack declares."""

    frontends: Mapping[str, int]
    stats: int
    redirects: Mapping[str, int] = field(
        default_factory=lambda: {t: free_port() for t in listeners.specs()}, kw_only=True
    )

    @classmethod
    def allocate(cls) -> HAProxyPorts:
        """Every listener on its own free port."""
        names, balanced = tiers.names(), list(listeners.specs())
        stats, *rest = free_ports(1 + len(names) + len(balanced))
        return cls(
            dict(zip(names, rest[: len(names)], strict=True)),
            stats,
            redirects=dict(zip(balanced, rest[len(names) :], strict=True)),
        )

    def frontend(self, tier: str) -> int:
        return int(self.frontends[tier])


def drill_stand_in(tier: str) -> BalancedTier:
    """The drill's load balancer for a tier that has none in production (video: participants reach
    their bridge directly, placed by Jicofo on the least loaded one). The drill's video users do the
    same (they ask the allocator, `loadtests/allocator.py`, and connect to the bridge it names), so
    no user traffic passes here: the pool stays as the local actuator's member list and health
    check, shaped like chat's (long WebSocket sessions, least connections, no persistence)."""
    return BalancedTier(
        tier,
        (
            Listener(
                "https",
                listeners.TERMINATED_HTTPS,
                listeners.HTTPS_PORT,
                timeout_client_data_ms=listeners.LONG_SESSION_TIMEOUT_MS,
                timeout_member_connect_ms=listeners.CONNECT_TIMEOUT_MS,
                timeout_member_data_ms=listeners.LONG_SESSION_TIMEOUT_MS,
            ),
        ),
        Pool(
            listeners.HTTP, "LEAST_CONNECTIONS", listeners.MEMBER_PORT, listeners.MEMBER_PORT, HealthMonitor()
        ),
    )


# A health check no more often than this, whatever the speed.
MIN_CHECK_INTERVAL_S = 0.1
# Octavia's amphora defaults (octavia/common/jinja/haproxy/combined_listeners/templates/base.j2).
AMPHORA_DEFAULTS = ("retries 3", "option redispatch", "option splice-request", "option splice-response")


# Listeners of the stack's spec that the drill does not run, by listener name (whichever tier's
# balancer carries it: the catalog's `extra_listeners`), each with why; every other listener is
# rendered (tests/loadtests/test_drill_config.py checks both ways).
DRILL_OMITTED: Mapping[str, str] = {
    listeners.XMPP.name: (
        "the video bridges' XMPP login to Prosody (TCP 5222): the drill's bridges (the tier_service "
        "stand-in) speak no XMPP, they register with the allocator stand-in over HTTP, so nothing would "
        "connect to it, and its sessions are no chat demand anyway (dashboards/mixin.py counts only "
        "pools that serve HTTP)"
    ),
}


def drill_specs() -> dict[str, BalancedTier]:
    """The load balancers the drill runs, in catalog order: the stack's for balanced tiers (read at
    call time), a stand-in (`drill_stand_in`) for the others."""
    balanced = listeners.specs()
    return {name: balanced.get(name) or drill_stand_in(name) for name in tiers.names()}


def check_interval_ms(monitor: HealthMonitor, speed: float) -> int:
    return round(max(monitor.delay_s / speed, MIN_CHECK_INTERVAL_S) * 1000)


def _frontend(tier: str, spec: Listener, port: int) -> list[str]:
    lines = [f"frontend {tier}-{spec.name}", f"  bind 127.0.0.1:{port}", "  mode http"]
    lines.append(f"  timeout client {spec.timeout_client_data_ms}ms")
    if spec.redirect is not None:
        # REDIRECT_PREFIX to https://<public host>: the drill has no public host, the scheme is the point.
        r = spec.redirect
        lines.append(
            f"  http-request redirect scheme {r.scheme} code {r.http_code} if {{ path_beg {r.rule_value} }}"
        )
    if spec.forwards_to_pool:
        lines.append(f"  default_backend {tier}-pool")
    return lines


def _backend(tier: str, spec: BalancedTier, slots: int, speed: float) -> list[str]:
    pool, monitor, traffic = spec.pool, spec.pool.monitor, spec.traffic
    lines = [f"backend {tier}-pool", "  mode http", f"  balance {listeners.HAPROXY_BALANCE[pool.lb_method]}"]
    if pool.persistence == "HTTP_COOKIE":
        # Octavia gives each member a cookie of its id; template slots change address, so the cookie
        # is derived from it (`dynamic`) instead.
        lines += ["  cookie SRV insert indirect nocache dynamic", "  dynamic-cookie-key swell-drill"]
    elif pool.persistence is not None:
        raise ValueError(f"{tier}: the drill renders no {pool.persistence} persistence; add it here")
    lines += [
        f"  timeout check {monitor.timeout_s}s",
        f"  option httpchk {monitor.http_method} {monitor.url_path}",
        f"  http-check expect rstatus {monitor.expected_codes}",
    ]
    if "X-Forwarded-For" in traffic.insert_headers:
        lines.append("  option forwardfor")
    if "X-Forwarded-Proto" in traffic.insert_headers:
        lines.append("  http-request set-header X-Forwarded-Proto https")
    lines += [
        f"  timeout connect {traffic.timeout_member_connect_ms}ms",
        f"  timeout server {traffic.timeout_member_data_ms}ms",
        f"  default-server check inter {check_interval_ms(monitor, speed)}ms"
        f" fall {monitor.max_retries_down} rise {monitor.max_retries} disabled",
        f"  server-template s 1-{slots} 127.0.0.1:9",
    ]
    return lines


def haproxy_config(ports: HAProxyPorts, socket_path: Path, slots: int, speed: float = 1.0) -> str:
    """The drill's HAProxy, rendered from the stack's listener spec as Octavia's amphora renders it
    (octavia/common/jinja/haproxy/combined_listeners/templates/macros.j2), with these differences:

    - no TLS: the drill does not do TLS. A TERMINATED_HTTPS listener is an HTTP frontend here, so
      the amphora's `ssl crt` and `redirect scheme https if !{ ssl_fc }` are absent; what reaches
      the pool (HTTP, the inserted headers) is the same;
    - one HAProxy for every tier, on 127.0.0.1 and the ports given (the spec's 443/80/8088 are
      production's), frontends named `<tier>-<listener>` and backends `<tier>-pool` (the scrape
      configuration reads `tier` from those names); one PROMETHEUS listener for the process;
      allowed_cidrs, a security group rule in Octavia, is binding to 127.0.0.1;
    - members are `slots` server-template slots in maintenance, which the local actuator fills and
      empties over the runtime API (the stats socket) as Octavia's member API would;
    - the health monitor checks every `delay / speed` (at least `MIN_CHECK_INTERVAL_S`), like every
      time constant of the drill; its timeout, rise and fall are the spec's;
    - a tier without a load balancer (video) has one in the drill (`drill_stand_in`);
    - the listeners of `DRILL_OMITTED` are left out, each for the reason given there."""
    sections = [
        "\n".join(
            [
                "global",
                "  maxconn 4000",
                f"  stats socket {socket_path} mode 600 level admin",
                "  stats timeout 10s",
                "defaults",
                *(f"  {line}" for line in AMPHORA_DEFAULTS),
                "  option http-keep-alive",
                # Octavia's listener and member timeouts are set per frontend and backend below.
                "  timeout connect 5s",
                "  timeout client 50s",
                "  timeout server 50s",
                "frontend prometheus",
                f"  bind 127.0.0.1:{ports.stats}",
                "  mode http",
                "  http-request use-service prometheus-exporter if { path /metrics }",
            ]
        )
    ]
    for tier, spec in drill_specs().items():
        lines: list[str] = []
        for listener in spec.listeners:
            if listener.monitoring_only:
                continue  # the one `prometheus` frontend above
            if listener.name in DRILL_OMITTED:
                continue
            if listener.pool is not None or listener.protocol not in (
                listeners.HTTP,
                listeners.TERMINATED_HTTPS,
            ):
                raise ValueError(
                    f"{tier}-{listener.name}: the drill renders HTTP listeners on the tier's pool only; "
                    "render this one here or name it, with why, in DRILL_OMITTED"
                )
            port = ports.frontend(tier) if listener.forwards_to_pool else ports.redirects[tier]
            lines += _frontend(tier, listener, port)
        lines += _backend(tier, spec, slots, speed)
        sections.append("\n".join(lines))
    return "\n".join(sections) + "\n"


def production_scrape_config() -> dict[str, Any]:
    """Production's scrape configuration for the tier catalog in use (what
    dashboards/prometheus/prometheus.yml holds for the packaged one)."""
    return production_config()


def production_rules() -> dict[str, Any]:
    """Production's rules for the tier catalog in use (what dashboards/rules/swell.rules.yml holds
    for the packaged one)."""
    return rules_document()


def prometheus_config(
    stats_port: int,
    node_file_sd: Path,
    jvb_file_sd: Path,
    rules: Path = RULES,
    autoscaler_port: int | None = None,
) -> dict[str, Any]:
    """Production's scrape configuration, for the drill's parts on 127.0.0.1."""
    return drill_scrape_config(
        production_scrape_config(),
        node_file_sd=node_file_sd,
        jvb_file_sd=jvb_file_sd,
        lb_targets=[f"127.0.0.1:{stats_port}"],
        autoscaler_targets=[f"127.0.0.1:{autoscaler_port}"] if autoscaler_port else [],
        rule_file=rules,
    )


class OpenStackDiscoveryStandIn:
    """Keeps `dest` = the local actuator's file_sd `source` as openstack_sd would list the same
    instances (dashboards.prometheus.openstack_sd_targets: Nova metadata `tier` and `stack`, the
    private network's address, the Nova name), so the drill's Prometheus runs production's relabel
    rules. A thread polls `source` every `poll_s` (the actuator replaces it atomically)."""

    def __init__(
        self, pairs: list[tuple[Path, Path]], site: Site | None = None, poll_s: float = 0.05
    ) -> None:
        self.pairs = pairs
        self.site = site or Site()
        self.poll_s = poll_s
        self._seen: dict[Path, tuple[int, int] | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="openstack-sd-stand-in", daemon=True)

    def sync(self) -> None:
        for source, dest in self.pairs:
            try:
                st = source.stat()
                stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None  # no instance listed yet
            if source in self._seen and self._seen[source] == stamp and dest.exists():
                continue
            groups: list[dict[str, Any]] = []
            if stamp is not None:
                try:
                    groups = json.loads(source.read_text())
                except (ValueError, FileNotFoundError):
                    continue  # replaced while read: the next poll reads it
            instances = [
                (g["labels"]["tier"], target, f"swell-{self.site.stack}-{g['labels']['tier']}-{target}")
                for g in groups
                for target in g["targets"]
            ]
            tmp = dest.with_suffix(".tmp")
            tmp.write_text(json.dumps(openstack_sd_targets(instances, self.site)))
            tmp.replace(dest)  # Prometheus never reads a half-written file
            self._seen[source] = stamp

    def start(self) -> OpenStackDiscoveryStandIn:
        self.sync()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.sync()


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def wait_for(
    predicate: Any, what: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with code {proc.returncode}")
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def query(url: str, promql: str, timeout: float = 2.0) -> list[dict[str, Any]]:
    with urllib.request.urlopen(
        f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}), timeout=timeout
    ) as r:
        return list(json.loads(r.read())["data"]["result"])


def by_tier(url: str, promql: str, timeout: float = 2.0) -> dict[str, float]:
    return {s["metric"].get("tier", ""): float(s["value"][1]) for s in query(url, promql, timeout)}


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def redis_command(port: int, data_dir: Path) -> list[str]:
    """The chat tier's shared Redis (Debian's `redis-server`) for a drill or a test: on 127.0.0.1
    only, no persistence (a drill's rooms live as long as the drill), its files in `data_dir`.
    Start it with `processes.start_process` so it cannot outlive its parent."""
    return [
        "redis-server",
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "yes",
    ]  # fmt: skip


def redis_ready(port: int) -> bool:
    """Whether the Redis on 127.0.0.1:`port` answers PING (RESP inline command, no client needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
