"""The stand-in keeps the API server's rules the adapter tests rely on (checked with the official client).

These are the behaviours of a real API server that the stand-in claims to reproduce; if one broke,
the adapter tests could pass against something a cluster would never do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from k8s_standin import StandInApiServer
from kubernetes import client
from kubernetes.client.exceptions import ApiException


@pytest.fixture
def core(make_client: Callable[..., client.ApiClient]) -> client.CoreV1Api:
    return client.CoreV1Api(make_client())


def version(cm: client.V1ConfigMap) -> int:
    assert cm.metadata is not None and cm.metadata.resource_version is not None
    return int(cm.metadata.resource_version)


def status_of(exc: ApiException) -> dict[str, object]:
    body = json.loads(exc.body or "{}")
    assert isinstance(body, dict)
    return body


def test_a_stale_resource_version_is_a_409_conflict_with_a_status_body(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map(
        "ops", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"k": "1"})
    )
    first = core.read_namespaced_config_map("cm", "ops")
    second = core.read_namespaced_config_map("cm", "ops")
    assert version(first) == version(created)
    first.data = {"k": "2"}
    updated = core.replace_namespaced_config_map("cm", "ops", first)
    assert version(updated) > version(created)
    second.data = {"k": "3"}
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_config_map("cm", "ops", second)
    assert caught.value.status == 409
    body = status_of(caught.value)
    assert body["kind"] == "Status" and body["reason"] == "Conflict" and body["code"] == 409
    assert "the object has been modified" in str(body["message"])
    assert core.read_namespaced_config_map("cm", "ops").data == {"k": "2"}


@pytest.mark.parametrize(
    ("call", "reason", "code"),
    [
        (lambda c: c.read_namespaced_config_map("missing", "ops"), "NotFound", 404),
        (
            lambda c: c.create_namespaced_config_map(
                "ops", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"))
            ),
            "AlreadyExists",
            409,
        ),
    ],
    ids=["not-found", "already-exists"],
)
def test_failures_carry_the_api_servers_status_reason(
    core: client.CoreV1Api, call: Callable[[client.CoreV1Api], object], reason: str, code: int
) -> None:
    core.create_namespaced_config_map("ops", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm")))
    with pytest.raises(ApiException) as caught:
        call(core)
    assert caught.value.status == code
    assert status_of(caught.value)["reason"] == reason


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/merge-patch+json", 200),
        ("application/strategic-merge-patch+json", 200),
        ("application/json-patch+json", 415),
    ],
    ids=["merge-patch", "strategic-merge-patch", "json-patch-unsupported"],
)
def test_the_scale_subresource_takes_the_patch_types_it_claims(
    standin: StandInApiServer, make_client: Callable[..., client.ApiClient], content_type: str, status: int
) -> None:
    standin.add_deployment("collab", "web", replicas=2)
    apps = client.AppsV1Api(make_client())
    body: dict[str, Any] | list[dict[str, Any]] = (
        [{"op": "replace", "path": "/spec/replicas", "value": 5}]
        if content_type.startswith("application/json-patch")
        else {"spec": {"replicas": 5}}
    )
    if status == 200:
        scale = apps.patch_namespaced_deployment_scale("web", "collab", body, _content_type=content_type)
        assert scale.spec is not None and scale.spec.replicas == 5
        assert standin.replicas("collab", "web") == 5
    else:
        with pytest.raises(ApiException) as caught:
            apps.patch_namespaced_deployment_scale("web", "collab", body, _content_type=content_type)
        assert caught.value.status == status
        assert standin.replicas("collab", "web") == 2


def test_lease_times_without_microseconds_are_refused_as_the_api_server_does(
    make_client: Callable[..., client.ApiClient],
) -> None:
    from datetime import UTC, datetime

    api = client.CoordinationV1Api(make_client())
    naive_iso = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)  # isoformat() drops the zero microseconds
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="l"),
        spec=client.V1LeaseSpec(holder_identity="x", renew_time=naive_iso),
    )
    with pytest.raises(ApiException) as caught:
        api.create_namespaced_lease("ops", lease)
    assert caught.value.status == 400
    assert "2006-01-02T15:04:05.000000Z07:00" in str(status_of(caught.value)["message"])


def test_enforced_rbac_allows_what_the_grants_say_and_answers_403_otherwise(
    standin: StandInApiServer, make_client: Callable[..., client.ApiClient]
) -> None:
    """RBAC as the real authorizer applies namespaced Roles: by verb, resource, subresource and
    resourceNames, which never match a create."""
    from k8s_standin import TEST_TOKEN, Grant, RbacUser

    standin.add_deployment("collab", "web", replicas=2)
    standin.enforce_rbac(
        {
            TEST_TOKEN: RbacUser(
                "oncall",
                (
                    Grant("ops", ("",), ("configmaps",), ("get", "update"), ("state",)),
                    Grant("ops", ("",), ("configmaps",), ("create",), ("state",)),
                    Grant("collab", ("apps",), ("deployments",), ("get",), ("web",)),
                ),
            )
        }
    )
    core, apps = client.CoreV1Api(make_client()), client.AppsV1Api(make_client())
    assert apps.read_namespaced_deployment("web", "collab").spec.replicas == 2
    denied = [
        lambda: apps.read_namespaced_deployment_scale("web", "collab"),
        lambda: apps.patch_namespaced_deployment_scale("web", "collab", {"spec": {"replicas": 3}}),
        lambda: core.create_namespaced_config_map(
            "ops", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="state"))
        ),
        lambda: core.read_namespaced_config_map("other", "ops"),
    ]
    for call in denied:
        with pytest.raises(ApiException) as forbidden:
            call()
        assert forbidden.value.status == 403
        assert 'User "oncall" cannot' in str(status_of(forbidden.value)["message"])
    assert standin.replicas("collab", "web") == 2
