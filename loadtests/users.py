"""Locust users, one class per kind of traffic, and one subclass per tier of the catalog
(`user_classes`: `WebUser`, `ChatUser`, `VideoUser` for the shipped catalog), as the clients behave.

- `RequestsUser` (FastHttpUser; web): pages, API calls and uploads, about one request per second each.
- `SessionUser` (chat): a WebSocket session (`/xmpp-websocket`, the chat service's protocol,
  docs/chat.md) joined to its room, one of `rooms` shared by many users, so that a room's users sit
  on different instances; it sends a message every second and times it until its own message comes
  back. It checks every message of the room it receives: a hole in the room's sequence numbers is
  a message lost, one received more than `LATE_AFTER_S` after its server timestamp is late
  (`chat_messages` events: delivered, lost, late). Sessions last 10-20 messages, then the user
  reconnects to the same room with `since` = the last sequence number it saw (a new session may land
  on a new instance), and gets what it missed first.
- `ParticipantUser` (video): joins one of `rooms` conferences of the current meeting slot (a new set
  of conferences every `meeting_s` real seconds: conferences begin and end, as meetings do, so new
  conferences reach new bridges while old ones finish where they are); it asks the allocator which
  bridge holds its conference (`POST /allocate`,
  `loadtests/allocator.py`, the drill's stand-in for Jicofo's bridge selection), then joins the
  conference on that bridge directly, over a WebSocket (`/colibri-ws`, as a Jitsi Videobridge
  participant), sends heartbeats and times their answers, leaves after 10-25 heartbeats. Bridges
  are reached directly in production too (public addresses, no load balancer): the bridge's URL
  comes from the allocator's answer, which the bridge registered itself; nothing else names it.

Each tier's users reach their own host, `SWELL_<TIER>_HOST` (`SWELL_CHAT_HOST=ws://host:port`,
`SWELL_WEB_HOST=http://host:port`, `SWELL_VIDEO_HOST=http://allocator:port`), else the `--host`
given to Locust (its scheme changed to ws(s) for WebSockets). Their weight is the catalog's
`drill.users_weight`; requests are named `<tier> <what>` (`web page`, `chat message`), which
the request log reads the tier from.

WebSocket messages and joins are reported to Locust as requests of type `WS`, so Locust's stats
(and `--csv`) carry them with the HTTP requests.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.request
import uuid
from collections.abc import Callable

import websocket
from locust import FastHttpUser, User, between, constant_pacing, task
from locust.event import EventHook

from loadtests.requestlog import LATE_AFTER_S
from swell import tiers

UPLOAD = "x" * 16 * 1024  # a 16 kB form post
RECV_TIMEOUT_S = 5.0

# Fired for each chat message a SessionUser receives: chat_messages.fire(tier=, delivered=1,
# lost=messages missing before it in the room's sequence, late=0 or 1). The locustfile writes them
# to the request log (`M` lines), which the drill report counts.
chat_messages = EventHook()


def ws_base(host: str | None, env_var: str) -> str:
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit.rstrip("/")
    if not host:
        raise ValueError(f"give --host or {env_var}")
    return host.replace("https://", "wss://").replace("http://", "ws://").rstrip("/")


def http_base(host: str | None, env_var: str) -> str:
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit.rstrip("/")
    if not host:
        raise ValueError(f"give --host or {env_var}")
    return host.replace("wss://", "https://").replace("ws://", "http://").rstrip("/")


class RequestsUser(FastHttpUser):
    """A tier's HTTP users (abstract: `user_classes` names the tier)."""

    abstract = True
    wait_time = constant_pacing(1.0)
    tier = ""
    env_var = ""

    def __init__(self, environment: object) -> None:
        # Locust's --host overrides every class's host: a tier's own host is taken per instance,
        # before FastHttpUser builds its client on it.
        explicit = os.environ.get(self.env_var) if self.env_var else None
        if explicit:
            self.host = explicit.rstrip("/")
        super().__init__(environment)

    @task(3)
    def page(self) -> None:
        self.client.get("/", name=f"{self.tier} page")

    @task(6)
    def api(self) -> None:
        self.client.get("/api/items", name=f"{self.tier} api")

    @task(1)
    def upload(self) -> None:
        self.client.post("/upload", data=UPLOAD, name=f"{self.tier} upload")


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

    def session(
        self, query: str, exchange: Callable[[websocket.WebSocket], bool], base: str | None = None
    ) -> None:
        """One session: joins `<base><path>?<query>` (`base`: the tier's host by default), then
        `exchange`s once a second for a session's length, until an exchange fails."""
        url = f"{base or ws_base(self.host, self.env_var)}{self.path}?{query}"
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
                if not exchange(ws):
                    return
                time.sleep(1.0)
        finally:
            ws.close()


