"""The reference tier service of the drill: one small async server (aiohttp) per instance, serving its
tier's kind of traffic (requests, sessions or participants: the tier catalog's `traffic`), with the
capacity of the catalog's `drill.service` so that a saturated instance behaves like one.

It is a stand-in for the real tiers (nginx + the web app, Prosody, Jitsi Videobridge), small on
purpose: an instance serves tens of requests per second or a few dozen sessions, so a whole surge
drill fits on 2 cores without the CPU ever being the bottleneck.

- requests (web): `concurrency` requests served at once, each taking `service_time_s` (x0.5 for the
  API, x2 for uploads), so at most about concurrency / service_time requests per second. Past that,
  requests wait for a slot (latency grows) up to `queue_timeout_s`; more than `max_queue` waiting,
  or a wait that long, is refused with 503.
- sessions (chat): WebSocket sessions (`/xmpp-websocket`) joined to rooms (protocol in docs/chat.md).
  With `--redis URL` (the drill always gives it) every message gets its room's next sequence number
  and a server timestamp in Redis, is kept in the room's bounded stream (`XADD MAXLEN ~`) and
  published on Redis pub/sub, which brings it to every instance with members in the room: sessions
  on different instances share rooms, and a session that rejoins with `since=SEQ` gets what it missed
  from the stream. Without `--redis` the same protocol runs on a local fan-out (one instance only).
  Past `capacity` sessions the fan-out slows down in proportion to the overload; past `hard_cap` x
  capacity new sessions are refused with 503.
- participants (video): conference participants over a WebSocket (`/colibri-ws`), `bitrate_kbps`
  each, answering heartbeats. Like a Jitsi Videobridge it never refuses a participant for load
  alone: the stress level (participants / capacity) may exceed 1, and heartbeats slow down with it,
  until a hard cap (`hard_cap` x capacity) where joins get 503. With `--allocator URL` (the drill
  always gives it) the bridge registers with the allocator (`loadtests/allocator.py`, a stand-in for
  Jicofo) and reports its stats every `--report-interval` seconds (participants, conferences, stress,
  drain and graceful-shutdown flags), as a bridge publishes them in the brewery MUC every 5 s; it
  reports at once when a flag changes and leaves when it exits. Participants learn its URL from the
  allocator and connect to it directly.

Drain (the autoscaler's two-phase scale-down), named like the Jitsi Videobridge's private REST API:
`POST /colibri/drain/enable` and `/disable` (reversible, unlike JVB's graceful shutdown, so a
scale-up can take the instance back), `GET /colibri/drain` -> `{"drain": bool, "sessions": N}` (sessions:
open WebSockets for sessions and participants, requests in flight or waiting for requests). While
draining, a session or participant tier refuses sessions that would open a new room or conference on
this instance (503); the load balancer sends it nothing new anyway. With `--exit-report PATH`, the
sessions still open when the instance is stopped are written there: the drill counts them as cut by
a scale-down.

Graceful shutdown, as the Jitsi Videobridge's private REST API has it (jitsi-videobridge doc/rest.md):
`POST /colibri/shutdown` with `{"graceful-shutdown": "true"}` (video only). It is final: the bridge
accepts no new conference (a join to a conference it does not hold gets 503), its conferences go on,
and the process exits 0 when the last one ends, at once if it has none.

`/healthz` answers 200 (the load balancer's health check) with the instance's `drain` and
`graceful_shutdown` flags. `/metrics` exposes the instance's counters, and for participants
`jitsi_jvb_endpoints`, `jitsi_jvb_conferences`, `jitsi_jvb_stress_level`,
`jitsi_jvb_total_participants` (a counter of every participant that joined: its rate is the join
rate the video demand signal reads) and the bit rates, named like the Jitsi Videobridge exporter
that the recording rules read.

Run: `python -m loadtests.tier_service --tier web --port 8081 [--capacity ...]` (a tier of the
catalog in use: `SWELL_TIERS`, else the packaged one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from swell import chat_store, tiers

KINDS = tiers.TRAFFIC_KINDS


@dataclass(frozen=True)
class TierSpec:
    """An instance's capacity. `kind` is its kind of traffic; `capacity` is concurrent requests,
    sessions or participants."""

    kind: str
    capacity: int
    service_time_s: float = 0.1
    queue_timeout_s: float = 1.0
    max_queue: int = 40
    base_delay_s: float = 0.02
    hard_cap: float = 2.0
    bitrate_kbps: int = 2500

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {self.capacity}")
        if self.service_time_s <= 0 or self.queue_timeout_s <= 0:
            raise ValueError("service_time_s and queue_timeout_s must be > 0")

    @property
    def max_rate(self) -> float:
        """Requests per second one web instance serves at most (mean service time x1)."""
        return self.capacity / self.service_time_s

    def designed_capacity(self, p95_limit_s: float) -> float:
        """What one instance serves by design within a p95 latency limit, in the autoscaler's unit.

        web: the requests/s its slots complete at the mean service time of `WEB_MIX`: past that
        rate the queue grows without bound and p95 with it. Evenly paced arrivals (the calibration's)
        queue little below it: the knee lies just under it. chat and video: the sessions
        (participants) it accepts, `hard_cap` x capacity, or fewer when the delay per message,
        base_delay x (sessions / capacity)^3, passes the limit first. `swell calibrate` measures the
        knee against it."""
        if self.kind == "requests":
            mean_cost = sum(n * WEB_COST[k] for k, n in WEB_MIX.items()) / sum(WEB_MIX.values())
            return self.capacity / (self.service_time_s * mean_cost)
        if p95_limit_s < self.base_delay_s:
            return 0.0  # even an idle instance answers slower than the limit
        return self.capacity * min(self.hard_cap, (p95_limit_s / self.base_delay_s) ** (1 / 3))


def catalog_spec(tier: str) -> TierSpec:
    """The reference service of `tier`, from the catalog's `drill.service` (small, so the CPU is
    never the bottleneck)."""
    entry = tiers.load().get(tier)
    return TierSpec(entry.traffic, **entry.drill.service.model_dump())


# Service time multipliers per web endpoint: an API call is light, an upload heavy.
WEB_COST = {"page": 1.0, "api": 0.5, "upload": 2.0}
# The request mix a WebUser sends (loadtests/users.py, tasks 3:6:1; a test checks they agree).
WEB_MIX = {"page": 3, "api": 6, "upload": 1}


# Messages a room's Redis stream keeps (XADD MAXLEN ~, so Redis may keep a few more): what a
# reconnecting session can still resume from. At the drill's pace (a message per user per second, a
# few dozen users per room) it covers well over a minute, longer than a Locust user's reconnect.
CHAT_HISTORY = 1000


class ChatSession:
    """One chat WebSocket: delivers a room's messages in sequence order, each once. Until
    `start_live`, live messages wait in a buffer while the history asked for with `since` is sent."""

    def __init__(self, room: str, ws: web.WebSocketResponse) -> None:
        self.room = room
        self.ws = ws
        self.last_seq = 0
        self.live = False
        self.buffer: list[dict[str, Any]] = []

    async def on_live(self, delivered: dict[str, Any]) -> None:
        if self.live:
            await self.send(delivered)
        else:
            self.buffer.append(delivered)

    async def send(self, delivered: dict[str, Any]) -> None:
        if delivered["seq"] <= self.last_seq or self.ws.closed:
            return  # already sent from the history
        self.last_seq = delivered["seq"]
        await self.ws.send_str(json.dumps(delivered))

    async def start_live(self) -> None:
        while self.buffer:  # more may arrive while sending
            pending, self.buffer = self.buffer, []
            for delivered in sorted(pending, key=lambda d: d["seq"]):
                await self.send(delivered)
        self.live = True


class ChatBus(Protocol):
    """Where a room's messages get their sequence number and reach every instance. `failure` says
    why the bus stopped delivering (None while it works): the instance then fails its health check."""

    failure: str | None

    async def publish(self, room: str, body: str, ts: float) -> int: ...

    async def history(self, room: str, since: int) -> list[dict[str, Any]]: ...


class LocalBus:
    """The fan-out without Redis: one instance's rooms only (sessions on other instances never see
    them), with the same sequence numbers and history as the Redis bus."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = defaultdict(int)
        self.kept: dict[str, deque[dict[str, Any]]] = defaultdict(lambda: deque(maxlen=CHAT_HISTORY))
        self.subscriber: Any = None
        self.failure: str | None = None

    async def publish(self, room: str, body: str, ts: float) -> int:
        self.seq[room] += 1
        delivered = {"room": room, "seq": self.seq[room], "ts": ts, "body": body}
        self.kept[room].append(delivered)
        if self.subscriber is not None:
            await self.subscriber(delivered)
        return self.seq[room]

    async def history(self, room: str, since: int) -> list[dict[str, Any]]:
        return [d for d in self.kept[room] if d["seq"] > since]


