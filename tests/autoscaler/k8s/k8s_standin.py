"""A stand-in for the few Kubernetes API endpoints the autoscaler's adapters call.

This is NOT a Kubernetes API server. None can be installed on these machines (kube-apiserver,
etcd, kind and k3s all download binaries or images at install time), so the tests drive the
OFFICIAL `kubernetes` Python client against this small HTTP server on 127.0.0.1 instead. It
implements only:

- `GET  /apis/apps/v1/namespaces/{ns}/deployments/{name}`
- `GET|PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale` (PATCH with
  `application/merge-patch+json` or `application/strategic-merge-patch+json`, which for the Scale
  object's scalar fields mean the same thing; any other patch type gets 415)
- `GET|POST /apis/coordination.k8s.io/v1/namespaces/{ns}/leases`, `GET|PUT .../leases/{name}`
- `GET|POST /api/v1/namespaces/{ns}/configmaps`, `GET|PUT .../configmaps/{name}`

with the API server's concurrency rules for those: one cluster-wide `resourceVersion` counter,
bumped on every write and stamped on the object; a PUT or PATCH carrying a stale
`metadata.resourceVersion` gets 409 Conflict, a POST of an existing name 409 AlreadyExists, a
missing object 404 NotFound, each with a `Status` body as the real server sends it. Lease
`acquireTime`/`renewTime` must be MicroTime (RFC 3339 with exactly six fractional digits), which the
real server enforces and a naive `datetime.isoformat()` can miss.

Optionally (`enforce_rbac`) it authorizes each request as RBAC's namespaced Roles would: one
bearer token per user, each with the rules of the Roles bound to it (verb from the method: get,
list, create, update, patch; `deployments/scale` as the subresource; `resourceNames` never match a
create), and answers 403 Forbidden with the API server's message otherwise. So the manifests' Roles
are exercised by the real commands, not only read. Without it, one optional bearer token.

What it does not do: no controllers (scaling a Deployment changes `spec.replicas` only; tests set
`status.readyReplicas` with `set_ready`), no watch, no field validation beyond the above, no
admission, no ClusterRoles or aggregation, no TLS, no server-side apply, no json-patch.

Tests can also inject a failure status for the next matching request (`fail_next`), run a callback
just before a request is handled (`before`, used to interleave two writers so that a 409 really
happens), and read the log of what was asked and answered (`calls`).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The bearer token the tests' clients present (a test value, not a secret).
TEST_TOKEN = "standin-token-0123456789"

_MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")

# (group, resource, kind, apiVersion) of each collection the stand-in serves.
_KINDS = {
    "leases": ("coordination.k8s.io", "Lease", "coordination.k8s.io/v1"),
    "configmaps": ("", "ConfigMap", "v1"),
}

_ROUTES = [
    (re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)/scale$"), "scale"),
    (re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)$"), "deployment"),
    (re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/(leases)(?:/([^/]+))?$"), "object"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/(configmaps)(?:/([^/]+))?$"), "object"),
]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@dataclass(frozen=True)
class Call:
    """One request as the stand-in saw it, and the status it answered."""

    method: str
    path: str
    content_type: str
    status: int


@dataclass
class _Injection:
    method: str
    path_suffix: str
    status: int
    times: int


@dataclass
class _Hook:
    method: str
    path_suffix: str
    action: Callable[[], object]
    times: int
    user_agent: str | None


class ApiError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None, **details: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details

    def status_body(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


@dataclass(frozen=True)
class Grant:
    """One rule of a namespaced Role, as bound to a user: what RBAC would allow."""

    namespace: str
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...] | None = None

    def allows(self, namespace: str, group: str, resource: str, verb: str, name: str | None) -> bool:
        if namespace != self.namespace or group not in self.api_groups or resource not in self.resources:
            return False
        if verb not in self.verbs:
            return False
        # resourceNames restrict by name; a create (and a list) has none, so never matches them.
        return self.resource_names is None or (name is not None and name in self.resource_names)


@dataclass(frozen=True)
class RbacUser:
    name: str
    grants: tuple[Grant, ...]


@dataclass
class StandInState:
    """The objects the stand-in holds, behind one lock (the handler threads share it)."""

    token: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    resource_version: int = 100
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    injections: list[_Injection] = field(default_factory=list)
    hooks: list[_Hook] = field(default_factory=list)
    rbac: dict[str, RbacUser] | None = None  # bearer token -> user, when RBAC is enforced

    def next_version(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)


class StandInApiServer:
    """The stand-in server, running in a daemon thread on 127.0.0.1 (see the module docstring)."""

    def __init__(self, token: str | None = None) -> None:
        self.state = StandInState(token=token)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self.state))
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for one, and every test stops a server.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="k8s-standin", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StandInApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- seeding and inspecting, as a controller or an admin would ------------------------------

    def add_deployment(self, namespace: str, name: str, replicas: int, ready: int | None = None) -> None:
        ready = replicas if ready is None else ready
        with self.state.lock:
            self.state.deployments[(namespace, name)] = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": self.state.next_version(),
                    "generation": 1,
                    "creationTimestamp": _now(),
                    "labels": {"app": name},
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1"}]},
                    },
                },
                "status": {
                    "observedGeneration": 1,
                    "replicas": replicas,
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "updatedReplicas": replicas,
                },
            }

    def set_ready(self, namespace: str, name: str, ready: int) -> None:
        """What the Deployment controller and kubelet would report once pods pass readiness."""
        with self.state.lock:
            dep = self.state.deployments[(namespace, name)]
            dep["status"]["readyReplicas"] = ready
            dep["status"]["availableReplicas"] = ready
            dep["metadata"]["resourceVersion"] = self.state.next_version()

    def replicas(self, namespace: str, name: str) -> int:
        with self.state.lock:
            return int(self.state.deployments[(namespace, name)]["spec"]["replicas"])

    def get_object(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.state.lock:
            obj = self.state.objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def edit_configmap(self, namespace: str, name: str, key: str, value: str) -> None:
        """What `kubectl edit` by a person would do: change one data key, bump the version."""
        with self.state.lock:
            obj = self.state.objects[("configmaps", namespace, name)]
            obj.setdefault("data", {})[key] = value
            obj["metadata"]["resourceVersion"] = self.state.next_version()

    @property
    def calls(self) -> list[Call]:
        with self.state.lock:
            return list(self.state.calls)

    def count(self, method: str, path_suffix: str, status: int | None = None) -> int:
        return sum(
            1
            for c in self.calls
            if c.method == method and c.path.endswith(path_suffix) and (status is None or c.status == status)
        )

    def enforce_rbac(self, users: dict[str, RbacUser]) -> None:
        """From now on, authorize every request by its bearer token's grants (module docstring)."""
        with self.state.lock:
            self.state.rbac = dict(users)

    @property
    def forbidden(self) -> list[Call]:
        return [c for c in self.calls if c.status == 403]

    # --- fault injection and interleaving ------------------------------------------------------

    def fail_next(self, method: str, path_suffix: str, status: int, times: int = 1) -> None:
        """Answer the next `times` matching requests with `status` and a Status body."""
        with self.state.lock:
            self.state.injections.append(_Injection(method, path_suffix, status, times))

    def before(
        self,
        method: str,
        path_suffix: str,
        action: Callable[[], object],
        times: int = 1,
        user_agent: str | None = None,
    ) -> None:
        """Run `action` (in the handler thread, outside the lock) before handling a matching request.

        The action may itself call the stand-in (it is threaded), e.g. another writer's
        read-modify-write landing between this request's read and its write. `user_agent`
        limits the hook to one client's requests (so the other writer's own write doesn't fire it).
        """
        with self.state.lock:
            self.state.hooks.append(_Hook(method, path_suffix, action, times, user_agent))


