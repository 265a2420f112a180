"""deploy/kubernetes/: valid against Kubernetes's own schemas (offline), least-privileged, consistent.

kubernetes-validate ships the OpenAPI-derived JSON schemas of each Kubernetes release; strict mode
also refuses unknown fields (a misspelt key that the API server would silently drop).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# The Kubernetes version the manifests are written for and validated against.
KUBERNETES_VERSION = "1.33.0"
NOT_APPLIED = {"secret.example.yaml"}  # a template: applying placeholders would clobber the real Secret


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
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


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


def test_probes_hit_healthz_on_the_port_the_service_listens_on() -> None:
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert autoscaler_config()["serve"]["listen"] == "0.0.0.0:9180"
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert ports[get["port"]] == 9180


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


def rules_in(namespace: str) -> list[dict[str, Any]]:
    return [
        rule
        for d in applied()
        if d["kind"] == "Role"
        and d["metadata"]["namespace"] == namespace
        and d["metadata"]["name"] != "swell-oncall"
        for rule in d["rules"]
    ]


def allowed(namespace: str, group: str, resource: str, name: str | None) -> set[str]:
    verbs: set[str] = set()
    for rule in rules_in(namespace):
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
        expected = "swell-oncall" if role == "swell-oncall" else "swell-autoscaler"
        assert [s["name"] for s in subjects] == [expected]


def test_the_image_runs_as_the_non_root_user_the_pod_expects() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
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
