"""The adapter around ansible-runner: run a playbook against an inventory, stream its events.

Only this module imports ansible_runner. ansible-runner starts ansible-playbook (found on PATH,
hence the Makefile's PATH export) in a private data directory and calls back on every event;
`swell configure` and the tests fold those events with `progress.RunTally`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

PLAYBOOKS_DIR = Path(__file__).resolve().parents[2] / "playbooks"
SITE_PLAYBOOK = PLAYBOOKS_DIR / "site.yml"

EventHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class PlaybookRun:
    """One run of a playbook: what, on which hosts, how."""

    inventory: dict[str, Any]
    playbook: Path = SITE_PLAYBOOK
    limit: str | None = None
    check: bool = False
    diff: bool = False
    extravars: dict[str, Any] = field(default_factory=dict)
    forks: int = 25
    # The whole run is bounded: a hung host must not hold a terminal (or CI) forever.
    timeout_s: int = 3600


@dataclass(frozen=True)
class RunOutcome:
    """How ansible-playbook ended: its exit code (124: timed out) and the end of its output,
    which explains failures that happen before any task (a syntax error, a bad inventory)."""

    rc: int
    output_tail: str = ""


class PlaybookRunner(Protocol):
    """Runs a playbook, calling `on_event` for each event."""

    def run(self, request: PlaybookRun, on_event: EventHandler) -> RunOutcome: ...


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _ansible_playbook_on_path() -> str:
    """ansible-runner looks ansible-playbook up on PATH; prefer the one beside this interpreter."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        path = bin_dir + os.pathsep + path
    if shutil.which("ansible-playbook", path=path) is None:
        raise FileNotFoundError(
            "ansible-playbook is not on PATH nor beside the Python running swell; run `make setup`"
        )
    return path


class AnsibleRunner:
    """PlaybookRunner backed by ansible-runner, in a throw-away private data directory."""

    def run(self, request: PlaybookRun, on_event: EventHandler) -> RunOutcome:
        import ansible_runner  # heavy: imported only when a run starts

        path = _ansible_playbook_on_path()
        cmdline = []
        if request.check:
            cmdline.append("--check")
        if request.diff:
            cmdline.append("--diff")
        with tempfile.TemporaryDirectory(prefix="swell-ansible-") as private_dir:

            def handler(event: dict[str, Any]) -> bool:
                on_event(event)
                return True  # keep the event in the artifacts as well

            result = ansible_runner.run(
                private_data_dir=private_dir,
                project_dir=str(request.playbook.parent),
                playbook=str(request.playbook),
                inventory=request.inventory,
                limit=request.limit,
                extravars=request.extravars or None,
                cmdline=" ".join(cmdline) or None,
                forks=request.forks,
                timeout=request.timeout_s,
                envvars={
                    "PATH": path,
                    "ANSIBLE_CONFIG": str(request.playbook.parent / "ansible.cfg"),
                    "ANSIBLE_NOCOLOR": "1",
                },
                event_handler=handler,
                quiet=True,
            )
            try:
                tail = _tail(result.stdout.read())
            except (OSError, AttributeError):
                tail = ""
            if result.status == "timeout":
                return RunOutcome(124, tail)
            return RunOutcome(int(result.rc if result.rc is not None else 1), tail)
