"""Locust's request log as the drill reads it, and the one percentile the drill reports.

`loadtests/locustfile.py` appends a line per request (`R,time,tier,name,ms,ok`), a line per chat
message a user received (`M,time,tier,delivered,lost,late`: see `loadtests.users.SessionUser`) and
the user count every second (`U,time,users`); `RequestLog.poll` reads what was added since the last
call. The live
view, the SLO verdict and the per-second timeline all take their p95 from `percentile`, so the
figure on the screen and the one in the report are computed alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np


class Request(NamedTuple):
    t: float  # Unix time the request ended
    tier: str
    ms: float
    ok: bool


# A live chat message a user (`loadtests.users.SessionUser`) receives later than this after the
# server stamped it counts as late. People read a chat as live when a message shows within a second
# or two; 2 s is also well above the drill's p95 limit for a message's round trip, so only a message
# held back (a subscriber behind, a backlog) crosses it. Messages replayed after a reconnect
# (`since`) are not judged late: the user was away.
LATE_AFTER_S = 2.0


class ChatMessages(NamedTuple):
    """A chat message a user received (`delivered` 1), the messages missing before it in its room's
    sequence (`lost`), and whether it came late (`late` 0 or 1)."""

    t: float
    tier: str
    delivered: int
    lost: int
    late: int


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile, linearly interpolated between the closest ranks (numpy's default);
    None for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values), q))


class RequestLog:
    """Reads Locust's request log as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.requests: list[Request] = []
        self.users: list[tuple[float, int]] = []
        self.chat: list[ChatMessages] = []
        self._partial = ""

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path) as f:
            f.seek(self.offset)
            chunk = f.read()
            self.offset = f.tell()
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()  # a line Locust has not finished writing
        for line in lines:
            parts = line.split(",")
            try:
                if parts[0] == "R" and len(parts) == 6:
                    self.requests.append(Request(float(parts[1]), parts[2], float(parts[4]), parts[5] == "1"))
                elif parts[0] == "M" and len(parts) == 6:
                    self.chat.append(
                        ChatMessages(float(parts[1]), parts[2], int(parts[3]), int(parts[4]), int(parts[5]))
                    )
                elif parts[0] == "U" and len(parts) == 3:
                    self.users.append((float(parts[1]), int(parts[2])))
            except ValueError:
                continue  # a line cut by a crash: skip it