class SessionUser(_SocketUser):
    abstract = True
    wait_time = between(0.0, 0.5)
    path = "/xmpp-websocket"

    def on_start(self) -> None:
        self.room = f"{self.room_prefix}-{random.randrange(self.rooms)}"
        self.last_seq: int | None = None  # the room's last sequence number this user saw

    @task
    def chat(self) -> None:
        since = "" if self.last_seq is None else f"&since={self.last_seq}"
        self.session(f"room={self.room}{since}", self._exchange)

    def _exchange(self, ws: websocket.WebSocket) -> bool:
        """Sends a message and reads the room's messages until its own comes back."""
        token = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            ws.send(token)
            deadline = started + RECV_TIMEOUT_S
            while time.perf_counter() < deadline:
                delivered = json.loads(ws.recv())
                self.check(delivered, time.time())
                if delivered["body"] == token:
                    self._fire("message", started, None)
                    return True
            raise TimeoutError(f"no answer within {RECV_TIMEOUT_S} s")
        except Exception as exc:  # a closed or timed-out session is a failed request
            self._fire("message", started, exc)
            return False

    def check(self, delivered: dict[str, object], now: float) -> None:
        """Counts a received message: delivered, the holes before it (lost), late or not."""
        seq = int(str(delivered["seq"]))
        if self.last_seq is not None and seq <= self.last_seq:
            return  # seen already
        lost = 0 if self.last_seq is None else seq - self.last_seq - 1
        self.last_seq = seq
        late = not delivered.get("replayed") and now - float(str(delivered["ts"])) > LATE_AFTER_S
        chat_messages.fire(tier=self.tier, delivered=1, lost=lost, late=int(late))


class ParticipantUser(_SocketUser):
    abstract = True
    wait_time = between(0.0, 0.5)
    path = "/colibri-ws"
    room_prefix = "conference"
    session_length = (10, 25)
    # A conference's life, in real seconds (like the sessions, not compressed): about a session.
    # Conferences stay on their bridge (Jicofo's rule), so with a fixed set of conferences that never
    # empty, a new bridge would never get one.
    meeting_s = 20.0

    @task
    def video(self) -> None:
        slot = int(time.time() // self.meeting_s)
        conference = f"{self.room_prefix}-{slot}-{random.randrange(self.rooms)}"
        bridge = self.bridge_for(conference)
        if bridge is None:
            time.sleep(1.0)
            return
        self.session(f"room={conference}", lambda ws: self._round_trip(ws, "heartbeat"), base=bridge)

    def bridge_for(self, conference: str) -> str | None:
        """The URL of the bridge holding `conference`, from the allocator (None: refused or
        unreachable, reported as a failed `allocate`)."""
        request = urllib.request.Request(
            f"{http_base(self.host, self.env_var)}/allocate",
            data=json.dumps({"conference": conference}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=RECV_TIMEOUT_S) as r:
                url = str(json.loads(r.read())["url"])
        except Exception as exc:  # 503 (no bridge), unreachable, malformed
            self._fire("allocate", started, exc)
            return None
        self._fire("allocate", started, None)
        return url.rstrip("/")


BY_TRAFFIC: dict[str, type[User]] = {
    "requests": RequestsUser,
    "sessions": SessionUser,
    "participants": ParticipantUser,
}


def user_classes() -> dict[str, type[User]]:
    """One Locust user class per tier of the catalog, by class name (`WebUser`): its kind of
    traffic's class, with the tier's name, weight and host variable."""
    return {
        f"{t.name.capitalize()}User": type(
            f"{t.name.capitalize()}User",
            (BY_TRAFFIC[t.traffic],),
            {
                "abstract": False,
                "tier": t.name,
                "weight": t.drill.users_weight,
                "env_var": t.users_host_env,
                "__module__": __name__,
            },
        )
        for t in tiers.load().tiers
    }
