"""Two autoscaler replicas, the real loop in each, sharing one Lease, one ConfigMap state and the
Deployments, all through the official client against the stand-in API server (not a Kubernetes
API server: none can run here). Only the leader acts; a new leader takes over after the Lease
expires, reads the old leader's state, and does not scale down mid-surge."""

from __future__ import annotations

from collections.abc import Callable

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
from autoscaler.service import Autoscaler
from tests.autoscaler.fakes import FakeClock, FakeSource, telemetry

NS = "swell-autoscaler"


def _replica(
    name: str, make_client: Callable[[str], client.ApiClient], clock: FakeClock, source: FakeSource
) -> Autoscaler:
    api = make_client(name)
    cfg = parse_config(
        {
            "prometheus": {"url": "http://127.0.0.1:9090"},
            "state": {"kind": "configmap", "namespace": NS},
            "leader_election": {"namespace": NS, "lease_duration_s": 60},
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
        elector=LeaseLeaderElector(api, LeaseSettings(namespace=NS, lease_duration_s=60), identity=name),
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
