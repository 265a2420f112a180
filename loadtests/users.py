"""Locust users, one class per tier, as the platform's clients behave.

- `WebUser` (FastHttpUser): pages, API calls and uploads, about one request per second each.
- `ChatUser`: a WebSocket session (`/xmpp-websocket`, as Prosody serves it) joined to a room; it
  sends a message every second and times the fan-out until its own message comes back. Sessions
  last 10-20 messages, then the user reconnects (people come and go; a new session may land on a
  new instance).
- `VideoUser`: joins a conference over a WebSocket (`/colibri-ws`, as a Jitsi Videobridge
  participant), sends heartbeats and times their answers, leaves after 10-25 heartbeats.

Chat and video reach their own hosts: `SWELL_CHAT_HOST` / `SWELL_VIDEO_HOST` (ws://host:port),
else the `--host` given to Locust with its scheme changed to ws(s).

WebSocket messages and joins are reported to Locust as requests of type `WS`, so Locust's stats
(and `--csv`) carry them with the HTTP requests.
"""

from __future__ import annotations

import os
import random
import time
import uuid

import websocket
from locust import FastHttpUser, User, between, constant_pacing, task

UPLOAD = "x" * 16 * 1024  # a 16 kB form post
RECV_TIMEOUT_S = 5.0


def ws_base(host: str | None, env_var: str) -> str:
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit.rstrip("/")
    if not host:
        raise ValueError(f"give --host or {env_var}")
    return host.replace("https://", "wss://").replace("http://", "ws://").rstrip("/")


class WebUser(FastHttpUser):
    weight = 6
    wait_time = constant_pacing(1.0)

    @task(3)
    def page(self) -> None:
        self.client.get("/", name="web page")

    @task(6)
    def api(self) -> None:
        self.client.get("/api/items", name="web api")

    @task(1)
    def upload(self) -> None:
        self.client.post("/upload", data=UPLOAD, name="web upload")


class _SocketUser(User):
    """A user holding one WebSocket session at a time (abstract: its subclasses carry the tasks)."""

    abstract = True
    env_var = ""
    path = ""
    tier = ""
    room_prefix = "room"
    rooms = 8
    session_length = (10, 20)

    def _fire(self, name: str, started: float, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=f"{self.tier} {name}",
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=0,
            exception=exc,
            context={},
        )

    def _round_trip(self, ws: websocket.WebSocket, name: str) -> bool:
        token = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            ws.send(token)
            deadline = started + RECV_TIMEOUT_S
            while time.perf_counter() < deadline:
                if ws.recv() == token:  # chat fan-out brings others' messages too
                    self._fire(name, started, None)
                    return True
            raise TimeoutError(f"no answer within {RECV_TIMEOUT_S} s")
        except Exception as exc:  # a closed or timed-out session is a failed request
            self._fire(name, started, exc)
            return False

    def session(self, message: str) -> None:
        room = f"{self.room_prefix}-{random.randrange(self.rooms)}"
        url = f"{ws_base(self.host, self.env_var)}{self.path}?room={room}"
        started = time.perf_counter()
        try:
            ws = websocket.create_connection(url, timeout=RECV_TIMEOUT_S)
        except Exception as exc:  # refused (503) or unreachable
            self._fire("join", started, exc)
            time.sleep(1.0)
            return
        self._fire("join", started, None)
        try:
            for _ in range(random.randint(*self.session_length)):
                if not self._round_trip(ws, message):
                    return
                time.sleep(1.0)
        finally:
            ws.close()


class ChatUser(_SocketUser):
    weight = 2
    wait_time = between(0.0, 0.5)
    env_var = "SWELL_CHAT_HOST"
    path = "/xmpp-websocket"
    tier = "chat"

    @task
    def chat(self) -> None:
        self.session("message")


class VideoUser(_SocketUser):
    weight = 2
    wait_time = between(0.0, 0.5)
    env_var = "SWELL_VIDEO_HOST"
    path = "/colibri-ws"
    tier = "video"
    room_prefix = "conference"
    session_length = (10, 25)

    @task
    def video(self) -> None:
        self.session("heartbeat")
