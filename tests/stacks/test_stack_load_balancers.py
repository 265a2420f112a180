"""The load balancers under Pulumi's mocks: exactly the listeners, pool and monitor of the spec
(stacks/listeners.py), the PROMETHEUS listener open to the monitoring networks only, TLS ending at
Octavia with a Key Manager certificate (the stack's own, kept secret, or an existing container), and
one spec change reaching both Octavia and the drill's HAProxy."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from dashboards.prometheus import PRODUCTION, lb_file_sd
from loadtests.plumbing import HAProxyPorts, haproxy_config
from stacks import config, engine, listeners
from tests.stacks.stack_fixtures import (
    KEY_MARKER,
    ROOT,
    run_with_secrets,
    stack_values,
    with_pem_tls,
    with_tiers,
)

LISTENER = "openstack:loadbalancer/listener:Listener"
POOL = "openstack:loadbalancer/pool:Pool"
MONITOR = "openstack:loadbalancer/monitor:Monitor"
L7_POLICY = "openstack:loadbalancer/l7PolicyV2:L7PolicyV2"
L7_RULE = "openstack:loadbalancer/l7RuleV2:L7RuleV2"
SECRET = "openstack:keymanager/secretV1:SecretV1"
CONTAINER = "openstack:keymanager/containerV1:ContainerV1"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value on the wire


@pytest.fixture
def key_manager_refs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline engine answers inputs only; Barbican answers each secret and container with its
    reference URL, which the listeners take. Added here, for the tests that store a certificate."""
    new_resource = engine.RecordingMocks.new_resource

    def answering(self: engine.RecordingMocks, args: Any) -> tuple[str, dict[str, Any]]:
        resource_id, state = new_resource(self, args)
        if args.typ == SECRET:
            state["secretRef"] = f"https://key-manager.example.org/v1/secrets/{args.name}"
        elif args.typ == CONTAINER:
            state["containerRef"] = f"https://key-manager.example.org/v1/containers/{args.name}"
        return resource_id, state

    monkeypatch.setattr(engine.RecordingMocks, "new_resource", answering)


def _mine(rec: engine.Recording, type_: str, tier: str) -> dict[str, engine.Recorded]:
    return {n: r for n, r in rec.named(type_).items() if n.startswith(f"{tier}-lb-")}


def _expected_listener(
    spec: listeners.Listener, tls_ref: str, monitoring: list[str], private: list[str] | None = None
) -> dict[str, Any]:
    """The inputs Octavia must get for `spec`, as pulumi-openstack names them."""
    expected: dict[str, Any] = {"protocol": spec.protocol, "protocolPort": spec.port}
    for key, value in (
        ("timeoutClientData", spec.timeout_client_data_ms),
        ("timeoutMemberConnect", spec.timeout_member_connect_ms),
        ("timeoutMemberData", spec.timeout_member_data_ms),
    ):
        if value is not None:
            expected[key] = value
    if spec.insert_headers:
        expected["insertHeaders"] = dict.fromkeys(spec.insert_headers, "true")
    if spec.terminates_tls:
        expected["defaultTlsContainerRef"] = tls_ref
    if spec.monitoring_only:
        expected["allowedCidrs"] = monitoring
    if spec.private_only:
        expected["allowedCidrs"] = private
    return expected


def _expected_monitor(m: listeners.HealthMonitor) -> dict[str, Any]:
    """A monitor's inputs: HTTP options only on HTTP checks (Octavia refuses them on TCP ones)."""
    expected: dict[str, Any] = {
        "type": m.type,
        "delay": m.delay_s,
        "timeout": m.timeout_s,
        "maxRetries": m.max_retries,
        "maxRetriesDown": m.max_retries_down,
    }
    if m.type == "HTTP":
        expected |= {"httpMethod": m.http_method, "urlPath": m.url_path, "expectedCodes": m.expected_codes}
    return expected


