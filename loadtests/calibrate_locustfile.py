"""The calibration locustfile: one tier's users (loadtests/users.py) under the step profile
(loadtests/steps.py), every step measured by the runner that runs the shape.

    SWELL_CALIBRATE_TIER=web SWELL_CALIBRATE_USERS=10,20,30,40 SWELL_CALIBRATE_STEP_S=60 \\
      locust -f loadtests/calibrate_locustfile.py --headless --host http://staging-web:80

`swell calibrate` runs it for you and judges the steps. Environment:

- `SWELL_CALIBRATE_TIER`: web, chat or video (default web); only that tier's user class is loaded.
- `SWELL_CALIBRATE_USERS` (required), `SWELL_CALIBRATE_STEP_S` (60), `SWELL_CALIBRATE_SETTLE_S`
  (a quarter of the step), `SWELL_CALIBRATE_LAG_S` (0; the master's delay in distributed mode),
  `SWELL_CALIBRATE_SPREAD_S` (1: a step's new users start over one pacing period): the `StepPlan`.
- `SWELL_CALIBRATE_OUT`: a file that receives one JSON line per measured step (also printed).
- `SWELL_CALIBRATE_REPORT_S`: how often workers send their stats to the master (1 s; Locust's
  default is 3 s, too coarse for short steps).
- `SWELL_CHAT_HOST`, `SWELL_VIDEO_HOST`: as for loadtests/locustfile.py (default: --host as ws://).

The same file runs distributed (`--master` / `--worker`): the master runs the shape and measures.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from pathlib import Path
from typing import Any

import gevent
import locust.runners
from locust import events

from loadtests import users
from loadtests.knee import GOLDEN, OFFERED_PER_USER, PACED, TIERS, StepPlan
from loadtests.steps import StepRecorder, configured

_tier = os.environ.get("SWELL_CALIBRATE_TIER", "web")
if _tier not in TIERS:
    raise SystemExit(f"SWELL_CALIBRATE_TIER={_tier!r}: expected one of {', '.join(TIERS)}")
try:
    _plan = StepPlan.from_env(os.environ)
except ValueError as exc:
    raise SystemExit(f"calibration locustfile: {exc}") from None

# How a calibrated user paces its requests: one per period (a WebUser's own rate, one a second,
# `OFFERED_PER_USER`), always at the same phase of the period, and the phases spread evenly: the
# k-th user of this process at frac(k x GOLDEN), shifted per worker by frac(index x sqrt(2)), on the
# wall clock, which the processes of one machine share. Locust starts a step's new users together
# and `constant_pacing` keeps each on the schedule of its creation: a synchronized crowd that queues
# at a third of an instance's capacity. Random phases, fixed or drawn anew each period, cluster by
# chance: the queue they build moved the knee by 15% between runs (28-32 requests/s). Golden-ratio
# phases leave no cluster for any number of users (the three-gap theorem), so every run offers the
# same even load, and the knee measures the instance, not the luck of the draw.
PERIOD_S = 1.0 / OFFERED_PER_USER[_tier]
_WORKER_SHIFT = math.sqrt(2) - 1
_next_user = itertools.count()


def _first_slot(self: Any) -> None:  # a CalibratedUser
    runner = self.environment.runner
    worker = runner.worker_index if isinstance(runner, locust.runners.WorkerRunner) else 0
    phase = ((next(_next_user) * GOLDEN + worker * _WORKER_SHIFT) % 1.0) * PERIOD_S
    now = time.time()
    slot = math.floor(now / PERIOD_S) * PERIOD_S + phase
    self._swell_slot = slot if slot >= now else slot + PERIOD_S
    gevent.sleep(self._swell_slot - now)


def _next_in_slot(self: Any) -> float:
    # Behind schedule (a slow answer past the knee), the user sends at once: the offered load stays.
    self._swell_slot += PERIOD_S
    return max(0.0, self._swell_slot - time.time())


_base = users.user_classes()[f"{_tier.capitalize()}User"]
# Session and participant users hold sessions (their own waits between them); request users are paced.
_paced = {"on_start": _first_slot, "wait_time": _next_in_slot} if _tier in PACED else {}
# Locust runs the User classes and the one shape found in this module's namespace: the calibrated
# tier's user only.
CalibratedUser = type("CalibratedUser", (_base,), {**_paced, "__module__": __name__})
# Locust runs every User class it finds in this namespace: the base class must not stay in it, or
# half the users would be plain, unpaced tier users (it did: a crowd at one phase).
del _base
Shape = configured(_plan)

# Workers report their stats to the master this often (a module global Locust reads at each report).
locust.runners.WORKER_REPORT_INTERVAL = float(os.environ.get("SWELL_CALIBRATE_REPORT_S", "1"))

_out = os.environ.get("SWELL_CALIBRATE_OUT")


@events.init.add_listener
def _recorder(environment: locust.env.Environment, **_: object) -> None:
    environment.events.test_start.add_listener(
        StepRecorder(environment, _tier, Path(_out) if _out else None).start
    )
