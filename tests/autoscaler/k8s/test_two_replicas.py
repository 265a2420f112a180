"""Two autoscaler replicas, the real loop in each, sharing one Lease, one ConfigMap state and the
Deployments, all through the official client against the stand-in API server (not a Kubernetes
API server: none can run here). Only the leader acts; a new leader takes over after the Lease
expires, reads the old leader's state, and does not scale down mid-surge; a leader deposed in the
middle of a pass neither acts nor writes the state."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

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
from autoscaler.config import parse_config
from autoscaler.ports import MetricsSource, Sample
from autoscaler.service import Autoscaler, PassResult
from tests.autoscaler.fakes import FakeClock, FakeSource, telemetry

NS = "swell-autoscaler"


def _replica(
    name: str,
    make_client: Callable[[str], client.ApiClient],
    clock: FakeClock,
    source: MetricsSource,
    lease_s: int = 60,
) -> Autoscaler:
    api = make_client(name)
    cfg = parse_config(
        {
            "prometheus": {"url": "http://127.0.0.1:9090"},
            "state": {"kind": "configmap", "namespace": NS},
            "leader_election": {"namespace": NS, "lease_duration_s": lease_s},
            "tiers": {
                "video": {
                    "capacity_per_instance": 250,
                    "min": 2,
                    "max": 60,
                    "actuator": {"kind": "kubernetes", "namespace": "collab", "deployment": "video"},
                }
            },
        }
    )
    tel, _ = telemetry()
    return Autoscaler(
        cfg,
        source=source,
        actuators={
            "video": KubernetesActuator(
                api, KubernetesActuatorSettings(deployments={"video": DeploymentRef("video", "collab")})
            )
        },
        store=ConfigMapStateStore(api, ConfigMapStateSettings(namespace=NS)),
        telemetry=tel,
        clock=clock,
        elector=LeaseLeaderElector(api, LeaseSettings(namespace=NS, lease_duration_s=lease_s), identity=name),
    )


def test_two_replicas_one_acts_and_the_successor_keeps_the_surge(
    standin: StandInApiServer, make_client: Callable[[str], client.ApiClient]
) -> None:
    standin.add_deployment("collab", "video", replicas=2, ready=2)
    clock = FakeClock()
    source = FakeSource(clock, {"video": 400.0})
    a = _replica("replica-a", make_client, clock, source)
    b = _replica("replica-b", make_client, clock, source)

    for _ in range(4):
        ra, rb = a.run_once(), b.run_once()
        assert ra.leader and not rb.leader and rb.decisions == []
        clock.advance(15)
    source.demand_by_tier = {"video": 2000.0}  # a surge: x5
    surged = a.run_once().decisions[0]
    assert b.run_once().decisions == []
    assert surged["direction"] == "up" and standin.replicas("collab", "video") == surged["desired"] >= 8
    peak = surged["desired"]

    # replica-a dies without releasing; demand dips. replica-b waits out the Lease, then takes over.
    source.demand_by_tier = {"video": 600.0}
    clock.advance(30)
    assert not b.run_once().leader
    clock.advance(31)
    takeover = b.run_once()
    assert takeover.leader
    assert takeover.decisions[0]["desired"] >= peak, takeover.decisions[0]["reason"]
    assert standin.replicas("collab", "video") == peak
    state = b.store.load_loop_state()
    assert len(state.recent_decisions["video"]) >= 6, "the successor carries on the leader's history"


class PausingSource:
    """Replica a's demand source: at the pass where `pause_for` is set, the process freezes for that
    long right after asking (the clock jumps) while replica b runs `during_pause`."""

    def __init__(self, inner: FakeSource) -> None:
        self.inner = inner
        self.pause_for = 0.0
        self.during_pause: Callable[[], object] = lambda: None

    def demand(self) -> Mapping[str, Sample]:
        answer = self.inner.demand()
        if self.pause_for:
            self.inner.clock.advance(self.pause_for)
            self.pause_for = 0.0
            self.during_pause()
        return answer


@pytest.mark.parametrize(
    ("b_during_the_pause", "why"),
    [("passes", "not acted: another replica leads now"), ("takes-the-lease", "no longer leads")],
    ids=["b-passes-state-fence", "b-only-takes-the-lease-leader-recheck"],
)
def test_a_leader_deposed_mid_pass_neither_acts_nor_overwrites_the_new_leaders_state(
    standin: StandInApiServer,
    make_client: Callable[[str], client.ApiClient],
    b_during_the_pause: str,
    why: str,
) -> None:
    """Whichever comes first, b's claim on the state (the ConfigMap fence) or only b's Lease (a's
    re-check of its lead before acting), a's stale surge is never applied by a."""
    standin.add_deployment("collab", "video", replicas=4, ready=4)
    clock = FakeClock()
    a_source = PausingSource(FakeSource(clock, {"video": 900.0}))
    b_source = FakeSource(clock, {"video": 900.0})
    a = _replica("replica-a", make_client, clock, a_source, lease_s=15)
    b = _replica("replica-b", make_client, clock, b_source, lease_s=15)
    for _ in range(4):
        assert a.run_once().leader and not b.run_once().leader
        clock.advance(15)
    before = standin.replicas("collab", "video")
    # a asks for demand, then freezes for 20 s (past its 15 s Lease); b takes over meanwhile and
    # acts on what it sees. When a wakes up, its data says "surge x4": it must not act on it.
    a_source.inner.demand_by_tier = {"video": 3600.0}
    b_results: list[PassResult] = []
    a_source.pause_for = 20.0
    if b_during_the_pause == "passes":
        a_source.during_pause = lambda: b_results.append(b.run_once())
    else:
        assert b.elector is not None
        a_source.during_pause = lambda: b.elector and b.elector.try_acquire_or_renew(clock())
    deposed = a.run_once()
    b_desired = b_results[0].decisions[0]["desired"] if b_results else before
    assert standin.replicas("collab", "video") == b_desired < deposed.decisions[0]["desired"]
    assert deposed.deposed and deposed.decisions[0]["acted"] is False
    assert why in deposed.decisions[0]["reason"], deposed.decisions[0]["reason"]
    # a is a follower from now on, and b goes on leading from the state as b (or a) saved it.
    clock.advance(15)
    assert not a.run_once().leader
    b_next = b.run_once()
    assert b_next.leader and b_next.decisions[0]["lost"] == 0, "a's unapplied intent is no lost instance"
    stored = json.loads(
        standin.get_object("configmaps", NS, "swell-autoscaler-state")["data"]["loop-state.json"]
    )
    assert stored["writer"] == "replica-b"
