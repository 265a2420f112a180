"""The drill's actuator (not production's: `autoscaler/` never imports it): tier instances as local
processes of the reference tier service (`loadtests/tier_service.py`), on free 127.0.0.1 ports,
behind a real HAProxy.

It stands in for the Pulumi actuator and OpenStack: starting a process is "creating a VM", and a
new instance becomes ready only `boot_delay_s` after it was asked for (standing in for VM boot and
cloud-init configuration, the provisioning lead time the autoscaler has to plan across). A ready
instance is then registered where production finds it:

- in HAProxy, which stands in for the Octavia load balancer (Octavia runs HAProxy; this is not
  Octavia): each tier's backend has `server-template` slots, and the runtime API over the stats
  socket (`set server B/S addr ... port ...`, `set server B/S state ready|drain|maint`) makes the
  backend follow the instances without a reload;
- in a Prometheus file_sd file with a `tier` label (standing in for openstack_sd and Nova
  metadata), scraped as job `node` (readiness) and, for video, in a second file scraped as `jvb`.

It is a `Fleet`: an instance's index is its slot (slot - 1), and the loop's two-phase scale-down
drives it as it drives the Pulumi stack. `apply(serving, retiring, warm, filling)`: a new serving
index starts an instance in that slot, ready after the tier's cold delay; a retiring one is taken
out of rotation (HAProxy `state drain`: no new connections, open ones kept, as Octavia's weight 0)
and told to drain (`POST /colibri/drain/enable` on the instance, the Jitsi Videobridge's drain API:
chat and video open no new rooms there); a retiring index serving again is taken back
(`state ready`, `/colibri/drain/disable`); an index in none of the four sets is stopped.

The warm pool (issue 15) stands in for OpenStack's shelving (`shelved_offloaded`: CPU and RAM
freed, the configured disk kept):

- a new `filling` index is an instance being created and configured for the pool: it holds its
  slot (in maintenance) but runs no process, and is configured (`Member.ready`) once the cold delay
  has passed;
- a configured filling instance moved to `warm` is shelved: still no process;
- a retiring (drained) or serving instance moved to `warm` is shelved: its process is stopped
  (sessions it still had are counted as cut, as for any stop) and it leaves HAProxy;
- a `warm` index moved to `serving` is unshelved: a process starts in its slot, ready after the
  tier's warm delay (unshelve and boot, no configuration again); a `filling` one moved to `serving`
  starts at once and is ready when its configuration would have finished (the rest of its cold
  delay).

Shelving an instance whose configuration has not finished (filling, or still booting cold) is
refused, as is a new index put straight into `warm` (a pool instance is configured before it is
shelved) or a running one put back to `filling`. `sessions()` reads each retiring instance's open
sessions from `GET /colibri/drain`. A stopped instance writes the sessions it still had
(`--exit-report`): `dropped_sessions()` counts those a scale-down cut. `capacity()` reports the
serving instances asked for (booting and ready), the ready ones, and the pool (`warm`,
`filling`); an instance that died is dropped, so the next pass of the loop replaces it. `scale` is
idempotent. Failures raise `ActuationError`; a refused layout changes nothing.

Instances start through `loadtests.processes` (each in its own process group, SIGKILLed if the
drill dies), into the drill's `Children` when given one, so that the drill stops them together with
its other parts.

A bridge (a tier with bridge metrics) is removed as a Jitsi Videobridge is: when it is retired as
stopped, it is first sent the JVB's graceful shutdown (`POST /colibri/shutdown`,
jitsi-videobridge doc/rest.md) and exits by itself once its conferences have ended, at once when
the drain emptied it (event `exited (graceful shutdown)`, nothing cut). One still holding
conferences after `GRACEFUL_EXIT_WAIT_S` (the drain timeout, the hard stop, has passed by then) is
stopped like any other instance, its sessions counted as cut.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoscaler.ports import POOL_FILLING, POOL_WARM, ActuationError, Capacity, Member, overlapping
from loadtests.plumbing import free_port
from loadtests.processes import Children, stop_all

BOOTING, READY, DRAINING, GONE = "booting", "ready", "draining", "gone"
# The warm pool: being created and configured for it (no process), and shelved (no process).
FILLING, WARM = POOL_FILLING, POOL_WARM
HAPROXY_ERRORS = ("No such", "Require", "Unknown", "invalid", "not found", "can't", "cannot")


@dataclass(frozen=True)
class LocalTierSettings:
    """One tier: its HAProxy backend (with `slots` server-template slots named `s1..sN`), the boot
    delays, whether its instances export bridge metrics (listed for the `jvb` job too), and extra
    arguments for `loadtests.tier_service` (which reads the tier's service from the catalog).

    `boot_delay_s` is the cold delay (create, boot, configure: a new instance, and the filling of a
    pool instance); `warm_delay_s` the warm one (unshelve and boot), by default the cold one."""

    backend: str
    slots: int
    boot_delay_s: float = 20.0
    warm_delay_s: float | None = None
    service_args: tuple[str, ...] = ()
    bridge_metrics: bool = False

    @property
    def warm_s(self) -> float:
        return self.boot_delay_s if self.warm_delay_s is None else self.warm_delay_s


@dataclass(frozen=True)
class LocalActuatorSettings:
    tiers: Mapping[str, LocalTierSettings]
    haproxy_socket: Path
    node_file_sd: Path
    jvb_file_sd: Path
    log_dir: Path | None = None
    python: str = sys.executable
    tick_s: float = 0.2


@dataclass
class Instance:
    tier: str
    slot: int
    port: int  # 0 while no process runs (filling, warm)
    proc: subprocess.Popen[bytes] | None
    asked_at: float  # created: billing starts here, and stays there across shelving
    ready_at: float  # serving from (booting), or configured from (filling)
    state: str = BOOTING
    report: Path | None = None  # where the instance writes the sessions open at its stop
    configured_at: float = 0.0  # its disk is configured from then: it may be shelved
    report_configured: bool = False  # the `configured` event of a filling instance is recorded

    @property
    def index(self) -> int:
        return self.slot - 1

    def configured(self, now: float) -> bool:
        return now >= self.configured_at


@dataclass
class Event:
    at: float
    tier: str
    event: str  # started, ready, draining, taken_back, stopped, died; filling, configured, shelved, deleted
    port: int  # 0: no process (a pool instance)
    index: int = -1

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "tier": self.tier, "event": self.event, "port": self.port, "index": self.index}


def haproxy_command(socket_path: Path, command: str, timeout_s: float = 2.0) -> str:
    """Send one command to HAProxy's runtime API (stats socket, level admin); return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(str(socket_path))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        raise ActuationError(f"haproxy runtime API at {socket_path}: {exc}") from None
    answer = b"".join(chunks).decode(errors="replace").strip()
    if any(marker in answer for marker in HAPROXY_ERRORS):
        raise ActuationError(f"haproxy refused {command!r}: {answer}")
    return answer


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _post(port: int, path: str) -> None:
    """Tell an instance to drain or not (the JVB's private REST API: POST /colibri/drain/...)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=1.0):
            pass
    except OSError as exc:
        raise ActuationError(f"instance on port {port}: {path} failed ({exc})") from None


def _drain_state(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/colibri/drain", timeout=0.5) as r:
            return dict(json.loads(r.read()))
    except (OSError, ValueError):
        return {}


# How long a bridge in graceful shutdown gets to exit by itself before it is stopped. It is asked
# after the drain: empty, it exits at once; still holding conferences, the drain timeout (the hard
# stop) has already passed.
GRACEFUL_EXIT_WAIT_S = 1.0


def graceful_exit(
    proc: subprocess.Popen[bytes] | None, port: int, wait_s: float = GRACEFUL_EXIT_WAIT_S
) -> bool:
    """Send a running bridge the JVB's graceful shutdown (`POST /colibri/shutdown` with
    `{"graceful-shutdown": "true"}`); whether it exited by itself within `wait_s`."""
    if proc is None or proc.poll() is not None:
        return False
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/colibri/shutdown",
        data=json.dumps({"graceful-shutdown": "true"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=1.0):
            pass
        proc.wait(timeout=wait_s)
    except (OSError, subprocess.TimeoutExpired):
        return False  # not answering, or conferences still open: stopped by the caller
    return True


def _write_json_atomically(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)  # Prometheus never reads half a file


@dataclass
class _Book:
    instances: list[Instance] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # sessions cut by scale-down stops


class LocalActuator:
    """Local tier-service processes behind HAProxy; see the module docstring. Call `start()` once
    (the reconciler thread) and `close()` at the end (stops every process it started)."""

    name = "local"

    def __init__(
        self,
        settings: LocalActuatorSettings,
        clock: Callable[[], float] = time.time,
        children: Children | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.children = children or Children()
        self._lock = threading.RLock()
        self._book = _Book()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-actuator", daemon=True)
        # While set, a new pool instance is configured at once (the drill's first pass: production's
        # pool has been filled for hours, as `bootstrap` starts the minimum without a boot delay).
        self.fill_at_once = False
        self._write_file_sd()

    # --- the Actuator port -------------------------------------------------------------------
    def capacity(self, tier: str) -> Capacity:
        self._tier(tier)
        with self._lock:
            live = self._live(tier)
            pool = [i.state for i in self._book.instances if i.tier == tier]
            return Capacity(
                current=len(live),
                ready=sum(1 for i in live if i.state == READY),
                warm=pool.count(WARM),
                filling=pool.count(FILLING),
            )

    def scale(self, tier: str, desired: int) -> None:
        """Without a drain: grow into the lowest free slots; shrink by stopping the newest first
        (booting before ready). The loop uses `apply`; this stays for direct use."""
        if desired < 0:
            raise ActuationError(f"{tier}: desired must be >= 0, got {desired}", retryable=False)
        with self._lock:
            live = self._live(tier)
            order = sorted(live, key=lambda i: (i.state == READY, -i.asked_at))
            keep = [i.index for i in order[max(0, len(live) - desired) :]]
            used = {i.index for i in self._book.instances if i.tier == tier and i.state != GONE}
            free = (i for i in range(10**6) if i not in used)
            serving = keep + [next(free) for _ in range(desired - len(keep))]
        self.apply(tier, serving, [])

    # --- the Fleet port ------------------------------------------------------------------------
    def members(self, tier: str) -> list[Member]:
        self._tier(tier)
        with self._lock:
            now = self.clock()
            return [
                Member(
                    i.index,
                    i.asked_at,
                    retiring=i.state == DRAINING,
                    # Serving: it serves; filling: configured, so it may be shelved; warm: always.
                    ready=i.state in (READY, WARM) or (i.state == FILLING and i.configured(now)),
                    pool=i.state if i.state in (FILLING, WARM) else "",
                )
                for i in self._book.instances
                if i.tier == tier and i.state in (BOOTING, READY, DRAINING, FILLING, WARM)
            ]

    def apply(
        self,
        tier: str,
        serving: Sequence[int],
        retiring: Sequence[int],
        warm: Sequence[int] = (),
        filling: Sequence[int] = (),
    ) -> None:
        spec = self._tier(tier)
        sets = {
            "serving": set(serving),
            "retiring": set(retiring),
            "warm": set(warm),
            "filling": set(filling),
        }
        every = [i for indices in sets.values() for i in indices]
        if overlapping(sets) or any(i < 0 or i >= spec.slots for i in every):
            raise ActuationError(
                f"{tier}: refusing "
                + " ".join(f"{name}={sorted(indices)}" for name, indices in sets.items())
                + f": indices 0..{spec.slots - 1} (the HAProxy backend {spec.backend} has {spec.slots} "
                "slots), each in one set",
                retryable=False,
            )
        wanted, draining, shelved, pooling = sets["serving"], sets["retiring"], sets["warm"], sets["filling"]
        stopping: list[Instance] = []
        with self._lock:
            now = self.clock()
            mine = {i.index: i for i in self._book.instances if i.tier == tier and i.state != GONE}
            self._refuse_impossible_moves(tier, mine, shelved, pooling, now)
            for index in sorted(wanted):
                inst = mine.get(index)
                if inst is None:
                    self._spawn(tier, spec, spec.boot_delay_s, slot=index + 1)
                elif inst.state == DRAINING:
                    self._take_back(inst)
                elif inst.state == WARM:  # unshelve: boots without configuring again
                    self._activate(inst, spec, now + spec.warm_s, "unshelved")
                elif inst.state == FILLING:  # running already: ready when configured
                    self._activate(inst, spec, max(now, inst.ready_at), "activated")
            for index in sorted(pooling - mine.keys()):
                self._fill(tier, spec, index)
            for index, inst in mine.items():
                if index in wanted or index in pooling:
                    continue
                if index in shelved:
                    if inst.state == FILLING:
                        self._note_configured(inst, now)  # the reconciler may not have yet
                        inst.state = WARM
                        self._event(inst, "shelved")
                    elif inst.state != WARM:  # running (drained, serving or unshelved): shelve it
                        stopping.append(inst)
                        self._shelve(inst)
                elif index in draining and inst.state == READY:
                    self._drain(inst)
                elif index in draining and inst.state == DRAINING:
                    continue
                elif inst.proc is None:  # a pool instance deleted: no process to stop
                    self._retire(inst, "deleted")
                else:  # removed (drained, or booting with nothing to drain)
                    stopping.append(inst)
                    self._retire(inst, "stopped")
        for inst in stopping:
            self._stop_process(inst, count_dropped=True)
            with self._lock:
                if inst.state == WARM:  # shelved: unshelved, it runs a new process on a new port
                    inst.proc, inst.port = None, 0

    def _refuse_impossible_moves(
        self, tier: str, mine: Mapping[int, Instance], shelved: set[int], pooling: set[int], now: float
    ) -> None:
        """Shelving needs a configured disk, and filling is where a pool instance begins: refuse,
        before changing anything, a layout that asks otherwise (OpenStack would shelve a half-
        configured instance, which would then serve without its configuration)."""
        for index in sorted(shelved):
            inst = mine.get(index)
            if inst is None:
                why = "a new instance is created for the pool as filling, then shelved once configured"
            elif inst.state != WARM and not inst.configured(now):
                why = f"its configuration ends in {inst.configured_at - now:.1f} s ({inst.state})"
            else:
                continue
            raise ActuationError(f"{tier}: cannot shelve index {index} (warm): {why}", retryable=False)
        for index in sorted(pooling):
            inst = mine.get(index)
            if inst is not None and inst.state != FILLING:
                raise ActuationError(
                    f"{tier}: index {index} is {inst.state}: only a new index goes to filling",
                    retryable=False,
                )

    def sessions(self, tier: str, indices: Sequence[int]) -> Mapping[int, int | None]:
        with self._lock:
            ports = {i.index: i.port for i in self._book.instances if i.tier == tier and i.state != GONE}
        out: dict[int, int | None] = {}
        for index in indices:
            port = ports.get(index)
            out[index] = None if not port else _drain_state(port).get("sessions")  # 0: no process
        return out

    def port_of(self, tier: str, index: int) -> int | None:
        with self._lock:
            return next(
                (
                    i.port
                    for i in self._book.instances
                    if i.tier == tier and i.index == index and i.state != GONE and i.port
                ),
                None,
            )

    def dropped_sessions(self) -> dict[str, int]:
        """Sessions cut when a scale-down stopped an instance that still had some, per tier."""
        with self._lock:
            return {t: self._book.dropped.get(t, 0) for t in self.settings.tiers}

    # --- drill helpers -----------------------------------------------------------------------
    def start(self) -> LocalActuator:
        self._thread.start()
        return self

    def bootstrap(
        self, counts: Mapping[str, int], timeout_s: float = 30.0, warm: Mapping[str, int] | None = None
    ) -> None:
        """Start `counts` instances per tier without a boot delay, and wait until all are ready;
        `warm`: that many configured, shelved instances per tier besides (a pool already filled)."""
        with self._lock:
            for tier, n in counts.items():
                spec = self._tier(tier)
                for _ in range(n - len(self._live(tier))):
                    self._spawn(tier, spec, 0.0)
            for tier, n in (warm or {}).items():
                spec = self._tier(tier)
                for _ in range(n - self.capacity(tier).warm):
                    now = self.clock()
                    inst = Instance(tier, self._free_slot(tier, spec, None), 0, None, now, now, WARM)
                    inst.configured_at = now
                    self._book.instances.append(inst)
                    self._event(inst, "shelved")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.capacity(t).ready >= n for t, n in counts.items()):
                return
            time.sleep(0.1)
        raise ActuationError(f"instances not ready after {timeout_s:.0f} s: {self.snapshot()}")

    def kill_one(self, tier: str) -> int | None:
        """Kill a ready instance with SIGKILL (a VM lost), as a fault; return its port."""
        with self._lock:
            ready = [i for i in self._live(tier) if i.state == READY]
            if not ready:
                return None
            victim = ready[0]
            assert victim.proc is not None  # ready: it runs
            with contextlib.suppress(ProcessLookupError):
                os.killpg(victim.proc.pid, signal.SIGKILL)
            return victim.port

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for tier in self.settings.tiers:
                states = [i.state for i in self._book.instances if i.tier == tier]
                out[tier] = {s: states.count(s) for s in (BOOTING, READY, DRAINING, FILLING, WARM)}
            return out

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e.to_dict() for e in self._book.events]

    def halt(self) -> list[subprocess.Popen[bytes]]:
        """Stop the reconciler and forget every instance, leaving their processes to the caller
        (the drill stops them together with its other children); return those processes. Halted
        first, the reconciler does not record the instances the stop kills as `died`."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            procs = [i.proc for i in self._book.instances if i.state != GONE and i.proc is not None]
            for inst in self._book.instances:
                inst.state = GONE
        return procs

    def close(self) -> None:
        """Stop the reconciler and every process started, whatever their state."""
        stop_all(self.halt())  # together, with one grace: see loadtests.processes

    # --- internals ---------------------------------------------------------------------------
    def _tier(self, tier: str) -> LocalTierSettings:
        try:
            return self.settings.tiers[tier]
        except KeyError:
            raise ActuationError(f"unknown tier {tier!r}", retryable=False) from None

    def _live(self, tier: str) -> list[Instance]:
        return [i for i in self._book.instances if i.tier == tier and i.state in (BOOTING, READY)]

    def _event(self, inst: Instance, what: str) -> None:
        self._book.events.append(Event(self.clock(), inst.tier, what, inst.port, inst.index))

    def _spawn(
        self, tier: str, spec: LocalTierSettings, boot_delay_s: float, slot: int | None = None
    ) -> None:
        """A new instance (cold: create, boot, configure), ready `boot_delay_s` from now."""
        inst = Instance(tier, self._free_slot(tier, spec, slot), 0, None, asked_at=0.0, ready_at=0.0)
        self._start_process(inst, spec)
        inst.asked_at = self.clock()
        inst.ready_at = inst.configured_at = inst.asked_at + boot_delay_s
        self._book.instances.append(inst)
        self._event(inst, "started")

    def _fill(self, tier: str, spec: LocalTierSettings, index: int) -> None:
        """A new pool instance: created and configuring for the cold delay, no process (it serves
        nothing and has no load balancer member until activated)."""
        now = self.clock()
        ready = now if self.fill_at_once else now + spec.boot_delay_s
        inst = Instance(
            tier, self._free_slot(tier, spec, index + 1), 0, None, now, ready, FILLING, configured_at=ready
        )
        self._book.instances.append(inst)
        self._event(inst, "filling")

    def _note_configured(self, inst: Instance, now: float) -> None:
        """Record, once, that a filling instance's configuration has finished."""
        if inst.state == FILLING and inst.configured(now) and not inst.report_configured:
            inst.report_configured = True
            self._event(inst, "configured")

    def _activate(self, inst: Instance, spec: LocalTierSettings, ready_at: float, what: str) -> None:
        """A pool instance to serving: its process starts now, ready at `ready_at`."""
        self._start_process(inst, spec)
        inst.state, inst.ready_at = BOOTING, ready_at
        self._event(inst, what)

    def _free_slot(self, tier: str, spec: LocalTierSettings, slot: int | None) -> int:
        used = {i.slot for i in self._book.instances if i.tier == tier and i.state != GONE}
        free = [s for s in range(1, spec.slots + 1) if s not in used and (slot is None or s == slot)]
        if not free:
            raise ActuationError(f"{tier}: HAProxy slot {slot or 'any'} of {spec.backend} is in use")
        return free[0]

    def _start_process(self, inst: Instance, spec: LocalTierSettings) -> None:
        port = free_port()
        tier = inst.tier
        cmd = [self.settings.python, "-m", "loadtests.tier_service", "--tier", tier, "--port", str(port)]
        report = log = None
        if self.settings.log_dir is not None:
            self.settings.log_dir.mkdir(parents=True, exist_ok=True)
            report = self.settings.log_dir / f"{tier}-{port}.exit.json"
            log = self.settings.log_dir / f"{tier}-{port}.log"
            cmd += ["--exit-report", str(report)]
        try:
            inst.proc = self.children.start([*cmd, *spec.service_args], log)
        except OSError as exc:
            raise ActuationError(f"{tier}: cannot start an instance: {exc}") from None
        inst.port, inst.report = port, report

    def _shelve(self, inst: Instance) -> None:
        """Out of HAProxy and file_sd, then (the caller, outside the lock) its process stopped:
        the configured disk stays, nothing runs."""
        if self.settings.tiers[inst.tier].bridge_metrics and graceful_exit(inst.proc, inst.port):
            self._event(inst, "exited (graceful shutdown)")  # as `_retire`: a bridge leaves gracefully
        inst.state = WARM
        self._event(inst, "shelved")
        with contextlib.suppress(ActuationError):
            haproxy_command(self.settings.haproxy_socket, f"set server {self._server(inst)} state maint")
        self._write_file_sd()

    def _server(self, inst: Instance) -> str:
        return f"{self.settings.tiers[inst.tier].backend}/s{inst.slot}"

    def _drain(self, inst: Instance) -> None:
        """Out of rotation, sessions kept: HAProxy sends it nothing new (Octavia: weight 0), and
        the instance opens no new room (the JVB's drain mode)."""
        haproxy_command(self.settings.haproxy_socket, f"set server {self._server(inst)} state drain")
        inst.state = DRAINING
        self._event(inst, "draining")
        _post(inst.port, "/colibri/drain/enable")
        self._write_file_sd()

    def _take_back(self, inst: Instance) -> None:
        haproxy_command(self.settings.haproxy_socket, f"set server {self._server(inst)} state ready")
        _post(inst.port, "/colibri/drain/disable")
        inst.state = READY
        self._event(inst, "taken_back")
        self._write_file_sd()

    def _stop_process(self, inst: Instance, count_dropped: bool) -> None:
        assert inst.proc is not None, "only a running instance is stopped"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(inst.proc.pid, signal.SIGTERM)
        try:
            inst.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(inst.proc.pid, signal.SIGKILL)
            inst.proc.wait(timeout=3)
        if count_dropped and inst.report is not None:
            try:
                cut = int(json.loads(inst.report.read_text()).get("sessions", 0))
            except (OSError, ValueError):
                cut = 0  # no report: killed before it could write one (a booting instance)
            if cut:
                with self._lock:
                    self._book.dropped[inst.tier] = self._book.dropped.get(inst.tier, 0) + cut
                self._event(inst, f"cut {cut} sessions")

    def _register(self, inst: Instance) -> None:
        sock, server = self.settings.haproxy_socket, self._server(inst)
        haproxy_command(sock, f"set server {server} addr 127.0.0.1 port {inst.port}")
        haproxy_command(sock, f"set server {server} state ready")
        inst.state = READY
        self._event(inst, "ready")
        self._write_file_sd()

    def _retire(self, inst: Instance, what: str) -> None:
        if self.settings.tiers[inst.tier].bridge_metrics and graceful_exit(inst.proc, inst.port):
            self._event(inst, "exited (graceful shutdown)")  # the stop that follows cuts nothing
        inst.state = GONE
        self._event(inst, what)
        with contextlib.suppress(ActuationError):
            haproxy_command(self.settings.haproxy_socket, f"set server {self._server(inst)} state maint")
        self._write_file_sd()

    def _write_file_sd(self) -> None:
        ready = [i for i in self._book.instances if i.state == READY]
        groups = [
            {"targets": [f"127.0.0.1:{i.port}"], "labels": {"tier": i.tier, "instance_port": str(i.port)}}
            for i in ready
        ]
        bridges = [
            g for g, i in zip(groups, ready, strict=True) if self.settings.tiers[i.tier].bridge_metrics
        ]
        _write_json_atomically(self.settings.node_file_sd, groups)
        _write_json_atomically(self.settings.jvb_file_sd, bridges)

    def _reconcile(self) -> None:
        now = self.clock()
        with self._lock:
            for inst in self._book.instances:
                if inst.proc is None:
                    self._note_configured(inst, now)
                    continue
                if inst.state in (BOOTING, READY, DRAINING) and inst.proc.poll() is not None:
                    self._retire(inst, "died")
                elif inst.state == BOOTING and now >= inst.ready_at and _healthy(inst.port):
                    # HAProxy busy or restarting: the next tick tries again.
                    with contextlib.suppress(ActuationError):
                        self._register(inst)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.tick_s):
            self._reconcile()
