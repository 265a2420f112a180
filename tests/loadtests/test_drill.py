"""The drill end to end, heavily compressed, through the `swell drill` command in its own process:
it scales web up, writes a sane report, and leaves no process or port behind: after a run, within
10 s of a Ctrl-C on a busy machine, and when the drill itself is killed with SIGKILL. Bad options
exit 2 naming the option."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from autoscaler.adapters.procguard import die_with_parent
from loadtests.faults import INJECTED_ACTUATION_ERROR
from tests.realparts import wait_until

SWELL = str(Path(sys.executable).with_name("swell"))
needs_parts = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("haproxy")),
    reason="needs the Debian packages prometheus and haproxy",
)


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def assert_nothing_left(out: Path) -> None:
    parts = json.loads((out / "parts.json").read_text())
    for name, pid in parts["pids"].items():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name
    ports = list(parts["ports"].values())
    ports += [int(p.stem.rsplit("-", 1)[1]) for p in Path(parts["instance_logs"]).glob("*.log")]
    assert len(ports) > 5
    # A killed multi-threaded process (Prometheus, in Go) shows as a zombie once its main thread has
    # exited; its sockets close when its last thread has: on a loaded machine, a moment later.
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not [p for p in ports if listening(p)], "the ports to close", 5)
    assert [p for p in ports if listening(p)] == []
    leftover = [
        p for p in psutil.process_iter(["cmdline"]) if "loadtests.tier_service" in (p.info["cmdline"] or [])
    ]
    ports_alive = {str(p) for p in ports}
    assert not [p for p in leftover if set(p.info["cmdline"]) & ports_alive]


@needs_parts
@pytest.mark.slow
def test_a_compressed_surge_scales_web_up_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "drill"
    started = time.monotonic()
    done = subprocess.run(
        [SWELL, "drill", "--profile", "surge400", "--speed", "90", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=150,
    )
    took = time.monotonic() - started
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["profile"] == "surge400"
    assert 0 < report["duration_s"] <= took
    web = report["tiers"]["web"]
    assert web["start_instances"] == 2
    assert web["peak_instances"] >= 4, web  # x5 demand: at least doubled, in 50 s of load
    assert set(report["tiers"]) == {"web", "chat", "video"}
    slo = report["slo"]
    tiers_ok = all(t["p95_ms"] <= 500 and t["error_rate"] <= 0.01 for t in report["tiers"].values())
    chat = slo["chat_messages"]  # messages of rooms shared across chat instances, through Redis
    assert chat["delivered"] > 100
    chat_ok = chat["lost"] == 0 and chat["late"] == 0
    assert slo["held"] == (slo["p95_ms"] <= 500 and slo["error_rate"] <= 0.01 and tiers_ok and chat_ok)
    assert slo["tiers_broken"] == [n for n, t in report["tiers"].items() if not t["slo_held"]]
    assert done.returncode == (0 if slo["held"] else 1)
    assert slo["requests"] > 500
    # Sessions cut by scale-down, per tier next to the SLO (the local actuator drains first).
    assert all(isinstance(t["dropped_sessions"], int) for t in report["tiers"].values())
    assert slo["dropped_sessions"] == sum(t["dropped_sessions"] for t in report["tiers"].values()) == 0
    assert any(d["tier"] == "web" and d["direction"] == "up" and d["acted"] for d in report["decisions"])
    tl = report["timeline"]
    assert len(tl["t"]) == len(tl["tiers"]["web"]["ready"]) == len(tl["cpu_busy_pct"]) > 30
    assert max(v for v in tl["tiers"]["web"]["demand"] if v is not None) > 20  # requests/s seen by the rules
    assert {"theta_u", "theta_o", "tau_u"} <= set(web["elasticity"])
    assert json.loads((out / "report.json").read_text())["slo"] == slo
    assert "SLO" in (out / "report.md").read_text()
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert_nothing_left(out)


@needs_parts
@pytest.mark.slow
def test_faults_the_loop_holds_replaces_and_retries(tmp_path: Path) -> None:
    out = tmp_path / "drill"
    faults = ["prometheus-outage@12:6", "kill-instance@22", "actuator-error@27:6"]
    done = subprocess.run(
        [SWELL, "drill", "--speed", "90", "--out", str(out), "--json"]
        + [arg for f in faults for arg in ("--fault", f)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    outage, kill, error = json.loads(done.stdout)["faults"]
    assert outage["kind"] == "prometheus-outage" and outage["decisions"] >= 3
    assert outage["held"] == outage["decisions"]  # every tier, every pass: hold
    assert outage["scale_downs"] == 0
    assert kill["kind"] == "kill-instance" and kill["seen_dead_s"] is not None
    assert kill["seen_dead_s"] - kill["at_s"] < 3
    assert kill["replaced"] and kill["started_after"] >= 1
    assert kill["replaced_at_s"] - kill["seen_dead_s"] < 6  # within a few passes (2 s each)
    assert error["kind"] == "actuator-error"
    decisions = json.loads(done.stdout)["decisions"]
    failed = {d["tier"] for d in decisions if INJECTED_ACTUATION_ERROR in (d["error"] or "")}
    assert error["errors"] > 0 and failed
    assert set(error["retried"]) == failed  # every tier whose scaling failed got it applied later
    assert "held during the outage" in (out / "report.md").read_text()
    assert_nothing_left(out)


@needs_parts
@pytest.mark.slow
def test_without_the_autoscaler_the_same_surge_breaks_the_slo(tmp_path: Path) -> None:
    out = tmp_path / "drill"
    done = subprocess.run(
        [SWELL, "drill", "--speed", "90", "--no-autoscale", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["autoscale"] is False and report["decisions"] == []
    assert report["tiers"]["web"]["peak_instances"] == 2
    assert not report["slo"]["held"]
    assert report["slo"]["error_rate"] > 0.05  # x5 load on the minimum: refused, not just slow
    assert "BROKEN" in (out / "report.md").read_text()
    assert_nothing_left(out)


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has exited: it only waits for its new parent to reap it)."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@contextlib.contextmanager
def busy_machine(cores: int = 2) -> Iterator[None]:
    """Busy loops on every core while the drill stops: the failure seen was on a loaded machine.
    Each dies with this test's process should the test itself be killed."""
    hogs = [
        subprocess.Popen(die_with_parent([sys.executable, "-c", "while True: pass"])) for _ in range(cores)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@contextlib.contextmanager
def running_drill(out: Path) -> Iterator[tuple[subprocess.Popen[bytes], list[psutil.Process]]]:
    """A real drill, once the load rises and the loop scales (the drill's busiest time), with the
    processes it started by then. Whatever happens, nothing is left running afterwards."""
    proc = subprocess.Popen(
        die_with_parent([SWELL, "drill", "--speed", "90", "--out", str(out)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    children: list[psutil.Process] = []
    try:
        wait_until(
            lambda: "prometheus" in json.loads((out / "parts.json").read_text())["pids"], "Prometheus", 90
        )
        time.sleep(8)  # the loop runs and the rise has begun (load seconds 7-33 at speed 90)
        children = psutil.Process(proc.pid).children(recursive=True)
        pids = json.loads((out / "parts.json").read_text())["pids"]
        assert "allocator" in pids, "the video allocator runs"
        assert set(pids.values()) <= {c.pid for c in children}, (
            "HAProxy, Prometheus, Locust and the allocator are children"
        )
        assert len(children) >= 3 + 4, "and at least the minimum instances (web 2, chat 1, video 1)"
        yield proc, children
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for p in alive(children):
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        with contextlib.suppress(OSError, ValueError, KeyError):
            shutil.rmtree(json.loads((out / "parts.json").read_text())["work"], ignore_errors=True)


@needs_parts
@pytest.mark.slow
def test_ctrl_c_stops_everything_within_10_s_on_a_busy_machine(tmp_path: Path) -> None:
    out = tmp_path / "drill"
    with running_drill(out) as (proc, children), busy_machine():
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
        exited = time.monotonic() - started
        wait_until(lambda: not alive(children), "every child stopped", max(0.1, 10 - exited))
        took = time.monotonic() - started
    assert code == 130
    assert took <= 10
    print(
        f"Ctrl-C: the drill exited after {exited:.1f} s, its {len(children)} children gone after {took:.1f} s"
    )
    assert_nothing_left(out)


@needs_parts
@pytest.mark.slow
def test_a_sigkilled_drill_leaves_no_child_behind(tmp_path: Path) -> None:
    out = tmp_path / "drill"
    with running_drill(out) as (proc, children):
        proc.kill()  # no cleanup of its own runs: the kernel's PR_SET_PDEATHSIG must do it
        proc.wait()
        started = time.monotonic()
        wait_until(lambda: not alive(children), "every child killed with the drill", 10)
        took = time.monotonic() - started
    print(f"SIGKILL: the drill's {len(children)} children gone after {took:.1f} s")
    assert_nothing_left(out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "meteor@10"], "--fault"),
        (["--fault", "prometheus-outage@10"], "needs a duration"),
        (["--profile", "weekly"], "--profile"),
        (["--speed", "0"], "--speed"),
    ],
    ids=["unknown-fault", "outage-without-duration", "unknown-profile", "zero-speed"],
)
def test_bad_options_exit_2_naming_them(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [SWELL, "drill", "--out", str(tmp_path / "d"), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "d").exists()  # nothing started, nothing written


@needs_parts
@pytest.mark.slow
def test_a_compressed_spike_is_met_from_the_warm_pool(tmp_path: Path) -> None:
    """The warm pool end to end (issue 15): the first pass fills a pool (swell remembering the
    spike's rise), the rise unshelves warm instances, which serve after the warm delay where a new
    one takes the cold delay, and the report records the pool."""
    out = tmp_path / "drill"
    done = subprocess.run(
        [SWELL, "drill", "--profile", "spike", "--speed", "30", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["warm_pool"] is True and report["memory"] is True
    web = report["tiers"]["web"]
    assert web["warm_delay_s"] < web["cold_delay_s"]
    assert web["peak_warm"] >= 2, web  # x4 remembered: more than the x1.25 minimum's one instance
    assert max(report["timeline"]["tiers"]["web"]["warm"]) == web["peak_warm"]
    events = [e for e in report["instance_events"] if e["tier"] == "web"]
    unshelved = [e for e in events if e["event"] == "unshelved"]
    assert unshelved, "the rise took instances from the pool"
    for e in unshelved:
        ready = next(
            r for r in events if r["index"] == e["index"] and r["event"] == "ready" and r["at"] > e["at"]
        )
        assert web["warm_delay_s"] <= ready["at"] - e["at"] < web["cold_delay_s"], (e, ready)
    pools = [d["pool"] for d in report["decisions"] if d["tier"] == "web" and "pool" in d]
    assert any(p["refilled"] for p in pools) and any(p["activated"] for p in pools)
    assert "warm pool on" in (out / "report.md").read_text()
    assert_nothing_left(out)
