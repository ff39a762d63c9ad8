"""Safe execution of untrusted SQL against a user's SQLite database.

A predicted query runs on a connection that cannot write: the database is opened with a read-only URI,
`PRAGMA query_only` is on, ATTACH is disabled by limit and by the authorizer, extension loading stays
off, and only read operations are authorized. Every query runs under a wall-clock deadline enforced by
SQLite's progress handler (no process per query) and a row cap.
"""

from __future__ import annotations

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
    conn.text_factory = _decode_text
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


class ReadOnlyDatabase:
    """Thread-safe executor over one database file: one read-only connection per thread."""

    def __init__(self, path: str | os.PathLike[str], timeout_s: float = 5.0, row_cap: int = 100_000) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.row_cap = row_cap
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        open_readonly(self.path).close()  # fail early on a missing or unreadable file

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_readonly(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def execute(self, sql: str, timeout_s: float | None = None, row_cap: int | None = None) -> ExecResult:
        """Run one query under the deadline and row cap; never raises for SQL problems."""
        conn = self._conn()
        limit = self.timeout_s if timeout_s is None else timeout_s
        cap = self.row_cap if row_cap is None else row_cap
        start = time.perf_counter()
        deadline = start + limit
        timed_out = False

        def check() -> int:
            nonlocal timed_out
            if time.perf_counter() > deadline:
                timed_out = True
                return 1
            return 0

        conn.set_progress_handler(check, _PROGRESS_EVERY)
        cur = None
        try:
            cur = conn.execute(sql)
            rows: list[tuple] = []
            while True:
                chunk = cur.fetchmany(1000)
                if not chunk:
                    break
                rows.extend(chunk)
                if len(rows) > cap:
                    return ExecResult(
                        None, "too_many_rows", f"more than {cap} rows", time.perf_counter() - start
                    )
            return ExecResult(rows, seconds=time.perf_counter() - start)
        except sqlite3.Error as exc:
            elapsed = time.perf_counter() - start
            if timed_out:
                return ExecResult(None, "timeout", f"timed out after {limit:g} s", elapsed)
            msg = str(exc) or type(exc).__name__
            if "not authorized" in msg.lower():
                return ExecResult(None, "not_a_query", f"refused: {msg}", elapsed)
            return ExecResult(None, classify_error(msg), msg, elapsed)
        except (MemoryError, OverflowError, ValueError) as exc:
            return ExecResult(None, "runtime", f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
        finally:
            if cur is not None:
                try:
                    cur.close()
                except sqlite3.Error:
                    pass
            conn.set_progress_handler(None, 0)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
