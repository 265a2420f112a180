"""`swell autoscale` as the Kubernetes deployment starts it: the configuration rendered from
deploy/kubernetes (tests/deploy/kustomize.py), written byte for byte as the pod mounts it, run from
the real entry point (`swell`, a subprocess) against

- the Kubernetes API stand-in (tests/autoscaler/k8s/k8s_standin.py: a stand-in for the few
  endpoints the adapters call, not an API server; none can run here), reached through a kubeconfig
  and **enforcing the manifests' own RBAC**: the service account's Roles for the service, the
  on-call Roles for `swell surge` and `swell status`;
- a real Prometheus (Debian package) loaded with the shipped rule file and scraping small
  exporters that speak the load balancer's and the bridges' metrics. The config names the
  in-cluster address `prometheus-operated.monitoring.svc:9090`; the test leaves it as is and
  points `http_proxy` at a forwarding proxy on 127.0.0.1, which also records the bearer token the
  service sent.

It must start, take the Lease, decide, act, save and exit 0; a second replica must follow and do
nothing; on-call's commands must pass the on-call Role.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.mixin import Selectors
from tests.deploy.kustomize import render
from tests.realparts import instant_query, needs_prometheus, running_prometheus, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "autoscaler" / "k8s"))
from k8s_standin import Grant, RbacUser, StandInApiServer, running_standin

pytestmark = [needs_prometheus, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
RULES = ROOT / "dashboards" / "rules" / "swell.rules.yml"
SWELL = str(Path(sys.executable).with_name("swell"))
SA_TOKEN = "sa-token-5f1c9e"  # test values, not secrets
ONCALL_TOKEN = "oncall-token-2b7d41"
PROMETHEUS_TOKEN = "prom-token-8c3a70"
DEMAND = {"web": 6000.0, "chat": 9000.0, "video": 900.0}  # each tier needs more than its 2 instances
# rate(...[1m]) divides by the whole minute: a counter seen for t seconds reads t/60 of its rate.
# A quarter of web's rate is already 1500 requests/s, which needs more than 2 instances of 400.
SETTLED = {"web": 0.25, "chat": 0.9, "video": 0.9}


def grants_for(docs: list[dict[str, Any]], kind: str, name: str) -> tuple[Grant, ...]:
    """The rules of every Role bound (RoleBinding) to the subject `kind`/`name`."""
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "Role"}
    grants = []
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        ns = binding["metadata"]["namespace"]
        if not any(s["kind"] == kind and s["name"] == name for s in binding["subjects"]):
            continue
        for rule in roles[(ns, binding["roleRef"]["name"])]["rules"]:
            names = rule.get("resourceNames")
            grants.append(
                Grant(
                    ns,
                    tuple(rule["apiGroups"]),
                    tuple(rule["resources"]),
                    tuple(rule["verbs"]),
                    tuple(names) if names is not None else None,
                )
            )
    return tuple(grants)


class Exporters:
    """The load balancer (web requests, chat sessions) and one bridge (video participants)."""

    def __init__(self) -> None:
        started = time.time()

        def body(kind: str) -> str:
            if kind == "web":
                total = DEMAND["web"] * (time.time() - started)
                return f'octavia_pool_http_requests_total{{pool="web"}} {total:.0f}\n'
            if kind == "chat":
                # Chat demand is the sessions of pools that serve HTTP (HAProxy exports the request
                # counter for those only): dashboards/mixin.py, http_pools.
                return (
                    f'octavia_pool_current_sessions{{pool="chat"}} {DEMAND["chat"]}\n'
                    'octavia_pool_http_requests_total{pool="chat"} 0\n'
                )
            return f"jitsi_jvb_endpoints {DEMAND['video']}\n"

        self.servers = []
        for kind in ("web", "chat", "video"):

            class Handler(http.server.BaseHTTPRequestHandler):
                what = kind

                def do_GET(self) -> None:
                    payload = body(self.what).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

                def log_message(self, *args: object) -> None:
                    pass

            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)

    def target(self, i: int) -> str:
        return f"127.0.0.1:{self.servers[i].server_address[1]}"

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()


class ForwardProxy:
    """An HTTP proxy on 127.0.0.1 that forwards requests for `host` to the real Prometheus and
    records the Authorization headers it saw. Anything else: 502."""

    def __init__(self, host: str, upstream: str) -> None:
        self.authorizations: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                prefix = f"http://{host}"
                if not self.path.startswith(prefix):
                    self.send_error(502, f"the test proxy only forwards to {host}")
                    return
                proxy.authorizations.append(self.headers.get("Authorization", ""))
                try:
                    with urllib.request.urlopen(upstream + self.path[len(prefix) :], timeout=5) as reply:
                        code, payload = reply.status, reply.read()
                except urllib.error.HTTPError as exc:
                    code, payload = exc.code, exc.read()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "standin", "cluster": {"server": server}}],
                "users": [{"name": "me", "user": {"token": token}}],
                "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "me"}}],
                "current-context": "standin",
            }
        )
    )
    return path


@pytest.fixture
def rendered() -> list[dict[str, Any]]:
    return render(DEPLOY)


@pytest.fixture
def cluster(rendered: list[dict[str, Any]]) -> Iterator[StandInApiServer]:
    with running_standin() as standin:
        sa = ("ServiceAccount", "swell-autoscaler")
        standin.enforce_rbac(
            {
                SA_TOKEN: RbacUser(
                    "system:serviceaccount:swell-autoscaler:swell-autoscaler", grants_for(rendered, *sa)
                ),
                ONCALL_TOKEN: RbacUser("jane", grants_for(rendered, "Group", "swell-oncall")),
            }
        )
        for tier in DEMAND:
            standin.add_deployment("collab", tier, replicas=2, ready=2)
        yield standin


def test_the_rendered_deployment_starts_leads_decides_and_on_call_can_surge(
    tmp_path: Path, rendered: list[dict[str, Any]], cluster: StandInApiServer
) -> None:
    configmap = next(
        d for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "swell-autoscaler-config"
    )
    mounted = tmp_path / "etc" / "swell" / "autoscaler.yaml"
    mounted.parent.mkdir(parents=True)
    mounted.write_text(configmap["data"]["autoscaler.yaml"])  # exactly as the pod mounts it
    config = yaml.safe_load(mounted.read_text())
    prom_host = config["prometheus"]["url"].removeprefix("http://").rstrip("/")
    service_account = kubeconfig(tmp_path / "sa.kubeconfig", cluster.url, SA_TOKEN)
    on_call = kubeconfig(tmp_path / "oncall.kubeconfig", cluster.url, ONCALL_TOKEN)

    exporters = Exporters()
    lb, jvb = Selectors().load_balancer.split('"')[1], Selectors().video_bridge.split('"')[1]
    prom_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": lb,
                "static_configs": [
                    {"targets": [exporters.target(0)], "labels": {"tier": "web"}},
                    {"targets": [exporters.target(1)], "labels": {"tier": "chat"}},
                ],
            },
            {
                "job_name": jvb,
                "static_configs": [{"targets": [exporters.target(2)], "labels": {"tier": "video"}}],
            },
        ],
    }
    try:
        with running_prometheus(tmp_path / "prom", prom_config) as (prom_url, _):

            def by_tier(record: str) -> dict[str, float]:
                return {s["metric"]["tier"]: float(s["value"][1]) for s in instant_query(prom_url, record)}

            def settled() -> bool:
                demand = by_tier(config["demand_query"])
                targets = by_tier(config["demand_targets"]["up"])
                full = set(demand) == set(DEMAND) and all(demand[t] > SETTLED[t] * DEMAND[t] for t in DEMAND)
                return full and targets == dict.fromkeys(DEMAND, 1.0)

            wait_until(settled, "the demand rules to read every tier's demand", 60)
            proxy = ForwardProxy(prom_host, prom_url)

            def swell(
                *args: str, kube: Path, pod: str = "swell-autoscaler-7d9f-a"
            ) -> subprocess.CompletedProcess[str]:
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "HOME": str(tmp_path),
                    "KUBECONFIG": str(kube),
                    "POD_NAME": pod,
                    "PROMETHEUS_BEARER_TOKEN": PROMETHEUS_TOKEN,
                    "http_proxy": proxy.url,
                    "HTTP_PROXY": proxy.url,
                    "no_proxy": "127.0.0.1,localhost",
                    "NO_PROXY": "127.0.0.1,localhost",
                }
                return subprocess.run(
                    [SWELL, *args, "--config", str(mounted)],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=90,
                )

            first = swell("autoscale", "--once", "--json", kube=service_account)
            assert first.returncode == 0, first.stderr[-3000:]
            decisions = {d["tier"]: d for d in json.loads(first.stdout)}
            assert set(decisions) == set(DEMAND)
            for tier, d in decisions.items():
                assert d["direction"] == "up" and d["acted"], d["reason"]
                assert cluster.replicas("collab", tier) == d["desired"] > 2
            lease = cluster.get_object("leases", "swell-autoscaler", "swell-autoscaler")
            assert lease is not None and lease["spec"]["holderIdentity"].startswith(
                "swell-autoscaler-7d9f-a_"
            )
            assert lease["spec"]["leaseDurationSeconds"] == config["leader_election"]["lease_duration_s"]
            state = cluster.get_object("configmaps", "swell-autoscaler", "swell-autoscaler-state")
            assert state is not None
            saved = json.loads(state["data"]["loop-state.json"])
            assert saved["writer"] == lease["spec"]["holderIdentity"]
            assert set(saved["recent_decisions"]) == set(DEMAND)
            assert proxy.authorizations and set(proxy.authorizations) == {f"Bearer {PROMETHEUS_TOKEN}"}
            assert PROMETHEUS_TOKEN not in first.stdout + first.stderr

            # The other replica starts while the first one's Lease runs: it follows, touches nothing.
            sizes = {t: cluster.replicas("collab", t) for t in DEMAND}
            second = swell(
                "autoscale", "--once", "--json", kube=service_account, pod="swell-autoscaler-7d9f-b"
            )
            assert second.returncode == 0, second.stderr[-3000:]
            assert json.loads(second.stdout) == []
            assert {t: cluster.replicas("collab", t) for t in DEMAND} == sizes
            assert cluster.forbidden == [], "the service account's Roles cover every call the service makes"

            # On-call, with the on-call Roles only: surge, list, status, cancel.
            added = swell("surge", "--tier", "video", "--factor", "2", "--for", "1h", "--json", kube=on_call)
            assert added.returncode == 0, added.stderr[-3000:]
            override = json.loads(added.stdout)
            assert override["floor"] == 2 * sizes["video"]
            listed = swell("surge", "--list", "--json", kube=on_call)
            assert [o["id"] for o in json.loads(listed.stdout)] == [override["id"]]
            status = swell("status", "--json", kube=on_call)
            assert status.returncode == 0, status.stderr[-3000:]
            assert {r["tier"] for r in json.loads(status.stdout)} == set(DEMAND)
            cancelled = swell("surge", "--cancel", override["id"], kube=on_call)
            assert cancelled.returncode == 0, cancelled.stderr[-3000:]
            assert cluster.forbidden == [], "the on-call Roles cover surge, --list, --cancel and status"
            proxy.server.shutdown()
    finally:
        exporters.stop()
