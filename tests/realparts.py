"""Start real parts (Prometheus, HAProxy from Debian's packages) as child processes on 127.0.0.1
for tests, each in a temporary directory, and stop them afterwards."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

Process = subprocess.Popen[bytes]

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="needs the Debian package prometheus"
)
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs the Debian package haproxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def instant_query(url: str, promql: str) -> list[dict[str, Any]]:
    body = http_get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    return list(json.loads(body)["data"]["result"])


@contextmanager
def running_prometheus(
    workdir: Path, config: dict[str, Any]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real Prometheus with `config`, listening on a free port; yields (url, process)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_get(f"{url}/-/ready"), "prometheus ready")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)
