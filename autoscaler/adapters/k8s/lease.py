"""Leader election on a coordination.k8s.io/v1 Lease, so that one autoscaler replica acts.

It follows client-go's `tools/leaderelection` (`LeaderElector.tryAcquireOrRenew` and `release`,
with the `LeaseLock` resource lock), the convention every Kubernetes controller uses:

- the Lease's spec is the election record: `holderIdentity`, `leaseDurationSeconds`,
  `acquireTime`, `renewTime`, `leaseTransitions`;
- absent Lease: create it holding it (`leaseTransitions` 0); an AlreadyExists conflict means another
  replica won the race;
- held by someone else and not expired: follow; expired (`renewTime + leaseDurationSeconds < now`)
  or released (empty `holderIdentity`): take it over, `acquireTime = now`, `leaseTransitions + 1`;
- held by us: renew (`renewTime = now`, `acquireTime` and `leaseTransitions` kept);
- every write is an update carrying the `resourceVersion` we read: a 409 Conflict means another
  replica wrote in between, and we lose cleanly (not leader this pass) instead of overwriting it;
- `release()` writes an empty `holderIdentity` with `leaseDurationSeconds: 1`, so a follower takes
  over at its next pass instead of waiting out the lease;
- timing as client-go's `LeaderElectionConfig` (defaults 15 s / 10 s / 2 s): every replica tries
  every `retry_period_s`; a leader whose renewal fails on an API error (5xx, unreachable, 403)
  keeps leading while its last successful renewal is younger than `renew_deadline_s`, then stops;
  since `renew_deadline_s < lease_duration_s`, it has stopped before any follower may take over.
  Seeing another holder, or losing a write race (409), ends the lead at once;
- `still_leading(now)` is the re-check right before an actuation or a state write: true if renewed
  less than one retry period ago, else one more renewal.

One difference, on purpose: client-go judges expiry by the local time at which it last saw the
record change (robust to clock skew between nodes); the clock here is injected (`now`, unix seconds)
and expiry is judged from `renewTime`, as the service's loop supplies one clock to everything. The
margin `lease_duration_s - renew_deadline_s` (5 s by default) is what covers clock skew between
nodes and the duration of one actuation call.

Times are written as MicroTime (RFC 3339 with six fractional digits): the API server rejects a
Lease whose times lack them, which `datetime.isoformat()` omits whenever microseconds are zero.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autoscaler.adapters.k8s.access import API_ERRORS, ApiFailure

log = logging.getLogger(__name__)


class MicroTime(datetime):
    """A datetime that always serializes with microseconds, as metav1.MicroTime requires."""

    def isoformat(self, sep: str = "T", timespec: str = "microseconds") -> str:
        return super().isoformat(sep, timespec)


def _micro(now: float) -> MicroTime:
    return MicroTime.fromtimestamp(now, tz=UTC)


@dataclass(frozen=True)
class LeaseSettings:
    """Which Lease the replicas compete for, and client-go's timing (see the module docstring)."""

    name: str = "swell-autoscaler"
    namespace: str = "default"
    lease_duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    request_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.lease_duration_s < 1:
            raise ValueError(f"lease_duration_s must be at least 1 second, got {self.lease_duration_s}")
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "need 0 < retry_period_s < renew_deadline_s < lease_duration_s, got "
                f"{self.retry_period_s:g}, {self.renew_deadline_s:g}, {self.lease_duration_s}"
            )


# What one attempt found: we hold the Lease, someone else does (or won the race), or the API failed.
LEADING, FOLLOWING, API_FAILED = "leading", "following", "api-failed"