# One round trip and atomic: the room's next sequence number, the stream entry (its ID is the
# sequence number, so XRANGE resumes from it) and the publication, in this order for every
# publisher, so sequence numbers reach subscribers without holes. KEYS: counter, stream.
# ARGV: room, body, ts, history length, channel.
_PUBLISH_LUA = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'body', ARGV[2], 'ts', ARGV[3])
redis.call('PUBLISH', ARGV[5], cjson.encode({room=ARGV[1], seq=seq, ts=tonumber(ARGV[3]), body=ARGV[2]}))
return seq
"""
# Shared with production (the chat role renders the same names): swell/chat_store.py.
CHANNEL_PREFIX = chat_store.ROOM_CHANNEL_PREFIX
# A message to one session may take this long (its socket's buffer full); then the session is cut.
CHAT_SEND_TIMEOUT_S = 2.0


class RedisBus:
    """Rooms shared by every instance through Redis: a counter, a bounded stream and a pub/sub
    channel per room (`swell:chat:room:<room>`, `...:seq`, `...:stream`). Each instance subscribes
    to the room channels' pattern and hands a message to its own sessions in that room; it is
    simpler than subscribing per room, and at the drill's scale every instance has members in
    most rooms anyway."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis  # the drill extra; only the chat tier needs it

        self.url = url
        self.client = aioredis.from_url(url, decode_responses=True)
        self.script = self.client.register_script(_PUBLISH_LUA)
        self.pubsub = self.client.pubsub()
        self.listener: asyncio.Task[None] | None = None
        self.failure: str | None = None

    async def start(self, subscriber: Any) -> None:
        await self.client.ping()
        await self.pubsub.psubscribe(CHANNEL_PREFIX + "*")
        self.listener = asyncio.create_task(self._listen(subscriber))

    async def _listen(self, subscriber: Any) -> None:
        # redis-py reconnects and subscribes again after a short loss (its retries); what it gives
        # up on ends the listener. Without it the instance would keep its sessions open and deliver
        # nothing, so the failure is kept for /healthz: the balancer takes the instance out, its
        # clients reconnect elsewhere and resume with `since`.
        try:
            async for msg in self.pubsub.listen():
                if msg["type"] == "pmessage":
                    await subscriber(json.loads(msg["data"]))
            self.failure = f"the subscription to Redis at {self.url} ended"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # redis.ConnectionError, TimeoutError ...
            self.failure = f"lost Redis at {self.url}: {type(exc).__name__}: {exc}"

    async def publish(self, room: str, body: str, ts: float) -> int:
        key = CHANNEL_PREFIX + room
        seq = await self.script(
            keys=[key + ":seq", key + ":stream"], args=[room, body, repr(ts), CHAT_HISTORY, key]
        )
        return int(seq)

    async def history(self, room: str, since: int) -> list[dict[str, Any]]:
        # decode_responses=True: IDs and fields are str (redis-py types them as bytes or str).
        entries = cast(
            "list[tuple[str, dict[str, str]]]",
            await self.client.xrange(CHANNEL_PREFIX + room + ":stream", min=f"({since}-0", max="+"),
        )
        return [
            {"room": room, "seq": int(entry_id.split("-")[0]), "ts": float(f["ts"]), "body": f["body"]}
            for entry_id, f in entries
        ]

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.cancel()
        await self.pubsub.aclose()
        await self.client.aclose()


