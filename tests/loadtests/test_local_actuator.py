"""The local actuator against a real HAProxy (Debian package, standing in for Octavia): instances
become ready only after the boot delay, then serve through the load balancer and appear in the
file_sd file; scale-down drains and stops them; `scale` is idempotent; a dead instance is dropped
so the loop replaces it; `close()` leaves no process behind."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import websocket

from autoscaler.ports import ActuationError, Capacity
from loadtests.local_actuator import LocalActuator, LocalActuatorSettings, LocalTierSettings, haproxy_command
from loadtests.plumbing import HAProxyPorts, haproxy_config, http_ok, wait_for
from loadtests.processes import start_process, stop_process
from tests.realparts import needs_haproxy, wait_until

pytestmark = [needs_haproxy, pytest.mark.slow]
BOOT = 1.5


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[LocalActuator, HAProxyPorts, Path]]:
    ports = HAProxyPorts.allocate()
    sock = tmp_path / "haproxy.sock"
    (tmp_path / "haproxy.cfg").write_text(haproxy_config(ports, sock, slots=3))
    proc = start_process(["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")], tmp_path / "haproxy.log")
    actuator = None
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{ports.stats}/metrics"), "haproxy", 15, proc)
        actuator = LocalActuator(
            LocalActuatorSettings(
                tiers={
                    "web": LocalTierSettings("web-pool", slots=3, boot_delay_s=BOOT),
                    "video": LocalTierSettings("video-pool", slots=3, boot_delay_s=BOOT, bridge_metrics=True),
                },
                haproxy_socket=sock,
                node_file_sd=tmp_path / "nodes.json",
                jvb_file_sd=tmp_path / "jvb.json",
                log_dir=tmp_path / "instances",  # where stopped instances report their open sessions
            )
        ).start()
        yield actuator, ports, tmp_path
    finally:
        if actuator is not None:
            actuator.close()
        stop_process(proc)


def ready_servers(sock: Path, backend: str) -> dict[str, int]:
    """Server name -> port for servers HAProxy runs (op state 2) and takes new traffic to: no admin
    flag but 0x04, which only records that the configuration started them `disabled`."""
    out = {}
    for line in haproxy_command(sock, f"show servers state {backend}").splitlines()[2:]:
        f = line.split()
        if len(f) > 18 and f[5] == "2" and int(f[6]) & ~0x04 == 0:
            out[f[3]] = int(f[18])
    return out


def test_boot_delay_then_serving_through_haproxy(setup: tuple[LocalActuator, HAProxyPorts, Path]) -> None:
    actuator, ports, tmp = setup
    asked = time.monotonic()
    actuator.scale("web", 2)
    assert actuator.capacity("web") == Capacity(current=2, ready=0)  # asked for, booting
    wait_until(lambda: actuator.capacity("web").ready == 2, "two ready web instances", 15)
    assert time.monotonic() - asked >= BOOT
    servers = ready_servers(tmp / "haproxy.sock", "web-pool")
    assert len(servers) == 2
    with urllib.request.urlopen(f"http://127.0.0.1:{ports.frontend('web')}/", timeout=5) as r:
        assert r.status == 200
    targets = json.loads((tmp / "nodes.json").read_text())
    assert sorted(int(g["targets"][0].split(":")[1]) for g in targets) == sorted(servers.values())
    assert {g["labels"]["tier"] for g in targets} == {"web"}
    assert json.loads((tmp / "jvb.json").read_text()) == []  # only video bridges are scraped as jvb


def test_scale_is_idempotent_and_without_a_drain_stops_at_once(
    setup: tuple[LocalActuator, HAProxyPorts, Path],
) -> None:
    actuator, _, tmp = setup
    actuator.scale("video", 2)
    wait_until(lambda: actuator.capacity("video").ready == 2, "two ready bridges", 15)
    assert len(json.loads((tmp / "jvb.json").read_text())) == 2
    events_before = len(actuator.events())
    actuator.scale("video", 2)  # the same size again: nothing happens
    assert len(actuator.events()) == events_before
    actuator.scale("video", 1)
    assert actuator.capacity("video") == Capacity(current=1, ready=1)
    stopped = next(e for e in actuator.events() if e["event"] == "stopped")
    assert not http_ok(f"http://127.0.0.1:{stopped['port']}/healthz")
    assert len(ready_servers(tmp / "haproxy.sock", "video-pool")) == 1
    assert len(json.loads((tmp / "jvb.json").read_text())) == 1


def _join(port: int, room: str) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://127.0.0.1:{port}/colibri-ws?room={room}", timeout=5)


def test_a_retiring_bridge_leaves_rotation_keeps_its_conference_and_goes_once_empty(
    setup: tuple[LocalActuator, HAProxyPorts, Path],
) -> None:
    """The drill's side of the two-phase scale-down: out of HAProxy's rotation and in drain mode
    (no new conference), its open conference untouched; removed once empty: nothing cut."""
    actuator, _, tmp = setup
    actuator.apply("video", [0, 1], [])
    wait_until(lambda: actuator.capacity("video").ready == 2, "two ready bridges", 15)
    port = actuator.port_of("video", 1)
    assert port is not None
    ws = _join(port, "standup")
    actuator.apply("video", [0], [1])  # phase 1
    assert [(m.index, m.retiring) for m in actuator.members("video")] == [(0, False), (1, True)]
    assert actuator.capacity("video") == Capacity(current=1, ready=1)
    assert len(ready_servers(tmp / "haproxy.sock", "video-pool")) == 1, "out of rotation"
    assert actuator.sessions("video", [1]) == {1: 1}
    with pytest.raises(websocket.WebSocketBadStatusException):
        _join(port, "new-conference")  # drain mode: no new conference here
    ws.send("ping")
    assert ws.recv() == "ping", "the open conference goes on"
    actuator.apply("video", [0, 1], [])  # a scale-up takes it back
    assert len(ready_servers(tmp / "haproxy.sock", "video-pool")) == 2
    _join(port, "another").close()
    actuator.apply("video", [0], [1])
    ws.close()
    wait_until(lambda: actuator.sessions("video", [1]) == {1: 0}, "the conference ended", 5)
    actuator.apply("video", [0], [])  # phase 2
    assert [m.index for m in actuator.members("video")] == [0]
    assert actuator.dropped_sessions() == {"web": 0, "video": 0}


def test_stopping_an_instance_with_open_sessions_counts_them_as_dropped(
    setup: tuple[LocalActuator, HAProxyPorts, Path],
) -> None:
    actuator, ports, _ = setup
    actuator.apply("video", [0], [])
    wait_until(lambda: actuator.capacity("video").ready == 1, "a ready bridge", 15)
    sockets = [
        websocket.create_connection(
            f"ws://127.0.0.1:{ports.frontend('video')}/colibri-ws?room=r{i}", timeout=5
        )
        for i in range(3)
    ]
    actuator.apply("video", [], [])  # removed without a drain
    assert actuator.dropped_sessions()["video"] == 3
    for ws in sockets:
        ws.close()


def test_a_drained_bridge_is_removed_by_graceful_shutdown_and_exits_by_itself(
    setup: tuple[LocalActuator, HAProxyPorts, Path],
) -> None:
    """The JVB's way out: once its conference has ended, the removal sends the graceful shutdown
    (`POST /colibri/shutdown`) and the bridge process exits by itself, with code 0, nothing cut."""
    actuator, _, tmp = setup
    actuator.apply("video", [0, 1], [])
    wait_until(lambda: actuator.capacity("video").ready == 2, "two ready bridges", 15)
    port = actuator.port_of("video", 1)
    assert port is not None
    ws = _join(port, "standup")
    actuator.apply("video", [0], [1])
    ws.close()
    wait_until(lambda: actuator.sessions("video", [1]) == {1: 0}, "the conference ended", 5)
    actuator.apply("video", [0], [])
    at_exit = json.loads((tmp / "instances" / f"video-{port}.exit.json").read_text())
    assert at_exit == {"sessions": 0, "draining": True, "graceful_shutdown": True}
    events = [(e["event"], e["port"]) for e in actuator.events()]
    assert ("exited (graceful shutdown)", port) in events
    assert actuator.dropped_sessions()["video"] == 0


def test_a_dead_instance_is_dropped_and_close_leaves_nothing(
    setup: tuple[LocalActuator, HAProxyPorts, Path],
) -> None:
    actuator, _, _ = setup
    actuator.bootstrap({"web": 2})
    pids = {c.pid for c in psutil.Process().children()}
    killed = actuator.kill_one("web")
    assert killed is not None
    wait_until(lambda: actuator.capacity("web").current == 1, "the dead instance dropped", 10)
    assert actuator.capacity("web").ready == 1
    actuator.scale("web", 2)  # what the loop does next pass: replace it
    wait_until(lambda: actuator.capacity("web").ready == 2, "the replacement ready", 15)
    actuator.close()
    alive = [p for p in psutil.Process().children() if "tier_service" in " ".join(p.cmdline())]
    assert alive == [], f"left behind: {alive} (started: {pids})"


@pytest.mark.parametrize(
    ("tier", "desired", "message", "retryable"),
    [("web", 4, "3 slots", False), ("mail", 1, "unknown tier", False), ("web", -1, ">= 0", False)],
    ids=["beyond-the-slots", "unknown-tier", "negative"],
)
def test_impossible_sizes_are_refused(
    setup: tuple[LocalActuator, HAProxyPorts, Path], tier: str, desired: int, message: str, retryable: bool
) -> None:
    actuator, _, _ = setup
    with pytest.raises(ActuationError, match=message) as err:
        actuator.scale(tier, desired)
    assert err.value.retryable is retryable
