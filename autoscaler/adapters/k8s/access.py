"""How the Kubernetes adapters reach the API server, and how they describe its failures.

In a pod the service account's token and CA are used (in-cluster configuration); on an on-call
laptop a kubeconfig file and context are (`swell surge` against the cluster's state ConfigMap).
Failures are described by HTTP status and the server's `Status.message` only: never with request
headers, so a bearer token cannot leak into a log line or an error.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import SERVICE_HOST_ENV_NAME, InClusterConfigLoader

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubernetesAccessError(RuntimeError):
    """The client configuration could not be built (no kubeconfig, unknown context, no token)."""


@dataclass(frozen=True)
class ClusterAccess:
    """Where the API server is and who we are to it.

    `in_cluster=None` picks by itself: in-cluster when running in a pod (the kubelet sets
    `KUBERNETES_SERVICE_HOST` and mounts the service account token), else the kubeconfig at
    `kubeconfig` (default: `$KUBECONFIG`, then `~/.kube/config`) with `context` (default: its
    current context).
    """

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool | None = None


def running_in_pod(environ: Mapping[str, str], service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> bool:
    return bool(environ.get(SERVICE_HOST_ENV_NAME)) and (service_account_dir / "token").is_file()


def build_api_client(
    access: ClusterAccess,
    *,
    environ: Mapping[str, str] | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> client.ApiClient:
    """An `ApiClient` for `access`; raises KubernetesAccessError naming what is missing."""
    environ = os.environ if environ is None else environ
    configuration = client.Configuration()
    in_cluster = access.in_cluster
    if in_cluster is None:
        in_cluster = running_in_pod(environ, service_account_dir)
    if in_cluster:
        try:
            InClusterConfigLoader(
                token_filename=str(service_account_dir / "token"),
                cert_filename=str(service_account_dir / "ca.crt"),
                environ=environ,
            ).load_and_set(configuration)
        except ConfigException as exc:
            raise KubernetesAccessError(
                f"in-cluster configuration: {exc} (service account files in {service_account_dir})"
            ) from None
    else:
        path = access.kubeconfig or environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
        # KUBECONFIG may list several files; the client reads the first, as documented.
        path = path.split(os.pathsep)[0]
        if not Path(path).is_file():
            raise KubernetesAccessError(f"kubeconfig: no file at {path} (set kubeconfig or KUBECONFIG)")
        try:
            config.load_kube_config(
                config_file=path,
                context=access.context,
                client_configuration=configuration,
                persist_config=False,
            )
        except ConfigException as exc:
            where = f"context {access.context!r} of " if access.context else ""
            raise KubernetesAccessError(f"kubeconfig: {where}{path}: {exc}") from None
    return client.ApiClient(configuration)


@dataclass(frozen=True)
class ApiFailure:
    """A failed call, reduced to what is safe and useful to show: status, reason, server message."""

    status: int | None
    message: str

    @property
    def retryable(self) -> bool:
        """Conflicts, throttling, server errors and unreachable servers may pass; 4xx otherwise won't."""
        return self.status is None or self.status in (409, 429) or self.status >= 500

    @classmethod
    def of(cls, exc: Exception) -> ApiFailure:
        if isinstance(exc, ApiException):
            detail = ""
            with contextlib.suppress(ValueError, AttributeError):
                detail = str(json.loads(exc.body or "").get("message", ""))
            reason = exc.reason or ""
            text = f"API server answered {exc.status} {reason}".rstrip()
            return cls(exc.status, f"{text}: {detail}" if detail else text)
        if isinstance(exc, urllib3.exceptions.HTTPError):
            # The exception's text carries the URL (host and path, never a header): keep the kind only.
            return cls(None, f"cannot reach the API server ({type(exc).__name__})")
        return cls(None, f"unexpected reply from the API server ({type(exc).__name__})")


# What the adapters catch around one API call: HTTP statuses, transport failures, and replies the
# client's models cannot parse (pydantic's ValidationError is a ValueError).
API_ERRORS: tuple[type[Exception], ...] = (ApiException, urllib3.exceptions.HTTPError, ValueError)
