"""The reference tier service saturates like a server: past its capacity latency grows
(queueing), then it refuses with 503; a video bridge's stress level exceeds 1 before it refuses.
Each instance runs as its own process, as in the drill."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import websocket

from tests.realparts import free_port, http_get, wait_until


@pytest.fixture
def service() -> Iterator[Callable[..., int]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> int:
        port = free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "loadtests.tier_service", "--port", str(port), *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz"), "tier service", 15)
        return port

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def timed_get(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            code = r.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    return code, time.perf_counter() - started


def burst(url: str, n: int) -> list[tuple[int, float]]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _: timed_get(url), range(n)))


@pytest.mark.slow
def test_web_latency_grows_past_capacity_then_503(service: Callable[..., int]) -> None:
    port = service("--tier", "web", "--capacity", "2", "--service-time", "0.2", "--queue-timeout", "0.7")
    url = f"http://127.0.0.1:{port}/"
    within = burst(url, 2)
    assert all(code == 200 for code, _ in within)
    assert max(t for _, t in within) < 0.6  # no queueing at capacity
    queued = burst(url, 6)  # 3x capacity: served in three waves
    assert all(code == 200 for code, _ in queued)
    assert max(t for _, t in queued) >= 0.55
    flooded = burst(url, 30)
    refused = [c for c, _ in flooded if c == 503]
    assert refused, "a saturated instance must refuse"
    assert len(refused) < 30  # and still serve what it can
    metrics = http_get(f"http://127.0.0.1:{port}/metrics").decode()
    assert f"swell_tier_refused_total {len(refused)}" in metrics


def _heartbeat(ws: websocket.WebSocket) -> float:
    started = time.perf_counter()
    ws.send("hb")
    assert ws.recv() == "hb"
    return time.perf_counter() - started


@pytest.mark.slow
def test_video_stress_exceeds_one_then_refuses_at_the_hard_cap(service: Callable[..., int]) -> None:
    port = service("--tier", "video", "--capacity", "4", "--hard-cap", "2")
    url = f"ws://127.0.0.1:{port}/colibri-ws?room=conf-1"
    sockets = [websocket.create_connection(url, timeout=10) for _ in range(4)]
    try:
        at_capacity = min(_heartbeat(sockets[0]) for _ in range(3))
        sockets += [websocket.create_connection(url, timeout=10) for _ in range(4)]  # stress 2
        overloaded = min(_heartbeat(sockets[0]) for _ in range(3))
        assert overloaded > 3 * at_capacity  # degraded, not refused
        metrics = http_get(f"http://127.0.0.1:{port}/metrics").decode()
        assert "jitsi_jvb_endpoints 8" in metrics
        assert "jitsi_jvb_conferences 1" in metrics
        assert "jitsi_jvb_stress_level 2.0000" in metrics
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, timeout=10)
        assert refused.value.status_code == 503
    finally:
        for ws in sockets:
            ws.close()


@pytest.mark.slow
def test_chat_fans_out_to_the_room(service: Callable[..., int]) -> None:
    port = service("--tier", "chat")
    a = websocket.create_connection(f"ws://127.0.0.1:{port}/xmpp-websocket?room=r1", timeout=10)
    b = websocket.create_connection(f"ws://127.0.0.1:{port}/xmpp-websocket?room=r1", timeout=10)
    other = websocket.create_connection(f"ws://127.0.0.1:{port}/xmpp-websocket?room=r2", timeout=10)
    try:
        a.send("hello")  # without --redis: the local fan-out, same protocol
        assert json.loads(a.recv())["body"] == "hello"
        assert json.loads(b.recv()) == {
            "room": "r1",
            "seq": 1,
            "ts": pytest.approx(time.time(), abs=30),
            "body": "hello",
        }
        other.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            other.recv()
    finally:
        for ws in (a, b, other):
            ws.close()


@pytest.mark.parametrize(
    "args",
    [
        ["--tier", "mail", "--port", "1"],
        ["--tier", "web", "--port", "1", "--hard-cap", "0.5"],
        ["--tier", "chat", "--port", "1", "--allocator", "http://127.0.0.1:9"],
        ["--tier", "video", "--port", "1", "--allocator", "127.0.0.1:9"],
        ["--tier", "video", "--port", "1", "--allocator", "http://127.0.0.1:9", "--report-interval", "0"],
    ],
    ids=[
        "unknown-kind",
        "hard-cap-below-one",
        "allocator-for-chat",
        "allocator-not-a-url",
        "report-interval-0",
    ],
)
def test_bad_arguments_exit_2(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.tier_service", *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert any(
        option in done.stderr for option in ("--tier", "--hard-cap", "--allocator", "--report-interval")
    )


def test_a_bridge_that_cannot_register_exits_naming_the_allocator() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.tier_service",
            "--tier",
            "video",
            "--port",
            str(free_port()),
            "--allocator",
            f"http://127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "cannot register with the allocator at http://127.0.0.1:" in done.stderr
