"""The video tier's allocation (loadtests/allocator.py, a stand-in for Jicofo's bridge selection):
`select_bridge` as a table (placed conferences stay, limits, fallback, refusal), then real
processes on 127.0.0.1: a new bridge registers and receives conferences; after its graceful
shutdown (the JVB's REST API) it receives none, and it exits once its conferences have ended. The
drill report says how the allocator spread conferences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import websocket

from loadtests.allocator import (
    Allocator,
    BridgeReport,
    SelectionPolicy,
    command,
    forget_ended,
    parse_args,
    select_bridge,
)
from loadtests.options import DrillOptions
from loadtests.processes import start_process, stop_all
from loadtests.record import DrillRecord, Timeline
from loadtests.report import build_report, write_markdown
from tests.realparts import free_port, http_get, wait_until

NOW = 1000.0
POLICY = SelectionPolicy()  # Jicofo's defaults: threshold 0.8, 30 joins a minute, reports every 5 s


def bridge(bridge_id: str, **kw: Any) -> BridgeReport:
    return BridgeReport(
        id=bridge_id, url=f"ws://{bridge_id}", reported_at=kw.pop("reported_at", NOW - 1), **kw
    )


def bridges(*reports: BridgeReport) -> dict[str, BridgeReport]:
    return {b.id: b for b in reports}


A, B = bridge("a", stress=0.3, participants=30), bridge("b", stress=0.5, participants=50)
CASES: list[tuple[str, dict[str, BridgeReport], Mapping[str, str], Mapping[str, Sequence[float]], Any]] = [
    ("no bridge: refused", {}, {}, {}, (None, False, False)),
    ("new conference: the least loaded", bridges(A, B), {}, {}, ("a", True, False)),
    ("a placed conference stays, on the busier bridge", bridges(A, B), {"c": "b"}, {}, ("b", False, False)),
    (
        "a placed conference stays on a bridge in graceful shutdown",
        bridges(A, bridge("b", graceful_shutdown=True)),
        {"c": "b"},
        {},
        ("b", False, False),
    ),
    ("a conference whose bridge left moves", bridges(A), {"c": "b"}, {}, ("a", True, False)),
    (
        "a conference whose bridge went silent moves (stale: 3 intervals)",
        bridges(A, bridge("b", reported_at=NOW - 16)),
        {"c": "b"},
        {},
        ("a", True, False),
    ),
    (
        "graceful shutdown takes no new conference",
        bridges(bridge("a", graceful_shutdown=True), B),
        {},
        {},
        ("b", True, False),
    ),
    ("drain mode takes no new conference", bridges(bridge("a", drain=True), B), {}, {}, ("b", True, False)),
    ("a stale bridge takes none", bridges(bridge("a", reported_at=NOW - 16), B), {}, {}, ("b", True, False)),
    (
        "past the stress threshold: the other one",
        bridges(bridge("a", stress=0.85), bridge("b", stress=0.9, graceful_shutdown=True), B),
        {},
        {},
        ("b", True, False),
    ),
    (
        "30 joins in the last minute: the join-rate limit sends it elsewhere",
        bridges(A, B),
        {},
        {"a": [NOW - 50 + i for i in range(30)]},
        ("b", True, False),
    ),
    (
        "joins older than a minute do not count",
        bridges(A, B),
        {},
        {"a": [NOW - 61 - i for i in range(30)]},
        ("a", True, False),
    ),
    (
        "joins since the last report add their stress (Jicofo's ramp-up correction)",
        bridges(bridge("a", stress=0.1, average_participant_stress=0.05), bridge("b", stress=0.3)),
        {},
        {"a": [NOW - 2, NOW - 1.5, NOW - 1.2, NOW - 1.1, NOW - 0.5]},  # 0.1 + 5 x 0.05 = 0.35
        ("b", True, False),
    ),
    (
        "every bridge past a limit: the least loaded anyway, counted as a fallback",
        bridges(bridge("a", stress=0.95), bridge("b", stress=0.9)),
        {},
        {},
        ("b", True, True),
    ),
    (
        "only bridges shutting down or draining: refused",
        bridges(bridge("a", graceful_shutdown=True), bridge("b", drain=True)),
        {},
        {},
        (None, False, False),
    ),
    (
        "equal stress: fewer participants, then the id",
        bridges(bridge("b", stress=0.2, participants=3), bridge("a", stress=0.2, participants=3)),
        {},
        {},
        ("a", True, False),
    ),
]


@pytest.mark.parametrize(
    ("reports", "placements", "joins", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_select_bridge(
    reports: dict[str, BridgeReport],
    placements: Mapping[str, str],
    joins: Mapping[str, Sequence[float]],
    expected: tuple[str | None, bool, bool],
) -> None:
    choice = select_bridge("c", placements, reports, joins, POLICY, NOW)
    assert (choice.bridge, choice.new_conference, choice.fallback) == expected
    assert choice.reason


def test_ended_conferences_are_forgotten_from_their_bridges_report() -> None:
    placements = {
        "old": ("a", NOW - 30),
        "listed": ("a", NOW - 30),
        "new": ("a", NOW - 1),
        "other": ("b", 0.0),
    }
    report = bridge("a", reported_at=NOW, conferences=frozenset({"listed"}))
    assert sorted(forget_ended(placements, report, POLICY)) == ["listed", "new", "other"]


def test_the_allocator_counts_placements_and_fallbacks() -> None:
    clock = [NOW]
    allocator = Allocator(POLICY, clock=lambda: clock[0])
    allocator.report(bridge("a", reported_at=NOW, stress=0.9))
    assert allocator.allocate("c1").fallback
    assert allocator.allocate("c1").bridge == "a"  # the same conference: no new placement
    assert allocator.allocate("c2").bridge == "a"
    text = allocator.metrics_text()
    assert 'swell_allocator_conferences_placed_total{bridge="a"} 2' in text
    assert 'swell_allocator_participants_placed_total{bridge="a"} 3' in text
    assert "swell_allocator_fallbacks_total 2" in text
    assert allocator.leave("a") and allocator.allocate("c3").bridge is None
    assert "swell_allocator_refused_total 1" in allocator.metrics_text()
    assert "swell_allocator_conferences 0" in allocator.metrics_text(), "its conferences are forgotten"
    assert not allocator.leave("a"), "a bridge leaves once"


@pytest.mark.parametrize(
    "report",
    [
        {"url": "ws://x"},
        {"id": "a", "url": "http://x"},
        {"id": "a", "url": "ws://x", "conferences": "c1"},
        {"id": "a", "url": "ws://x", "stress": "high"},
        {"id": "a", "url": "ws://x", "participants": -1},
        [],
    ],
    ids=[
        "no id",
        "not a ws url",
        "conferences not a list",
        "stress not a number",
        "negative",
        "not an object",
    ],
)
def test_bad_bridge_reports_are_refused_with_the_field_named(report: Any) -> None:
    with pytest.raises(ValueError, match=r"id|url|conferences|participants|stress|object"):
        BridgeReport.from_json(report, NOW)


@pytest.mark.parametrize(
    "argv", [["--port", "1", "--speed", "0"], ["--port", "1", "--report-interval", "-1"]]
)
def test_bad_allocator_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


# --- real processes ----------------------------------------------------------------------------
INTERVAL = 0.2  # bridges report 5x a second: the test waits on reports, never on a fixed sleep


def post(url: str, body: object) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def parts() -> Iterator[Callable[..., tuple[int, subprocess.Popen[bytes]]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(cmd: list[str], port: int) -> tuple[int, subprocess.Popen[bytes]]:
        proc = start_process(cmd, None)  # killed with this process, whatever happens
        procs.append(proc)
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz"), " ".join(cmd[2:4]), 15)
        return port, proc

    yield start
    stop_all(procs)


@pytest.mark.slow
def test_a_new_bridge_receives_conferences_and_none_after_its_graceful_shutdown(
    parts: Callable[..., tuple[int, subprocess.Popen[bytes]]],
) -> None:
    alloc_port = free_port()
    parts(command(alloc_port, speed=1.0, report_interval_s=INTERVAL), alloc_port)
    allocator = f"http://127.0.0.1:{alloc_port}"

    def start_bridge() -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        _, proc = parts(
            [
                sys.executable,
                "-m",
                "loadtests.tier_service",
                "--tier",
                "video",
                "--port",
                str(port),
                "--capacity",
                "8",
                "--allocator",
                allocator,
                "--report-interval",
                str(INTERVAL),
            ],
            port,
        )
        return f"127.0.0.1:{port}", proc

    def registered() -> dict[str, Any]:
        return dict(json.loads(http_get(f"{allocator}/bridges")))

    def join(conference: str) -> tuple[str, websocket.WebSocket]:
        status, answer = post(f"{allocator}/allocate", {"conference": conference})
        assert status == 200, answer
        ws = websocket.create_connection(f"{answer['url']}/colibri-ws?room={conference}", timeout=5)
        return answer["bridge"], ws

    old, _ = start_bridge()
    on_old = [join(f"busy-{i}")[1] for i in range(3)]
    wait_until(lambda: registered()[old]["participants"] == 3, "the first bridge's report", 10)

    new, new_proc = start_bridge()  # a scale-up
    assert new in registered(), "a bridge registers as soon as it starts"
    placed_new = [join(f"conf-{i}") for i in range(2)]
    assert [b for b, _ in placed_new] == [new, new], "the new, least loaded bridge receives conferences"
    again, ws = join("conf-0")
    assert again == new, "a conference stays on its bridge"
    ws.close()
    wait_until(lambda: registered()[new]["participants"] == 2, "the new bridge's report", 10)

    status, state = post(f"http://{new}/colibri/shutdown", {"graceful-shutdown": "true"})
    assert status == 200 and state["graceful_shutdown"] is True
    health = json.loads(http_get(f"http://{new}/healthz"))
    assert health["graceful_shutdown"] is True
    wait_until(lambda: registered()[new]["state"] == "shutting_down", "the allocator to see it", 10)
    after = [join(f"later-{i}") for i in range(4)]
    assert {b for b, _ in after} == {old}, "no new conference for a bridge in graceful shutdown"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://{new}/colibri-ws?room=sneaky", timeout=5)
    assert refused.value.status_code == 503
    bridge_id, ws = join("conf-1")
    assert bridge_id == new, "its conferences go on, a late participant included"
    ws.send("hb")
    assert ws.recv() == "hb"
    ws.close()

    for _, sock in placed_new[:-1]:
        sock.close()
    time.sleep(3 * INTERVAL)
    assert new_proc.poll() is None, "still running while a conference is open"
    placed_new[-1][1].close()  # the last conference ends
    new_proc.wait(timeout=10)
    assert new_proc.returncode == 0
    wait_until(lambda: new not in registered(), "the bridge to leave the allocator", 5)
    assert join("conf-1")[0] == old, "its conferences, if rejoined, go to a bridge still there"
    metrics = http_get(f"{allocator}/metrics").decode()
    assert f'swell_allocator_conferences_placed_total{{bridge="{new}"}} 2' in metrics
    for sock in on_old:
        sock.close()


@pytest.mark.slow
def test_a_bridge_without_conferences_exits_at_once_on_graceful_shutdown(
    parts: Callable[..., tuple[int, subprocess.Popen[bytes]]],
) -> None:
    port = free_port()
    _, proc = parts(
        [sys.executable, "-m", "loadtests.tier_service", "--tier", "video", "--port", str(port)], port
    )
    assert b"jitsi_jvb_total_participants 0" in http_get(f"http://127.0.0.1:{port}/metrics")
    assert post(f"http://127.0.0.1:{port}/colibri/shutdown", {"graceful-shutdown": "false"})[0] == 400
    assert post(f"http://127.0.0.1:{port}/colibri/shutdown", {"graceful-shutdown": "true"})[0] == 200
    proc.wait(timeout=10)
    assert proc.returncode == 0


def test_the_drill_report_says_how_the_allocator_spread_conferences(tmp_path: Path) -> None:
    times = os.times()
    record = DrillRecord(
        options=DrillOptions(out=tmp_path),
        timeline=Timeline(),
        requests=[],
        users=[],
        decisions=[],
        faults=[],
        instance_events=[],
        dropped_sessions={},
        started_at=NOW - 5,
        load_started_at=NOW,
        finished_at=NOW + 60,
        cpu_at_start=times,
        cpu_at_end=times,
        allocation={
            "conferences_placed": {"b1": 2, "b0": 5},
            "participants_placed": {"b0": 12, "b1": 4},
            "fallbacks": 1,
            "refused": 0,
        },
    )
    report = build_report(record)
    assert report["tiers"]["video"]["allocation"] == {
        "bridges_used": 2,
        "conferences": 7,
        "conferences_per_bridge": [5, 2],
        "participants": 16,
        "fallbacks": 1,
        "refused": 0,
    }
    assert "allocation" not in report["tiers"]["web"]
    text = write_markdown(report, tmp_path / "report.md").read_text()
    assert (
        "16 participants in 7 conferences over 2 bridges (conferences per bridge 5, 2); 1 fallbacks" in text
    )
