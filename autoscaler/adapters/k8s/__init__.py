"""Kubernetes adapters: a Deployment actuator, Lease leader election and a ConfigMap state store.

All three take an `ApiClient` of the official `kubernetes` client, built by `build_api_client`
(in-cluster in a pod, kubeconfig on an on-call laptop). See docs/kubernetes.md.
"""

from autoscaler.adapters.k8s.access import ClusterAccess, KubernetesAccessError, build_api_client
from autoscaler.adapters.k8s.actuator import DeploymentRef, KubernetesActuator, KubernetesActuatorSettings
from autoscaler.adapters.k8s.lease import LeaseLeaderElector, LeaseSettings, default_identity
from autoscaler.adapters.k8s.state import ConfigMapStateSettings, ConfigMapStateStore

__all__ = [
    "ClusterAccess",
    "ConfigMapStateSettings",
    "ConfigMapStateStore",
    "DeploymentRef",
    "KubernetesAccessError",
    "KubernetesActuator",
    "KubernetesActuatorSettings",
    "LeaseLeaderElector",
    "LeaseSettings",
    "build_api_client",
    "default_identity",
]
