"""deploy/kubernetes/: valid against Kubernetes's own schemas (offline), least-privileged, consistent.

kubernetes-validate ships the OpenAPI-derived JSON schemas of each Kubernetes release; strict mode
also refuses unknown fields (a misspelt key that the API server would silently drop). The one
custom resource, the Prometheus Operator's ServiceMonitor, has no schema there: it is checked
against the fields of its CRD that it uses (`SERVICE_MONITOR_SCHEMA`), unknown fields refused too.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from dashboards.mixin import Selectors

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# The Kubernetes version the manifests are written for and validated against.
KUBERNETES_VERSION = "1.33.0"
NOT_APPLIED = {"secret.example.yaml"}  # a template: applying placeholders would clobber the real Secret


# monitoring.coreos.com/v1 ServiceMonitor, the part of its CRD's schema the manifest uses
# (prometheus-operator API reference: spec.selector and spec.endpoints[] are what it requires).
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _LABELS},
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": _LABELS},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scheme": {"enum": ["http", "https"]},
                        },
                    },
                },
            },
        },
    },
}


def validate(doc: dict[str, Any]) -> None:
    if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
        jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def load(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def kustomization() -> dict[str, Any]:
    docs = load("kustomization.yaml")
    assert len(docs) == 1
    return docs[0]


def applied() -> list[dict[str, Any]]:
    return [doc for name in kustomization()["resources"] for doc in load(name)]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in applied() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def autoscaler_config() -> dict[str, Any]:
    config = yaml.safe_load(one("ConfigMap", "swell-autoscaler-config")["data"]["autoscaler.yaml"])
    assert isinstance(config, dict)
    return config


def container() -> dict[str, Any]:
    containers = one("Deployment", "swell-autoscaler")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_the_kustomization_lists_every_manifest_and_nothing_missing() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"} - NOT_APPLIED
    assert listed == present


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml"),
)
def test_every_manifest_is_valid_for_the_stated_kubernetes_version(name: str) -> None:
    docs = load(name)
    assert docs, f"{name} is empty"
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize(
    ("path", "value"),
    [(("spec", "endpoints", 0, "prot"), "metrics"), (("spec", "endpoints", 0, "interval"), "often")],
    ids=["misspelt-field", "bad-interval"],
)
def test_the_validator_catches_a_broken_service_monitor(path: tuple[Any, ...], value: Any) -> None:
    broken = copy.deepcopy(one("ServiceMonitor", "swell-autoscaler"))
    target: Any = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "replicas"), "two"),
        (("spec", "template", "spec", "containers", 0, "livenessProbe", "httpGett"), {"path": "/healthz"}),
        (("spec", "template", "spec", "securityContext", "runAsNonRoot"), "yes"),
    ],
    ids=["wrong-type", "misspelt-field", "string-for-boolean"],
)
def test_the_validator_catches_a_broken_deployment(path: tuple[Any, ...], value: Any) -> None:
    broken = copy.deepcopy(one("Deployment", "swell-autoscaler"))
    target: Any = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_deployment_runs_two_replicas_of_the_service_command_safely() -> None:
    dep = one("Deployment", "swell-autoscaler")
    pod = dep["spec"]["template"]["spec"]
    c = container()
    assert dep["spec"]["replicas"] == 2
    assert c["command"] == ["swell", "autoscale", "--config", "/etc/swell/autoscaler.yaml"]
    assert pod["serviceAccountName"] == one("ServiceAccount", "swell-autoscaler")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}


def test_probes_hit_healthz_and_readyz_on_the_port_the_service_listens_on() -> None:
    """Liveness is the loop (/healthz), readiness its freshness (/readyz): never the other way, or
    a Prometheus outage restarts every replica."""
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert autoscaler_config()["serve"]["listen"] == "0.0.0.0:9180"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert ports[get["port"]] == 9180
    # The kubelet gives up after period x threshold: far longer than one 15 s pass.
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 4 * autoscaler_config()["interval_s"]


def test_the_alerts_job_is_scraped_from_every_replica() -> None:
    """The alerts select job="swell-autoscaler": the ServiceMonitor's job is its Service's name, and
    the Service reaches every replica's /metrics, ready or not."""
    service = one("Service", "swell-autoscaler")
    monitor = one("ServiceMonitor", "swell-autoscaler")
    pod_labels = one("Deployment", "swell-autoscaler")["spec"]["template"]["metadata"]["labels"]
    assert Selectors().autoscaler == f'job="{service["metadata"]["name"]}"'
    assert "jobLabel" not in monitor["spec"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["publishNotReadyAddresses"] is True
    (port,) = service["spec"]["ports"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    container_ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert container_ports[port["targetPort"]] == int(autoscaler_config()["serve"]["listen"].rsplit(":")[1])


def test_config_and_credentials_are_mounted_where_the_command_reads_them() -> None:
    c = container()
    pod = one("Deployment", "swell-autoscaler")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/swell")
    assert volumes[mount["name"]]["configMap"]["name"] == "swell-autoscaler-config"
    assert "autoscaler.yaml" in one("ConfigMap", "swell-autoscaler-config")["data"]
    secret = load("secret.example.yaml")[0]
    assert [e["secretRef"]["name"] for e in c["envFrom"]] == [secret["metadata"]["name"]]
    token_env = autoscaler_config()["prometheus"]["bearer_token"]["env"]
    assert token_env in secret["stringData"]
    # Placeholders only: the template never carries a credential.
    assert all(
        v == "REPLACE_ME" for k, v in secret["stringData"].items() if k.endswith(("TOKEN", "PASSWORD"))
    )


def rules_in(namespace: str, on_call: bool = False) -> list[dict[str, Any]]:
    return [
        rule
        for d in applied()
        if d["kind"] == "Role"
        and d["metadata"]["namespace"] == namespace
        and d["metadata"]["name"].startswith("swell-oncall") == on_call
        for rule in d["rules"]
    ]


def allowed(namespace: str, group: str, resource: str, name: str | None, on_call: bool = False) -> set[str]:
    verbs: set[str] = set()
    for rule in rules_in(namespace, on_call):
        if group in rule["apiGroups"] and resource in rule["resources"]:
            names = rule.get("resourceNames")
            if names is None or (name is not None and name in names):
                verbs |= set(rule["verbs"])
    return verbs


def test_rbac_grants_exactly_what_the_adapters_call_and_no_wildcards() -> None:
    config = autoscaler_config()
    tiers = config["tiers"]
    own = "swell-autoscaler"
    for tier in tiers.values():
        ns, name = tier["actuator"]["namespace"], tier["actuator"]["deployment"]
        assert allowed(ns, "apps", "deployments", name) == {"get"}
        assert allowed(ns, "apps", "deployments/scale", name) == {"get", "patch"}
        assert allowed(ns, "apps", "deployments", "some-other-deployment") == set()
    lease, state = config["leader_election"]["lease_name"], config["state"]["name"]
    assert allowed(own, "coordination.k8s.io", "leases", lease) == {"get", "update", "create"}
    assert allowed(own, "", "configmaps", state) == {"get", "update", "create"}
    # Another ConfigMap (e.g. its own config) can be created but never read or changed.
    assert allowed(own, "", "configmaps", "swell-autoscaler-config") == {"create"}
    assert allowed(own, "", "secrets", None) == set()
    for doc in applied():
        for rule in doc.get("rules", []):
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"wildcard in {doc['metadata']['name']}"


def test_every_role_is_bound_to_the_autoscaler_or_on_call() -> None:
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in applied() if d["kind"] == "Role"}
    bound = {
        (d["metadata"]["namespace"], d["roleRef"]["name"]): d["subjects"]
        for d in applied()
        if d["kind"] == "RoleBinding"
    }
    assert roles == set(bound)
    for (_, role), subjects in bound.items():
        expected = "swell-oncall" if role.startswith("swell-oncall") else "swell-autoscaler"
        assert [s["name"] for s in subjects] == [expected]


def test_on_call_can_surge_list_cancel_and_read_status_and_nothing_more() -> None:
    """`swell surge` reads the tier's Deployment (its size) and writes the state ConfigMap (creating
    it when the autoscaler never ran); `--list`, `--cancel` and `status` read and update it. The
    end-to-end proof is tests/deploy/test_kustomized_autoscaler.py, with RBAC enforced."""
    config = autoscaler_config()
    own, state = config["state"]["namespace"], config["state"]["name"]
    assert allowed(own, "", "configmaps", state, on_call=True) == {"get", "update", "create"}
    assert allowed(own, "", "configmaps", "swell-autoscaler-config", on_call=True) == {"create"}
    for tier in config["tiers"].values():
        ns, name = tier["actuator"]["namespace"], tier["actuator"]["deployment"]
        assert allowed(ns, "apps", "deployments", name, on_call=True) == {"get"}
        assert allowed(ns, "apps", "deployments/scale", name, on_call=True) == set()
    assert allowed(own, "", "secrets", None, on_call=True) == set()


def test_the_image_runs_as_the_non_root_user_the_pod_expects() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm$", dockerfile, re.MULTILINE)
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert user is not None, "USER must be numeric for runAsNonRoot"
    pod_security = one("Deployment", "swell-autoscaler")["spec"]["template"]["spec"]["securityContext"]
    assert (int(user[1]), int(user[2])) == (pod_security["runAsUser"], pod_security["runAsGroup"])
    assert int(user[1]) != 0
    image = container()["image"]
    assert any(image.startswith(entry["name"] + ":") for entry in kustomization()["images"])


def test_the_mounted_config_is_valid_for_the_service() -> None:
    from autoscaler.config import parse_config

    cfg = parse_config(autoscaler_config(), "deploy/kubernetes/configmap.yaml")
    assert cfg.leader_election is not None and cfg.state.kind == "configmap"
    assert {t.actuator.kind for t in cfg.tiers.values()} == {"kubernetes"}
