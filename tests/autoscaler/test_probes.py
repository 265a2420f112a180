"""/healthz (liveness) and /readyz (readiness) over real HTTP, on a fake clock: a Prometheus outage
makes the leader unready but never unlive, a follower is live and ready as standby, and only a
dead or stuck loop fails liveness (so only then does the kubelet restart the pod)."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from autoscaler.telemetry import Telemetry, TelemetryServer
from tests.autoscaler.fakes import FakeClock, telemetry
from tests.realparts import http_get

STALE = 45.0  # three 15 s intervals
STUCK = 900.0


@dataclass
class Probed:
    tel: Telemetry
    clock: FakeClock
    server: TelemetryServer
    loop_alive: list[bool]

    def get(self, path: str) -> tuple[int, dict]:
        try:
            return 200, json.loads(http_get(f"http://127.0.0.1:{self.server.port}{path}"))
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def probed() -> Iterator[Probed]:
    clock = FakeClock()
    tel, _ = telemetry()
    alive = [True]
    server = TelemetryServer(
        tel, "127.0.0.1", 0, STALE, clock, stuck_after_s=STUCK, loop_alive=lambda: alive[0]
    ).start()
    yield Probed(tel, clock, server, alive)
    server.stop()


def _passes(p: Probed, n: int, *, leader: bool, good: bool) -> None:
    """n passes 15 s apart, as the loop reports them to telemetry."""
    for _ in range(n):
        p.clock.advance(15)
        p.tel.beat(p.clock())
        if good:
            p.tel.mark_good_loop(p.clock())
        p.tel.pass_finished(p.clock(), leader=leader)


@pytest.mark.parametrize(
    ("scenario", "live", "ready", "role"),
    [
        ("leader-fresh", 200, 200, "leader"),
        ("leader-prometheus-down-for-10-minutes", 200, 503, "leader"),
        ("follower-standby-for-an-hour", 200, 200, "standby"),
        ("loop-stuck-in-one-pass", 503, 503, "leader"),
        ("loop-thread-dead", 503, 200, "leader"),
        ("just-started", 200, 503, "starting"),
    ],
    ids=lambda v: str(v),
)
def test_liveness_is_the_loop_readiness_is_freshness(
    probed: Probed, scenario: str, live: int, ready: int, role: str
) -> None:
    p = probed
    if scenario == "leader-fresh":
        _passes(p, 4, leader=True, good=True)
    elif scenario == "leader-prometheus-down-for-10-minutes":
        _passes(p, 4, leader=True, good=True)
        _passes(p, 40, leader=True, good=False)
    elif scenario == "follower-standby-for-an-hour":
        _passes(p, 240, leader=False, good=False)
    elif scenario == "loop-stuck-in-one-pass":
        _passes(p, 4, leader=True, good=True)
        p.clock.advance(STUCK + 1)  # a pass began and never ended
    elif scenario == "loop-thread-dead":
        _passes(p, 4, leader=True, good=True)
        p.loop_alive[0] = False
    code, body = p.get("/healthz")
    assert code == live, body
    code, body = p.get("/readyz")
    assert (code, body["role"]) == (ready, role), body
