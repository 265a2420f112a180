"""The chat tier's reference service shares rooms across instances through a real Redis
(Debian's redis-server, started here on 127.0.0.1): two sessions on two instances in the same room
exchange messages, a session that rejoins with `since` gets what it missed, and an instance that
cannot reach Redis says so and exits."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from loadtests.plumbing import redis_command, redis_ready
from loadtests.processes import start_process, stop_all
from tests.realparts import free_port, http_get, wait_until


@pytest.fixture
def redis_url() -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = start_process(redis_command(port, Path(data)), None)
        try:
            wait_until(lambda: redis_ready(port), "redis-server", 15)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop_all([proc])


@pytest.fixture
def chat() -> Iterator[Callable[..., int]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> int:
        port = free_port()
        cmd = [sys.executable, "-m", "loadtests.tier_service", "--tier", "chat", "--port", str(port), *args]
        procs.append(start_process(cmd, None))
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz"), "chat instance", 15)
        return port

    yield start
    stop_all(procs)


def _join(port: int, room: str, since: int | None = None) -> websocket.WebSocket:
    query = f"room={room}" + (f"&since={since}" if since is not None else "")
    return websocket.create_connection(f"ws://127.0.0.1:{port}/xmpp-websocket?{query}", timeout=10)


def _recv(ws: websocket.WebSocket) -> dict[str, Any]:
    delivered: dict[str, Any] = json.loads(ws.recv())
    return delivered


@pytest.mark.slow
def test_two_sessions_on_two_instances_in_one_room_exchange_messages(
    redis_url: str, chat: Callable[..., int]
) -> None:
    first, second = chat("--redis", redis_url), chat("--redis", redis_url)
    alice, bob, elsewhere = _join(first, "r1"), _join(second, "r1"), _join(second, "r2")
    try:
        alice.send("hello from the first instance")
        got = _recv(bob)
        assert (got["room"], got["seq"], got["body"]) == ("r1", 1, "hello from the first instance")
        assert _recv(alice)["seq"] == 1  # the sender gets its own message, numbered
        bob.send("hello back")
        assert [_recv(alice)["body"], _recv(bob)["body"]] == ["hello back", "hello back"]
        elsewhere.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            elsewhere.recv()  # another room hears nothing
    finally:
        for ws in (alice, bob, elsewhere):
            ws.close()


@pytest.mark.slow
def test_a_session_rejoining_with_since_gets_what_it_missed(redis_url: str, chat: Callable[..., int]) -> None:
    first, second = chat("--redis", redis_url), chat("--redis", redis_url)
    alice, bob = _join(first, "r1"), _join(second, "r1")
    try:
        alice.send("one")
        seen = _recv(bob)["seq"]
        bob.close()  # bob leaves; the room goes on without him
        for body in ("two", "three"):
            alice.send(body)
        assert [_recv(alice)["body"] for _ in range(3)] == ["one", "two", "three"]
        back = _join(first, "r1", since=seen)  # another instance this time
        assert [(d["seq"], d["body"]) for d in (_recv(back), _recv(back))] == [(2, "two"), (3, "three")]
        alice.send("four")
        assert _recv(back)["body"] == "four"  # then live, none twice
        back.close()
    finally:
        alice.close()


def test_redis_unreachable_at_start_names_redis_and_exits_non_zero() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.tier_service",
            "--tier",
            "chat",
            "--port",
            str(free_port()),
            "--redis",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "Redis" in done.stderr and url in done.stderr
