"""The drill report counts the chat messages Locust's users received, lost and got late (from the
request log's `M` lines), and a single lost or late message after the warm-up breaks the verdict."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loadtests.options import DrillOptions
from loadtests.record import DrillRecord, Timeline
from loadtests.report import build_report, write_markdown
from loadtests.requestlog import Request, RequestLog
from swell import tiers

T0 = 1_000_000.0  # load start (Unix s); the warm-up is 15 s


def _report(tmp_path: Path, chat_lines: list[str]) -> dict[str, object]:
    log = tmp_path / "requests.csv"
    # Every tier served within its SLO: the verdict turns on the chat messages alone.
    requests = [
        f"R,{T0 + 20 + i / 10:.3f},{tier},{tier} x,20.0,1" for tier in tiers.names() for i in range(50)
    ]
    log.write_text("\n".join([*requests, *chat_lines]) + "\n")
    parsed = RequestLog(log)
    parsed.poll()
    times = os.times()
    record = DrillRecord(
        options=DrillOptions(out=tmp_path),
        timeline=Timeline(),
        requests=parsed.requests,
        users=parsed.users,
        decisions=[],
        faults=[],
        instance_events=[],
        dropped_sessions={},
        started_at=T0 - 5,
        load_started_at=T0,
        finished_at=T0 + 60,
        cpu_at_start=times,
        cpu_at_end=times,
        chat_messages=parsed.chat,
    )
    return build_report(record)


def _m(t: float, delivered: int = 1, lost: int = 0, late: int = 0) -> str:
    return f"M,{T0 + t:.3f},chat,{delivered},{lost},{late}"


@pytest.mark.parametrize(
    ("lines", "counts", "held"),
    [
        ([_m(20), _m(21), _m(22)], (3, 0, 0), True),
        ([_m(20), _m(21, lost=2), _m(22)], (3, 2, 0), False),  # seq 1, then 4: two lost
        ([_m(20), _m(21, late=1)], (2, 0, 1), False),
        ([_m(5, lost=3, late=1), _m(20)], (1, 0, 0), True),  # during the warm-up: not counted
    ],
    ids=["all-delivered", "a-gap-is-lost", "late", "warm-up-ignored"],
)
def test_the_report_counts_chat_messages_and_the_verdict_needs_none_lost_or_late(
    tmp_path: Path, lines: list[str], counts: tuple[int, int, int], held: bool
) -> None:
    report = _report(tmp_path, lines)
    slo = report["slo"]
    assert isinstance(slo, dict)
    assert (
        slo["chat_messages"]["delivered"],
        slo["chat_messages"]["lost"],
        slo["chat_messages"]["late"],
    ) == counts
    assert slo["held"] is held
    tiers = report["tiers"]
    assert isinstance(tiers, dict)
    assert tiers["chat"]["chat_messages"]["lost"] == counts[1]
    summary = write_markdown(report, tmp_path / "report.md").read_text()
    assert f"Chat messages: {counts[0]} delivered, {counts[1]} lost, {counts[2]} late (> 2 s)" in summary


def test_a_torn_chat_line_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "requests.csv"
    log.write_text("M,1.0,chat,1,0,0\nM,2.0,chat,1,x,0\nR,3.0,web,web page,5.0,1\n")
    parsed = RequestLog(log)
    parsed.poll()
    assert [m.t for m in parsed.chat] == [1.0]
    assert parsed.requests == [Request(3.0, "web", 5.0, True)]