@dataclass
class Counters:
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused: int = 0
    in_flight: int = 0
    waiting: int = 0


class TierService:
    def __init__(self, spec: TierSpec, bus: ChatBus | None = None) -> None:
        self.spec = spec
        self.slots = asyncio.Semaphore(spec.capacity)
        self.counters = Counters()
        # chat rooms and video conferences: name -> open sockets on this instance
        self.rooms: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self.sessions = 0
        self.draining = False
        # Video: the JVB's graceful shutdown (final, unlike the drain) and its participant counter.
        self.graceful_shutdown = False
        self.total_participants = 0
        # Called when the bridge should exit (graceful shutdown, last conference ended), and when a
        # flag the allocator reads changes; `serve` sets them.
        self.exit_now: Callable[[], None] = lambda: None
        self.state_changed: Callable[[], None] = lambda: None
        self.bus: ChatBus = LocalBus() if bus is None else bus
        self.chat_sessions: dict[web.WebSocketResponse, ChatSession] = {}
        self.chat_recovered = 0  # messages the subscription missed, sent from the room's stream
        self.chat_slow_cut = 0  # sessions closed for not taking their messages in time

    def open_sessions(self) -> int:
        """What a stop would cut: sessions (chat, video) or requests in flight and waiting (web)."""
        if self.spec.kind == "requests":
            return self.counters.in_flight + self.counters.waiting
        return self.sessions + len(self.chat_sessions)

    # --- web -------------------------------------------------------------------------------
    async def _serve(self, cost: float) -> web.Response:
        c = self.counters
        if c.waiting >= self.spec.max_queue:
            c.refused += 1
            return web.Response(status=503, text="overloaded: queue full\n")
        c.waiting += 1
        try:
            await asyncio.wait_for(self.slots.acquire(), self.spec.queue_timeout_s)
        except TimeoutError:
            c.refused += 1
            return web.Response(status=503, text="overloaded: waited too long\n")
        finally:
            c.waiting -= 1
        c.in_flight += 1
        try:
            await asyncio.sleep(self.spec.service_time_s * cost)
        finally:
            c.in_flight -= 1
            self.slots.release()
        return web.Response(text="ok\n")

    async def page(self, request: web.Request) -> web.Response:
        self.counters.requests["page"] += 1
        return await self._serve(WEB_COST["page"])

    async def api(self, request: web.Request) -> web.Response:
        self.counters.requests["api"] += 1
        return await self._serve(WEB_COST["api"])

    async def upload(self, request: web.Request) -> web.Response:
        await request.read()
        self.counters.requests["upload"] += 1
        return await self._serve(WEB_COST["upload"])

    # --- chat and video ---------------------------------------------------------------------
    def overload(self) -> float:
        """Sessions (or participants) over capacity: the stress level."""
        return (self.sessions + len(self.chat_sessions)) / self.spec.capacity

    def delay(self) -> float:
        # Past capacity, work per message grows with the overload (queueing on a saturated CPU).
        stress = self.overload()
        return self.spec.base_delay_s * (1.0 if stress <= 1 else stress**3)

    async def socket(self, request: web.Request) -> web.StreamResponse:
        room = request.query.get("room", "lobby")[:64]
        if self.graceful_shutdown and room not in self.rooms:
            self.counters.refused += 1
            return web.Response(status=503, text="graceful shutdown: no new conferences here\n")
        if self.draining and room not in self.rooms:
            self.counters.refused += 1
            return web.Response(status=503, text="draining: no new rooms here\n")
        if self.sessions + 1 > self.spec.hard_cap * self.spec.capacity:
            self.counters.refused += 1
            return web.Response(status=503, text="overloaded: too many sessions\n")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sessions += 1
        self.total_participants += 1
        self.rooms[room].add(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                self.counters.requests["message"] += 1
                await asyncio.sleep(self.delay())
                await ws.send_str(msg.data)  # video heartbeat: answered to the participant
        finally:
            self.sessions -= 1
            self.rooms[room].discard(ws)
            if not self.rooms[room]:
                del self.rooms[room]
            if self.graceful_shutdown and not self.rooms:
                self.exit_now()  # the last conference ended
        return ws

    # --- chat -------------------------------------------------------------------------------
    async def chat_socket(self, request: web.Request) -> web.StreamResponse:
        """A chat session: `?room=NAME[&since=SEQ]`; each text frame the client sends is a message
        to the room; each message of the room (its own included) comes back as a JSON
        `{"room", "seq", "ts", "body"}`. With `since`, the room's messages after SEQ still in its
        history come first, in order and marked `"replayed": true`, then live ones, none twice."""
        room = request.query.get("room", "lobby")[:64]
        try:
            since = int(request.query["since"]) if "since" in request.query else None
        except ValueError:
            return web.Response(status=400, text="since must be an integer sequence number\n")
        local_room = any(s.room == room for s in self.chat_sessions.values())
        if self.draining and not local_room:
            self.counters.refused += 1
            return web.Response(status=503, text="draining: no new rooms here\n")
        if len(self.chat_sessions) + 1 > self.spec.hard_cap * self.spec.capacity:
            self.counters.refused += 1
            return web.Response(status=503, text="overloaded: too many sessions\n")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        session = ChatSession(room, ws)
        self.chat_sessions[ws] = session  # live messages buffer from here while history is read
        try:
            if since is not None:
                for delivered in await self.bus.history(room, since):
                    await session.send({**delivered, "replayed": True})
            await session.start_live()
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                self.counters.requests["message"] += 1
                await asyncio.sleep(self.delay())
                await self.bus.publish(room, msg.data[:4096], time.time())
        finally:
            del self.chat_sessions[ws]
        return ws

    async def on_chat_message(self, delivered: dict[str, Any]) -> None:
        """A room's message from the bus: to this instance's sessions in that room, all at once (a
        slow client does not delay its neighbours by more than `CHAT_SEND_TIMEOUT_S`, then it is cut
        and resumes with `since` on reconnecting, as a real chat server sheds a slow consumer)."""
        sessions = [s for s in self.chat_sessions.values() if s.room == delivered["room"]]
        await asyncio.gather(*(self._deliver(s, delivered) for s in sessions))

    async def _deliver(self, session: ChatSession, delivered: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(CHAT_SEND_TIMEOUT_S):
                if session.live and 0 < session.last_seq < delivered["seq"] - 1:
                    # Pub/sub is at most once: messages published while this instance's
                    # subscription reconnected never came. The room's stream has them.
                    for missed in await self.bus.history(session.room, session.last_seq):
                        if missed["seq"] < delivered["seq"]:
                            self.chat_recovered += 1
                            await session.send(missed)
                await session.on_live(delivered)
        except TimeoutError:
            self.chat_slow_cut += 1
            with contextlib.suppress(Exception):  # its buffer may be as full for the close frame
                await asyncio.wait_for(
                    session.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow"), 1
                )
        except (ConnectionError, RuntimeError):
            pass  # the client went away mid-send: its own handler ends the session

    # --- drain ------------------------------------------------------------------------------
    async def drain_enable(self, request: web.Request) -> web.Response:
        self.draining = True
        self.state_changed()
        return await self.drain_state(request)

    async def drain_disable(self, request: web.Request) -> web.Response:
        self.draining = False
        self.state_changed()
        return await self.drain_state(request)

    async def drain_state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "drain": self.draining,
                "graceful_shutdown": self.graceful_shutdown,
                "sessions": self.open_sessions(),
            }
        )

    async def shutdown(self, request: web.Request) -> web.Response:
        """The JVB's `POST /colibri/shutdown` with `{"graceful-shutdown": "true"}`: no new
        conferences, exit when the last one ends (at once without any). Final: there is no undo."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        flag = body.get("graceful-shutdown") if isinstance(body, dict) else None
        if flag not in ("true", True):
            return web.Response(status=400, text='expected the JSON body {"graceful-shutdown": "true"}\n')
        self.graceful_shutdown = True
        self.state_changed()
        if not self.rooms:
            self.exit_now()
        return await self.drain_state(request)

    def stats(self) -> dict[str, Any]:
        """What the bridge publishes to the allocator (the brewery MUC's stats, in short)."""
        return {
            "participants": self.sessions,
            "conferences": sorted(self.rooms),
            "stress": round(self.overload(), 4),
            "graceful_shutdown": self.graceful_shutdown,
            "drain": self.draining,
            # One participant's share of the stress (Jicofo uses it between two reports).
            "average_participant_stress": 1.0 / self.spec.capacity,
        }

    # --- health and metrics -----------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        failure = self.bus.failure
        health = {
            "kind": self.spec.kind,
            "ok": failure is None,
            "drain": self.draining,
            "graceful_shutdown": self.graceful_shutdown,
        }
        if failure is not None:
            health["error"] = failure
        return web.Response(status=200 if failure is None else 503, text=json.dumps(health) + "\n")

    async def metrics(self, request: web.Request) -> web.Response:
        c = self.counters
        lines = ["# TYPE swell_tier_requests_total counter"]
        lines += [f'swell_tier_requests_total{{endpoint="{k}"}} {v}' for k, v in sorted(c.requests.items())]
        lines += [
            "# TYPE swell_tier_refused_total counter",
            f"swell_tier_refused_total {c.refused}",
            f"swell_tier_in_flight {c.in_flight}",
            f"swell_tier_waiting {c.waiting}",
            f"swell_tier_sessions {self.sessions}",
            f"swell_tier_capacity {self.spec.capacity}",
        ]
        if self.spec.kind == "sessions":
            lines += [
                # Rooms with members on this instance: any instance serves any room, so a room's
                # members spread over instances. Then the bus's repairs.
                f"swell_chat_rooms {len({c.room for c in self.chat_sessions.values()})}",
                f"swell_chat_sessions {len(self.chat_sessions)}",
                "# TYPE swell_chat_recovered_messages_total counter",
                f"swell_chat_recovered_messages_total {self.chat_recovered}",
                "# TYPE swell_chat_slow_sessions_cut_total counter",
                f"swell_chat_slow_sessions_cut_total {self.chat_slow_cut}",
            ]
        if self.spec.kind == "participants":
            rate = self.sessions * self.spec.bitrate_kbps * 1000
            lines += [
                "# TYPE jitsi_jvb_endpoints gauge",
                f"jitsi_jvb_endpoints {self.sessions}",
                "# TYPE jitsi_jvb_conferences gauge",
                f"jitsi_jvb_conferences {len(self.rooms)}",
                "# TYPE jitsi_jvb_stress_level gauge",
                f"jitsi_jvb_stress_level {self.overload():.4f}",
                "# TYPE jitsi_jvb_total_participants counter",
                f"jitsi_jvb_total_participants {self.total_participants}",
                f"jitsi_jvb_bit_rate_download {rate}",
                f"jitsi_jvb_bit_rate_upload {rate}",
            ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/colibri/drain/enable", self.drain_enable)
        app.router.add_post("/colibri/drain/disable", self.drain_disable)
        app.router.add_get("/colibri/drain", self.drain_state)
        if self.spec.kind == "requests":
            app.router.add_get("/", self.page)
            app.router.add_get("/api/items", self.api)
            app.router.add_post("/upload", self.upload)
        elif self.spec.kind == "sessions":
            app.router.add_get("/xmpp-websocket", self.chat_socket)
        else:
            app.router.add_get("/colibri-ws", self.socket)
            app.router.add_post("/colibri/shutdown", self.shutdown)
        return app


class AllocatorClient:
    """The bridge's side of the brewery MUC, against the allocator stand-in: a report every
    `interval_s` (and at once when `nudge`d: a flag changed), a goodbye at exit."""

    def __init__(self, service: TierService, allocator_url: str, bridge_id: str, url: str, interval_s: float):
        self.service = service
        self.allocator_url = allocator_url.rstrip("/")
        self.bridge_id = bridge_id
        self.url = url
        self.interval_s = interval_s
        self.wake = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self.task: asyncio.Task[None] | None = None

    def nudge(self) -> None:
        self.wake.set()

    async def report(self) -> None:
        assert self.session is not None
        body = {"id": self.bridge_id, "url": self.url, **self.service.stats()}
        async with self.session.post(f"{self.allocator_url}/bridges", json=body) as r:
            r.raise_for_status()

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        try:
            await self.report()  # registered before it serves anything
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self.session.close()
            raise SystemExit(
                f"tier_service: cannot register with the allocator at {self.allocator_url}: {exc}"
            ) from exc
        self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval_s)
            self.wake.clear()
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                await self.report()  # the allocator restarting: the next report registers again

    async def leave(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.session is None:
            return
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with self.session.delete(f"{self.allocator_url}/bridges/{self.bridge_id}"):
                pass
        await self.session.close()


@dataclass(frozen=True)
class BridgeOptions:
    """Video: where the allocator is, and how often the bridge reports to it (real seconds)."""

    allocator_url: str
    report_interval_s: float = 5.0


async def serve(
    spec: TierSpec,
    host: str,
    port: int,
    exit_report: str | None = None,
    redis_url: str | None = None,
    bridge: BridgeOptions | None = None,
) -> None:
    bus: LocalBus | RedisBus = LocalBus() if redis_url is None else RedisBus(redis_url)
    service = TierService(spec, bus)
    if isinstance(bus, RedisBus):
        try:
            await bus.start(service.on_chat_message)
        except Exception as exc:  # redis.ConnectionError, bad URL, auth ...
            raise SystemExit(f"tier_service: cannot reach Redis at {redis_url}: {exc}") from exc
    else:
        bus.subscriber = service.on_chat_message
    runner = web.AppRunner(service.app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=512).start()
    stop = asyncio.Event()
    service.exit_now = stop.set
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reporter = None
    if bridge is not None:
        # Listening first: the allocator may send participants as soon as the bridge registers.
        reporter = AllocatorClient(
            service, bridge.allocator_url, f"{host}:{port}", f"ws://{host}:{port}", bridge.report_interval_s
        )
        service.state_changed = reporter.nudge
        await reporter.start()
    await stop.wait()
    if reporter is not None:
        await reporter.leave()  # out of the brewery before it stops answering
    if exit_report:
        # Before the cleanup closes them: what this stop cuts.
        with open(exit_report, "w") as f:
            json.dump(
                {
                    "sessions": service.open_sessions(),
                    "draining": service.draining,
                    "graceful_shutdown": service.graceful_shutdown,
                },
                f,
            )
    await runner.cleanup()
    if isinstance(bus, RedisBus):
        await bus.close()


def parse_args(
    argv: list[str] | None = None,
) -> tuple[TierSpec, str, int, str | None, str | None, BridgeOptions | None]:
    p = argparse.ArgumentParser(description="The drill's reference tier service (one instance).")
    p.add_argument("--tier", choices=tiers.names(), required=True, help="a tier of the catalog")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--capacity", type=int, help="concurrent requests (web), sessions, participants")
    p.add_argument("--service-time", type=float, help="web: seconds per page request")
    p.add_argument("--queue-timeout", type=float, help="web: longest wait for a slot before 503")
    p.add_argument("--hard-cap", type=float, help="chat/video: refuse past this multiple of capacity")
    p.add_argument("--exit-report", help="write the sessions still open at stop to this file (JSON)")
    p.add_argument("--redis", help="chat: the shared Redis (redis://host:port/db); else rooms are local")
    p.add_argument(
        "--allocator", help="video: the allocator (Jicofo stand-in) to register with, http://host:port"
    )
    p.add_argument(
        "--report-interval", type=float, default=5.0, help="video: seconds between reports to the allocator"
    )
    a = p.parse_args(argv)
    base = catalog_spec(a.tier)
    spec = TierSpec(
        kind=base.kind,
        capacity=a.capacity if a.capacity is not None else base.capacity,
        service_time_s=a.service_time if a.service_time is not None else base.service_time_s,
        queue_timeout_s=a.queue_timeout if a.queue_timeout is not None else base.queue_timeout_s,
        max_queue=base.max_queue,
        base_delay_s=base.base_delay_s,
        hard_cap=a.hard_cap if a.hard_cap is not None else base.hard_cap,
        bitrate_kbps=base.bitrate_kbps,
    )
    if not math.isfinite(spec.hard_cap) or spec.hard_cap < 1:
        p.error("--hard-cap must be >= 1")
    if a.redis is not None and spec.kind != "sessions":
        p.error("--redis is for a tier whose traffic is sessions (chat)")
    bridge = None
    if a.allocator is not None:
        if spec.kind != "participants":
            p.error("--allocator is for a tier whose traffic is participants (video)")
        if not a.allocator.startswith(("http://", "https://")):
            p.error(f"--allocator: expected an http(s):// URL, got {a.allocator!r}")
        if not (math.isfinite(a.report_interval) and a.report_interval > 0):
            p.error(f"--report-interval: expected seconds > 0, got {a.report_interval}")
        bridge = BridgeOptions(a.allocator, a.report_interval)
    return spec, a.host, a.port, a.exit_report, a.redis, bridge


def main(argv: list[str] | None = None) -> None:
    spec, host, port, exit_report, redis_url, bridge = parse_args(argv)
    asyncio.run(serve(spec, host, port, exit_report, redis_url, bridge))


if __name__ == "__main__":
    main()
