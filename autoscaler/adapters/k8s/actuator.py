"""The Kubernetes actuator: a tier is a Deployment, sized through its `scale` subresource.

Writing `spec.replicas` through `/scale` (as `kubectl scale` and the HorizontalPodAutoscaler do)
needs only `patch` on `deployments/scale`, never write access to the whole Deployment, and cannot
clobber a concurrent change to the pod template.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kubernetes import client

from autoscaler.adapters.k8s.access import API_ERRORS, ApiFailure
from autoscaler.ports import ActuationError, Capacity


@dataclass(frozen=True)
class DeploymentRef:
    """The Deployment that serves one tier."""

    name: str
    namespace: str = "default"

    def __str__(self) -> str:
        return f"Deployment {self.namespace}/{self.name}"


@dataclass(frozen=True)
class KubernetesActuatorSettings:
    """Which Deployment each tier is, and how long one API call may take."""

    deployments: Mapping[str, DeploymentRef] = field(default_factory=dict)
    request_timeout_s: float = 10.0


class KubernetesActuator:
    """`Actuator` over Deployments. `scale` reads the scale first and writes only on a change."""

    name = "kubernetes"

    def __init__(self, api_client: client.ApiClient, settings: KubernetesActuatorSettings) -> None:
        self._apps = client.AppsV1Api(api_client)
        self._settings = settings

    def _ref(self, tier: str) -> DeploymentRef:
        try:
            return self._settings.deployments[tier]
        except KeyError:
            known = ", ".join(sorted(self._settings.deployments)) or "none"
            raise ActuationError(
                f"tier {tier!r} has no Deployment in the kubernetes actuator's settings (tiers: {known})",
                retryable=False,
            ) from None

    def capacity(self, tier: str) -> Capacity:
        ref = self._ref(tier)
        try:
            dep = self._apps.read_namespaced_deployment(
                ref.name, ref.namespace, _request_timeout=self._settings.request_timeout_s
            )
        except API_ERRORS as exc:
            raise _error(f"reading {ref} (tier {tier})", exc) from None
        # The API server defaults spec.replicas to 1; readyReplicas is omitted while it is 0.
        current = dep.spec.replicas if dep.spec is not None and dep.spec.replicas is not None else 1
        ready = (dep.status.ready_replicas if dep.status is not None else None) or 0
        return Capacity(current=current, ready=ready)

    def scale(self, tier: str, desired: int) -> None:
        ref = self._ref(tier)
        if isinstance(desired, bool) or not isinstance(desired, int) or desired < 0:
            raise ActuationError(
                f"scaling {ref} (tier {tier}): desired must be a whole number >= 0, got {desired!r}",
                retryable=False,
            )
        timeout = self._settings.request_timeout_s
        try:
            current = self._apps.read_namespaced_deployment_scale(
                ref.name, ref.namespace, _request_timeout=timeout
            )
        except API_ERRORS as exc:
            raise _error(f"reading the scale of {ref} (tier {tier})", exc) from None
        if current.spec is not None and current.spec.replicas == desired:
            return  # idempotent: already asked for, no write
        try:
            # A dict body is sent as a strategic merge patch, which for spec.replicas is a plain replace.
            self._apps.patch_namespaced_deployment_scale(
                ref.name,
                ref.namespace,
                {"spec": {"replicas": desired}},
                field_manager="swell-autoscaler",
                _request_timeout=timeout,
            )
        except API_ERRORS as exc:
            raise _error(f"scaling {ref} (tier {tier}) to {desired}", exc) from None


def _error(what: str, exc: Exception) -> ActuationError:
    failure = ApiFailure.of(exc)
    return ActuationError(f"{what}: {failure.message}", retryable=failure.retryable)