def default_identity() -> str:
    """The pod name (the Deployment's downward API sets POD_NAME) or host name, plus a random suffix,
    as client-go's examples do, so a restarted replica is a new candidate."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


class LeaseLeaderElector:
    """`LeaderElector` on one Lease (see the module docstring for the rules)."""

    def __init__(self, api_client: client.ApiClient, settings: LeaseSettings, identity: str) -> None:
        if not identity:
            raise ValueError("a leader elector needs a non-empty identity")
        self._api = client.CoordinationV1Api(api_client)
        self._settings = settings
        self.identity = identity
        self._leading = False
        self._last_now: float | None = None
        self._renewed_at: float | None = None  # our clock at the last successful acquire or renew

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def retry_period_s(self) -> float:
        return self._settings.retry_period_s

    def try_acquire_or_renew(self, now: float) -> bool:
        self._last_now = now
        outcome = self._try(now)
        if outcome == LEADING:
            self._leading, self._renewed_at = True, now
        elif outcome == API_FAILED and self._within_renew_deadline(now):
            log.warning(
                "leader election: %s could not renew; still leading for %.1f s more (renew deadline)",
                self.identity,
                self._settings.renew_deadline_s - (now - (self._renewed_at or now)),
            )
        else:
            if self._leading:
                log.warning("leader election: %s stopped leading (%s)", self.identity, outcome)
            self._leading = False
        return self._leading

    def still_leading(self, now: float) -> bool:
        if not self._leading:
            return False
        if self._renewed_at is not None and 0 <= now - self._renewed_at < self._settings.retry_period_s:
            return True
        return self.try_acquire_or_renew(now)

    def _within_renew_deadline(self, now: float) -> bool:
        return (
            self._leading
            and self._renewed_at is not None
            and now - self._renewed_at < self._settings.renew_deadline_s
        )

    def _try(self, now: float) -> str:
        s = self._settings
        try:
            lease = self._api.read_namespaced_lease(s.name, s.namespace, _request_timeout=s.request_timeout_s)
        except ApiException as exc:
            if exc.status != 404:
                return self._failed("reading", exc)
            return self._create(now)
        except API_ERRORS as exc:
            return self._failed("reading", exc)

        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        if holder and holder != self.identity and not _expired(spec, now, s.lease_duration_s):
            return FOLLOWING
        ours = holder == self.identity
        lease.spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=s.lease_duration_s,
            acquire_time=_micro(spec.acquire_time.timestamp())
            if ours and spec.acquire_time is not None
            else _micro(now),
            renew_time=_micro(now),
            lease_transitions=(spec.lease_transitions or 0) + (0 if ours else 1),
        )
        try:
            # `lease.metadata.resource_version` is the one we read: a stale one is refused with 409.
            self._api.replace_namespaced_lease(
                s.name, s.namespace, lease, _request_timeout=s.request_timeout_s
            )
        except API_ERRORS as exc:
            return self._failed("taking over" if not ours else "renewing", exc)
        if not ours:
            log.info("leader election: %s now holds Lease %s/%s", self.identity, s.namespace, s.name)
        return LEADING

    def _create(self, now: float) -> str:
        s = self._settings
        lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name=s.name, namespace=s.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=s.lease_duration_s,
                acquire_time=_micro(now),
                renew_time=_micro(now),
                lease_transitions=0,
            ),
        )
        try:
            self._api.create_namespaced_lease(s.namespace, lease, _request_timeout=s.request_timeout_s)
        except API_ERRORS as exc:
            return self._failed("creating", exc)
        log.info("leader election: %s created and holds Lease %s/%s", self.identity, s.namespace, s.name)
        return LEADING

    def _failed(self, what: str, exc: Exception) -> str:
        """A 409 means another replica wrote the Lease first: following. Anything else is an API
        failure, which a leader may ride out within its renew deadline."""
        failure = ApiFailure.of(exc)
        level = logging.DEBUG if failure.status == 409 else logging.WARNING
        log.log(
            level,
            "leader election: %s %s Lease %s/%s failed: %s",
            self.identity,
            what,
            self._settings.namespace,
            self._settings.name,
            failure.message,
        )
        return FOLLOWING if failure.status == 409 else API_FAILED

    def release(self) -> None:
        """Give the Lease up if we hold it (best effort, e.g. at shutdown); a no-op otherwise."""
        if not self._leading:
            return
        self._leading = False
        self._renewed_at = None
        s = self._settings
        try:
            lease = self._api.read_namespaced_lease(s.name, s.namespace, _request_timeout=s.request_timeout_s)
            spec = lease.spec or client.V1LeaseSpec()
            if spec.holder_identity != self.identity:
                return
            # Leading implies a pass ran, so the injected clock's last reading is there.
            stamp = _micro(self._last_now or 0.0)
            lease.spec = client.V1LeaseSpec(
                holder_identity=None,
                lease_duration_seconds=1,
                acquire_time=stamp,
                renew_time=stamp,
                lease_transitions=spec.lease_transitions or 0,
            )
            self._api.replace_namespaced_lease(
                s.name, s.namespace, lease, _request_timeout=s.request_timeout_s
            )
        except API_ERRORS as exc:
            self._failed("releasing", exc)


def _expired(spec: client.V1LeaseSpec, now: float, default_duration_s: int) -> bool:
    if spec.renew_time is None:
        return True
    duration = spec.lease_duration_seconds if spec.lease_duration_seconds is not None else default_duration_s
    return spec.renew_time.timestamp() + duration < now
