"""Two autoscaler replicas passing every 15 s: one acts at each pass, and a take-over keeps the state.

The replicas are simulated as two pairs (elector, state store) with their own official clients;
only the Kubernetes side is exercised (the decision itself is the loop's).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from k8s_standin import StandInApiServer
from kubernetes import client

from autoscaler.adapters.k8s import (
    ConfigMapStateSettings,
    ConfigMapStateStore,
    DeploymentRef,
    KubernetesActuator,
    KubernetesActuatorSettings,
    LeaseLeaderElector,
    LeaseSettings,
)
from autoscaler.ports import Actuator, LeaderElector, LoopState, Override, StateStore

T0 = 1_790_000_000.0
INTERVAL = 15.0
STATE = ConfigMapStateSettings(name="swell-state", namespace="ops", retry_delay_s=0)


def replica(
    make_client: Callable[..., client.ApiClient], name: str, lease_s: int
) -> tuple[LeaderElector, StateStore]:
    api = make_client(name)
    return (
        LeaseLeaderElector(api, LeaseSettings(namespace="ops", lease_duration_s=lease_s), identity=name),
        ConfigMapStateStore(api, STATE),
    )


@pytest.mark.parametrize(
    ("lease_s", "crash_at", "expected_gap"),
    [(60, 10, 4), (45, 6, 3), (20, 3, 1)],
    ids=["lease-60s", "lease-45s", "lease-20s"],
)
def test_one_replica_acts_per_pass_and_a_crash_hands_over_after_the_lease(
    make_client: Callable[..., client.ApiClient], lease_s: int, crash_at: int, expected_gap: int
) -> None:
    a, _ = replica(make_client, "pod-a", lease_s)
    b, _ = replica(make_client, "pod-b", lease_s)
    acting: list[list[str]] = []
    for tick in range(crash_at + 12):
        now = T0 + tick * INTERVAL
        alive = [a, b] if tick < crash_at else [b]  # a crashes without releasing
        acting.append([e.identity for e in alive if e.try_acquire_or_renew(now)])
    assert all(len(leaders) <= 1 for leaders in acting), acting
    assert all(leaders == ["pod-a"] for leaders in acting[:crash_at])
    gap = [i for i, leaders in enumerate(acting) if not leaders]
    # Nobody acts until a's last renewal is older than the lease: never two at once.
    assert len(gap) == expected_gap, acting
    assert all(leaders == ["pod-b"] for leaders in acting[crash_at + expected_gap :])


def test_a_new_leader_resumes_from_the_old_leaders_state_and_the_laptops_surge(
    standin: StandInApiServer, make_client: Callable[..., client.ApiClient]
) -> None:
    standin.add_deployment("collab", "video", replicas=4)
    actuator: Actuator = KubernetesActuator(
        make_client("actuator"),
        KubernetesActuatorSettings(deployments={"video": DeploymentRef("video", "collab")}),
    )
    a_elector, a_store = replica(make_client, "pod-a", 30)
    b_elector, b_store = replica(make_client, "pod-b", 30)
    laptop = ConfigMapStateStore(make_client("laptop"), STATE)

    assert a_elector.try_acquire_or_renew(T0)
    actuator.scale("video", 16)
    a_store.save_loop_state(LoopState(last_desired={"video": 16}, policy_state={"video": {"peak": 16}}))
    laptop.add_override(
        Override("s1", "video", factor=4, floor=16, created_at=T0, expires_at=T0 + 7200, reason="keynote")
    )
    # a is gone; b takes over once the Lease has expired, and finds everything a and on-call left.
    assert not b_elector.try_acquire_or_renew(T0 + 20)
    assert b_elector.try_acquire_or_renew(T0 + 31)
    resumed = b_store.load_loop_state()
    assert resumed.last_desired == {"video": 16}
    assert resumed.policy_state == {"video": {"peak": 16}}
    assert [o.floor for o in b_store.overrides() if o.active(T0 + 31)] == [16]
    assert actuator.capacity("video").current == 16
