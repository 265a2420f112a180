"""`procguard --exec`: the command runs as the very process started (no guard left in between), and
the kernel kills it when the process that started it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from autoscaler.adapters.procguard import die_with_parent
from tests.realparts import wait_until

# A parent that starts `sleep 600` through `procguard --exec`, prints its pid and waits.
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from autoscaler.adapters.procguard import die_with_parent
    child = subprocess.Popen(die_with_parent(["sleep", "600"]), start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(600)
    """
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_command_becomes_the_process_started() -> None:
    proc = subprocess.Popen(die_with_parent(["sleep", "600"]))
    try:
        wait_until(lambda: psutil.Process(proc.pid).cmdline()[:1] == ["sleep"], "sleep exec'd", 10)
        assert psutil.Process(proc.pid).children() == []
    finally:
        proc.kill()
        proc.wait()


def test_a_sigkilled_parent_takes_its_child_along() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        wait_until(lambda: psutil.Process(child).cmdline()[:1] == ["sleep"], "sleep exec'd", 10)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        started = time.monotonic()
        wait_until(lambda: gone(child), "the child killed with its parent", 5)
        assert time.monotonic() - started < 5
    finally:
        parent.kill()
        parent.wait()
        if child and not gone(child):
            os.kill(child, signal.SIGKILL)


def test_nothing_runs_when_the_parent_is_already_gone() -> None:
    # --parent names a process that is not the guard's parent (it died before the request).
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autoscaler.adapters.procguard",
            "--parent",
            "1",
            "--exec",
            "--",
            "echo",
            "ran",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout == ""
    assert done.returncode == 128 + signal.SIGKILL
