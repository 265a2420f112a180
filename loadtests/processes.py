"""The drill's child processes (HAProxy, Prometheus, Locust, every tier instance): how they start, and
how they all stop, whatever happens to the drill.

- Each child runs in a process group of its own, so a Ctrl-C at the terminal reaches only the drill,
  which then stops them in order (a child that got the Ctrl-C too would die mid-report or hold the
  port the next step waits for).
- Each child is started through `procguard --exec` (`autoscaler.adapters.procguard.die_with_parent`):
  the kernel SIGKILLs it when the drill dies, SIGKILL of the drill included, which runs no cleanup.
  PR_SET_PDEATHSIG follows the *thread* that forked: the drill starts its children from its main
  thread, which lives as long as the drill.
- `Children.stop_all` stops them together: SIGTERM to every group at once, one shared grace, then
  SIGKILL. Stopped one after the other with a grace each, 15 instances, Prometheus and Locust on a
  busy machine took longer than a user waits after Ctrl-C (issue 12).
- `interrupt_on_sigterm` makes SIGTERM take Ctrl-C's path; `signals_held` keeps a second Ctrl-C from
  cutting that path short while it stops everything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from autoscaler.adapters.procguard import die_with_parent

# SIGTERM to SIGKILL when the drill stops: HAProxy, Prometheus and an instance stop well within it
# on a busy machine; whatever does not is killed, so a Ctrl-C ends within ~10 s.
STOP_GRACE_S = 3.0


def start_process(
    cmd: Sequence[str], log: Path | None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`cmd` in its own process group, killed with the calling thread's process (see the module
    docstring); output to `log` (nothing when None)."""
    with open(log if log is not None else os.devnull, "wb") as out:
        return subprocess.Popen(
            die_with_parent(cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def stop_all(procs: Sequence[subprocess.Popen[bytes] | None], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every group at once, SIGKILL those still running after `grace_s`, reap them all.
    Never raises; takes at most about `grace_s` + 2 s, however many processes."""
    live = [p for p in procs if p is not None and p.poll() is None]
    for proc in live:
        _signal_group(proc, signal.SIGCONT)  # a paused Prometheus (fault) must hear the TERM
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in live:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in live:
        _signal_group(proc, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    for proc in live:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float = STOP_GRACE_S) -> None:
    """One process group: SIGTERM, SIGKILL after `grace_s`; safe to call twice."""
    stop_all([proc], grace_s)


class Children:
    """Every process the drill started, its instances included, so that one call stops them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, cmd: Sequence[str], log: Path | None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = start_process(cmd, log, env)
        with self._lock:
            # Forget the reaped ones: a daily drill starts and stops dozens of instances.
            self._procs = [p for p in self._procs if p.returncode is None]
            self._procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._procs if p.poll() is None]

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        with self._lock:
            procs = list(self._procs)
        stop_all(procs, grace_s)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM stops the drill like Ctrl-C: through the same cleanup."""
    if not _on_main_thread():  # signal handlers can only be set there
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """While stopping: a second Ctrl-C (or SIGTERM) is ignored rather than raised in the middle of
    the cleanup, which would leave the rest of the children to PR_SET_PDEATHSIG alone. The cleanup
    is bounded (`stop_all`), so nobody waits long for it."""
    if not _on_main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
