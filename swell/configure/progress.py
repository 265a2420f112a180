"""Per-host progress of a playbook run, folded from ansible-runner events (pure, no I/O).

ansible-runner reports each step as an event dict (`event` plus `event_data`). `RunTally.apply`
folds them into what an operator watches: per host, the task it is on, how many tasks were ok,
changed, skipped, and which task failed with what message. The final `playbook_on_stats` event
carries Ansible's own recap, which replaces the running counts so the summary matches
ansible-playbook's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE = 400


@dataclass(frozen=True)
class Failure:
    """A task that failed on a host (or a host that could not be reached)."""

    host: str
    task: str
    role: str
    message: str
    unreachable: bool = False

    def describe(self) -> str:
        where = f"{self.role} : {self.task}" if self.role else self.task
        what = "unreachable" if self.unreachable else "failed"
        return f"{self.host}: {what} at task '{where}': {self.message}"


@dataclass
class HostProgress:
    """What one host has done so far."""

    ok: int = 0
    changed: int = 0
    skipped: int = 0
    failed: int = 0
    unreachable: int = 0
    current_task: str = ""
    changed_tasks: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"


def _failure_message(res: dict[str, Any]) -> str:
    parts = [str(res.get("msg") or "").strip()]
    for key in ("stderr", "stdout"):
        text = str(res.get(key) or "").strip()
        if text and text not in parts[0]:
            parts.append(text)
    message = " | ".join(p for p in parts if p) or "no message"
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


@dataclass
class RunTally:
    """Folds the events of one run; `hosts` keeps the order in which hosts first appeared."""

    hosts: dict[str, HostProgress] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    play: str = ""
    tasks_started: int = 0
    finished: bool = False

    def host(self, name: str) -> HostProgress:
        return self.hosts.setdefault(name, HostProgress())

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one ansible-runner event in; unknown events are ignored."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        task = str(data.get("task") or "")
        role = str(data.get("role") or "")
        res = data.get("res") or {}
        if kind == "playbook_on_play_start":
            self.play = str(data.get("play") or "")
        elif kind == "playbook_on_task_start":
            self.tasks_started += 1
        elif kind == "runner_on_start" and host:
            self.host(host).current_task = f"{role} : {task}" if role else task
        elif kind == "runner_on_ok" and host:
            progress = self.host(host)
            progress.ok += 1
            if role and role not in progress.roles:
                progress.roles.append(role)
            if res.get("changed"):
                progress.changed += 1
                progress.changed_tasks.append(f"{role} : {task}" if role else task)
        elif kind == "runner_on_skipped" and host:
            self.host(host).skipped += 1
        elif kind == "runner_on_failed" and host:
            if data.get("ignore_errors"):
                self.host(host).ok += 1
                return
            self.host(host).failed += 1
            self.failures.append(Failure(host, task, role, _failure_message(res)))
        elif kind == "runner_on_unreachable" and host:
            self.host(host).unreachable += 1
            self.failures.append(Failure(host, task, role, _failure_message(res), unreachable=True))
        elif kind == "playbook_on_stats":
            self._apply_recap(data)

    def _apply_recap(self, data: dict[str, Any]) -> None:
        recap = {
            "ok": data.get("ok") or {},
            "changed": data.get("changed") or {},
            "skipped": data.get("skipped") or {},
            "failed": data.get("failures") or {},
            "unreachable": data.get("dark") or {},
        }
        names = {name for counts in recap.values() for name in counts}
        for name in sorted(names, key=lambda n: (n not in self.hosts, n)):
            progress = self.host(name)
            for attr, counts in recap.items():
                setattr(progress, attr, int(counts.get(name, 0)))
            progress.current_task = ""
        self.finished = True

    @property
    def succeeded(self) -> bool:
        return (
            self.finished
            and not self.failures
            and all(not (p.failed or p.unreachable) for p in self.hosts.values())
        )

    def changed_total(self) -> int:
        return sum(p.changed for p in self.hosts.values())