@contextmanager
def running_standin(token: str | None = None) -> Iterator[StandInApiServer]:
    server = StandInApiServer(token=token).start()
    try:
        yield server
    finally:
        server.stop()


def _handler_for(state: StandInState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: without TCP_NODELAY, Nagle plus the client's
        # delayed ACK add about 40 ms to every keep-alive request.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `calls`
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def _serve(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            self._run_hooks(method, path, self.headers.get("User-Agent", ""))
            try:
                code, body = self._dispatch(method, path, content_type, raw)
            except ApiError as err:
                code, body = err.code, err.status_body()
            with state.lock:
                state.calls.append(Call(method, path, content_type, code))
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _run_hooks(self, method: str, path: str, user_agent: str) -> None:
            with state.lock:
                due = [
                    h
                    for h in state.hooks
                    if h.method == method
                    and path.endswith(h.path_suffix)
                    and h.user_agent in (None, user_agent)
                ]
                for hook in due:
                    hook.times -= 1
                state.hooks = [h for h in state.hooks if h.times > 0]
            for hook in due:
                hook.action()

        def _dispatch(self, method: str, path: str, content_type: str, raw: bytes) -> tuple[int, Any]:
            if state.rbac is not None:
                _authorize(state.rbac, self.headers.get("Authorization", ""), method, path)
            elif state.token is not None and self.headers.get("Authorization") != f"Bearer {state.token}":
                raise ApiError(401, "Unauthorized")
            with state.lock:
                for inj in state.injections:
                    if inj.method == method and path.endswith(inj.path_suffix) and inj.times > 0:
                        inj.times -= 1
                        raise ApiError(inj.status, f"injected by the test: {inj.status}")
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise ApiError(400, f"body is not JSON: {exc}") from exc
            for pattern, kind in _ROUTES:
                match = pattern.match(path)
                if not match:
                    continue
                with state.lock:
                    if kind == "deployment" and method == "GET":
                        return 200, copy.deepcopy(_deployment(state, match[1], match[2]))
                    if kind == "scale" and method == "GET":
                        return 200, _scale_of(_deployment(state, match[1], match[2]))
                    if kind == "scale" and method == "PATCH":
                        return 200, _patch_scale(state, match[1], match[2], content_type, body)
                    if kind == "object":
                        return _object(state, method, match[1], match[2], match[3], body)
            raise ApiError(404, f"the stand-in does not serve {method} {path}")

    return Handler


_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}


def _authorize(users: dict[str, RbacUser], authorization: str, method: str, path: str) -> None:
    """Raise 401 for an unknown token, 403 when no grant of its user allows the request."""
    user = users.get(authorization.removeprefix("Bearer "))
    if user is None:
        raise ApiError(401, "Unauthorized")
    for pattern, kind in _ROUTES:
        match = pattern.match(path)
        if not match:
            continue
        namespace = match[1]
        if kind in ("scale", "deployment"):
            group, name = "apps", match[2]
            resource = "deployments/scale" if kind == "scale" else "deployments"
        else:
            resource, name = match[2], match[3]
            group = _KINDS[resource][0]
        verb = _VERBS.get(method, method.lower())
        if method == "GET" and name is None:
            verb = "list"
        if any(g.allows(namespace, group, resource, verb, name) for g in user.grants):
            return
        base, _, sub = resource.partition("/")
        what = f'{base}.{group} "{name}"' if group else f'{base} "{name}"'
        if name is None:
            what = f"{base}.{group}" if group else base
        raise ApiError(
            403,
            f'{what} is forbidden: User "{user.name}" cannot {verb} resource "{base}"'
            + (f' (subresource "{sub}")' if sub else "")
            + f' in API group "{group}" in the namespace "{namespace}"',
        )
    return  # unknown paths get their 404 from the router


def _deployment(state: StandInState, namespace: str, name: str) -> dict[str, Any]:
    try:
        return state.deployments[(namespace, name)]
    except KeyError:
        raise ApiError(
            404, f'deployments.apps "{name}" not found', name=name, group="apps", kind="deployments"
        ) from None


def _scale_of(dep: dict[str, Any]) -> dict[str, Any]:
    meta = dep["metadata"]
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": dep["spec"]["replicas"]},
        "status": {"replicas": dep["status"]["replicas"], "selector": f"app={meta['name']}"},
    }


