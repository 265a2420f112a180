"""Folding ansible-runner events into per-host progress and failures, and the command's exits."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from swell.configure.command import ConfigureOptions, configure, parse_extra_vars
from swell.configure.progress import RunTally
from swell.configure.runner import EventHandler, PlaybookRun, RunOutcome

SAMPLE = Path(__file__).parent / "data" / "stack-outputs-prod-gra11.json"


def ev(kind: str, host: str | None = None, task: str = "", role: str = "", **data: Any) -> dict[str, Any]:
    event_data: dict[str, Any] = {"task": task, "role": role, **data}
    if host:
        event_data["host"] = host
    return {"event": kind, "event_data": event_data}


def ok(host: str, task: str, changed: bool = False) -> dict[str, Any]:
    return ev("runner_on_ok", host, task, "base", res={"changed": changed})


def stats(**counts: dict[str, int]) -> dict[str, Any]:
    return {"event": "playbook_on_stats", "event_data": dict(counts)}


CASES: list[tuple[Sequence[dict[str, Any]], dict[str, str], list[str], bool]] = [
    (
        [ok("a", "t1", changed=True), ok("a", "t2"), stats(ok={"a": 2}, changed={"a": 1})],
        {"a": "changed"},
        [],
        True,
    ),
    (
        [
            ok("a", "t1"),
            ev("runner_on_failed", "b", "Install nginx", "web", res={"msg": "No package matching 'nginx'"}),
            stats(ok={"a": 1}, failures={"b": 1}),
        ],
        {"a": "ok", "b": "failed"},
        ["b: failed at task 'web : Install nginx': No package matching 'nginx'"],
        False,
    ),
    (
        [ev("runner_on_failed", "a", "probe", "", ignore_errors=True, res={"msg": "x"}), stats(ok={"a": 1})],
        {"a": "ok"},
        [],
        True,
    ),
    (
        [
            ev("runner_on_unreachable", "c", "Gathering Facts", res={"msg": "ssh: connect timed out"}),
            stats(dark={"c": 1}),
        ],
        {"c": "unreachable"},
        ["c: unreachable at task 'Gathering Facts': ssh: connect timed out"],
        False,
    ),
    (
        [
            ev(
                "runner_on_failed",
                "a",
                "Check",
                "web",
                res={"msg": "non-zero return code", "stderr": "emerg"},
            ),
        ],
        {"a": "failed"},
        ["a: failed at task 'web : Check': non-zero return code | emerg"],
        False,
    ),
]


@pytest.mark.parametrize(
    ("events", "statuses", "failures", "succeeded"),
    CASES,
    ids=["converged", "task-failed", "ignored-error", "unreachable", "no-recap-yet"],
)
def test_events_fold_into_host_status_and_named_failures(
    events: Sequence[dict[str, Any]], statuses: dict[str, str], failures: list[str], succeeded: bool
) -> None:
    tally = RunTally()
    for event in events:
        tally.apply(event)
    assert {h: p.status for h, p in tally.hosts.items()} == statuses
    assert all(p.roles in ([], ["base"]) for p in tally.hosts.values())
    assert [f.describe() for f in tally.failures] == failures
    assert tally.succeeded is succeeded


def test_recap_replaces_running_counts_and_clears_current_task() -> None:
    tally = RunTally()
    tally.apply(ev("runner_on_start", "a", "Install nginx", "web"))
    assert tally.hosts["a"].current_task == "web : Install nginx"
    tally.apply(stats(ok={"a": 30}, changed={"a": 4}, skipped={"a": 2}))
    progress = tally.hosts["a"]
    assert (progress.ok, progress.changed, progress.skipped, progress.current_task) == (30, 4, 2, "")


def test_long_failure_messages_are_cut() -> None:
    tally = RunTally()
    tally.apply(ev("runner_on_failed", "a", "t", res={"msg": "x" * 5000}))
    assert len(tally.failures[0].message) == 400


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (("a=1", "b=[x, y]", "c=text"), {"a": 1, "b": ["x", "y"], "c": "text"}),
        (("video_jitsi_install=false",), {"video_jitsi_install": False}),
        (("empty=",), {"empty": ""}),
    ],
    ids=["yaml-values", "bool", "empty"],
)
def test_extra_vars_read_values_as_yaml(items: tuple[str, ...], expected: dict[str, Any]) -> None:
    assert parse_extra_vars(items) == expected


class ScriptedRunner:
    """A PlaybookRunner that replays events: the adapter boundary, faked."""

    def __init__(self, events: Sequence[dict[str, Any]], rc: int, tail: str = "") -> None:
        self.events = events
        self.outcome = RunOutcome(rc, tail)
        self.requests: list[PlaybookRun] = []

    def run(self, request: PlaybookRun, on_event: EventHandler) -> RunOutcome:
        self.requests.append(request)
        for event in self.events:
            on_event(event)
        return self.outcome


def run_command(runner: ScriptedRunner, **options: Any) -> tuple[int, str]:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    code = configure(
        ConfigureOptions(stack_outputs=SAMPLE, admin_cidrs=("203.0.113.0/24",), **options),
        console=console,
        err=console,
        runner=runner,
    )
    return code, out.getvalue()


def test_command_passes_limit_and_check_and_reports_every_host() -> None:
    hosts = ["swell-prod-gra11-chat-0"]
    runner = ScriptedRunner(
        [ok(hosts[0], "t", changed=True), stats(ok={hosts[0]: 5}, changed={hosts[0]: 1})], 0
    )
    code, output = run_command(runner, limit="chat", check=True)
    assert code == 0
    request = runner.requests[0]
    assert (request.limit, request.check) == ("chat", True)
    assert list(request.inventory["all"]["children"]) == ["chat"]
    assert "swell-prod-gra11-chat-0 │ chat │ changed" in output
    assert "converged: 1 host(s), 1 change(s)" in output


def test_command_exits_1_naming_host_and_task_on_failure() -> None:
    failing = ev(
        "runner_on_failed", "swell-prod-gra11-web-1", "Install nginx", "web", res={"msg": "apt lock"}
    )
    runner = ScriptedRunner([failing, stats(failures={"swell-prod-gra11-web-1": 1})], 2)
    code, output = run_command(runner)
    assert code == 1
    assert "FAILED swell-prod-gra11-web-1: failed at task 'web : Install nginx': apt lock" in output
    # Columns are as wide as their longest entry (the fixed groups' names, chat_store, are longer).
    assert re.search(r"swell-prod-gra11-video-0 +│ video +│ not run", output)


def test_command_shows_ansible_output_when_it_fails_before_any_task() -> None:
    runner = ScriptedRunner([], 4, tail="ERROR! YAML parsing failed in site.yml")
    code, output = run_command(runner)
    assert code == 1
    assert "ansible-playbook exited with 4 before any task failed" in output
    assert "YAML parsing failed in site.yml" in output
