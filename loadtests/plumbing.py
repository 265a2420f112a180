"""The drill's real parts on 127.0.0.1: HAProxy (standing in for the Octavia load balancer, which
runs HAProxy) and Prometheus with the project's recording rules (time-compressed with the drill,
`compress_rules`: the one difference from production's), each a child process in its own process
group, configured here and stopped by `stop_process` whatever happens.

HAProxy has one frontend per tier, named for the tier (`web`, `chat`, `video`), each with a
backend `<tier>-pool` of `server-template` slots in maintenance until the local actuator registers
an instance through the runtime API (stats socket, level admin). Its Prometheus exporter is
scraped as job `swell-lb`: a metric relabel sets `tier` from HAProxy's `proxy` label, then
`HAPROXY_AS_OCTAVIA_RELABEL` renames the series as Octavia's amphora proxy does. Instances come
from the file_sd files the actuator writes: job `node` (readiness), and job `jvb` for video.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dashboards.mixin import HAPROXY_AS_OCTAVIA_RELABEL

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "dashboards" / "rules" / "swell.rules.yml"
TIERS = ("web", "chat", "video")
# Sets `tier` from HAProxy's proxy name (frontend `web`, backend `web-pool`) before the renames.
TIER_FROM_PROXY = {
    "source_labels": ["proxy"],
    "regex": "(web|chat|video)(-pool)?",
    "target_label": "tier",
    "replacement": "$1",
}


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
    minute, as the policy's time constants do (`compress_time`)."""

    def expr(text: str) -> str:
        text = re.sub(
            rf"\[({DURATION})\]", lambda m: f"[{compressed_duration(m[1], speed, MIN_RANGE_S)}]", text
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
    window = re.search(
        rf"rate\(octavia_listener_http_requests_total[^\[]*\[({DURATION})\]", RULES.read_text()
    )
    nominal = duration_s(window[1]) if window else 60.0
    return max(nominal / speed, MIN_RANGE_S) / 2


@dataclass(frozen=True)
class HAProxyPorts:
    web: int
    chat: int
    video: int
    stats: int

    def frontend(self, tier: str) -> int:
        return int(getattr(self, tier))


def haproxy_config(ports: HAProxyPorts, socket_path: Path, slots: int) -> str:
    """Frontends per tier; `slots` server-template slots per backend, in maintenance at start."""
    sections = [
        f"""global
  maxconn 4000
  stats socket {socket_path} mode 600 level admin
  stats timeout 10s
defaults
  mode http
  option redispatch
  retries 2
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  timeout queue 2s
  timeout tunnel 1h
  default-server check inter 1s fall 2 rise 1 disabled
frontend stats
  bind 127.0.0.1:{ports.stats}
  http-request use-service prometheus-exporter if {{ path /metrics }}
"""
    ]
    for tier in TIERS:
        # Web balances requests by least outstanding ones; chat and video sessions are long-lived
        # WebSockets, balanced by least connections (as Jicofo picks the least loaded bridge).
        sections.append(
            f"""frontend {tier}
  bind 127.0.0.1:{ports.frontend(tier)}
  default_backend {tier}-pool
backend {tier}-pool
  balance leastconn
  option httpchk GET /healthz
  server-template s 1-{slots} 127.0.0.1:9
"""
        )
    return "".join(sections)


def prometheus_config(
    stats_port: int, node_file_sd: Path, jvb_file_sd: Path, rules: Path = RULES
) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "swell-lb",
                "static_configs": [{"targets": [f"127.0.0.1:{stats_port}"]}],
                "metric_relabel_configs": [TIER_FROM_PROXY, *HAPROXY_AS_OCTAVIA_RELABEL],
            },
            {
                "job_name": "node",
                "file_sd_configs": [{"files": [str(node_file_sd)], "refresh_interval": "1s"}],
            },
            {
                "job_name": "jvb",
                "file_sd_configs": [{"files": [str(jvb_file_sd)], "refresh_interval": "1s"}],
            },
        ],
    }


def start_process(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child in its own process group (so Ctrl-C reaches only the drill, which then stops it)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL after `timeout_s`; safe to call twice."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGCONT)  # a paused Prometheus (fault) must hear the TERM
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


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