def _patch_scale(
    state: StandInState, namespace: str, name: str, content_type: str, patch: Any
) -> dict[str, Any]:
    if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        raise ApiError(415, f"the stand-in does not support the patch type {content_type!r}")
    dep = _deployment(state, namespace, name)
    patched = _merge_patch(_scale_of(dep), patch)
    asked_version = (patch or {}).get("metadata", {}).get("resourceVersion")
    if asked_version and asked_version != dep["metadata"]["resourceVersion"]:
        raise ApiError(409, _conflict_message("deployments.apps", name), name=name, group="apps")
    replicas = patched.get("spec", {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ApiError(
            422, f'Scale.autoscaling "{name}" is invalid: spec.replicas: must be greater than or equal to 0'
        )
    if replicas != dep["spec"]["replicas"]:
        dep["spec"]["replicas"] = replicas
        dep["metadata"]["generation"] += 1
        dep["metadata"]["resourceVersion"] = state.next_version()
    return _scale_of(dep)


def _conflict_message(resource: str, name: str) -> str:
    return (
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def _object(
    state: StandInState, method: str, namespace: str, resource: str, name: str | None, body: Any
) -> tuple[int, Any]:
    group, kind, api_version = _KINDS[resource]
    qualified = f"{resource}.{group}" if group else resource
    key_of = lambda n: (resource, namespace, n)  # noqa: E731
    if method == "GET" and name is None:
        items = [
            copy.deepcopy(o) for (r, ns, _), o in sorted(state.objects.items()) if (r, ns) == key_of("")[:2]
        ]
        return 200, {
            "apiVersion": api_version,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(state.resource_version)},
            "items": items,
        }
    if method == "GET" and name is not None:
        obj = state.objects.get(key_of(name))
        if obj is None:
            raise ApiError(404, f'{qualified} "{name}" not found', name=name, group=group, kind=resource)
        return 200, copy.deepcopy(obj)
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        raise ApiError(400, f"{kind} body must be an object with metadata")
    meta = body["metadata"]
    if resource == "leases":
        _check_microtimes(body)
    if method == "POST" and name is None:
        new_name = meta.get("name")
        if not new_name:
            raise ApiError(422, f"{kind} is invalid: metadata.name: Required value")
        if key_of(new_name) in state.objects:
            raise ApiError(
                409,
                f'{qualified} "{new_name}" already exists',
                reason="AlreadyExists",
                name=new_name,
                group=group,
                kind=resource,
            )
        obj = copy.deepcopy(body)
        obj.update(apiVersion=api_version, kind=kind)
        obj["metadata"].update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            resourceVersion=state.next_version(),
        )
        state.objects[key_of(new_name)] = obj
        return 201, copy.deepcopy(obj)
    if method == "PUT" and name is not None:
        current = state.objects.get(key_of(name))
        if current is None:
            raise ApiError(404, f'{qualified} "{name}" not found', name=name, group=group, kind=resource)
        if meta.get("name") not in (None, name):
            raise ApiError(
                400, f"the name of the object ({meta.get('name')}) does not match the URL ({name})"
            )
        asked_version = meta.get("resourceVersion")
        if asked_version and asked_version != current["metadata"]["resourceVersion"]:
            raise ApiError(409, _conflict_message(qualified, name), name=name, group=group, kind=resource)
        obj = copy.deepcopy(body)
        obj.update(apiVersion=api_version, kind=kind)
        obj["metadata"].update(
            name=name,
            namespace=namespace,
            uid=current["metadata"]["uid"],
            creationTimestamp=current["metadata"]["creationTimestamp"],
            resourceVersion=state.next_version(),
        )
        state.objects[key_of(name)] = obj
        return 200, copy.deepcopy(obj)
    raise ApiError(405, f"the stand-in does not serve {method} on {resource}", reason="MethodNotAllowed")


def _check_microtimes(body: dict[str, Any]) -> None:
    spec = body.get("spec") or {}
    for key in ("acquireTime", "renewTime"):
        value = spec.get(key)
        if value is not None and not (isinstance(value, str) and _MICROTIME.match(value)):
            raise ApiError(
                400,
                f'Lease in version "v1" cannot be handled as a Lease: spec.{key}: '
                f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse',
            )