@pytest.mark.parametrize("tier", sorted(listeners.specs()))
def test_each_load_balancer_declares_exactly_the_listeners_pool_and_monitor_of_its_spec(tier: str) -> None:
    values = stack_values("prod-gra11")
    rec = engine.run(values, "prod-gra11")
    spec = listeners.spec(tier)
    tls_ref = values["swell:tls"]["containerRef"]
    declared = {r.inputs["name"]: r.inputs for r in _mine(rec, LISTENER, tier).values()}
    assert set(declared) == {f"swell-prod-gra11-{tier}-{x.name}" for x in spec.listeners}
    for x in spec.listeners:
        inputs = {k: v for k, v in declared[f"swell-prod-gra11-{tier}-{x.name}"].items() if k != "name"}
        assert inputs.pop("loadbalancerId") == f"{tier}-lb-id"
        assert inputs == _expected_listener(x, tls_ref, ["10.42.0.0/16"], ["10.42.0.0/16"]), x.name

    # The tier's pool behind its traffic listener, then one pool per listener that has its own.
    pools = {r.name: r for r in _mine(rec, POOL, tier).values()}
    monitors = {r.name: r for r in _mine(rec, MONITOR, tier).values()}
    members = _mine(rec, engine.MEMBER, tier)
    expected_pools = [
        (f"{tier}-lb-pool", f"{tier}-lb-healthz", f"{tier}-lb-member-", spec.traffic, spec.pool)
    ]
    expected_pools += [
        (f"{tier}-lb-{x.name}-pool", f"{tier}-lb-{x.name}-monitor", f"{tier}-lb-{x.name}-member-", x, own)
        for x, own in spec.own_pools
    ]
    assert set(pools) == {p[0] for p in expected_pools}
    assert set(monitors) == {p[1] for p in expected_pools}
    count = len(rec.outputs["tiers"][tier]["instances"])
    for pool_name, monitor_name, member_prefix, listener, pool_spec in expected_pools:
        pool = pools[pool_name]
        assert pool.inputs["listenerId"] == f"{tier}-lb-{listener.name}-id"
        assert (pool.inputs["protocol"], pool.inputs["lbMethod"]) == (pool_spec.protocol, pool_spec.lb_method)
        assert pool.inputs.get("persistence") == (
            {"type": pool_spec.persistence} if pool_spec.persistence else None
        )
        monitor = monitors[monitor_name]
        assert monitor.inputs["poolId"] == pool.id
        assert {k: v for k, v in monitor.inputs.items() if k not in ("name", "poolId")} == _expected_monitor(
            pool_spec.monitor
        )
        mine = [
            m for n, m in members.items() if n.startswith(member_prefix) and n[len(member_prefix) :].isdigit()
        ]
        assert len(mine) == count > 0
        assert {(m.inputs["poolId"], m.inputs["protocolPort"], m.inputs["monitorPort"]) for m in mine} == {
            (pool.id, pool_spec.member_port, pool_spec.monitor_port)
        }


def test_chats_load_balancer_is_plain_http_with_no_xmpp_listener_and_no_persistence() -> None:
    # Chat servers are stateless (docs/chat.md): no session pins a user to one, and Prosody is not on
    # them any more (the bridges log in to their shard's Prosody, stacks/fixed.py). So no TCP listener
    # for XMPP, no cookie persistence, and a retiring chat instance drains from its one pool.
    values = with_tiers(stack_values("prod-gra11"), chat=2)
    values["swell:tiers"]["chat"].update(instances=[0, 2], retiring=[1])
    rec = engine.run(values, "prod-gra11")
    assert {r.inputs["protocol"] for r in _mine(rec, LISTENER, "chat").values()} == {
        "TERMINATED_HTTPS",
        "HTTP",
        "PROMETHEUS",
    }
    (pool,) = _mine(rec, POOL, "chat").values()
    assert (pool.inputs["lbMethod"], pool.inputs.get("persistence")) == ("LEAST_CONNECTIONS", None)
    members = {n.removeprefix("chat-lb-member-"): m for n, m in _mine(rec, engine.MEMBER, "chat").items()}
    assert {int(i): m.inputs["weight"] for i, m in members.items()} == {0: 1, 1: 0, 2: 1}
    # Nothing on the chat instances listens for XMPP: 5222 is closed on them.
    chat_ports = {
        r.inputs["portRangeMin"] for r in rec.of_type(engine.SEC_GROUP_RULE) if r.name.startswith("chat-in-")
    }
    assert 5222 not in chat_ports


@pytest.mark.parametrize("tier", sorted(listeners.specs()))
def test_plain_http_is_redirected_to_the_tiers_public_name_on_https(tier: str) -> None:
    values = stack_values("prod-gra11")
    rec = engine.run(values, "prod-gra11")
    (policy,) = _mine(rec, L7_POLICY, tier).values()
    (rule,) = _mine(rec, L7_RULE, tier).values()
    assert policy.inputs["listenerId"] == f"{tier}-lb-http-id"
    assert policy.inputs["action"] == "REDIRECT_PREFIX"
    assert policy.inputs["redirectPrefix"] == f"https://{values['swell:tls']['hosts'][tier]}"
    assert policy.inputs["redirectHttpCode"] == 301
    # Octavia renders no L7 policy without a rule: this one matches every path.
    assert (rule.inputs["type"], rule.inputs["compareType"], rule.inputs["value"]) == (
        "PATH",
        "STARTS_WITH",
        "/",
    )
    assert rule.inputs["l7policyId"] == policy.id


