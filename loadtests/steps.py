"""The calibration's step profile as a Locust `LoadTestShape` (data: a `StepPlan`, `tick()` depending
only on the run time, as loadtests/shapes.py), and `StepRecorder`, which measures each step on the
process that runs the shape: Locust's own runner in local mode, the master in distributed mode
(there the workers' stats arrive every report interval: `StepPlan.lag_s`).

Each measured step is one JSON line, appended to `SWELL_CALIBRATE_OUT` when set and printed on
stdout prefixed with `STEP_PREFIX` (on Kubernetes, `kubectl logs` of the master carries them).
Imports locust: only the calibration locustfile imports this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import gevent
import locust
from locust import LoadTestShape
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.knee import OFFERED_PER_USER, STEP_PREFIX, Snapshot, StepPlan, measure


class StepLoad(LoadTestShape):
    """Users per step from `plan`; None (Locust stops) after the plan."""

    abstract = True
    plan: ClassVar[StepPlan] = StepPlan(users=(1,), step_s=10.0, settle_s=2.0)

    def tick(self) -> tuple[int, float] | None:
        return self.plan.users_at(self.get_run_time())


def configured(plan: StepPlan) -> type[StepLoad]:
    """A runnable subclass of `StepLoad` with `plan` (Locust runs the one non-abstract shape)."""
    return type("StepLoad", (StepLoad,), {"plan": plan, "abstract": False})


def snapshot(environment: Environment) -> Snapshot:
    total = environment.stats.total
    return Snapshot(total.num_requests, total.num_failures, dict(total.response_times))


class StepRecorder:
    """Measures every step of the running shape's plan, in a greenlet of the runner that runs it."""

    def __init__(self, environment: Environment, tier: str, out: Path | None) -> None:
        self.environment = environment
        self.tier = tier
        self.out = out

    def start(self, **_: Any) -> None:
        """A `test_start` listener: the runner that runs the shape measures; workers do not."""
        if isinstance(self.environment.runner, WorkerRunner) or self.environment.shape_class is None:
            return
        gevent.spawn(self._run)

    def _wait_until(self, run_time_s: float) -> None:
        shape = self.environment.shape_class
        assert shape is not None
        while (left := run_time_s - shape.get_run_time()) > 0:
            gevent.sleep(min(left, 0.5))

    def _run(self) -> None:
        shape = self.environment.shape_class
        assert isinstance(shape, StepLoad)
        plan = shape.plan
        for index, users in enumerate(plan.users):
            start, end = plan.window(index)
            self._wait_until(start)
            before = snapshot(self.environment)
            self._wait_until(end)
            step = measure(
                index,
                users,
                users * OFFERED_PER_USER[self.tier],
                end - start,
                before,
                snapshot(self.environment),
            )
            runner = self.environment.runner
            self._emit(
                step.to_dict()
                | {
                    "tier": self.tier,
                    # The conditions, for a log read back by `swell calibrate --from-log`.
                    "step_s": plan.step_s,
                    "settle_s": plan.settle_s,
                    "lag_s": plan.lag_s,
                    "workers": getattr(runner, "worker_count", 0) if isinstance(runner, MasterRunner) else 0,
                    "locust_version": locust.__version__,
                    "host": self.environment.host,
                }
            )

    def _emit(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        print(STEP_PREFIX + line, flush=True)
        if self.out is not None:
            with open(self.out, "a") as f:
                f.write(line + "\n")
