"""Scale the tiers of one Pulumi stack with the Automation API, from a background worker.

A tier's layout is the stack's configuration: `swell:tiers.<tier>.count` (serving instances),
`.instances` (their indices), `.retiring` (indices being drained: running, load balancer member
at weight 0), and the warm pool: `.warm` (shelved, configured, no member) and `.filling` (created for
the pool and being configured, no member). An index moves between these sets in place (the stack
changes its power state and its member only: stacks/tier.py); an index in none is deleted. The loop
never waits for `pulumi up`:

- `apply` (and `scale`) record the tier's target and return. A newer target for a tier replaces a
  queued one (it supersedes it); a worker thread per stack takes every queued tier at once and runs
  **one** update for all of them: read the stack's config back from the backend (`pulumi config
  refresh`: the config of the last successful update, so a checkout's stale file never reverts a
  surge, and an SRE's deployed change is never reverted by the autoscaler), write the new layouts in
  one `config set-all`, and run `pulumi up --parallel N --policy-pack ...`.
- Before anything is written, the would-be configuration is validated with the stack's own parser
  (`stacks.config.parse`: min, max, quota, every key): a layout the stack would refuse is never
  written. A failed or timed-out update puts the last successful update's config back (`config
  refresh`), so the workspace never keeps a count that did not deploy.
- Each update has a timeout (`update_timeout_s`); on timeout or `cancel()` the CLI gets SIGINT
  (Pulumi's graceful cancel, which releases the stack lock), then SIGKILL after a grace period, and
  `pulumi cancel` removes a lock left behind. Every CLI call runs under `procguard`, so no child
  outlives the autoscaler, even on SIGKILL.
- A stack locked by a concurrent update (someone's `pulumi up`) is retried with exponential backoff.
- `capacity` and `members` answer from memory (what was asked for, and the outputs of the last
  update: ready instances, each one's `pool` and Nova `created` times), so a pass costs no CLI call.
- When a warm-pool member is `ready`: a warm one once the update that shelved it has landed (its
  output entry says `pool: warm`); a filling one once it is deployed and `cold_lead_s` have passed
  since its Nova creation time, the time cloud-init and ansible-pull take to configure it (the same
  lead time the autoscaler's `warm_pool.cold_lead_s` assumes; nothing on the instance is probed), after
  which it may be shelved. A new index never goes straight to `warm` (the provider creates it
  running, and shelving it then would keep an unconfigured disk), nor a filling one before it is
  ready: `apply` refuses both.
- Errors carry the last lines of the CLI's stderr, never its environment; a failed update is
  reported once through `failures(tier)` and the tier's target falls back to what is deployed, so
  the loop decides (and asks) again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pulumi import automation as auto
from pulumi.automation._cmd import CommandResult, OnOutput, create_command_error
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from autoscaler.ports import POOL_FILLING, POOL_WARM, ActuationError, Capacity, Member, overlapping

TIERS_KEY = "swell:tiers"
# Commands that change resources get the update timeout; every other CLI call is quick.
LONG_VERBS = ("up", "destroy", "refresh", "preview")


@dataclass(frozen=True)
class PulumiSettings:
    work_dir: Path  # the directory holding Pulumi.yaml (and the stack's config file)
    stack: str
    lock_attempts: int = 5
    lock_backoff_s: float = 2.0
    lock_backoff_max_s: float = 30.0
    pulumi_root: Path | None = None  # None: the `pulumi` found on PATH
    # `pulumi up --parallel`: resource operations at once. OVHcloud allows 20 API requests/s per
    # project on Nova and Neutron; creating an instance and its member is a few requests spread over
    # its boot, so 10 at once stays under the limit during a x4 jump (docs/autoscaler.md).
    parallel: int = 10
    update_timeout_s: float = 1800.0
    command_timeout_s: float = 120.0
    cancel_grace_s: float = 30.0
    policy_packs: tuple[Path, ...] = ()
    policy_pack_configs: tuple[Path, ...] = ()
    # Read the stack's config back from the backend before every update (`pulumi config refresh`).
    read_back: bool = True
    # How often the idle worker re-reads the stack outputs (an SRE's update changes them).
    reread_s: float = 60.0
    # How long after its Nova creation time a filling (warm-pool) instance counts as configured, so
    # it may be shelved: create + boot + cloud-init + ansible-pull, the cold lead time (600 s is the
    # simulator's and the autoscaler's default; measure it per tier). Per tier where it differs.
    cold_lead_s: float = 600.0
    cold_lead_s_by_tier: Mapping[str, float] = field(default_factory=dict)

    def cold_lead(self, tier: str) -> float:
        return float(self.cold_lead_s_by_tier.get(tier, self.cold_lead_s))


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _describe(exc: BaseException) -> str:
    # CommandError's text is the CLI's stdout and stderr; keep the stderr's last lines only.
    text = str(exc)
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    return _tail(text) or type(exc).__name__


class CommandTimeout(RuntimeError):
    pass


class GuardedPulumiCommand(auto.PulumiCommand):
    """The Pulumi CLI, each call run under `autoscaler.adapters.procguard` (see its docstring), with
    a timeout per call and a way to cancel every call in progress."""

    def __init__(self, root: str | None, settings: PulumiSettings) -> None:
        super().__init__(root=root)
        self._settings = settings
        self._running: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self.cancelled = threading.Event()
        self.killed_an_update = False  # a cancel or timeout interrupted `up`: its lock may remain

    def run(
        self,
        args: list[str],
        cwd: str,
        additional_env: Mapping[str, str],
        on_output: OnOutput | None = None,
        on_error: OnOutput | None = None,
    ) -> CommandResult:
        if "--non-interactive" not in args:
            args.insert(0, "--non-interactive")
        env = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
        verb = next((a for a in args if not a.startswith("-")), "")
        timeout = self._settings.update_timeout_s if verb in LONG_VERBS else self._settings.command_timeout_s
        guard = [
            sys.executable,
            "-m",
            "autoscaler.adapters.procguard",
            "--parent",
            str(os.getpid()),
            "--grace",
            str(self._settings.cancel_grace_s),
            "--",
            self.command,
            *args,
        ]
        out: list[str] = []
        err: list[str] = []

        def consume(stream: Any, callback: OnOutput | None, chunks: list[str]) -> None:
            for line in iter(stream.readline, ""):
                stripped = line.rstrip()
                if callback:
                    callback(stripped)
                chunks.append(stripped)
            stream.close()

        # start_new_session: Ctrl-C on a terminal reaches the autoscaler, which cancels cleanly,
        # not the CLI behind its back.
        with subprocess.Popen(
            guard,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            encoding="utf-8",
            start_new_session=True,
        ) as proc:
            with self._lock:
                self._running.add(proc)
            readers = [
                threading.Thread(target=consume, args=(proc.stdout, on_output, out), daemon=True),
                threading.Thread(target=consume, args=(proc.stderr, on_error, err), daemon=True),
            ]
            for r in readers:
                r.start()
            deadline = time.monotonic() + timeout
            timed_out = False
            try:
                while proc.poll() is None:
                    if self.cancelled.is_set() or time.monotonic() >= deadline:
                        timed_out = not self.cancelled.is_set()
                        if verb in LONG_VERBS:
                            self.killed_an_update = True
                        self._stop(proc)
                        break
                    time.sleep(0.05)
            finally:
                proc.wait()
                for r in readers:
                    r.join(timeout=5)
                with self._lock:
                    self._running.discard(proc)
        if timed_out:
            raise CommandTimeout(f"`pulumi {verb}` took longer than {timeout:g} s: cancelled")
        if self.cancelled.is_set() and proc.returncode != 0:
            raise CommandTimeout(f"`pulumi {verb}` cancelled")
        result = CommandResult(stdout="\n".join(out), stderr="\n".join(err), code=proc.returncode)
        if proc.returncode != 0:
            raise create_command_error(result)
        return result

    def _stop(self, proc: subprocess.Popen[str]) -> None:
        # The guard turns SIGTERM into SIGINT for the CLI (graceful cancel), then SIGKILL.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=self._settings.cancel_grace_s + 5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def cancel_all(self) -> None:
        self.cancelled.set()
        with self._lock:
            running = list(self._running)
        for proc in running:
            self._stop(proc)


@dataclass(frozen=True)
class Layout:
    """A tier's four sets of indices, as `swell:tiers.<tier>` holds them."""

    serving: tuple[int, ...]
    retiring: tuple[int, ...] = ()
    warm: tuple[int, ...] = ()
    filling: tuple[int, ...] = ()

    @classmethod
    def of(
        cls,
        serving: Sequence[int],
        retiring: Sequence[int] = (),
        warm: Sequence[int] = (),
        filling: Sequence[int] = (),
    ) -> Layout:
        return cls(*(tuple(sorted(set(s))) for s in (serving, retiring, warm, filling)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": len(self.serving),
            "instances": list(self.serving),
            "retiring": list(self.retiring),
            "warm": list(self.warm),
            "filling": list(self.filling),
        }

    @property
    def existing(self) -> set[int]:
        return {*self.serving, *self.retiring, *self.warm, *self.filling}

    def pool_of(self, index: int) -> str:
        return POOL_WARM if index in self.warm else POOL_FILLING if index in self.filling else ""

    def describe(self) -> str:
        pool = [f"{name} {len(s)}" for name, s in (("warm", self.warm), ("filling", self.filling)) if s]
        return f"{len(self.serving)}" + (f" ({', '.join(pool)})" if pool else "")


def _layout_of(spec: Mapping[str, Any]) -> Layout:
    count = int(spec.get("count", 0))
    serving = spec.get("instances")
    return Layout.of(
        range(count) if serving is None else [int(i) for i in serving],
        [int(i) for i in spec.get("retiring") or []],
        [int(i) for i in spec.get("warm") or []],
        [int(i) for i in spec.get("filling") or []],
    )


@dataclass
class _Update:
    targets: dict[str, Layout]
    started_at: float


@dataclass
class _Known:
    """What the actuator knows of the stack: the deployed layouts (config of the last successful
    update), its outputs, and the stack's limits (min, max) per tier."""

    layouts: dict[str, Layout] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, tuple[int, int]] = field(default_factory=dict)
    read_at: float = 0.0


