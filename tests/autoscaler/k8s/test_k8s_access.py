"""Building the client: kubeconfig on an on-call laptop, the service account in a pod; tokens never shown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from k8s_standin import TEST_TOKEN, StandInApiServer

from autoscaler.adapters.k8s import (
    ClusterAccess,
    ConfigMapStateSettings,
    ConfigMapStateStore,
    DeploymentRef,
    KubernetesAccessError,
    KubernetesActuator,
    KubernetesActuatorSettings,
    LeaseLeaderElector,
    LeaseSettings,
    build_api_client,
    default_identity,
)
from autoscaler.ports import ActuationError, StateStoreError

CANARY = "canary-secret-token-7f3a9c"
ACTUATOR = KubernetesActuatorSettings(deployments={"video": DeploymentRef("video", "prod")})


def write_kubeconfig(path: Path, server: str) -> Path:
    """Two contexts on the same server: `oncall` with the right token, `stale` with a canary one."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gra11", "cluster": {"server": server}}],
                "users": [
                    {"name": "oncall", "user": {"token": TEST_TOKEN}},
                    {"name": "stale", "user": {"token": CANARY}},
                ],
                "contexts": [
                    {
                        "name": "oncall",
                        "context": {"cluster": "gra11", "user": "oncall", "namespace": "prod"},
                    },
                    {"name": "stale", "context": {"cluster": "gra11", "user": "stale"}},
                ],
                "current-context": "oncall",
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("context", "via_env"),
    [(None, False), ("oncall", False), (None, True)],
    ids=["current-context", "named-context", "KUBECONFIG-variable"],
)
def test_a_laptop_reaches_the_cluster_through_its_kubeconfig(
    standin: StandInApiServer, tmp_path: Path, context: str | None, via_env: bool
) -> None:
    standin.add_deployment("prod", "video", replicas=3, ready=3)
    path = write_kubeconfig(tmp_path / "config", standin.url)
    access = ClusterAccess(kubeconfig=None if via_env else str(path), context=context)
    environ = {"KUBECONFIG": str(path)} if via_env else {}
    api = build_api_client(access, environ=environ, service_account_dir=tmp_path / "no-sa")
    assert KubernetesActuator(api, ACTUATOR).capacity("video").current == 3


@pytest.mark.parametrize(
    ("access", "message"),
    [
        (
            ClusterAccess(kubeconfig="/nonexistent/kubeconfig"),
            "kubeconfig: no file at /nonexistent/kubeconfig",
        ),
        (ClusterAccess(context="staging"), "kubeconfig: context 'staging' of"),
        (ClusterAccess(in_cluster=True), "in-cluster configuration:"),
    ],
    ids=["missing-file", "unknown-context", "in-cluster-outside-a-pod"],
)
def test_missing_access_is_a_clear_error(
    standin: StandInApiServer, tmp_path: Path, access: ClusterAccess, message: str
) -> None:
    path = write_kubeconfig(tmp_path / "config", standin.url)
    with pytest.raises(KubernetesAccessError, match=message) as caught:
        build_api_client(access, environ={"KUBECONFIG": str(path)}, service_account_dir=tmp_path / "no-sa")
    assert TEST_TOKEN not in str(caught.value) and CANARY not in str(caught.value)


def test_in_a_pod_the_service_account_is_used(tmp_path: Path) -> None:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("pod-token-abc")
    (sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n")
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    # No connection is made: only the configuration the client would use is checked.
    api = build_api_client(ClusterAccess(), environ=environ, service_account_dir=sa)
    configuration = api.configuration
    assert configuration.host == "https://127.0.0.1:6443"
    assert configuration.ssl_ca_cert == str(sa / "ca.crt")
    assert configuration.auth_settings()["BearerToken"]["value"] == "bearer pod-token-abc"


def test_a_rejected_token_never_appears_in_errors_or_logs(
    standin: StandInApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    standin.add_deployment("prod", "video", replicas=3)
    path = write_kubeconfig(tmp_path / "config", standin.url)
    api = build_api_client(ClusterAccess(kubeconfig=str(path), context="stale"), environ={})
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    with pytest.raises(ActuationError) as failed_scale:
        KubernetesActuator(api, ACTUATOR).scale("video", 6)
    seen.append(str(failed_scale.value))
    with pytest.raises(StateStoreError) as failed_store:
        ConfigMapStateStore(api, ConfigMapStateSettings(namespace="prod")).overrides()
    seen.append(str(failed_store.value))
    elector = LeaseLeaderElector(api, LeaseSettings(namespace="prod"), identity="pod-a")
    assert elector.try_acquire_or_renew(1_790_000_000.0) is False

    assert all("401" in text for text in seen)
    assert any("Lease prod/swell-autoscaler failed" in r.getMessage() for r in caplog.records)
    for text in [*seen, caplog.text]:
        assert CANARY not in text


def test_each_process_is_a_new_election_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "swell-autoscaler-7d9f-abcde")
    first, second = default_identity(), default_identity()
    assert first.startswith("swell-autoscaler-7d9f-abcde_")
    assert first != second  # a restarted pod with the same name waits for its old lease like anyone
