"""`swell calibrate`: find the knee of ONE instance of a tier, the highest offered load at which
the tier's SLO (p95 and error rate) still holds, and write it as the capacity per instance the
autoscaler and `swell plan` use, with the curve (JSON) and a picture (PNG).

Without a target it starts the reference tier service (loadtests/tier_service.py, real aiohttp) on
127.0.0.1 and calibrates that; with `target` it loads a real instance. Load comes from Locust (the
project's users, loadtests/users.py) under a step profile (`StepPlan`, loadtests/steps.py), run
as child processes: one Locust, or a master and `workers` local workers (Locust's distributed
mode). The steps are measured inside Locust by the runner that runs the shape and judged here
(`loadtests.knee`):

1. a coarse pass (start, start + increment, ...), stopped once two consecutive steps broke;
2. a finer pass from the last good to the first bad step (`refine`), to one user if it can, and
   a second one lower down when the first broke at that good step;
3. the knee: the highest step that held below the confirmed break, with the next step as its
   upper bound (the uncertainty).

Child processes never outlive calibrate: they are started as the drill starts its own
(loadtests/processes.py), each in its own process group (Ctrl-C reaches only calibrate, which stops
them all at once) and through `procguard --exec`, so the kernel SIGKILLs them when calibrate dies,
even by SIGKILL (`PR_SET_PDEATHSIG`). They are started from the main thread only: the kernel sends
that signal when the thread that forked exits, not the process.

This module never imports locust (it monkey-patches the interpreter with gevent).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from loadtests.knee import (
    CALIBRATION_SCHEMA,
    OFFERED_PER_USER,
    SLO,
    STEP_PREFIX,
    TIERS,
    UNITS,
    StepMeasure,
    StepPlan,
    confirmed_break,
    find_knee,
    grid,
    parse_step_lines,
    refine,
)
from loadtests.plumbing import free_port, http_ok, wait_for
from loadtests.processes import Children, interrupt_on_sigterm, signals_held, stop_process
from swell import tiers

LOCUSTFILE = Path(__file__).with_name("calibrate_locustfile.py")
CONFIRM = 2  # consecutive broken steps that end a pass
# The local reference service answers in tens of milliseconds: six-second steps, the first 1.5 s
# left out, measure a few hundred requests each. A real instance gets minutes per step.
LOCAL_STEP_S, TARGET_STEP_S = 6.0, 60.0
LOCAL_SETTLE_S = 1.5
# Coarse pass: (start, increment, steps) in users. The local grid spans 4-48 users, well past every
# reference tier's capacity without knowing it; a real target's grid is the planner's to set.
LOCAL_GRID = (4, 4, 12)
TARGET_GRID = (10, 10, 10)
SUBSTEPS = 6  # the finer pass: up to this many steps between the last good and the first bad
FINE_PASSES = 2  # at most: the second only when the first broke at the coarse pass's last good step
WORKER_REPORT_S = 1.0  # workers' stats reach the master this often (calibrate_locustfile.py)
# Bounds: a calibration is a bounded experiment, never a soak.
MAX_STEPS = 40
MAX_USERS = 100_000
MAX_WORKERS = 64
MAX_STEP_S = 900.0
MAX_DURATION_S = 4 * 3600.0


class CalibrationError(RuntimeError):
    """The calibration could not run (a part did not start, Locust failed); the message says which."""


def default_slo() -> SLO:
    """The drill's SLO, as the drill defines it (loadtests/drill.py, `DrillOptions`): one place."""
    from loadtests.drill import DrillOptions

    return SLO(p95_ms=DrillOptions.p95_limit_ms, error_rate=DrillOptions.error_rate_limit)


