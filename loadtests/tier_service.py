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
- sessions (chat): WebSocket sessions (`/xmpp-websocket`) joined to rooms; each message is fanned
  out to the room's sessions on this instance. Past `capacity` sessions the fan-out slows down in
  proportion to the overload; past `hard_cap` x capacity new sessions are refused with 503.
- participants (video): conference participants over a WebSocket (`/colibri-ws`), `bitrate_kbps`
  each, answering heartbeats. Like a Jitsi Videobridge it never refuses a participant for load
  alone: the stress level (participants / capacity) may exceed 1, and heartbeats slow down with it,
  until a hard cap (`hard_cap` x capacity) where joins get 503.

Drain (the autoscaler's two-phase scale-down), named like the Jitsi Videobridge's private REST API:
`POST /colibri/drain/enable` and `/disable` (reversible, unlike JVB's graceful shutdown, so a
scale-up can take the instance back), `GET /colibri/drain` -> `{"drain": bool, "sessions": N}` (sessions:
open WebSockets for sessions and participants, requests in flight or waiting for requests). While
draining, a session or participant tier refuses sessions that would open a new room or conference on
this instance (503); the load balancer sends it nothing new anyway. With `--exit-report PATH`, the
sessions still open when the instance is stopped are written there: the drill counts them as cut by
a scale-down.

`/healthz` answers 200 (the load balancer's health check). `/metrics` exposes the instance's
counters, and for participants `jitsi_jvb_endpoints`, `jitsi_jvb_conferences`,
`jitsi_jvb_stress_level` and the bit rates, named like the Jitsi Videobridge exporter that the
recording rules read.

Run: `python -m loadtests.tier_service --tier web --port 8081 [--capacity ...]` (a tier of the
catalog in use: `SWELL_TIERS`, else the packaged one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from swell import tiers

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


@dataclass
class Counters:
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused: int = 0
    in_flight: int = 0
    waiting: int = 0


class TierService:
    def __init__(self, spec: TierSpec) -> None:
        self.spec = spec
        self.slots = asyncio.Semaphore(spec.capacity)
        self.counters = Counters()
        # chat rooms and video conferences: name -> open sockets on this instance
        self.rooms: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self.sessions = 0
        self.draining = False

    def open_sessions(self) -> int:
        """What a stop would cut: sessions (chat, video) or requests in flight and waiting (web)."""
        if self.spec.kind == "requests":
            return self.counters.in_flight + self.counters.waiting
        return self.sessions

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
        return self.sessions / self.spec.capacity

    def delay(self) -> float:
        # Past capacity, work per message grows with the overload (queueing on a saturated CPU).
        stress = self.overload()
        return self.spec.base_delay_s * (1.0 if stress <= 1 else stress**3)

    async def socket(self, request: web.Request) -> web.StreamResponse:
        room = request.query.get("room", "lobby")[:64]
        if self.draining and room not in self.rooms:
            self.counters.refused += 1
            return web.Response(status=503, text="draining: no new rooms here\n")
        if self.sessions + 1 > self.spec.hard_cap * self.spec.capacity:
            self.counters.refused += 1
            return web.Response(status=503, text="overloaded: too many sessions\n")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sessions += 1
        self.rooms[room].add(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                self.counters.requests["message"] += 1
                await asyncio.sleep(self.delay())
                if self.spec.kind == "sessions":
                    for peer in list(self.rooms[room]):  # fan-out to the room, sender included
                        if not peer.closed:
                            await peer.send_str(msg.data)
                else:  # video heartbeat: answered to the participant
                    await ws.send_str(msg.data)
        finally:
            self.sessions -= 1
            self.rooms[room].discard(ws)
            if not self.rooms[room]:
                del self.rooms[room]
        return ws

    # --- drain ------------------------------------------------------------------------------
    async def drain_enable(self, request: web.Request) -> web.Response:
        self.draining = True
        return await self.drain_state(request)

    async def drain_disable(self, request: web.Request) -> web.Response:
        self.draining = False
        return await self.drain_state(request)

    async def drain_state(self, request: web.Request) -> web.Response:
        return web.json_response({"drain": self.draining, "sessions": self.open_sessions()})

    # --- health and metrics -----------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"kind": self.spec.kind, "ok": True}) + "\n")

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
        if self.spec.kind == "participants":
            rate = self.sessions * self.spec.bitrate_kbps * 1000
            lines += [
                "# TYPE jitsi_jvb_endpoints gauge",
                f"jitsi_jvb_endpoints {self.sessions}",
                "# TYPE jitsi_jvb_conferences gauge",
                f"jitsi_jvb_conferences {len(self.rooms)}",
                "# TYPE jitsi_jvb_stress_level gauge",
                f"jitsi_jvb_stress_level {self.overload():.4f}",
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
            app.router.add_get("/xmpp-websocket", self.socket)
        else:
            app.router.add_get("/colibri-ws", self.socket)
        return app


async def serve(spec: TierSpec, host: str, port: int, exit_report: str | None = None) -> None:
    service = TierService(spec)
    runner = web.AppRunner(service.app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=512).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if exit_report:
        # Before the cleanup closes them: what this stop cuts.
        with open(exit_report, "w") as f:
            json.dump({"sessions": service.open_sessions(), "draining": service.draining}, f)
    await runner.cleanup()


def parse_args(argv: list[str] | None = None) -> tuple[TierSpec, str, int, str | None]:
    p = argparse.ArgumentParser(description="The drill's reference tier service (one instance).")
    p.add_argument("--tier", choices=tiers.names(), required=True, help="a tier of the catalog")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--capacity", type=int, help="concurrent requests (web), sessions, participants")
    p.add_argument("--service-time", type=float, help="web: seconds per page request")
    p.add_argument("--queue-timeout", type=float, help="web: longest wait for a slot before 503")
    p.add_argument("--hard-cap", type=float, help="chat/video: refuse past this multiple of capacity")
    p.add_argument("--exit-report", help="write the sessions still open at stop to this file (JSON)")
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
    return spec, a.host, a.port, a.exit_report


def main(argv: list[str] | None = None) -> None:
    spec, host, port, exit_report = parse_args(argv)
    asyncio.run(serve(spec, host, port, exit_report))


if __name__ == "__main__":
    main()
