"""Safe execution of untrusted SQL against a user's SQLite database.

A predicted query runs on a connection that cannot write: the database is opened with a read-only URI,
`PRAGMA query_only` is on, ATTACH is disabled by limit and by the authorizer, extension loading stays
off, and only read operations are authorized. Every query runs under a wall-clock deadline enforced by
SQLite's progress handler (no process per query) and a row cap.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

# Authorizer action codes that a read-only query legitimately needs.
_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}
_READ_PRAGMAS = {"table_info", "table_xinfo", "foreign_key_list", "index_list", "index_info"}
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_PROGRESS_EVERY = 2000  # VM instructions between deadline checks


@dataclass
class ExecResult:
    """Rows of a query, or the reason it has none."""

    rows: list[tuple] | None
    error_kind: str | None = None  # timeout | too_many_rows | syntax | no_such_table | no_such_column | runtime
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rows is not None


def _authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
    if action == sqlite3.SQLITE_PRAGMA:  # schema introspection only, never a setting
        return sqlite3.SQLITE_OK if (arg1 or "").lower() in _READ_PRAGMAS else sqlite3.SQLITE_DENY
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def open_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open `path` so that nothing done through the connection can change the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"database not found: {p}")
    uri = f"file:{quote(str(p.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    conn.text_factory = _decode_text  # text that is not UTF-8 never raises
    conn.execute("PRAGMA query_only = ON")
    if hasattr(conn, "setlimit"):
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.set_authorizer(_authorizer)
    return conn


def classify_error(message: str) -> str:
    """Map an SQLite error message to an error class used in feedback."""
    m = message.lower()
    if "no such table" in m:
        return "no_such_table"
    if "no such column" in m or "ambiguous column" in m:
        return "no_such_column"
    if "syntax error" in m or "incomplete input" in m or "unrecognized token" in m:
        return "syntax"
    return "runtime"


class _Guarded:
    """One thread's read-only connection and the deadline its progress handler enforces (installed once)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.deadline = math.inf
        self.timed_out = False
        conn.text_factory = str  # decoding in C; `ReadOnlyDatabase.execute` falls back to `_decode_text`
        conn.set_progress_handler(self._past_deadline, _PROGRESS_EVERY)

    def _past_deadline(self) -> int:
        if time.perf_counter() > self.deadline:
            self.timed_out = True
            return 1
        return 0


class ReadOnlyDatabase:
    """Thread-safe executor over one database file: one read-only connection per thread."""

    def __init__(self, path: str | os.PathLike[str], timeout_s: float = 5.0, row_cap: int = 100_000) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.row_cap = row_cap
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._guarded(open_readonly(self.path))  # fails early on a missing or unreadable file

    def _guarded(self, conn: sqlite3.Connection | None = None) -> _Guarded:
        guarded = getattr(self._local, "guarded", None)
        if guarded is None:
            guarded = self._local.guarded = _Guarded(conn or open_readonly(self.path))
            with self._lock:
                self._all.append(guarded.conn)
        return guarded

    def execute(self, sql: str, timeout_s: float | None = None, row_cap: int | None = None) -> ExecResult:
        """Run one query under the deadline and row cap; never raises for SQL problems."""
        guarded = self._guarded()
        conn = guarded.conn
        limit = self.timeout_s if timeout_s is None else timeout_s
        cap = self.row_cap if row_cap is None else row_cap
        start = time.perf_counter()
        guarded.deadline, guarded.timed_out = start + limit, False
        try:
            try:
                rows = self._fetch(conn, sql, cap)
            except sqlite3.OperationalError as exc:
                if "could not decode" not in str(exc).lower():
                    raise
                conn.text_factory = _decode_text  # text that is not UTF-8: decode it leniently, in Python
                try:
                    rows = self._fetch(conn, sql, cap)
                finally:
                    conn.text_factory = str
            if rows is None:
                return ExecResult(None, "too_many_rows", f"more than {cap} rows", time.perf_counter() - start)
            return ExecResult(rows, seconds=time.perf_counter() - start)
        except sqlite3.Error as exc:
            elapsed = time.perf_counter() - start
            if guarded.timed_out:
                return ExecResult(None, "timeout", f"timed out after {limit:g} s", elapsed)
            msg = str(exc) or type(exc).__name__
            if "not authorized" in msg.lower():
                return ExecResult(None, "not_a_query", f"refused: {msg}", elapsed)
            return ExecResult(None, classify_error(msg), msg, elapsed)
        except (MemoryError, OverflowError, ValueError) as exc:
            return ExecResult(None, "runtime", f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
        finally:
            guarded.deadline = math.inf

    @staticmethod
    def _fetch(conn: sqlite3.Connection, sql: str, cap: int) -> list[tuple] | None:
        """All rows of `sql`, or None when there are more than `cap`."""
        cur = conn.execute(sql)
        try:
            rows = cur.fetchmany(cap + 1)
        finally:
            try:
                cur.close()
            except sqlite3.Error:
                pass
        return None if len(rows) > cap else rows

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
