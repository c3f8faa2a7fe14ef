"""Noticing new mail in the outbox without hammering the database.

An idle worker waits for a commit by anyone before it claims again. On SQLite,
``PRAGMA data_version`` on a connection of its own changes whenever another connection
(of any process) has committed; reading it touches no table and takes microseconds, so
an idle worker can look every few milliseconds and claim new mail within that time
instead of after a whole poll interval. Other databases poll at the interval.
"""

from __future__ import annotations

import sqlite3
from contextlib import suppress

from sqlalchemy import Engine

__all__ = ["CommitWatch"]


class CommitWatch:
    """``changed()`` is True when something was committed since the last call."""

    def __init__(self, engine: Engine) -> None:
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            with suppress(sqlite3.Error):
                self._conn = sqlite3.connect(database, timeout=1, check_same_thread=False)
                self._version = self._read()

    @property
    def available(self) -> bool:
        return self._conn is not None

    def _read(self) -> int | None:
        if self._conn is None:
            return None
        try:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None

    def changed(self) -> bool:
        version = self._read()
        if version is None or version == self._version:
            return False
        self._version = version
        return True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
