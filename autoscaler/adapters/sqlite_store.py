"""The embedded state store: one SQLite file holding the loop state and the on-call overrides.

SQLite gives atomic writes (a crash mid-save leaves the previous state), and WAL mode lets
`swell surge` from another process add an override while the service reads and writes its loop
state: the two live in separate tables, so neither write can drop the other's data.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from autoscaler.ports import LoopState, Override, StateStoreError

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS loop_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS overrides (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
"""


class SQLiteStateStore:
    """`StateStore` in a SQLite file; the parent directory is created when missing."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateStoreError(f"state store {self.path}: cannot open: {exc}") from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per operation: the store is used from the loop and from CLI
        # commands in other processes, and sqlite3 connections must not cross threads.
        db = sqlite3.connect(self.path, timeout=10.0)
        try:
            with db:  # commits, or rolls back on error
                yield db
        finally:
            db.close()

    def _run(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            with self._connect() as db:
                return fn(db)
        except sqlite3.Error as exc:
            raise StateStoreError(f"state store {self.path}: cannot {what}: {exc}") from exc

    def load_loop_state(self) -> LoopState:
        row = self._run(
            "read the loop state", lambda db: db.execute("SELECT body FROM loop_state").fetchone()
        )
        if row is None:
            return LoopState()
        try:
            return LoopState.from_dict(json.loads(row[0]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateStoreError(f"state store {self.path}: loop state is corrupt: {exc}") from exc

    def save_loop_state(self, state: LoopState) -> None:
        body = json.dumps(state.to_dict(), sort_keys=True)
        self._run(
            "save the loop state",
            lambda db: db.execute(
                "INSERT OR REPLACE INTO loop_state (id, body) VALUES (1, ?)",
                (body,),
            ),
        )

    def add_override(self, override: Override) -> None:
        self._run(
            "add an override",
            lambda db: db.execute(
                "INSERT INTO overrides (id, body) VALUES (?, ?)",
                (override.id, json.dumps(override.to_dict())),
            ),
        )

    def cancel_override(self, override_id: str) -> bool:
        cursor = self._run(
            "cancel an override", lambda db: db.execute("DELETE FROM overrides WHERE id = ?", (override_id,))
        )
        return bool(cursor.rowcount)

    def overrides(self) -> list[Override]:
        rows = self._run("read the overrides", lambda db: db.execute("SELECT body FROM overrides").fetchall())
        found = [Override.from_dict(json.loads(body)) for (body,) in rows]
        return sorted(found, key=lambda o: (o.created_at, o.id))
