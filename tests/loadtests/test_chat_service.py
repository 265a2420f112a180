"""The chat tier's reference service shares rooms across instances through a real Redis
(Debian's redis-server, started here on 127.0.0.1): two sessions on two instances in the same room
exchange messages, a session that rejoins with `since` gets what it missed, and an instance that
cannot reach Redis says so and exits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import websocket

from loadtests import tier_service
from loadtests.plumbing import redis_command, redis_ready
from loadtests.processes import start_process, stop_all
from loadtests.tier_service import ChatSession, LocalBus, TierService, catalog_spec
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


def _health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.slow
def test_an_instance_that_loses_redis_fails_its_health_check_naming_redis(
    redis_url: str, chat: Callable[..., int]
) -> None:
    """Without Redis an instance would keep its sessions and deliver nothing: its health check fails
    instead, so the balancer takes it out and its clients resume elsewhere."""
    port = chat("--redis", redis_url)
    assert _health(port) == (
        200,
        {"kind": "sessions", "ok": True, "drain": False, "graceful_shutdown": False},
    )
    with contextlib.suppress(redis.ConnectionError):
        redis.Redis.from_url(redis_url).shutdown(nosave=True)
    wait_until(lambda: _health(port)[0] == 503, "the health check to fail", 20)
    assert _health(port)[1]["ok"] is False and redis_url in _health(port)[1]["error"]


class _Socket:
    """A WebSocketResponse's sending side, in memory; `stuck` never finishes a send (a client whose
    buffer is full)."""

    def __init__(self, stuck: bool = False) -> None:
        self.sent: list[int] = []
        self.closed = False
        self.stuck = stuck

    async def send_str(self, text: str) -> None:
        if self.stuck:
            await asyncio.sleep(3600)
        self.sent.append(json.loads(text)["seq"])

    async def close(self, **_: object) -> bool:
        self.closed = True
        return True


class _Stream(LocalBus):
    """The room's stream holds every message; pub/sub (on_chat_message) may miss some."""

    def __init__(self, kept: list[int]) -> None:
        super().__init__()
        self.kept["r"].extend({"room": "r", "seq": n, "ts": 0.0, "body": str(n)} for n in kept)


def _msg(seq: int) -> dict[str, Any]:
    return {"room": "r", "seq": seq, "ts": 0.0, "body": str(seq)}


@pytest.mark.parametrize(
    ("published", "delivered"),
    [
        ([1, 2, 3], [1, 2, 3]),
        ([1, 4], [1, 2, 3, 4]),  # 2 and 3 lost on pub/sub: sent from the stream, in order
        ([1, 2, 5, 6], [1, 2, 3, 4, 5, 6]),
        ([7, 9], [7, 8, 9]),  # joined live at 7: nothing before it is owed
    ],
)
def test_messages_the_subscription_missed_are_sent_from_the_rooms_stream(
    published: list[int], delivered: list[int]
) -> None:
    async def run() -> tuple[list[int], int]:
        service = TierService(catalog_spec("chat"), _Stream(list(range(1, 10))))
        ws = _Socket()
        service.chat_sessions[ws] = session = ChatSession("r", ws)  # type: ignore[arg-type,index]
        await session.start_live()
        for seq in published:
            await service.on_chat_message(_msg(seq))
        return ws.sent, service.chat_recovered

    sent, recovered = asyncio.run(run())
    assert sent == delivered
    assert recovered == len(delivered) - len(published)


def test_a_slow_client_is_cut_and_does_not_hold_back_its_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tier_service, "CHAT_SEND_TIMEOUT_S", 0.2)

    async def run() -> tuple[_Socket, _Socket, int, float]:
        service = TierService(catalog_spec("chat"))
        slow, quick = _Socket(stuck=True), _Socket()
        for ws in (slow, quick):
            service.chat_sessions[ws] = ChatSession("r", ws)  # type: ignore[arg-type,index]
            service.chat_sessions[ws].live = True  # type: ignore[index]
        started = time.monotonic()
        await service.on_chat_message(_msg(1))
        return slow, quick, service.chat_slow_cut, time.monotonic() - started

    slow, quick, cut, took = asyncio.run(run())
    assert quick.sent == [1] and slow.closed and cut == 1
    assert took < 2  # bounded by the send timeout, not by the stuck client
