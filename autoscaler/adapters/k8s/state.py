"""The loop's state and on-call overrides in one ConfigMap, for several replicas in a cluster.

Two data keys, each JSON: `loop-state.json` (written by the leader every pass) and
`overrides.json` (written by `swell surge` from wherever on-call runs it). Every write is a
read-modify-write of the whole ConfigMap that sends back the `resourceVersion` it read: if anyone
wrote in between, the API server answers 409 Conflict and the write is redone on a fresh read
(client-go's `retry.RetryOnConflict` with `retry.DefaultRetry`: 5 attempts, 10 ms apart). So the
leader's save and a laptop's surge can interleave freely and neither drops the other's key.
A new leader reads the same ConfigMap when it takes over.

The loop state is also fenced: a save goes through only if `loop-state.json` still holds what this
store last read or wrote (the resourceVersion guards the write itself; the fence guards against
writes that happened since the read, by whoever). A new leader claims the state at take-over by
writing it with its identity, so a deposed leader that wakes up after a pause gets
`StateFenceError` and its stale state never overwrites the new leader's. A key that vanished (the
ConfigMap deleted by hand) is not a competitor: the save recreates it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autoscaler.adapters.k8s.access import API_ERRORS, ApiFailure
from autoscaler.ports import LoopState, Override, StateFenceError, StateStoreError

LOOP_STATE_KEY = "loop-state.json"
OVERRIDES_KEY = "overrides.json"
# The API server refuses ConfigMaps over 1 MiB; keep a margin for metadata.
MAX_DATA_BYTES = 1_000_000


@dataclass(frozen=True)
class ConfigMapStateSettings:
    name: str = "swell-autoscaler-state"
    namespace: str = "default"
    max_attempts: int = 5
    retry_delay_s: float = 0.01
    request_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")


class ConfigMapStateStore:
    """`StateStore` in one ConfigMap (see the module docstring)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        settings: ConfigMapStateSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._core = client.CoreV1Api(api_client)
        self._settings = settings
        self._sleep = sleep
        self.conflicts = 0  # 409s met and retried since this store was made (for tests and metrics)
        # The fence: the loop state text this store last read or wrote (None: not read yet).
        self._loop_text: str | None = None
        self._fenced = False

    @property
    def _where(self) -> str:
        return f"ConfigMap {self._settings.namespace}/{self._settings.name}"

    # --- the port -------------------------------------------------------------------------------

    def load_loop_state(self) -> LoopState:
        data = self._read_data()
        self._loop_text, self._fenced = data.get(LOOP_STATE_KEY), True
        raw = self._parse(data, LOOP_STATE_KEY, dict)
        if raw is None:
            return LoopState()
        try:
            return LoopState.from_dict(raw)
        except (TypeError, ValueError, AttributeError) as exc:
            raise StateStoreError(f"{self._where}: key {LOOP_STATE_KEY} is not a loop state: {exc}") from None

    def save_loop_state(self, state: LoopState) -> None:
        encoded = json.dumps(state.to_dict(), sort_keys=True, separators=(",", ":"))

        def put(data: dict[str, str]) -> bool:
            stored = data.get(LOOP_STATE_KEY)
            if self._fenced and stored is not None and stored != self._loop_text:
                writer = _writer_of(stored)
                raise StateFenceError(
                    f"saving the loop state in {self._where}: refused, it was written by "
                    f"{writer or 'someone else'} since this replica read it (another replica leads now)"
                )
            if stored == encoded:
                return False
            data[LOOP_STATE_KEY] = encoded
            return True

        self._update(put, "saving the loop state")
        self._loop_text, self._fenced = encoded, True

    def add_override(self, override: Override) -> None:
        def add(data: dict[str, str]) -> bool:
            current = [o for o in self._overrides_in(data) if o.id != override.id]
            current.append(override)
            data[OVERRIDES_KEY] = _encode_overrides(current)
            return True

        self._update(add, f"adding override {override.id}")

    def cancel_override(self, override_id: str) -> bool:
        found = False

        def cancel(data: dict[str, str]) -> bool:
            nonlocal found
            current = self._overrides_in(data)
            kept = [o for o in current if o.id != override_id]
            found = len(kept) != len(current)
            if found:
                data[OVERRIDES_KEY] = _encode_overrides(kept)
            return found

        self._update(cancel, f"cancelling override {override_id}")
        return found

    def overrides(self) -> list[Override]:
        return self._overrides_in(self._read_data())

    # --- reading and writing the ConfigMap ------------------------------------------------------

    def _get(self) -> client.V1ConfigMap | None:
        s = self._settings
        try:
            return self._core.read_namespaced_config_map(
                s.name, s.namespace, _request_timeout=s.request_timeout_s
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise StateStoreError(f"reading {self._where}: {ApiFailure.of(exc).message}") from None
        except API_ERRORS as exc:
            raise StateStoreError(f"reading {self._where}: {ApiFailure.of(exc).message}") from None

    def _read_data(self) -> dict[str, str]:
        cm = self._get()
        return dict(cm.data or {}) if cm is not None else {}

    def _parse(self, data: dict[str, str], key: str, kind: type) -> Any:
        if key not in data:
            return None
        try:
            value = json.loads(data[key])
        except ValueError as exc:
            raise StateStoreError(f"{self._where}: key {key} is not JSON: {exc}") from None
        if not isinstance(value, kind):
            raise StateStoreError(f"{self._where}: key {key} should hold a JSON {kind.__name__}")
        return value

    def _overrides_in(self, data: dict[str, str]) -> list[Override]:
        raw = self._parse(data, OVERRIDES_KEY, list) or []
        try:
            return [Override.from_dict(item) for item in raw]
        except (KeyError, TypeError, ValueError) as exc:
            raise StateStoreError(
                f"{self._where}: key {OVERRIDES_KEY}: an override lacks or mangles {exc}"
            ) from None

    def _update(self, mutate: Callable[[dict[str, str]], bool], what: str) -> None:
        """Read, apply `mutate` to the data, write back guarded by the resourceVersion read.

        On 409 (someone wrote in between, or created it first) start again from a fresh read; give
        up after `max_attempts` with nothing written by us.
        """
        s = self._settings
        for attempt in range(1, s.max_attempts + 1):
            cm = self._get()
            data = dict(cm.data or {}) if cm is not None else {}
            if not mutate(data):
                return
            size = sum(len(k) + len(v.encode()) for k, v in data.items())
            if size > MAX_DATA_BYTES:
                raise StateStoreError(
                    f"{what} in {self._where}: {size} bytes of data, "
                    f"over the {MAX_DATA_BYTES} a ConfigMap may hold; nothing was written"
                )
            try:
                if cm is None:
                    body = client.V1ConfigMap(
                        metadata=client.V1ObjectMeta(
                            name=s.name,
                            namespace=s.namespace,
                            labels={"app.kubernetes.io/name": "swell-autoscaler"},
                        ),
                        data=data,
                    )
                    self._core.create_namespaced_config_map(
                        s.namespace, body, _request_timeout=s.request_timeout_s
                    )
                else:
                    # cm.metadata.resource_version is the version read above: the server refuses a stale one.
                    cm.data = data
                    self._core.replace_namespaced_config_map(
                        s.name, s.namespace, cm, _request_timeout=s.request_timeout_s
                    )
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise StateStoreError(f"{what} in {self._where}: {ApiFailure.of(exc).message}") from None
                self.conflicts += 1
                if attempt < s.max_attempts:
                    self._sleep(s.retry_delay_s)
            except API_ERRORS as exc:
                raise StateStoreError(f"{what} in {self._where}: {ApiFailure.of(exc).message}") from None
        raise StateStoreError(
            f"{what} in {self._where}: gave up after {s.max_attempts} conflicting writes; nothing was written"
        )


def _writer_of(text: str) -> str | None:
    try:
        writer = json.loads(text).get("writer")
    except (ValueError, AttributeError):
        return None
    return str(writer) if writer else None


def _encode_overrides(overrides: list[Override]) -> str:
    ordered = sorted(overrides, key=lambda o: (o.created_at, o.id))
    return json.dumps([o.to_dict() for o in ordered], sort_keys=True, separators=(",", ":"))
