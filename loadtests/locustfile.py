"""The locustfile: the tiers' users and one load shape, usable on its own against any host.

    locust -f loadtests/locustfile.py --headless --host http://web-lb:80
    SWELL_PROFILE=spike SWELL_SPEED=10 SWELL_BASE_USERS=50 locust -f loadtests/locustfile.py --headless ...

Environment: `SWELL_PROFILE` (surge400, daily, spike, flash, step, soak; default surge400), `SWELL_SPEED`
(time compression, default 1), `SWELL_BASE_USERS` (users at x1, default 30), each tier's
`SWELL_<TIER>_HOST` (`SWELL_CHAT_HOST=ws://host:port`; default: --host), `SWELL_REQUEST_LOG` (a CSV
file: one line per request, and the user count every second, which `swell drill` reads for its live
view and report).
With `SWELL_PROFILE=none` no shape is loaded and Locust's `--users`/`--spawn-rate` apply.
The same file runs in Locust's distributed mode (`--master` / `--worker`): the shape runs on the
master; set `SWELL_REQUEST_LOG` on each worker to a file of its own.
"""

from __future__ import annotations

import os
import time
from typing import Any

import gevent
from locust import events

from loadtests.shapes import SHAPES, configured
from loadtests.users import chat_messages, user_classes

# One user class per tier of the catalog (`WebUser`, `ChatUser`, ...): Locust picks up the User
# classes of this module's namespace.
_users = user_classes()
globals().update(_users)
__all__ = sorted(_users)

_profile = os.environ.get("SWELL_PROFILE", "surge400")
if _profile != "none":
    if _profile not in SHAPES:
        raise SystemExit(f"SWELL_PROFILE={_profile!r}: expected one of {', '.join(SHAPES)} or none")
    # The one shape class in this module's namespace (Locust picks it up by type).
    Shape = configured(
        SHAPES[_profile],
        speed=float(os.environ.get("SWELL_SPEED", "1")),
        base_users=int(os.environ.get("SWELL_BASE_USERS", "30")),
    )

_log_path = os.environ.get("SWELL_REQUEST_LOG")
_log: Any = open(_log_path, "a", buffering=1 << 16) if _log_path else None  # noqa: SIM115 (process-long)


@events.request.add_listener
def _log_request(request_type: str, name: str, response_time: float, exception: Any, **_: Any) -> None:
    if _log is not None:
        tier = name.split(" ", 1)[0]
        _log.write(f"R,{time.time():.3f},{tier},{name},{response_time:.1f},{0 if exception else 1}\n")


@chat_messages.add_listener
def _log_chat_message(tier: str, delivered: int, lost: int, late: int, **_: Any) -> None:
    if _log is not None:
        _log.write(f"M,{time.time():.3f},{tier},{delivered},{lost},{late}\n")


@events.test_start.add_listener
def _start_user_log(environment: Any, **_: Any) -> None:
    if _log is None or environment.runner is None:
        return

    def loop() -> None:
        while True:
            _log.write(f"U,{time.time():.3f},{environment.runner.user_count}\n")
            _log.flush()
            gevent.sleep(1.0)

    gevent.spawn(loop)


@events.quitting.add_listener
def _close_log(**_: Any) -> None:
    if _log is not None:
        _log.flush()
        _log.close()