MONITORING = [
    ("default-private-network", None, ["10.42.0.0/16"]),
    ("one-monitoring-subnet", ["10.42.250.0/24"], ["10.42.250.0/24"]),
    ("two-networks", ["10.42.250.0/24", "192.0.2.0/28"], ["10.42.250.0/24", "192.0.2.0/28"]),
]


@pytest.mark.parametrize(
    ("configured", "allowed"), [m[1:] for m in MONITORING], ids=[m[0] for m in MONITORING]
)
def test_the_prometheus_listeners_answer_only_the_monitoring_networks(
    configured: list[str] | None, allowed: list[str]
) -> None:
    values = stack_values("dev")
    if configured is not None:
        values["swell:monitoringCidrs"] = configured
    rec = engine.run(values, "dev")
    prometheus = [r for r in rec.of_type(LISTENER) if r.inputs["protocol"] == "PROMETHEUS"]
    assert sorted(r.name for r in prometheus) == ["chat-lb-prometheus", "web-lb-prometheus"]
    for r in prometheus:
        assert r.inputs["allowedCidrs"] == allowed
        assert (
            r.inputs["protocolPort"]
            == rec.outputs["tiers"][r.name.split("-")[0]]["load_balancer"]["prometheus_port"]
        )
    # Traffic listeners stay open to everyone (they are the service).
    assert {
        r.name: r.inputs.get("allowedCidrs")
        for r in rec.of_type(LISTENER)
        if r.inputs["protocol"] != "PROMETHEUS"
    } == {
        "web-lb-https": None,
        "web-lb-http": None,
        "chat-lb-https": None,
        "chat-lb-http": None,
    }


@pytest.mark.usefixtures("key_manager_refs")
@pytest.mark.parametrize("chain", [True, False], ids=["with-chain", "without-chain"])
def test_the_stacks_own_certificate_goes_to_the_key_manager_and_the_https_listeners(chain: bool) -> None:
    rec = run_with_secrets(with_pem_tls(stack_values("dev"), chain=chain), "dev", ["swell:tls"])
    secrets = {r.inputs["name"]: r for r in rec.of_type(SECRET)}
    roles = ["certificate", "private_key"] + (["intermediates"] if chain else [])
    assert sorted(secrets) == sorted(f"swell-dev-tls-{role}" for role in roles)
    assert secrets["swell-dev-tls-private_key"].inputs["secretType"] == "private"
    (container,) = rec.of_type(CONTAINER)
    assert container.inputs["type"] == "certificate"
    assert {ref["name"]: ref["secretRef"] for ref in container.inputs["secretRefs"]} == {
        role: secrets[f"swell-dev-tls-{role}"].state["secretRef"] for role in roles
    }
    https = [r for r in rec.of_type(LISTENER) if r.inputs["protocol"] == "TERMINATED_HTTPS"]
    assert len(https) == 2
    for listener in https:
        assert listener.inputs["defaultTlsContainerRef"] == container.state["containerRef"]
        assert listener.property_dependencies["defaultTlsContainerRef"] == (container.urn,)
    components = [r for r in rec.resources if r.type == "swell:openstack:TlsCertificate"]
    assert [c.urn for c in components] == [container.parent]


@pytest.mark.usefixtures("key_manager_refs")
def test_the_private_key_is_a_secret_and_appears_nowhere_but_in_its_key_manager_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wire: dict[str, dict[str, Any]] = {}
    register = engine.RecordingMonitor.RegisterResource

    def recording(self: engine.RecordingMonitor, request: Any) -> Any:
        wire[request.name] = json_format.MessageToDict(request.object)
        return register(self, request)

    monkeypatch.setattr(engine.RecordingMonitor, "RegisterResource", recording)
    rec = run_with_secrets(with_pem_tls(stack_values("dev")), "dev", ["swell:tls"])

    assert KEY_MARKER not in json.dumps(rec.outputs)
    holders = [r.name for r in rec.resources if KEY_MARKER in json.dumps(r.inputs, default=str)]
    assert holders == ["tls-private-key"]
    # On the wire to the engine the payload is a secret: encrypted in the state, hidden by `pulumi preview`.
    assert SECRET_SIG in wire["tls-private-key"]["payload"]
    assert KEY_MARKER not in repr(rec.config)


