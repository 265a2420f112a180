"""The local actuator against a real HAProxy (Debian package, standing in for Octavia): instances
become ready only after the boot delay, then serve through the load balancer and appear in the
file_sd file; scale-down drains and stops them; `scale` is idempotent; a dead instance is dropped
so the loop replaces it; `close()` leaves no process behind. The warm pool: a pool instance is
configured after the cold delay without running, shelved without a process, and serves after the
warm delay once unshelved, where a new instance takes the cold one; a drained instance is shelved
back into the pool."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import websocket

from autoscaler.ports import POOL_FILLING, POOL_WARM, ActuationError, Capacity
from loadtests.local_actuator import LocalActuator, LocalActuatorSettings, LocalTierSettings, haproxy_command
from loadtests.plumbing import HAProxyPorts, haproxy_config, http_ok, wait_for
from loadtests.processes import start_process, stop_process
from tests.realparts import needs_haproxy, wait_until

pytestmark = [needs_haproxy, pytest.mark.slow]
BOOT = 1.5
# The chat tier has a warm pool: cold (create, boot, configure) and warm (unshelve, boot) delays far
# enough apart that an instance's start-up time on a busy machine cannot blur them.
COLD, WARM = 5.0, 0.5


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
                    "chat": LocalTierSettings("chat-pool", slots=3, boot_delay_s=COLD, warm_delay_s=WARM),
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
    assert actuator.dropped_sessions() == {"web": 0, "video": 0, "chat": 0}


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


def pool_of(actuator: LocalActuator, tier: str) -> dict[int, tuple[str, bool]]:
    return {m.index: (m.pool, m.ready) for m in actuator.members(tier)}


def test_a_pool_instance_configures_without_running_then_shelves(
    setup: tuple[LocalActuator, HAProxyPorts, Path],
) -> None:
    """Filling: the slot is held for the cold delay with no process and no load balancer member;
    shelving it before it is configured is refused; once configured it is shelved (warm)."""
    actuator, _, tmp = setup
    asked = time.monotonic()
    actuator.apply("chat", [], [], filling=[0])
    assert actuator.capacity("chat") == Capacity(current=0, ready=0, warm=0, filling=1)
    assert pool_of(actuator, "chat") == {0: (POOL_FILLING, False)}
    assert actuator.port_of("chat", 0) is None, "a pool instance runs no process"
    with pytest.raises(ActuationError, match="cannot shelve index 0") as err:
        actuator.apply("chat", [], [], warm=[0])  # not configured yet
    assert err.value.retryable is False
    assert pool_of(actuator, "chat") == {0: (POOL_FILLING, False)}, "a refused layout changes nothing"
    wait_until(lambda: pool_of(actuator, "chat") == {0: (POOL_FILLING, True)}, "configured", COLD + 10)
    assert time.monotonic() - asked >= COLD
    actuator.apply("chat", [], [], warm=[0])
    assert actuator.capacity("chat") == Capacity(current=0, ready=0, warm=1, filling=0)
    assert pool_of(actuator, "chat") == {0: (POOL_WARM, True)}
    assert ready_servers(tmp / "haproxy.sock", "chat-pool") == {}
    assert json.loads((tmp / "nodes.json").read_text()) == []
    assert [e["event"] for e in actuator.events()] == ["filling", "configured", "shelved"]
    actuator.apply("chat", [], [])  # out of every set: deleted
    assert actuator.members("chat") == []


def test_an_unshelved_instance_serves_after_the_warm_delay_a_new_one_after_the_cold(
    setup: tuple[LocalActuator, HAProxyPorts, Path],
) -> None:
    actuator, _, tmp = setup
    actuator.bootstrap({}, warm={"chat": 1})  # a pool already filled: index 0
    assert pool_of(actuator, "chat") == {0: (POOL_WARM, True)}
    asked = time.monotonic()
    actuator.apply("chat", [0, 1], [])  # 0 unshelved, 1 created
    assert actuator.capacity("chat") == Capacity(current=2, ready=0, warm=0, filling=0)
    wait_until(lambda: actuator.capacity("chat").ready == 1, "the unshelved instance ready", COLD + 10)
    warm_took = time.monotonic() - asked
    assert [m.index for m in actuator.members("chat") if m.ready] == [0]
    wait_until(lambda: actuator.capacity("chat").ready == 2, "the new instance ready", COLD + 10)
    cold_took = time.monotonic() - asked
    assert WARM <= warm_took < COLD <= cold_took
    assert len(ready_servers(tmp / "haproxy.sock", "chat-pool")) == 2
    events = [(e["index"], e["event"]) for e in actuator.events()]
    assert events[1:] == [(0, "unshelved"), (1, "started"), (0, "ready"), (1, "ready")]


def test_a_filling_instance_activated_serves_when_its_configuration_ends(
    setup: tuple[LocalActuator, HAProxyPorts, Path],
) -> None:
    """Taken from the pool before it is shelved: it is running already, so it serves when its
    cold delay (counted from its creation) ends, not a full cold delay after the activation."""
    actuator, _, _ = setup
    asked = time.monotonic()
    actuator.apply("chat", [], [], filling=[0])
    time.sleep(COLD / 2)
    actuator.apply("chat", [0], [])
    wait_until(lambda: actuator.capacity("chat").ready == 1, "the activated instance ready", COLD + 10)
    took = time.monotonic() - asked
    assert COLD <= took < COLD / 2 + COLD, took


def test_a_drained_instance_is_shelved_back_into_the_pool(
    setup: tuple[LocalActuator, HAProxyPorts, Path],
) -> None:
    """Retiring -> warm: its process stops, it leaves HAProxy and the file_sd file, and it counts in
    the pool; unshelved again, it serves after the warm delay on a new process."""
    actuator, _, tmp = setup
    actuator.bootstrap({"chat": 2})
    old_port = actuator.port_of("chat", 1)
    assert old_port is not None
    actuator.apply("chat", [0], [1])  # phase 1: drains (no session open)
    wait_until(lambda: actuator.sessions("chat", [1]) == {1: 0}, "drained", 5)
    actuator.apply("chat", [0], [], warm=[1])
    assert actuator.capacity("chat") == Capacity(current=1, ready=1, warm=1, filling=0)
    assert pool_of(actuator, "chat") == {0: ("", True), 1: (POOL_WARM, True)}
    assert not http_ok(f"http://127.0.0.1:{old_port}/healthz"), "a shelved instance runs nothing"
    assert len(ready_servers(tmp / "haproxy.sock", "chat-pool")) == 1
    assert len(json.loads((tmp / "nodes.json").read_text())) == 1
    assert actuator.sessions("chat", [1]) == {1: None}
    asked = time.monotonic()
    actuator.apply("chat", [0, 1], [])
    wait_until(lambda: actuator.capacity("chat").ready == 2, "unshelved and ready", COLD + 10)
    assert WARM <= time.monotonic() - asked < COLD
    assert actuator.port_of("chat", 1) not in (None, old_port)
    assert actuator.dropped_sessions()["chat"] == 0


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"serving": [0], "warm": [2]}, "cannot shelve index 2"),
        ({"serving": [0], "filling": [1]}, "index 1 is ready: only a new index goes to filling"),
        ({"serving": [0, 1], "warm": [1]}, "each in one set"),
        ({"serving": [0], "filling": [3]}, "indices 0..2"),
    ],
    ids=[
        "new-index-straight-to-warm",
        "serving-back-to-filling",
        "one-index-in-two-sets",
        "beyond-the-slots",
    ],
)
def test_impossible_pool_layouts_are_refused_and_change_nothing(
    setup: tuple[LocalActuator, HAProxyPorts, Path], layout: dict[str, list[int]], message: str
) -> None:
    actuator, _, _ = setup
    actuator.bootstrap({"chat": 2})
    before = pool_of(actuator, "chat")
    with pytest.raises(ActuationError, match=message) as err:
        actuator.apply(
            "chat",
            layout.get("serving", []),
            layout.get("retiring", []),
            warm=layout.get("warm", []),
            filling=layout.get("filling", []),
        )
    assert err.value.retryable is False
    assert pool_of(actuator, "chat") == before