def load_slo(path: Path | None, tier: str) -> tuple[SLO, str]:
    """The SLO of `tier`: from `path` (YAML, `{tier: {p95_ms, error_rate}}`, either key optional:
    the default fills it) or the drill's. Returns it and where it came from."""
    base = default_slo()
    if path is None:
        return base, "the drill's SLO (loadtests/drill.py, DrillOptions)"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"--slo {path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"--slo {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or set(data) - set(TIERS):
        raise ValueError(
            f"--slo {path}: expected a mapping of tiers ({', '.join(TIERS)}) to {{p95_ms, error_rate}}"
        )
    entry = data.get(tier)
    if entry is None:
        return base, f"{path} has no {tier}: the drill's SLO"
    if not isinstance(entry, dict) or set(entry) - {"p95_ms", "error_rate"}:
        raise ValueError(f"--slo {path}: {tier}: expected keys p95_ms and error_rate")
    try:
        slo = SLO(
            p95_ms=float(entry.get("p95_ms", base.p95_ms)),
            error_rate=float(entry.get("error_rate", base.error_rate)),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--slo {path}: {tier}: {exc}") from None
    return slo, str(path)


@dataclass(frozen=True)
class CalibrateOptions:
    tier: str
    out: Path
    target: str | None = None
    workers: int = 0
    flavor: str | None = None
    step_s: float | None = None
    settle_s: float | None = None
    start: int | None = None
    increment: int | None = None
    steps: int | None = None
    refine: bool = True
    slo: SLO = field(default_factory=default_slo)
    slo_source: str = "the drill's SLO (loadtests/drill.py, DrillOptions)"
    # Judge the steps a Locust run elsewhere logged (the master's stdout on Kubernetes), run no load.
    from_log: Path | None = None

    @property
    def local(self) -> bool:
        return self.target is None and self.from_log is None

    @property
    def effective_step_s(self) -> float:
        return self.step_s if self.step_s is not None else (LOCAL_STEP_S if self.local else TARGET_STEP_S)

    @property
    def effective_settle_s(self) -> float:
        if self.settle_s is not None:
            return self.settle_s
        return LOCAL_SETTLE_S if self.local and self.step_s is None else self.effective_step_s / 4

    @property
    def coarse_users(self) -> tuple[int, ...]:
        start, increment, steps = LOCAL_GRID if self.local else TARGET_GRID
        return grid(
            self.start if self.start is not None else start,
            self.increment if self.increment is not None else increment,
            self.steps if self.steps is not None else steps,
        )

    @property
    def lag_s(self) -> float:
        # The master sees a worker's request up to one report interval (plus transit) late.
        return WORKER_REPORT_S + 0.5 if self.workers else 0.0

    def plan(self, users: tuple[int, ...]) -> StepPlan:
        return StepPlan(users, self.effective_step_s, self.effective_settle_s, lag_s=self.lag_s)

    def validate(self) -> None:
        """Raise ValueError naming the option for anything calibrate cannot run."""
        if self.tier not in TIERS:
            raise ValueError(f"--tier {self.tier!r}: unknown tier; expected one of {', '.join(TIERS)}")
        if self.from_log is not None and not self.from_log.is_file():
            raise ValueError(f"--from-log {self.from_log}: no such file")
        if self.target is not None and not self.target.startswith(("http://", "https://")):
            raise ValueError(f"--target {self.target!r}: expected an http:// or https:// URL")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"--workers {self.workers}: expected 0 (one Locust process) to {MAX_WORKERS}")
        if self.flavor is not None:
            from stacks import catalog

            flavors = catalog.load().flavors
            if self.flavor not in flavors:
                raise ValueError(
                    f"--flavor {self.flavor!r}: unknown flavor; expected one of {', '.join(flavors)}"
                )
        for name, value in (("--step-s", self.step_s), ("--settle-s", self.settle_s)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} {value}: expected a finite number of seconds")
        if not 1.0 <= self.effective_step_s <= MAX_STEP_S:
            raise ValueError(f"--step-s {self.effective_step_s:g}: expected 1 to {MAX_STEP_S:g} seconds")
        if not 0 <= self.effective_settle_s < self.effective_step_s:
            raise ValueError(
                f"--settle-s {self.effective_settle_s:g}: expected 0 or more and less than the step "
                f"({self.effective_step_s:g} s)"
            )
        for name, value in (
            ("--start", self.start),
            ("--increment", self.increment),
            ("--steps", self.steps),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} {value}: expected a whole number >= 1")
        users = self.coarse_users
        if len(users) > MAX_STEPS:
            raise ValueError(f"--steps {len(users)}: at most {MAX_STEPS} steps")
        if users[-1] > MAX_USERS:
            raise ValueError(
                f"--start/--increment/--steps: the last step has {users[-1]} users, more than {MAX_USERS}"
            )
        # The coarse pass and the finer ones, each at most SUBSTEPS + 1 steps.
        worst = self.plan(users).duration_s + FINE_PASSES * self.plan((1,) * (SUBSTEPS + 1)).duration_s
        if worst > MAX_DURATION_S:
            raise ValueError(
                f"--steps/--step-s: up to {worst / 3600:.1f} h of load; a calibration is bounded to "
                f"{MAX_DURATION_S / 3600:g} h"
            )


# --- the run ------------------------------------------------------------------------------------
@dataclass
class Pass:
    name: str
    plan: StepPlan
    steps: list[StepMeasure] = field(default_factory=list)
    stopped_early: bool = False
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "users": list(self.plan.users),
            "step_s": self.plan.step_s,
            "settle_s": self.plan.settle_s,
            "stopped_early": self.stopped_early,
            "wall_s": round(self.wall_s, 1),
            "steps": [s.to_dict() for s in self.steps],
        }


