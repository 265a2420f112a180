"""The Kubernetes actuator, driven through the official client against the stand-in API server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from k8s_standin import TEST_TOKEN as TOKEN
from k8s_standin import StandInApiServer
from kubernetes import client

from autoscaler.adapters.k8s import DeploymentRef, KubernetesActuator, KubernetesActuatorSettings
from autoscaler.ports import ActuationError, Capacity

SCALE = "/deployments/video/scale"
SETTINGS = KubernetesActuatorSettings(
    deployments={"video": DeploymentRef("video", "prod"), "chat": DeploymentRef("chat-prosody", "prod")},
    request_timeout_s=5,
)


@pytest.fixture
def actuator(standin: StandInApiServer, make_client: Callable[[], client.ApiClient]) -> KubernetesActuator:
    standin.add_deployment("prod", "video", replicas=2, ready=2)
    standin.add_deployment("prod", "chat-prosody", replicas=3, ready=1)
    return KubernetesActuator(make_client(), SETTINGS)


@pytest.mark.parametrize(
    ("start", "desired"),
    [(2, 8), (8, 2), (2, 0), (0, 4)],
    ids=["surge-x4-up", "back-down", "to-zero", "from-zero"],
)
def test_scale_writes_replicas_through_the_scale_subresource(
    standin: StandInApiServer, actuator: KubernetesActuator, start: int, desired: int
) -> None:
    actuator.scale("video", start)
    patches_before = standin.count("PATCH", SCALE)

    actuator.scale("video", desired)

    assert standin.replicas("prod", "video") == desired
    assert actuator.capacity("video").current == desired
    assert standin.count("PATCH", SCALE) == patches_before + 1
    patch = [c for c in standin.calls if c.method == "PATCH"][-1]
    assert patch.content_type == "application/strategic-merge-patch+json"
    # Only the scale subresource was written, never the Deployment itself.
    assert standin.count("PUT", "/deployments/video") == 0
    assert standin.count("PATCH", "/deployments/video") == 0


def test_capacity_reads_requested_and_ready_replicas(
    standin: StandInApiServer, actuator: KubernetesActuator
) -> None:
    assert actuator.capacity("chat") == Capacity(current=3, ready=1)
    actuator.scale("chat", 6)
    standin.set_ready("prod", "chat-prosody", 4)
    assert actuator.capacity("chat") == Capacity(current=6, ready=4)
    assert actuator.capacity("chat").pending == 2


@pytest.mark.parametrize("repeats", [1, 3], ids=["once-more", "three-times-more"])
def test_scaling_to_the_current_size_again_writes_nothing(
    standin: StandInApiServer, actuator: KubernetesActuator, repeats: int
) -> None:
    actuator.scale("video", 5)
    assert standin.count("PATCH", SCALE) == 1
    for _ in range(repeats):
        actuator.scale("video", 5)
    assert standin.count("PATCH", SCALE) == 1
    assert standin.replicas("prod", "video") == 5


@pytest.mark.parametrize(
    ("method", "suffix", "status", "retryable", "what"),
    [
        ("PATCH", SCALE, 409, True, "scaling Deployment prod/video (tier video) to 7"),
        ("PATCH", SCALE, 429, True, "scaling Deployment prod/video (tier video) to 7"),
        ("PATCH", SCALE, 500, True, "scaling Deployment prod/video (tier video) to 7"),
        ("PATCH", SCALE, 503, True, "scaling Deployment prod/video (tier video) to 7"),
        ("PATCH", SCALE, 403, False, "scaling Deployment prod/video (tier video) to 7"),
        ("GET", SCALE, 403, False, "reading the scale of Deployment prod/video (tier video)"),
        ("GET", SCALE, 404, False, "reading the scale of Deployment prod/video (tier video)"),
        ("GET", SCALE, 503, True, "reading the scale of Deployment prod/video (tier video)"),
    ],
    ids=[
        "conflict-retryable",
        "throttled-retryable",
        "server-error-retryable",
        "unavailable-retryable",
        "forbidden-patch-final",
        "forbidden-read-final",
        "not-found-final",
        "read-unavailable-retryable",
    ],
)
def test_api_errors_become_actuation_errors_naming_the_deployment(
    standin: StandInApiServer,
    actuator: KubernetesActuator,
    method: str,
    suffix: str,
    status: int,
    retryable: bool,
    what: str,
) -> None:
    standin.fail_next(method, suffix, status)
    with pytest.raises(ActuationError) as caught:
        actuator.scale("video", 7)
    assert caught.value.retryable is retryable
    assert str(caught.value).startswith(what)
    assert f"API server answered {status}" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert standin.replicas("prod", "video") == 2  # nothing changed
    # The failure was transient on the server's side: the next pass succeeds.
    actuator.scale("video", 7)
    assert standin.replicas("prod", "video") == 7


def test_a_deployment_that_does_not_exist_is_a_final_error(
    standin: StandInApiServer, make_client: Callable[[], client.ApiClient]
) -> None:
    actuator = KubernetesActuator(
        make_client(), KubernetesActuatorSettings(deployments={"web": DeploymentRef("web", "prod")})
    )
    for call in (lambda: actuator.capacity("web"), lambda: actuator.scale("web", 3)):
        with pytest.raises(ActuationError) as caught:
            call()
        assert caught.value.retryable is False
        assert "Deployment prod/web" in str(caught.value)
        assert 'deployments.apps "web" not found' in str(caught.value)


@pytest.mark.parametrize(
    ("tier", "desired", "message"),
    [
        ("web", 3, "tier 'web' has no Deployment in the kubernetes actuator's settings (tiers: chat, video)"),
        ("video", -1, "desired must be a whole number >= 0, got -1"),
        ("video", 2.5, "desired must be a whole number >= 0, got 2.5"),
    ],
    ids=["unknown-tier", "negative", "fractional"],
)
def test_bad_requests_are_refused_before_any_call(
    standin: StandInApiServer, actuator: KubernetesActuator, tier: str, desired: int, message: str
) -> None:
    calls_before = len(standin.calls)
    with pytest.raises(ActuationError) as caught:
        actuator.scale(tier, desired)
    assert message in str(caught.value)
    assert caught.value.retryable is False
    assert len(standin.calls) == calls_before


def test_a_wrong_token_is_final_and_never_shown(
    standin: StandInApiServer, make_client: Callable[[], client.ApiClient]
) -> None:
    standin.add_deployment("prod", "video", replicas=2)
    canary = "canary-token-must-not-leak-4242"
    configuration = client.Configuration(host=standin.url, api_key={"BearerToken": canary})
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    actuator = KubernetesActuator(client.ApiClient(configuration), SETTINGS)
    with pytest.raises(ActuationError) as caught:
        actuator.scale("video", 4)
    assert "401" in str(caught.value)
    assert caught.value.retryable is False
    assert canary not in str(caught.value) and canary not in repr(caught.value.args)


def test_an_unreachable_api_server_is_retryable() -> None:
    # Port 9 on loopback (discard) is closed here: connection refused at once.
    configuration = client.Configuration(host="http://127.0.0.1:9")
    configuration.retries = 0
    actuator = KubernetesActuator(client.ApiClient(configuration), SETTINGS)
    with pytest.raises(ActuationError) as caught:
        actuator.scale("video", 4)
    assert caught.value.retryable is True
    assert "cannot reach the API server" in str(caught.value)
    assert "Deployment prod/video" in str(caught.value)