def test_a_private_key_set_without_secret_is_refused_without_quoting_it() -> None:
    with pytest.raises(config.ConfigError) as caught:
        run_with_secrets(with_pem_tls(stack_values("dev")), "dev", secret_keys=[])
    (problem,) = caught.value.problems
    assert problem.startswith("swell:tls.privateKey: must be a secret")
    assert "pulumi config set --secret --path swell:tls.privateKey" in problem
    assert KEY_MARKER not in str(caught.value)


def test_an_existing_container_is_used_as_is_and_nothing_is_stored() -> None:
    values = stack_values("dev")
    rec = engine.run(values, "dev")
    assert rec.of_type(SECRET) == [] and rec.of_type(CONTAINER) == []
    refs = {
        r.inputs["defaultTlsContainerRef"]
        for r in rec.of_type(LISTENER)
        if r.inputs["protocol"] == "TERMINATED_HTTPS"
    }
    assert refs == {values["swell:tls"]["containerRef"]}


CHANGES = [
    (
        "round-robin",
        lambda s: dataclasses.replace(s, pool=dataclasses.replace(s.pool, lb_method="ROUND_ROBIN")),
    ),
    (
        "client-timeout",
        lambda s: dataclasses.replace(
            s, listeners=(dataclasses.replace(s.traffic, timeout_client_data_ms=12_345), *s.listeners[1:])
        ),
    ),
    (
        "monitor-path",
        lambda s: dataclasses.replace(
            s,
            pool=dataclasses.replace(s.pool, monitor=dataclasses.replace(s.pool.monitor, url_path="/ready")),
        ),
    ),
]


@pytest.mark.parametrize("change", [c[1] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_one_spec_change_reaches_both_octavia_and_the_drills_haproxy(
    monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    specs = listeners.specs()
    changed = change(specs["web"])
    monkeypatch.setattr(listeners, "specs", lambda: {**specs, "web": changed})
    rec = engine.run(stack_values("dev"), "dev")
    haproxy = haproxy_config(
        HAProxyPorts({"web": 1, "chat": 2, "video": 3}, 4, redirects={"web": 5, "chat": 6}),
        Path("/tmp/x.sock"),
        2,
    )
    # Sections: a line at column 0 and the indented lines under it.
    sections = {block.split("\n", 1)[0]: block + "\n" for block in re.split(r"\n(?=\S)", haproxy)}
    web, web_frontend = sections["backend web-pool"], sections["frontend web-https"]

    (pool,) = _mine(rec, POOL, "web").values()
    (monitor,) = _mine(rec, MONITOR, "web").values()
    https = _mine(rec, LISTENER, "web")["web-lb-https"]
    assert pool.inputs["lbMethod"] == changed.pool.lb_method
    assert f"balance {listeners.HAPROXY_BALANCE[changed.pool.lb_method]}\n" in web
    assert https.inputs["timeoutClientData"] == changed.traffic.timeout_client_data_ms
    assert f"timeout client {changed.traffic.timeout_client_data_ms}ms\n" in web_frontend
    assert monitor.inputs["urlPath"] == changed.pool.monitor.url_path
    assert f"option httpchk GET {changed.pool.monitor.url_path}\n" in web


def test_the_balanced_tiers_are_the_tiers_with_a_spec() -> None:
    assert set(listeners.specs()) == set(config.balanced_tier_names()) == {"web", "chat"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")
def test_the_stack_outputs_give_prometheus_every_load_balancers_metrics_listener(tmp_path: Path) -> None:
    outputs = engine.run(with_tiers(stack_values("dev"), web=2, chat=1), "dev").outputs
    targets = lb_file_sd(json.loads(json.dumps(outputs)))  # as `pulumi stack output --json` prints them
    assert targets == [
        {
            "targets": [f"{outputs['tiers'][t]['load_balancer']['vip_address']}:8088"],
            "labels": {"tier": t, "stack": "dev"},
        }
        for t in ("chat", "web")
    ]
    # The production configuration with these targets in place passes Prometheus's own check.
    deployed = tmp_path / "prometheus"
    shutil.copytree(PRODUCTION.parent, deployed)
    shutil.copytree(ROOT / "dashboards" / "rules", tmp_path / "rules")
    (deployed / "file_sd").mkdir(exist_ok=True)
    (deployed / "file_sd" / "swell-lb.json").write_text(json.dumps(targets))
    run = subprocess.run(
        ["promtool", "check", "config", str(deployed / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert not re.search("WARNING", run.stdout + run.stderr), run.stdout + run.stderr