def _registered(allocator_url: str) -> bool:
    """Whether a bridge takes conferences at the allocator (its /healthz lists bridge states)."""
    try:
        with urllib.request.urlopen(f"{allocator_url}/healthz", timeout=1.0) as r:
            return "available" in json.loads(r.read()).get("bridges", {}).values()
    except (OSError, ValueError):
        return False


class Calibration:
    def __init__(
        self, options: CalibrateOptions, progress: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        options.validate()
        self.o = options
        self.progress = progress or (lambda _: None)
        self.logs = options.out / "logs" / options.tier
        self.children = Children()
        self.host = options.target or ""
        self.passes: list[Pass] = []
        self.started_at = 0.0

    def run(self) -> dict[str, Any]:
        o = self.o
        o.out.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        load_before = os.getloadavg()
        if o.from_log is not None:
            self._read_log(o.from_log)
            return self._result(load_before, load_before)
        with interrupt_on_sigterm():
            try:
                if o.local:
                    self._start_service()
                self._pass("coarse", o.coarse_users)
                # A finer pass starts at the last good step: when that step breaks there, the knee
                # lies lower, between two steps the coarse pass left apart, and one more pass looks.
                for n in range(FINE_PASSES if o.refine else 0):
                    knee = find_knee(self.curve(), o.slo, CONFIRM)
                    if not knee.bracketed:
                        break
                    assert knee.knee is not None and knee.broken is not None
                    finer = refine(knee.knee.users, knee.broken.users, SUBSTEPS)
                    if not finer:
                        break
                    self._pass("fine" if n == 0 else f"fine-{n + 1}", finer)
            finally:
                with signals_held():  # a second Ctrl-C does not cut the cleanup short
                    self.children.stop_all()
        return self._result(load_before, os.getloadavg())

    def _read_log(self, path: Path) -> None:
        """The steps of a Locust run logged elsewhere, as one pass; ValueError names --from-log."""
        try:
            records = parse_step_lines(path.read_text(errors="replace"))
        except ValueError as exc:
            raise ValueError(f"--from-log {path}: {exc}") from None
        mine = [r for r in records if r.get("tier", self.o.tier) == self.o.tier]
        if not mine:
            raise ValueError(f"--from-log {path}: no {STEP_PREFIX.strip()} line of tier {self.o.tier}")
        steps = [StepMeasure.from_dict(r) for r in mine]
        first = mine[0]
        step_s = float(first.get("step_s", steps[0].window_s))
        plan = StepPlan(
            tuple(s.users for s in steps),
            step_s,
            float(first.get("settle_s", max(0.0, step_s - steps[0].window_s))),
            lag_s=float(first.get("lag_s", 0.0)),
        )
        self.passes = [Pass("log", plan, steps)]
        self.host = self.o.target or str(first.get("host") or "")
        self.logged = {k: first[k] for k in ("workers", "locust_version") if k in first}

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A child in its own process group that dies with calibrate, SIGKILL included
        (loadtests/processes.py, as the drill's), logging to `<logs>/<name>.log`. Started from the
        main thread: PR_SET_PDEATHSIG follows the thread that forked."""
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.children.start(cmd, self.logs / f"{name}.log", env)

    def _start_service(self) -> None:
        port = free_port()
        cmd = [sys.executable, "-m", "loadtests.tier_service", "--tier", self.o.tier, "--port", str(port)]
        allocator_url = None
        if tiers.load().get(self.o.tier).traffic == "participants":
            # Video users ask the allocator for their bridge (loadtests/users.py): the one bridge
            # registers with an allocator of its own, which is the users' host.
            from loadtests import allocator  # aiohttp: only here, never before locust's patching

            allocator_port = free_port()
            allocator_url = f"http://127.0.0.1:{allocator_port}"
            alloc = self._spawn("allocator", allocator.command(allocator_port, report_interval_s=1.0))
            try:
                wait_for(lambda: http_ok(f"{allocator_url}/healthz"), "the video allocator", 20, alloc)
            except RuntimeError as exc:
                raise CalibrationError(f"{exc} (log: {self.logs})") from None
            cmd += ["--allocator", allocator_url, "--report-interval", "1.0"]
        proc = self._spawn(f"tier-service-{self.o.tier}", cmd)
        service = f"http://127.0.0.1:{port}"
        self.host = allocator_url or service
        self.progress({"phase": f"starting the reference {self.o.tier} service on {service}"})
        try:
            wait_for(lambda: http_ok(f"{service}/healthz"), f"the {self.o.tier} service", 20, proc)
            if allocator_url is not None:
                wait_for(lambda: _registered(allocator_url), "the bridge to register", 20, proc)
        except RuntimeError as exc:
            raise CalibrationError(f"{exc} (log: {self.logs})") from None

    def _locust(self, name: str, plan: StepPlan, out: Path) -> list[subprocess.Popen[bytes]]:
        o = self.o
        env = dict(os.environ)
        env.update(plan.to_env())
        env.update(SWELL_CALIBRATE_TIER=o.tier, SWELL_CALIBRATE_REPORT_S=f"{WORKER_REPORT_S:g}")
        env.pop("SWELL_CALIBRATE_OUT", None)
        base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", self.host]
        quiet = ["--loglevel", "WARNING"]
        if not o.workers:
            cmd = [*base, "--headless", "--only-summary", "--stop-timeout", "2", *quiet]
            return [self._spawn(f"locust-{name}", cmd, env | {"SWELL_CALIBRATE_OUT": str(out)})]
        port = free_port()
        master = [
            *base,
            "--master",
            "--headless",
            "--only-summary",
            "--stop-timeout",
            "2",
            "--expect-workers",
            str(o.workers),
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            *quiet,
        ]
        procs = [self._spawn(f"locust-{name}-master", master, env | {"SWELL_CALIBRATE_OUT": str(out)})]
        worker = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port), *quiet]
        procs += [self._spawn(f"locust-{name}-worker-{k}", worker, env) for k in range(o.workers)]
        return procs

    def _pass(self, name: str, users: tuple[int, ...]) -> Pass:
        o = self.o
        plan = o.plan(users)
        current = Pass(name, plan)
        self.passes.append(current)
        out = self.logs / f"steps-{name}.jsonl"
        out.unlink(missing_ok=True)
        procs = self._locust(name, plan, out)
        master = procs[0]
        started = time.monotonic()
        # Locust imports and (distributed) waits for its workers before the shape starts.
        deadline = started + plan.duration_s + 30.0 + 5.0 * o.workers
        offset = 0
        try:
            while True:
                offset = self._read_steps(out, offset, current)
                self.progress(
                    {
                        "phase": "load",
                        "pass": name,
                        "elapsed_s": time.monotonic() - started,
                        "duration_s": plan.duration_s,
                        "users": list(plan.users),
                        "steps": [s for p in self.passes for s in p.steps],
                        "slo": o.slo,
                    }
                )
                if confirmed_break(current.steps, o.slo, CONFIRM) and len(current.steps) < len(users):
                    current.stopped_early = True
                    break
                if master.poll() is not None:
                    offset = self._read_steps(out, offset, current)
                    break
                if time.monotonic() > deadline:
                    raise CalibrationError(
                        f"Locust still running {deadline - started:.0f} s after the {name} pass began: "
                        f"stopped (logs: {self.logs})"
                    )
                time.sleep(0.25)
        finally:
            for proc in procs:
                stop_process(proc)
            current.wall_s = time.monotonic() - started
        if not current.stopped_early and master.returncode not in (0, 1):  # 1: some requests failed
            raise CalibrationError(
                f"Locust exited with code {master.returncode} in the {name} pass: "
                f"see {self.logs}/locust-{name}*.log"
            )
        if not current.steps:
            raise CalibrationError(f"the {name} pass measured no step: see {self.logs}/locust-{name}*.log")
        return current

    @staticmethod
    def _read_steps(path: Path, offset: int, into: Pass) -> int:
        if not path.exists():
            return offset
        with open(path) as f:
            f.seek(offset)
            text = f.read()
        complete, _, _ = text.rpartition("\n")
        for line in complete.splitlines():
            if line.strip():
                into.steps.append(StepMeasure.from_dict(json.loads(line)))
        return offset + len(complete) + (1 if complete else 0)

    # --- the result ---------------------------------------------------------------------------
    def curve(self) -> list[StepMeasure]:
        """Every step used for the knee: the coarse pass, each finer pass over its range in turn."""
        curve = list(self.passes[0].steps) if self.passes else []
        for later in self.passes[1:]:
            if not later.steps:
                continue
            low, high = min(s.users for s in later.steps), max(s.users for s in later.steps)
            curve = (
                [s for s in curve if s.users < low] + list(later.steps) + [s for s in curve if s.users > high]
            )
        return curve

    def _result(self, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> dict[str, Any]:
        o = self.o
        curve = self.curve()
        found = find_knee(curve, o.slo, CONFIRM)
        unit = UNITS[o.tier]
        knee, broken = found.knee, found.broken
        warnings: list[str] = []
        if knee is None:
            warnings.append(f"the SLO broke at the first step ({curve[0].offered:g} {unit}): lower --start")
        elif broken is None:
            warnings.append(
                f"the SLO held at every step up to {knee.offered:g} {unit}: the knee is above; "
                "raise --start, --increment or --steps"
            )
        for s in found.isolated:
            warnings.append(
                f"step {s.offered:g} {unit} broke (p95 {s.p95_ms} ms, errors {s.error_rate:.2%}) but the "
                "next held: taken as noise (a busy load generator or machine); rerun if it repeats"
            )
        if o.tier == "web":
            for s in curve:
                # Steps of fewer than 100 requests are left out: a window's edges alone move them 5%.
                enough = s.offered * s.window_s >= 100
                if enough and s.held(o.slo) and s.throughput < 0.9 * s.offered:
                    warnings.append(
                        f"at {s.offered:g} requests/s offered only {s.throughput:.1f} completed while the "
                        "SLO held: the load generator fell short (add --workers)"
                    )
                    break
        result: dict[str, Any] = {
            "schema": CALIBRATION_SCHEMA,
            "tier": o.tier,
            "unit": unit,
            "capacity_per_instance": None if knee is None or broken is None else knee.offered,
            "knee": None if knee is None else _point(knee),
            "first_break": None if broken is None else _point(broken),
            "bracketed": found.bracketed,
            "uncertainty": None
            if knee is None or broken is None
            else {
                "low": knee.offered,
                "high": broken.offered,
                "note": f"between {knee.offered:g} (held) and {broken.offered:g} {unit} (broke)",
            },
            # The most the instance served (successful requests or round trips per second) at any
            # step: for web, its saturation rate, to set beside the designed capacity.
            "max_served": round(max(s.served for s in curve), 3),
            "isolated_breaks": [s.to_dict() for s in found.isolated],
            "slo": {"p95_ms": o.slo.p95_ms, "error_rate": o.slo.error_rate, "source": o.slo_source},
            "designed_capacity": self._designed() if o.local else None,
            "conditions": self._conditions(load_before, load_after),
            "passes": [p.to_dict() for p in self.passes],
            "curve": [s.to_dict() for s in curve],
            "warnings": warnings,
        }
        designed = result["designed_capacity"]
        if designed and result["capacity_per_instance"]:
            designed["knee_ratio"] = round(result["capacity_per_instance"] / designed["value"], 4)
        return result

    def _designed(self) -> dict[str, Any]:
        from loadtests.tier_service import catalog_spec

        spec = catalog_spec(self.o.tier)
        return {
            "value": round(spec.designed_capacity(self.o.slo.p95_ms / 1000.0), 3),
            "unit": UNITS[self.o.tier],
            # The service's own statement of it (TierSpec.designed_capacity), whitespace joined.
            "definition": " ".join((type(spec).designed_capacity.__doc__ or "").split()),
            "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
        }

    def _conditions(self, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> dict[str, Any]:
        o = self.o
        logged = getattr(self, "logged", {})
        if o.from_log is not None:
            target = f"{o.target or self.host or 'unknown host'} (steps from {o.from_log})"
        else:
            target = o.target or "local reference tier service (loadtests/tier_service.py)"
        plan = self.passes[0].plan
        return {
            "target": target,
            "host": self.host,
            "flavor": o.flavor if o.flavor else ("local process" if o.local else None),
            "locust_version": logged.get("locust_version", importlib.metadata.version("locust")),
            "python": platform.python_version(),
            "workers": logged.get("workers", o.workers),
            "user_class": {"web": "WebUser", "chat": "ChatUser", "video": "VideoUser"}[o.tier],
            "offered_per_user": OFFERED_PER_USER[o.tier],
            "step_s": plan.step_s,
            "settle_s": plan.settle_s,
            "lag_s": plan.lag_s,
            "users": {p.name: list(p.plan.users) for p in self.passes},
            "started_at": datetime.fromtimestamp(self.started_at, UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - self.started_at, 1),
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_1m_before": round(load_before[0], 2),
                "load_average_1m_after": round(load_after[0], 2),
            },
        }


def _point(step: StepMeasure) -> dict[str, Any]:
    return {
        "users": step.users,
        "offered": step.offered,
        "p95_ms": step.p95_ms,
        "error_rate": round(step.error_rate, 5),
        "throughput": round(step.throughput, 3),
        "served": round(step.served, 3),
    }


# --- outputs ------------------------------------------------------------------------------------
def write_outputs(result: dict[str, Any], out: Path) -> dict[str, Path]:
    """`<tier>.json` and `<tier>.png` in `out`."""
    tier = result["tier"]
    paths = {"json": out / f"{tier}.json", "png": out / f"{tier}.png"}
    result = result | {"files": {k: str(v) for k, v in paths.items()}}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    plot(result, paths["png"])
    return paths


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit, slo = result["unit"], result["slo"]
    fig, (lat, thr) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=(3, 2))
    for p, marker in zip(result["passes"], ("o", "^", "v"), strict=False):
        steps = [s for s in p["steps"] if s["p95_ms"] is not None]
        held = [s for s in steps if s["p95_ms"] <= slo["p95_ms"] and s["error_rate"] <= slo["error_rate"]]
        broke = [s for s in steps if s not in held]
        for group, color, label in ((held, "tab:blue", "held"), (broke, "tab:red", "broke")):
            if group:
                lat.scatter(
                    [s["offered"] for s in group],
                    [s["p95_ms"] for s in group],
                    marker=marker,
                    color=color,
                    label=f"p95, {p['name']} pass, {label}",
                    zorder=3,
                )
    curve = result["curve"]
    offered = [s["offered"] for s in curve]
    lat.plot(offered, [s["p95_ms"] for s in curve], color="grey", lw=0.8, zorder=2)
    lat.plot(offered, [s["p50_ms"] for s in curve], color="grey", lw=0.8, ls="--", label="p50")
    lat.axhline(slo["p95_ms"], color="tab:red", ls=":", lw=1, label=f"SLO p95 {slo['p95_ms']:g} ms")
    lat.set_ylabel("latency, ms")
    thr.plot(offered, [s["served"] for s in curve], "o-", color="tab:green", label="served/s (succeeded)")
    thr.plot(offered, [s["throughput"] for s in curve], ":", color="tab:green", label="completed/s")
    thr.set_ylabel("requests (WS round trips)/s")
    err = thr.twinx()
    err.plot(offered, [100 * s["error_rate"] for s in curve], "s--", color="tab:orange", label="errors %")
    err.axhline(100 * slo["error_rate"], color="tab:orange", ls=":", lw=1, label="SLO errors")
    err.set_ylabel("errors, %")
    err.legend(fontsize=7, loc="lower right")
    thr.set_xlabel(f"offered load, {unit} (users x {result['conditions']['offered_per_user']:g})")
    knee = result["knee"]
    title = f"swell calibrate: {result['tier']}, one instance"
    if knee is not None and result["capacity_per_instance"] is not None:
        for ax in (lat, thr):
            ax.axvline(knee["offered"], color="black", lw=1.2)
            ax.axvspan(result["uncertainty"]["low"], result["uncertainty"]["high"], color="gold", alpha=0.25)
        lat.annotate(
            f"knee {knee['offered']:g} {unit}",
            (knee["offered"], knee["p95_ms"]),
            textcoords="offset points",
            xytext=(-10, 25),
            ha="right",
            arrowprops={"arrowstyle": "->"},
        )
        title += f": knee {knee['offered']:g} {unit}"
    designed = result.get("designed_capacity")
    if designed:
        for ax in (lat, thr):
            ax.axvline(designed["value"], color="tab:purple", ls="--", lw=1)
        lat.text(
            designed["value"], slo["p95_ms"] * 1.05, f" designed {designed['value']:g}", color="tab:purple"
        )
    c = result["conditions"]
    fig.suptitle(title)
    lat.set_title(
        f"{c['target']} | flavor {c['flavor']} | Locust {c['locust_version']}, {c['workers']} workers | "
        f"steps {c['step_s']:g} s",
        fontsize=8,
    )
    lat.legend(fontsize=7, loc="upper left")
    thr.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
