"""Leader election on a Lease: two autoscaler replicas, one official client each, one stand-in server."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from k8s_standin import StandInApiServer
from kubernetes import client

from autoscaler.adapters.k8s import LeaseLeaderElector, LeaseSettings

SETTINGS = LeaseSettings(name="swell-autoscaler", namespace="ops", lease_duration_s=30)
LEASE = "/leases/swell-autoscaler"
T0 = 1_790_000_000.0  # a round clock reading: MicroTime must still carry six fractional digits


@pytest.fixture
def electors(make_client: Callable[[], client.ApiClient]) -> dict[str, LeaseLeaderElector]:
    return {name: LeaseLeaderElector(make_client(), SETTINGS, identity=f"pod-{name}") for name in ("a", "b")}


def holder(standin: StandInApiServer) -> str | None:
    lease = standin.get_object("leases", "ops", "swell-autoscaler")
    assert lease is not None
    return lease["spec"].get("holderIdentity")


# Each step: (who tries, seconds after T0, what it must get, who holds the Lease afterwards).
Step = tuple[str, float, bool, str]


@pytest.mark.parametrize(
    "steps",
    [
        [
            ("a", 0, True, "pod-a"),
            ("b", 1, False, "pod-a"),
            ("a", 15, True, "pod-a"),
            ("b", 44, False, "pod-a"),
        ],
        [
            ("a", 0, True, "pod-a"),
            ("b", 29, False, "pod-a"),
            ("b", 31, True, "pod-b"),
            ("a", 32, False, "pod-b"),
        ],
        [
            ("a", 0, True, "pod-a"),
            ("a", 20, True, "pod-a"),
            ("b", 45, False, "pod-a"),
            ("b", 51, True, "pod-b"),
            ("b", 70, True, "pod-b"),
            ("a", 99, False, "pod-b"),
            ("a", 101, True, "pod-a"),
        ],
    ],
    ids=[
        "renewing-leader-keeps-it",
        "follower-takes-over-after-expiry",
        "expiry-counts-from-the-last-renewal",
    ],
)
def test_exactly_one_replica_leads_and_a_follower_waits_for_expiry(
    standin: StandInApiServer, electors: dict[str, LeaseLeaderElector], steps: list[Step]
) -> None:
    for who, at, expected, expected_holder in steps:
        assert electors[who].try_acquire_or_renew(T0 + at) is expected, f"{who} at +{at}s"
        assert holder(standin) == expected_holder, f"after {who} at +{at}s"
        leaders = [e.identity for e in electors.values() if e.is_leader]
        # The replica that lost the Lease learns it at its next pass; the one that tried knows now.
        if expected:
            assert electors[who].identity in leaders


def test_the_election_record_follows_client_go(
    standin: StandInApiServer, electors: dict[str, LeaseLeaderElector]
) -> None:
    a, b = electors["a"], electors["b"]
    assert a.try_acquire_or_renew(T0)
    first = standin.get_object("leases", "ops", "swell-autoscaler")
    assert first is not None
    assert first["spec"]["leaseTransitions"] == 0
    assert first["spec"]["leaseDurationSeconds"] == 30
    assert first["spec"]["acquireTime"] == first["spec"]["renewTime"]
    # metav1.MicroTime: six fractional digits even when the clock reads a whole second.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000000\+00:00", first["spec"]["renewTime"])

    assert a.try_acquire_or_renew(T0 + 10)
    renewed = standin.get_object("leases", "ops", "swell-autoscaler")
    assert renewed is not None
    assert renewed["spec"]["acquireTime"] == first["spec"]["acquireTime"]
    assert renewed["spec"]["renewTime"] != first["spec"]["renewTime"]
    assert renewed["spec"]["leaseTransitions"] == 0
    assert int(renewed["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])

    assert b.try_acquire_or_renew(T0 + 41)
    taken = standin.get_object("leases", "ops", "swell-autoscaler")
    assert taken is not None
    assert taken["spec"]["holderIdentity"] == "pod-b"
    assert taken["spec"]["leaseTransitions"] == 1
    assert taken["spec"]["acquireTime"] == taken["spec"]["renewTime"]


def test_a_conflicting_write_loses_cleanly(
    standin: StandInApiServer, electors: dict[str, LeaseLeaderElector]
) -> None:
    a, b = electors["a"], electors["b"]
    assert a.try_acquire_or_renew(T0)
    # The Lease has expired for b (a was slow), but a renews between b's read and b's write.
    standin.before("PUT", LEASE, lambda: a.try_acquire_or_renew(T0 + 40))
    assert b.try_acquire_or_renew(T0 + 40) is False
    assert standin.count("PUT", LEASE, status=409) == 1
    assert holder(standin) == "pod-a"
    assert a.is_leader and not b.is_leader


def test_two_replicas_starting_together_create_one_lease(
    standin: StandInApiServer, electors: dict[str, LeaseLeaderElector]
) -> None:
    a, b = electors["a"], electors["b"]
    # Both read "no Lease"; a creates it between b's read and b's create: b gets AlreadyExists.
    standin.before("POST", "/leases", lambda: a.try_acquire_or_renew(T0))
    assert b.try_acquire_or_renew(T0) is False
    assert standin.count("POST", "/leases", status=409) == 1
    assert standin.count("POST", "/leases", status=201) == 1
    assert holder(standin) == "pod-a"
    assert a.is_leader and not b.is_leader


@pytest.mark.parametrize("after", [1, 5], ids=["next-second", "a-few-seconds-later"])
def test_release_hands_over_without_waiting_for_expiry(
    standin: StandInApiServer, electors: dict[str, LeaseLeaderElector], after: float
) -> None:
    a, b = electors["a"], electors["b"]
    assert a.try_acquire_or_renew(T0)
    assert b.try_acquire_or_renew(T0 + after) is False
    a.release()
    assert holder(standin) is None
    assert not a.is_leader
    assert b.try_acquire_or_renew(T0 + after) is True
    assert holder(standin) == "pod-b"


def test_release_by_a_follower_changes_nothing(
    standin: StandInApiServer, electors: dict[str, LeaseLeaderElector]
) -> None:
    a, b = electors["a"], electors["b"]
    assert a.try_acquire_or_renew(T0)
    assert not b.try_acquire_or_renew(T0 + 1)
    writes = standin.count("PUT", LEASE)
    b.release()
    assert standin.count("PUT", LEASE) == writes
    assert holder(standin) == "pod-a"


@pytest.mark.parametrize(
    ("method", "status", "after", "leading"),
    [
        ("GET", 500, 5, True),
        ("PUT", 503, 9.9, True),
        ("GET", 403, 10, False),
        ("PUT", 503, 12, False),
        ("PUT", 409, 1, False),
    ],
    ids=[
        "read-error-within-the-renew-deadline",
        "renew-error-just-within-it",
        "read-forbidden-at-the-deadline",
        "renew-error-past-it",
        "lost-write-race-ends-it-at-once",
    ],
)
def test_a_leader_rides_out_api_errors_until_its_renew_deadline_only(
    standin: StandInApiServer,
    electors: dict[str, LeaseLeaderElector],
    method: str,
    status: int,
    after: float,
    leading: bool,
) -> None:
    """client-go: a leader that cannot renew keeps leading until renew_deadline_s (10 s) after its
    last renewal, which is before the Lease (30 s here) may expire for anyone else."""
    a = electors["a"]
    assert a.try_acquire_or_renew(T0)
    standin.fail_next(method, LEASE, status)
    assert a.try_acquire_or_renew(T0 + after) is leading
    assert a.is_leader is leading
    # Still the holder on the server, so the next attempt renews it.
    assert a.try_acquire_or_renew(T0 + after + 1) is True


def test_still_leading_renews_only_when_the_last_renewal_is_a_retry_period_old(
    standin: StandInApiServer, electors: dict[str, LeaseLeaderElector]
) -> None:
    a, b = electors["a"], electors["b"]
    assert not b.still_leading(T0), "a follower never becomes leader through the re-check"
    assert a.try_acquire_or_renew(T0)
    puts = standin.count("PUT", LEASE)
    assert a.still_leading(T0 + 1.9)
    assert standin.count("PUT", LEASE) == puts, "renewed 1.9 s ago: no call"
    assert a.still_leading(T0 + 2)
    assert standin.count("PUT", LEASE) == puts + 1, "a retry period old: renewed"
    assert not b.still_leading(T0 + 3)


def test_a_deposed_leader_learns_it_at_its_re_check(
    standin: StandInApiServer, electors: dict[str, LeaseLeaderElector]
) -> None:
    """a pauses (a long GC, a frozen node) past the Lease; b takes it. a's re-check before acting
    sees b's holder at once, however recent a thinks its own renewal is."""
    a, b = electors["a"], electors["b"]
    assert a.try_acquire_or_renew(T0)
    assert b.try_acquire_or_renew(T0 + 31)
    assert a.still_leading(T0 + 31.5) is False
    assert not a.is_leader and holder(standin) == "pod-b"


@pytest.mark.parametrize(
    ("lease", "renew", "retry"),
    [(10, 10.0, 2.0), (15, 16.0, 2.0), (15, 10.0, 10.0), (15, 10.0, 0.0)],
    ids=["deadline-equals-lease", "deadline-beyond-lease", "retry-equals-deadline", "no-retry-period"],
)
def test_lease_timing_must_let_a_leader_stop_before_its_lease_expires(
    lease: int, renew: float, retry: float
) -> None:
    with pytest.raises(ValueError, match="retry_period_s < renew_deadline_s < lease_duration_s"):
        LeaseSettings(lease_duration_s=lease, renew_deadline_s=renew, retry_period_s=retry)
