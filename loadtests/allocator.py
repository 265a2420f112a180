"""A stand-in for Jicofo's bridge selection, for the drill and the tests: it is not Jicofo.

In Jitsi Meet, bridges join the brewery MUC (`jvbbrewery`) and publish their stats there (every
5 s: `videobridge.stats.interval`, jitsi-videobridge doc/statistics.md); Jicofo reads them and, for
every participant that joins, allocates a bridge for its conference over Colibri. This service does
the part of that the capacity story needs, over plain HTTP, with the drill's reference bridges
(`loadtests/tier_service.py --tier video --allocator URL`):

- `POST /bridges` (JSON `{"id", "url", "participants", "conferences": [names], "stress",
  "graceful_shutdown", "drain", "average_participant_stress"}`): a bridge registers and reports its
  stats, as in the brewery MUC; `DELETE /bridges/{id}`: it leaves (its process exits).
- `POST /allocate` (JSON `{"conference": NAME}`): a participant joins `NAME`; the answer is the
  bridge to connect to, `{"conference", "bridge", "url", "fallback"}`, or 503 when no bridge at all
  can take it. The participant then connects to the bridge's URL directly.
- `GET /bridges` (what it knows, JSON), `GET /metrics` (Prometheus text: placements per bridge,
  fallbacks, refusals, bridges by state), `GET /healthz`.

The selection is `select_bridge`, a pure function of the state and the clock (docs/video.md has the
rule and its sources). Conferences are forgotten when their bridge's report no longer lists them.
Time constants are divided by `--speed`, as every time constant of the drill.

Run: `python -m loadtests.allocator --port 8090 [--speed 90] [--report-interval 1] [--exit-report
PATH]` (at its stop it writes what it placed there: per bridge, fallbacks, refusals).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

# Jicofo's defaults (jicofo-selector/src/main/resources/reference.conf, `jicofo.bridge`):
# stress-threshold 0.8, average-participant-stress 0.01 (used when a bridge reports none),
# participant-rampup-interval 20 s. Bridges send stats every 5 s (jitsi-videobridge
# doc/statistics.md). Jicofo admits about 30 new participants per bridge per minute, because the
# stats it decides on are that old; Jitsi sizes a bridge at about 80-100 participants.
STRESS_THRESHOLD = 0.8
DEFAULT_PARTICIPANT_STRESS = 0.01
RAMPUP_S = 20.0
REPORT_INTERVAL_S = 5.0
MAX_JOINS_PER_MINUTE = 30
# A bridge silent for this many report intervals is gone (Jicofo drops a bridge whose presence
# stopped, after its own presence timeout).
STALE_AFTER_REPORTS = 3


@dataclass(frozen=True)
class SelectionPolicy:
    """The selection's limits and time constants (real seconds; `scaled` compresses them)."""

    stress_threshold: float = STRESS_THRESHOLD
    max_joins_per_minute: int = MAX_JOINS_PER_MINUTE
    minute_s: float = 60.0
    rampup_s: float = RAMPUP_S
    report_interval_s: float = REPORT_INTERVAL_S
    stale_after_reports: int = STALE_AFTER_REPORTS
    default_participant_stress: float = DEFAULT_PARTICIPANT_STRESS

    def __post_init__(self) -> None:
        for name in ("stress_threshold", "minute_s", "rampup_s", "report_interval_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"SelectionPolicy.{name} must be a finite number > 0, got {value!r}")
        if self.max_joins_per_minute < 1 or self.stale_after_reports < 1:
            raise ValueError("SelectionPolicy: max_joins_per_minute and stale_after_reports must be >= 1")

    @property
    def stale_after_s(self) -> float:
        return self.stale_after_reports * self.report_interval_s

    def scaled(self, speed: float, report_interval_s: float) -> SelectionPolicy:
        """The drill's policy: a minute and the ramp-up last 1/speed as long; reports come every
        `report_interval_s` (the bridges' own interval)."""
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a finite number > 0, got {speed!r}")
        return replace(
            self,
            minute_s=self.minute_s / speed,
            rampup_s=self.rampup_s / speed,
            report_interval_s=report_interval_s,
        )


@dataclass(frozen=True)
class BridgeReport:
    """A bridge's last stats, as it publishes them in the brewery MUC, and when they arrived."""

    id: str
    url: str
    reported_at: float
    participants: int = 0
    conferences: frozenset[str] = frozenset()
    stress: float = 0.0
    graceful_shutdown: bool = False
    drain: bool = False
    average_participant_stress: float | None = None

    @classmethod
    def from_json(cls, body: Any, now: float) -> BridgeReport:
        """A report from a bridge's JSON; a ValueError names the field and what was expected."""
        if not isinstance(body, dict):
            raise ValueError("a bridge report is a JSON object")
        bridge_id, url = body.get("id"), body.get("url")
        if not isinstance(bridge_id, str) or not bridge_id or len(bridge_id) > 128:
            raise ValueError("id: expected a non-empty string (at most 128 characters)")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError("url: expected the bridge's ws:// or wss:// URL")
        conferences = body.get("conferences", [])
        if not isinstance(conferences, list) or not all(isinstance(c, str) for c in conferences):
            raise ValueError("conferences: expected a list of conference names")
        try:
            participants = int(body.get("participants", 0))
            stress = float(body.get("stress", 0.0))
            aps = body.get("average_participant_stress")
            aps = None if aps is None else float(aps)
        except (TypeError, ValueError):
            raise ValueError("participants, stress, average_participant_stress: expected numbers") from None
        if participants < 0 or not math.isfinite(stress) or stress < 0:
            raise ValueError("participants and stress: expected numbers >= 0")
        return cls(
            id=bridge_id,
            url=url,
            reported_at=now,
            participants=participants,
            conferences=frozenset(conferences),
            stress=stress,
            graceful_shutdown=bool(body.get("graceful_shutdown", False)),
            drain=bool(body.get("drain", False)),
            average_participant_stress=aps,
        )


@dataclass(frozen=True)
class Selection:
    """Where a participant goes. `bridge` None: refused (no bridge at all). `fallback`: no bridge
    met every limit, so the least loaded one that can take conferences was chosen anyway."""

    bridge: str | None
    reason: str
    new_conference: bool = False
    fallback: bool = False


def is_stale(bridge: BridgeReport, policy: SelectionPolicy, now: float) -> bool:
    return now - bridge.reported_at > policy.stale_after_s


def recent(joins: Sequence[float], since: float) -> int:
    return sum(1 for t in joins if t > since)


def corrected_stress(
    bridge: BridgeReport, joins: Sequence[float], policy: SelectionPolicy, now: float
) -> float:
    """The reported stress plus the participants placed since it was measured: Jicofo adds the
    endpoints of the last `participant-rampup-interval` x the average stress per participant, so a
    burst does not all land on the bridge whose stats are oldest. The stand-in counts from the
    earlier of the ramp-up interval and the bridge's last report (its stats are at least that old)."""
    per_participant = (
        bridge.average_participant_stress
        if bridge.average_participant_stress is not None
        else policy.default_participant_stress
    )
    since = min(now - policy.rampup_s, bridge.reported_at)
    return bridge.stress + recent(joins, since) * per_participant


def select_bridge(
    conference: str,
    placements: Mapping[str, str],
    bridges: Mapping[str, BridgeReport],
    joins: Mapping[str, Sequence[float]],
    policy: SelectionPolicy,
    now: float,
) -> Selection:
    """The bridge for a participant joining `conference` (the rule, in order):

    1. a conference already placed stays on its bridge while that bridge is there (registered and
       not stale), even draining or in graceful shutdown: its conferences continue there;
    2. else, among bridges that take new conferences (not in graceful shutdown, not draining, not
       stale), those below the stress threshold (stress corrected for recent joins) and under the
       join-rate limit (fewer than `max_joins_per_minute` placed in the last minute): the least
       loaded (lowest corrected stress, then fewer participants, then id);
    3. else the least loaded bridge that takes new conferences, as a fallback: Jicofo never refuses
       a participant for load, it overloads a bridge (and the autoscaler sees the stress);
    4. else (no bridge takes new conferences): refused.

    `placements`: conference -> bridge id; `joins`: bridge id -> times participants were placed
    there (the last minute at least)."""
    placed = placements.get(conference)
    if placed is not None and placed in bridges and not is_stale(bridges[placed], policy, now):
        return Selection(placed, f"{conference} is on {placed}")
    open_bridges = [
        b
        for b in bridges.values()
        if not b.graceful_shutdown and not b.drain and not is_stale(b, policy, now)
    ]
    if not open_bridges:
        return Selection(None, "no bridge takes new conferences (none registered, fresh, not shutting down)")

    def load(b: BridgeReport) -> tuple[float, int, str]:
        return (corrected_stress(b, joins.get(b.id, ()), policy, now), b.participants, b.id)

    def within_limits(b: BridgeReport) -> bool:
        stress, _, _ = load(b)
        joined = recent(joins.get(b.id, ()), now - policy.minute_s)
        return stress < policy.stress_threshold and joined < policy.max_joins_per_minute

    moved = f" ({placed} is gone)" if placed is not None else ""
    eligible = [b for b in open_bridges if within_limits(b)]
    if eligible:
        best = min(eligible, key=load)
        return Selection(best.id, f"least loaded bridge within limits{moved}", new_conference=True)
    best = min(open_bridges, key=load)
    return Selection(
        best.id,
        f"fallback: every bridge is past the stress threshold or the join-rate limit{moved}",
        new_conference=True,
        fallback=True,
    )


def forget_ended(
    placements: Mapping[str, tuple[str, float]], report: BridgeReport, policy: SelectionPolicy
) -> dict[str, tuple[str, float]]:
    """Placements (conference -> (bridge, placed at)) after `report`: a conference of that bridge
    that the report no longer lists has ended, unless it was placed within the last report interval
    (its first participant may not have reached the bridge when the report was taken)."""
    return {
        conf: (bridge, at)
        for conf, (bridge, at) in placements.items()
        if bridge != report.id
        or conf in report.conferences
        or at > report.reported_at - policy.report_interval_s
    }


@dataclass
class AllocatorState:
    """What the service keeps between requests (the pure functions above decide on it)."""

    bridges: dict[str, BridgeReport] = field(default_factory=dict)
    placements: dict[str, tuple[str, float]] = field(default_factory=dict)
    joins: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    conferences_placed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    participants_placed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    fallbacks: int = 0
    refused: int = 0


class Allocator:
    def __init__(self, policy: SelectionPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self.state = AllocatorState()

    def report(self, report: BridgeReport) -> None:
        s = self.state
        s.bridges[report.id] = report
        s.placements = forget_ended(s.placements, report, self.policy)

    def leave(self, bridge_id: str) -> bool:
        """The bridge left (its process exits): it and its conferences are forgotten (a conference
        rejoined later is placed again)."""
        s = self.state
        s.placements = {c: (b, at) for c, (b, at) in s.placements.items() if b != bridge_id}
        return s.bridges.pop(bridge_id, None) is not None

    def allocate(self, conference: str) -> Selection:
        s, now = self.state, self.clock()
        keep = max(self.policy.minute_s, self.policy.rampup_s, self.policy.stale_after_s)
        for times in s.joins.values():
            while times and times[0] < now - keep:
                times.popleft()
        placements = {conf: bridge for conf, (bridge, _) in s.placements.items()}
        choice = select_bridge(conference, placements, s.bridges, s.joins, self.policy, now)
        if choice.bridge is None:
            s.refused += 1
            return choice
        if choice.new_conference:
            s.placements[conference] = (choice.bridge, now)
            s.conferences_placed[choice.bridge] += 1
        s.joins[choice.bridge].append(now)
        s.participants_placed[choice.bridge] += 1
        s.fallbacks += int(choice.fallback)
        return choice

    def bridge_states(self) -> dict[str, str]:
        now = self.clock()
        out = {}
        for b in self.state.bridges.values():
            if is_stale(b, self.policy, now):
                out[b.id] = "stale"
            elif b.graceful_shutdown:
                out[b.id] = "shutting_down"
            elif b.drain:
                out[b.id] = "draining"
            else:
                out[b.id] = "available"
        return out

    def metrics_text(self) -> str:
        s = self.state
        lines = [
            "# HELP swell_allocator_conferences_placed_total Conferences placed on a bridge (new ones).",
            "# TYPE swell_allocator_conferences_placed_total counter",
            *(
                f'swell_allocator_conferences_placed_total{{bridge="{b}"}} {n}'
                for b, n in sorted(s.conferences_placed.items())
            ),
            "# HELP swell_allocator_participants_placed_total Participants sent to a bridge.",
            "# TYPE swell_allocator_participants_placed_total counter",
            *(
                f'swell_allocator_participants_placed_total{{bridge="{b}"}} {n}'
                for b, n in sorted(s.participants_placed.items())
            ),
            "# HELP swell_allocator_fallbacks_total Conferences placed past a limit (none met them all).",
            "# TYPE swell_allocator_fallbacks_total counter",
            f"swell_allocator_fallbacks_total {s.fallbacks}",
            "# HELP swell_allocator_refused_total Participants refused: no bridge took new conferences.",
            "# TYPE swell_allocator_refused_total counter",
            f"swell_allocator_refused_total {s.refused}",
            "# TYPE swell_allocator_conferences gauge",
            f"swell_allocator_conferences {len(s.placements)}",
            "# TYPE swell_allocator_bridges gauge",
        ]
        states = list(self.bridge_states().values())
        lines += [
            f'swell_allocator_bridges{{state="{st}"}} {states.count(st)}'
            for st in ("available", "draining", "shutting_down", "stale")
        ]
        return "\n".join(lines) + "\n"

    # --- HTTP --------------------------------------------------------------------------------
    async def _json(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="expected a JSON body\n") from None

    async def post_bridge(self, request: web.Request) -> web.Response:
        try:
            report = BridgeReport.from_json(await self._json(request), self.clock())
        except ValueError as exc:
            return web.Response(status=400, text=f"bridge report: {exc}\n")
        self.report(report)
        return web.json_response({"id": report.id, "state": self.bridge_states()[report.id]})

    async def delete_bridge(self, request: web.Request) -> web.Response:
        bridge_id = request.match_info["bridge"]
        if not self.leave(bridge_id):
            return web.Response(status=404, text=f"no bridge {bridge_id!r} registered\n")
        return web.json_response({"id": bridge_id, "state": "gone"})

    async def get_bridges(self, request: web.Request) -> web.Response:
        states = self.bridge_states()
        placed: dict[str, list[str]] = defaultdict(list)
        for conf, (bridge, _) in self.state.placements.items():
            placed[bridge].append(conf)
        return web.json_response(
            {
                b.id: {
                    "url": b.url,
                    "state": states[b.id],
                    "participants": b.participants,
                    "stress": b.stress,
                    "conferences": sorted(placed.get(b.id, [])),
                    "conferences_placed": self.state.conferences_placed.get(b.id, 0),
                }
                for b in self.state.bridges.values()
            }
        )

    async def post_allocate(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        conference = body.get("conference") if isinstance(body, dict) else None
        if not isinstance(conference, str) or not 0 < len(conference) <= 64:
            return web.Response(status=400, text="conference: expected a name of 1 to 64 characters\n")
        choice = self.allocate(conference)
        if choice.bridge is None:
            return web.json_response({"conference": conference, "error": choice.reason}, status=503)
        return web.json_response(
            {
                "conference": conference,
                "bridge": choice.bridge,
                "url": self.state.bridges[choice.bridge].url,
                "fallback": choice.fallback,
                "reason": choice.reason,
            }
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics_text(), content_type="text/plain")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "bridges": self.bridge_states()})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bridges", self.post_bridge)
        app.router.add_get("/bridges", self.get_bridges)
        app.router.add_delete("/bridges/{bridge}", self.delete_bridge)
        app.router.add_post("/allocate", self.post_allocate)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        return app

    def summary(self) -> dict[str, Any]:
        """What it placed, for the drill's logs: per bridge (gone ones included) its conferences and
        participants placed; fallbacks and refusals."""
        s = self.state
        return {
            "conferences_placed": dict(s.conferences_placed),
            "participants_placed": dict(s.participants_placed),
            "fallbacks": s.fallbacks,
            "refused": s.refused,
            "bridges": self.bridge_states(),
        }


async def serve(allocator: Allocator, host: str, port: int, exit_report: str | None = None) -> None:
    runner = web.AppRunner(allocator.app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=512).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if exit_report:
        with open(exit_report, "w") as f:
            json.dump(allocator.summary(), f, indent=1)
    await runner.cleanup()


def command(
    port: int,
    speed: float = 1.0,
    report_interval_s: float = REPORT_INTERVAL_S,
    exit_report: Path | None = None,
) -> list[str]:
    """The allocator's command line (start it with `loadtests.processes`: it cannot outlive its
    parent)."""
    return [
        sys.executable, "-m", "loadtests.allocator",
        "--port", str(port),
        "--speed", repr(speed),
        "--report-interval", repr(report_interval_s),
        *(["--exit-report", str(exit_report)] if exit_report is not None else []),
    ]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> tuple[SelectionPolicy, str, int, str | None]:
    p = argparse.ArgumentParser(description="A stand-in for Jicofo's bridge selection (not Jicofo).")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--speed", type=float, default=1.0, help="time compression: a minute lasts 60/speed s")
    p.add_argument(
        "--report-interval", type=float, default=REPORT_INTERVAL_S, help="seconds between bridge reports"
    )
    p.add_argument("--exit-report", help="write what it placed to this file (JSON) when it stops")
    a = p.parse_args(argv)
    try:
        policy = SelectionPolicy().scaled(a.speed, a.report_interval)
    except ValueError as exc:
        p.error(str(exc))
    return policy, a.host, a.port, a.exit_report


def main(argv: list[str] | None = None) -> None:
    policy, host, port, exit_report = parse_args(argv)
    asyncio.run(serve(Allocator(policy), host, port, exit_report))


if __name__ == "__main__":
    main()