class PulumiActuator:
    """`Fleet` (and `Actuator`) over one Pulumi stack; see the module docstring. `close()` cancels an
    update in progress and stops the worker."""

    name = "pulumi"

    def __init__(self, settings: PulumiSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._stack: auto.Stack | None = None
        self._command: GuardedPulumiCommand | None = None
        self._cv = threading.Condition()
        self._queued: dict[str, Layout] = {}
        self._in_flight: _Update | None = None
        self._known: _Known | None = None
        self._failures: dict[str, list[str]] = {}
        self._last: dict[str, Any] | None = None
        self._stop = False
        self._holds = 0  # open `batch()` blocks: queued targets wait for the end of the pass
        self._worker = threading.Thread(target=self._work, name=f"pulumi-{settings.stack}", daemon=True)
        self._started = False

    # --- the ports ------------------------------------------------------------------------------
    def capacity(self, tier: str) -> Capacity:
        target = self._target(tier)
        deployed = self._deployed_entries(tier)
        ready = sum(1 for i in target.serving if _serves(deployed.get(i)))
        return Capacity(
            current=len(target.serving), ready=ready, warm=len(target.warm), filling=len(target.filling)
        )

    def members(self, tier: str) -> list[Member]:
        target = self._target(tier)
        deployed = self._deployed_entries(tier)
        now = self.clock()
        out = []
        for index in sorted(target.existing):
            entry = deployed.get(index, {})
            started_at = _epoch(entry.get("created"), default=now)
            pool = target.pool_of(index)
            if pool == POOL_WARM:
                ready = entry.get("pool") == POOL_WARM  # the shelve has landed
            elif pool == POOL_FILLING:
                ready = self._configured(tier, entry, started_at, now)
            else:
                ready = index in target.serving and _serves(entry)
            out.append(
                Member(
                    index=index,
                    started_at=started_at,
                    retiring=index in target.retiring,
                    ready=ready,
                    # Asked to retire, but the update taking it out of rotation has not landed.
                    in_rotation=index in target.retiring and _serves(entry),
                    pool=pool,
                )
            )
        return out

    def apply(
        self,
        tier: str,
        serving: Sequence[int],
        retiring: Sequence[int],
        warm: Sequence[int] = (),
        filling: Sequence[int] = (),
    ) -> None:
        sets = {"serving": serving, "retiring": retiring, "warm": warm, "filling": filling}
        overlaps = overlapping(sets)
        negative = sorted(i for s in sets.values() for i in s if i < 0)
        if overlaps or negative:
            problems = overlaps + ([f"negative indices {negative}"] if negative else [])
            raise ActuationError(
                f"{tier}: refusing layout serving={list(serving)} retiring={list(retiring)} "
                f"warm={list(warm)} filling={list(filling)}: {'; '.join(problems)} "
                "(each index in one set, indices >= 0)",
                retryable=False,
            )
        layout = Layout.of(serving, retiring, warm, filling)
        lo, hi = self.limits(tier)
        if not lo <= len(layout.serving) <= hi:
            raise ActuationError(
                f"refusing {tier} -> {len(layout.serving)} instances: the stack's {TIERS_KEY}.{tier}.min/max "
                f"allow {lo}..{hi}",
                retryable=False,
            )
        in_max = len(layout.serving) + len(layout.warm) + len(layout.filling)
        if in_max > hi:
            raise ActuationError(
                f"refusing {tier}: {len(layout.serving)} serving + {len(layout.warm)} warm + "
                f"{len(layout.filling)} filling is {in_max}, above the stack's {TIERS_KEY}.{tier}.max {hi}",
                retryable=False,
            )
        current = self._target(tier)
        if layout == current:
            return  # idempotent: already asked for (queued, in flight or deployed)
        self._check_shelving(tier, layout, current)
        with self._cv:
            self._queued[tier] = layout  # a newer target supersedes a queued one
            self._cv.notify_all()
        self._start()

    def scale(self, tier: str, desired: int) -> None:
        """Without a drain: grow by taking retiring instances back first, then warm ones (unshelved),
        then filling ones, then new indices; shrink by removing the highest serving indices at once
        (what the stack did before drains). The pool is otherwise left as it is."""
        if desired < 0:
            raise ActuationError(f"refusing to scale {tier} to {desired} instances", retryable=False)
        current = self._target(tier)
        serving = list(current.serving)
        spare = [list(current.retiring), list(current.warm), list(current.filling)]
        for source in spare:
            while len(serving) < desired and source:
                serving.append(source.pop())
        taken = current.existing
        free = (i for i in range(10**6) if i not in taken)
        while len(serving) < desired:
            serving.append(next(free))
        serving = sorted(serving)[:desired]
        self.apply(tier, serving, *spare)

    def sessions(self, tier: str, indices: Sequence[int]) -> Mapping[int, int | None]:
        # Sessions on each instance come from Prometheus (`autoscaler.adapters.prometheus`); the
        # service asks its session source, not the actuator, when one is configured.
        return dict.fromkeys(indices)

    def limits(self, tier: str) -> tuple[int, int]:
        """The stack's own `swell:tiers.<tier>.min` and `.max`: the one source of the limits."""
        known = self._ensure_known()
        if tier not in known.limits:
            raise ActuationError(
                f"pulumi stack {self.settings.stack!r} has no {TIERS_KEY}.{tier} (tiers: "
                f"{', '.join(sorted(known.limits)) or 'none'})",
                retryable=False,
            )
        return known.limits[tier]

    def failures(self, tier: str) -> list[str]:
        """Errors of updates that failed for `tier` since the last call (each reported once)."""
        with self._cv:
            return self._failures.pop(tier, [])

    def status(self) -> dict[str, Any]:
        """The update in flight (since when, target counts), what is queued, the last result."""
        with self._cv:
            flight = self._in_flight
            return {
                "stack": self.settings.stack,
                "in_flight": None
                if flight is None
                else {
                    "since": flight.started_at,
                    "targets": {t: len(layout.serving) for t, layout in flight.targets.items()},
                    "retiring": {t: list(layout.retiring) for t, layout in flight.targets.items()},
                    "warm": {t: list(layout.warm) for t, layout in flight.targets.items()},
                    "filling": {t: list(layout.filling) for t, layout in flight.targets.items()},
                },
                "queued": {t: len(layout.serving) for t, layout in self._queued.items()},
                "last": self._last,
            }

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the queued targets until the block ends, so one update covers every tier the block
        changed (the loop wraps each pass in it: one `pulumi up` per pass and stack)."""
        with self._cv:
            self._holds += 1
        try:
            yield
        finally:
            with self._cv:
                self._holds -= 1
                self._cv.notify_all()

    # --- for tests, the benchmark and shutdown ---------------------------------------------------
    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._queued or self._in_flight is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.1))
        return True

    def cancel(self) -> None:
        """Cancel the update in progress (SIGINT, then SIGKILL after the grace period)."""
        if self._command is not None:
            self._command.cancel_all()

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._queued.clear()
            self._cv.notify_all()
        self.cancel()
        if self._started:
            self._worker.join(timeout=self.settings.cancel_grace_s + 10)

    # --- internals ------------------------------------------------------------------------------
    def _configured(self, tier: str, entry: Mapping[str, Any], started_at: float, now: float) -> bool:
        """A filling instance is configured (may be shelved) once deployed, running, and the cold
        lead time past its creation (see the module docstring)."""
        return (
            bool(entry)
            and entry.get("pool") != POOL_WARM
            and now - started_at >= self.settings.cold_lead(tier)
        )

    def _check_shelving(self, tier: str, layout: Layout, current: Layout) -> None:
        """Refuse to shelve what is not configured: a new index straight to warm, or a filling one
        before it is ready (see the module docstring)."""
        new = sorted(set(layout.warm) - current.existing - set(self._deployed_entries(tier)))
        if new:
            raise ActuationError(
                f"{tier}: refusing warm={list(layout.warm)}: {new} have no instance yet; a new instance "
                "goes to filling first (created, configured, then shelved), never straight to warm",
                retryable=False,
            )
        early = [
            m for m in self.members(tier) if m.pool == POOL_FILLING and m.index in layout.warm and not m.ready
        ]
        if early:
            lead = self.settings.cold_lead(tier)
            when = ", ".join(
                f"{m.index} (ready {max(0.0, m.started_at + lead - self.clock()):.0f} s from now)"
                for m in early
            )
            raise ActuationError(
                f"{tier}: refusing to shelve filling instance(s) still being configured: {when}; "
                f"a filling instance is configured {lead:g} s after its creation (cold_lead_s)"
            )

    def _start(self) -> None:
        with self._cv:
            if not self._started:
                self._started = True
                self._worker.start()

    def _target(self, tier: str) -> Layout:
        with self._cv:
            if tier in self._queued:
                return self._queued[tier]
            if self._in_flight is not None and tier in self._in_flight.targets:
                return self._in_flight.targets[tier]
        known = self._ensure_known()
        if tier not in known.layouts:
            raise ActuationError(
                f"pulumi stack {self.settings.stack!r} has no {TIERS_KEY}.{tier}", retryable=False
            )
        return known.layouts[tier]

    def _deployed_entries(self, tier: str) -> dict[int, dict[str, Any]]:
        known = self._ensure_known()
        tiers = known.outputs.get("tiers") or {}
        try:
            entries = tiers[tier]["instances"]
        except (KeyError, TypeError):
            return {}
        out = {}
        for n, entry in enumerate(entries):
            index = entry.get("index")
            if index is None:  # outputs from before instances carried their index
                index = int(str(entry.get("name", n)).rsplit("-", 1)[-1]) if "name" in entry else n
            out[int(index)] = entry
        return out

    def _select(self) -> auto.Stack:
        if self._stack is None:
            s = self.settings
            try:
                self._command = GuardedPulumiCommand(str(s.pulumi_root) if s.pulumi_root else None, s)
                self._stack = auto.select_stack(
                    stack_name=s.stack,
                    work_dir=str(s.work_dir),
                    opts=auto.LocalWorkspaceOptions(pulumi_command=self._command),
                )
            except auto.StackNotFoundError:
                raise ActuationError(
                    f"pulumi stack {s.stack!r} not found in {s.work_dir}", retryable=False
                ) from None
            except (
                auto.CommandError,
                FileNotFoundError,
                CommandTimeout,
                auto.errors.InvalidVersionError,
            ) as exc:
                raise ActuationError(f"pulumi: cannot select stack {s.stack!r}: {_describe(exc)}") from None
        return self._stack

    def _ensure_known(self) -> _Known:
        if self._known is None:
            self._known, _ = self._read(self._select(), read_back=self.settings.read_back)
        return self._known

    def _read(self, stack: auto.Stack, *, read_back: bool) -> tuple[_Known, dict[str, Any]]:
        """Config (read back from the backend first) and outputs, as the stack has them now."""
        try:
            if read_back:
                self._read_back(stack)
            config = _plain_config(stack.get_all_config())
            outputs = {k: v.value for k, v in stack.outputs().items()}
        except (auto.CommandError, CommandTimeout) as exc:
            raise ActuationError(
                f"pulumi stack {self.settings.stack!r}: cannot read it: {_describe(exc)}"
            ) from None
        tiers = config.get(TIERS_KEY)
        if not isinstance(tiers, dict):
            raise ActuationError(
                f"pulumi stack {self.settings.stack!r}: {TIERS_KEY} is missing", retryable=False
            )
        if isinstance(outputs.get("tiers"), str):
            outputs["tiers"] = json.loads(outputs["tiers"])
        try:
            layouts = {t: _layout_of(spec) for t, spec in tiers.items()}
            limits = {t: (int(spec.get("min", 0)), int(spec["max"])) for t, spec in tiers.items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ActuationError(
                f"pulumi stack {self.settings.stack!r}: {TIERS_KEY} is malformed ({exc}); "
                "`swell preview` names the key",
                retryable=False,
            ) from None
        return _Known(layouts, outputs, limits, read_at=time.monotonic()), config

    def _read_back(self, stack: auto.Stack) -> bool:
        """`pulumi config refresh`; False when the stack was never deployed (its file is all there is)."""
        try:
            stack.refresh_config()
        except auto.CommandError as exc:
            if "no previous deployment" not in str(exc):
                raise
            return False
        return True

    def _work(self) -> None:
        while True:
            with self._cv:
                while (not self._queued or self._holds) and not self._stop:
                    if not self._cv.wait(timeout=self.settings.reread_s) and not self._queued:
                        break  # idle long enough: re-read the outputs below
                if self._stop:
                    return
                batch = dict(self._queued)
                self._queued.clear()
                if batch:
                    self._in_flight = _Update(batch, self.clock())
            try:
                if batch:
                    self._update(batch)
                else:
                    with contextlib.suppress(ActuationError):
                        self._known, _ = self._read(self._select(), read_back=False)
            except Exception as exc:  # a bug must not kill the worker: report it on the tiers
                self._finish(batch, f"{type(exc).__name__}: {exc}")
            with self._cv:
                self._in_flight = None
                self._cv.notify_all()

    def _finish(self, batch: Mapping[str, Layout], error: str | None) -> None:
        with self._cv:
            self._last = {
                "at": self.clock(),
                "result": "failed" if error else "succeeded",
                "targets": {t: len(layout.serving) for t, layout in batch.items()},
                "error": error,
            }
            if error:
                for tier in batch:
                    self._failures.setdefault(tier, []).append(error)

    def _update(self, batch: Mapping[str, Layout]) -> None:
        s = self.settings
        stack = self._select()
        assert self._command is not None
        self._command.cancelled.clear()
        self._command.killed_an_update = False
        try:
            known, config = self._read(stack, read_back=s.read_back)
        except ActuationError as exc:
            self._finish(batch, str(exc))
            return
        original = config[TIERS_KEY]
        tiers = json.loads(json.dumps(original))
        for tier, layout in batch.items():
            if tier not in tiers:
                self._finish({tier: layout}, f"pulumi stack {s.stack!r} has no {TIERS_KEY}.{tier}")
                continue
            tiers[tier].update(layout.to_dict())
        refused = _refusal(config, tiers, s.stack)
        if refused:
            self._known = known
            self._finish(batch, f"not written, the stack would refuse it: {refused}")
            return
        what = ", ".join(f"{t} -> {layout.describe()}" for t, layout in sorted(batch.items()))
        try:
            stack.set_all_config_json(_tiers_json(tiers))
            for attempt in Retrying(
                retry=retry_if_exception_type(auto.ConcurrentUpdateError),
                stop=stop_after_attempt(s.lock_attempts),
                wait=wait_exponential(multiplier=s.lock_backoff_s, max=s.lock_backoff_max_s),
                reraise=True,
            ):
                with attempt:
                    stack.up(
                        message=f"swell autoscaler: {what}",
                        parallel=s.parallel,
                        policy_packs=[str(p) for p in s.policy_packs] or None,
                        policy_pack_configs=[str(p) for p in s.policy_pack_configs] or None,
                    )
        except auto.ConcurrentUpdateError:
            self._failed(
                stack,
                batch,
                original,
                f"pulumi stack {s.stack!r} stayed locked by another update after {s.lock_attempts} attempts",
            )
            return
        except CommandTimeout as exc:
            self._failed(stack, batch, original, f"pulumi up of stack {s.stack!r} ({what}): {exc}")
            return
        except auto.CommandError as exc:
            self._failed(
                stack, batch, original, f"pulumi up of stack {s.stack!r} ({what}) failed: {_describe(exc)}"
            )
            return
        try:
            self._known, _ = self._read(stack, read_back=False)
        except ActuationError as exc:
            self._known = None  # read again on the next use
            self._finish(batch, f"updated, but the stack could not be read back: {exc}")
            return
        self._finish(batch, None)

    def _failed(self, stack: auto.Stack, batch: Mapping[str, Layout], original: Any, error: str) -> None:
        """Put the last successful update's config back (or, on a stack never deployed, the config
        read before the write), release a lock a killed CLI left, and report."""
        assert self._command is not None
        self._command.cancelled.clear()
        if self._command.killed_an_update:
            with contextlib.suppress(auto.CommandError, CommandTimeout):
                stack.cancel()  # `pulumi cancel`: the killed CLI's lock on the stack
        try:
            if not self._read_back(stack):
                stack.set_all_config_json(_tiers_json(original))
            self._known, _ = self._read(stack, read_back=False)
        except (ActuationError, auto.CommandError, CommandTimeout) as exc:
            self._known = None
            error = f"{error}; and the previous config could not be put back ({_describe(exc)})"
        self._finish(batch, error)


def _tiers_json(tiers: Any) -> str:
    # `pulumi config set-all --json` takes what `pulumi config --json` prints: the tiers object whole.
    return json.dumps({TIERS_KEY: {"value": json.dumps(tiers), "objectValue": tiers, "secret": False}})


def _plain_config(config: Mapping[str, auto.ConfigValue]) -> dict[str, Any]:
    """Config values as the program sees them: objects and lists parsed from their JSON text."""
    out: dict[str, Any] = {}
    for key, item in config.items():
        value: Any = item.value
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[key] = value
    return out


def _refusal(config: Mapping[str, Any], tiers: Mapping[str, Any], stack: str) -> str | None:
    """What the stack program would refuse in this configuration (its own parser), or None."""
    from stacks.config import ConfigError, parse  # the stack's validation, the one source of its rules

    try:
        parse({**config, TIERS_KEY: tiers}, stack)
    except ConfigError as exc:
        return "; ".join(exc.problems)
    return None


def _serves(entry: Mapping[str, Any] | None) -> bool:
    """Deployed in rotation: neither retiring nor in the pool (outputs from before the warm pool
    carry no `pool`)."""
    return entry is not None and bool(entry) and not entry.get("retiring") and not entry.get("pool")


def _epoch(text: Any, default: float) -> float:
    if not isinstance(text, str) or not text:
        return default
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default
