"""SQLite connections for the embedded stores (local index, persistent cache tier).

Write-ahead logging lets every worker process read while one writes; a connection never
crosses a thread or a fork, so each thread of each process opens its own.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path


def connect(path: Path, busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """A connection tuned for many reader processes and one writer at a time (autocommit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    return con


class ThreadConnections:
    """One connection per thread and process, created on first use; `schema` runs once at start."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._local = threading.local()
        con = connect(path)
        try:
            con.executescript(schema)
        finally:
            con.close()

    def get(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None or getattr(self._local, "pid", None) != os.getpid():
            con = connect(self.path)
            self._local.con, self._local.pid = con, os.getpid()
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None and getattr(self._local, "pid", None) == os.getpid():
            con.close()
        self._local.con = None

    def transaction(self, work: list[tuple[str, list[tuple]]]) -> None:
        """Run `executemany` statements in one write transaction."""
        con = self.get()
        con.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in work:
                con.executemany(sql, rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
