"""The embedded state store: state survives a restart (a new store object on the same file), overrides
from another process are never lost to the loop's saves, and a broken file is a clear error."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoscaler.adapters.sqlite_store import SQLiteStateStore
from autoscaler.ports import LoopState, Override, StateStoreError


def _override(n: int, tier: str = "video") -> Override:
    return Override(
        id=f"o{n}",
        tier=tier,
        factor=4.0,
        floor=12,
        created_at=1000.0 + n,
        expires_at=8200.0,
        reason="keynote",
    )


def test_an_empty_store_starts_with_empty_state(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "state" / "swell.db")
    assert store.load_loop_state() == LoopState()
    assert store.overrides() == []


def test_loop_state_and_overrides_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "swell.db"
    state = LoopState(
        policy_state={"web": {"history": [[1.0, 120.5], [16.0, 240.0]], "last_scale_up": 16.0}},
        last_desired={"web": 8, "video": 12},
        recent_decisions={"web": [{"desired": 8, "reason": "surge x2"}]},
    )
    first = SQLiteStateStore(path)
    first.save_loop_state(state)
    first.add_override(_override(1))
    restarted = SQLiteStateStore(path)
    assert restarted.load_loop_state() == state
    assert restarted.overrides() == [_override(1)]


def test_cancel_removes_only_the_named_override(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "swell.db")
    store.add_override(_override(1))
    store.add_override(_override(2, tier="web"))
    assert store.cancel_override("o1") is True
    assert store.cancel_override("o1") is False
    assert [o.id for o in store.overrides()] == ["o2"]


LAPTOP = """
import sys
import time
from autoscaler.adapters.sqlite_store import SQLiteStateStore
from autoscaler.ports import Override
store = SQLiteStateStore(sys.argv[1])
for n in range(50):
    store.add_override(Override(f"o{100 + n}", "video", 4.0, 12, 1000.0 + n, 8200.0, "keynote"))
    time.sleep(0.02)  # an on-call engineer is slower than the loop: spread the writes out
"""


def test_overrides_added_by_another_process_survive_the_loops_saves(tmp_path: Path) -> None:
    path = tmp_path / "swell.db"
    store = SQLiteStateStore(path)
    laptop = subprocess.Popen([sys.executable, "-c", LAPTOP, str(path)])  # `swell surge` elsewhere
    saves, deadline = 0, time.monotonic() + 60
    while laptop.poll() is None and time.monotonic() < deadline:
        store.save_loop_state(LoopState(last_desired={"web": saves}))  # the leader, meanwhile
        saves += 1
        # The loop saves once per pass; back to back, on a loaded machine, it held the write lock
        # so often that the other writer waited past SQLite's 10 s busy timeout (a flaky failure).
        time.sleep(0.005)
    assert laptop.wait(timeout=5) == 0
    assert saves > 5, "the two writers did not overlap"
    assert len(store.overrides()) == 50
    assert store.load_loop_state().last_desired == {"web": saves - 1}


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "swell.db"
    path.write_text("this is not sqlite\n" * 100)
    with pytest.raises(StateStoreError, match=r"swell\.db: cannot open"):
        SQLiteStateStore(path)


def test_drains_survive_a_restart(tmp_path: Path) -> None:
    state = LoopState(drains={"web": {"2": {"since": 1.0, "deadline": 901.0, "sessions": None}}})
    SQLiteStateStore(tmp_path / "s.db").save_loop_state(state)
    assert SQLiteStateStore(tmp_path / "s.db").load_loop_state().drains == state.drains
