"""Run one command so that neither it nor anything it starts outlives the process that asked for it,
even when that process is killed with SIGKILL (which runs no cleanup of its own).

`python -m autoscaler.adapters.procguard --parent PID [--grace S] -- COMMAND...`
`python -m autoscaler.adapters.procguard --parent PID --exec -- COMMAND...`

The guard is a small process between the autoscaler and the command (the Pulumi CLI, which itself
starts a language host and provider plugins):

- it asks Linux to send it SIGTERM when its parent dies (`prctl(PR_SET_PDEATHSIG)`), then checks
  that the parent is still `PID` (it may have died before the request);
- it starts the command in a process group of its own, with PR_SET_PDEATHSIG=SIGKILL (should the
  guard itself be killed), so one `killpg` reaches the command and whatever it started;
- on SIGTERM, SIGINT or SIGHUP (a cancel, a timeout, the parent's death) it sends SIGINT to that
  group (the Pulumi CLI then cancels gracefully and releases the stack's lock), waits `--grace`
  seconds, then SIGKILLs the group;
- when the command exits it SIGKILLs the group (a plugin left behind would keep the parent's pipes
  open), and exits with the command's code (128 + the signal when it was killed).

With `--exec` the guard stays in nobody's way: it asks for SIGKILL on its parent's death, checks the
parent, and replaces itself with the command (`execvp`; the request survives exec). For callers that
stop their children themselves and need only the SIGKILL guarantee, without one extra process per
child (the drill: HAProxy, Prometheus, Locust, every instance). `die_with_parent(command)` builds that
argv. It is the safe way to get PR_SET_PDEATHSIG from a process that runs threads: `preexec_fn`
runs Python between fork and exec, which may deadlock on a lock another thread held at the fork.

PR_SET_PDEATHSIG fires when the *thread* that started the guard exits, not only the process: the
caller must start it from a thread that waits for it (the Automation API's calls do) or that lives
as long as the child should (the drill starts every child from its main thread).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent (thread) dies. Linux only."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _child_setup() -> None:  # runs in the command's process, before exec (the guard has one thread)
    os.setpgid(0, 0)
    set_parent_death_signal(signal.SIGKILL)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def die_with_parent(command: Sequence[str], parent: int | None = None) -> list[str]:
    """`command` run through `--exec`: the same process, killed (SIGKILL) when the calling thread
    (the caller's process, `parent`, by default this one) dies."""
    pid = os.getpid() if parent is None else parent
    return [
        sys.executable,
        "-m",
        "autoscaler.adapters.procguard",
        "--parent",
        str(pid),
        "--exec",
        "--",
        *command,
    ]


def exec_dying_with_parent(command: list[str], parent: int) -> NoReturn:
    # SIGKILL, not SIGTERM: a child paused with SIGSTOP (the drill's Prometheus outage) would keep a
    # SIGTERM pending for ever.
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(128 + signal.SIGKILL)  # the parent died before the request: run nothing
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"procguard: cannot run {command[0]}: {exc}", file=sys.stderr)
        os._exit(127)


def run(command: list[str], parent: int, grace_s: float) -> int:
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:
        return 128 + signal.SIGTERM  # the parent died before the request above: run nothing
    stopping: list[int] = []
    handler: Callable[[int, object], None] = lambda signum, _frame: stopping.append(signum)  # noqa: E731
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)
    # preexec_fn is safe here: the guard runs one thread.
    proc = subprocess.Popen(command, preexec_fn=_child_setup)
    pgid = proc.pid
    interrupted_at: float | None = None
    while True:
        try:
            code = proc.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        if stopping and interrupted_at is None:
            _kill_group(pgid, signal.SIGINT)
            interrupted_at = time.monotonic()
        elif interrupted_at is not None and time.monotonic() - interrupted_at >= grace_s:
            _kill_group(pgid, signal.SIGKILL)
    _kill_group(pgid, signal.SIGKILL)
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--parent", type=int, required=True, help="pid of the process this command may not outlive"
    )
    p.add_argument("--grace", type=float, default=30.0, help="seconds between SIGINT and SIGKILL")
    p.add_argument(
        "--exec",
        action="store_true",
        dest="exec_",
        help="become the command (SIGKILL on the parent's death) instead of guarding it",
    )
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        p.error("give the command after --")
    if a.exec_:
        exec_dying_with_parent(command, a.parent)
    return run(command, a.parent, a.grace)


if __name__ == "__main__":
    sys.exit(main())
