"""Safe execution of untrusted SQL against a user's SQLite database.

A query runs on a connection that cannot write: the database is opened with a read-only URI, `PRAGMA
query_only` is on, ATTACH is disabled by limit and by the authorizer, extension loading stays off, the schema
is not trusted, and only read operations are authorized. Every query is bounded in time and memory:

- **time:** a watchdog thread interrupts a connection whose query runs past its deadline
  (`sqlite3_interrupt`, checked by SQLite between VM steps; no per-step Python callback), and the Python side
  checks the deadline between the chunks of rows it materialises;
- **memory:** per-connection limits (`setlimit`: a value or a stored row ≤ 5 MB, SQL text ≤ 100 kB, expression
  depth, compound selects, columns, …), SQLite's process-wide heap limit (soft 32 MiB, hard 64 MiB: beyond it an
  allocation fails and the query ends with "out of memory"), temporary b-trees and sorts on temporary files
  (unlinked at once, in the system's temp directory) rather than in memory, and a budget for the rows built in
  Python (48 MiB of tuples and values). Queries run first with values ≤ 1 MB, their rows fetched in chunks the
  budget left could hold even if every row were as large as SQLite can make one there; the rare query that meets
  a larger value runs again with values ≤ 5 MB and each row measured as SQLite hands it over. Peak memory
  growth stays under ~180 MB whatever the query;
- **rows:** a row cap.

A database in WAL mode is read without creating `-wal`/`-shm` files next to it: when both already exist (a
writer has it open) they are shared as usual; otherwise the file is opened `immutable`, which reads the main
file only. The trade-off: with `immutable`, changes another process makes while the connection is open are
not seen (and may read as corruption), and committed pages still in a `-wal` file left by a crashed writer
without its `-shm` are not seen either. The user's files stay byte-identical either way.
"""

from __future__ import annotations

import marshal
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lse_engine.errors import DatabaseOpenError
from lse_engine.tasks import sqlite_guards

# Authorizer action codes that a read-only query legitimately needs.
_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}
_READ_PRAGMAS = {"table_info", "table_xinfo", "foreign_key_list", "index_list", "index_info"}
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}

MAX_VALUE_BYTES = 5_000_000  # one string or blob, or one stored row (SQLITE_LIMIT_LENGTH)
FAST_VALUE_BYTES = 1_000_000  # the same on the fast path; a query that meets a larger value runs again
MAX_SQL_CHARS = 100_000  # one statement's text (SQLITE_LIMIT_SQL_LENGTH)
# Per-connection limits; names absent from an older `sqlite3` module are skipped.
LIMITS = {
    "SQLITE_LIMIT_LENGTH": MAX_VALUE_BYTES,
    "SQLITE_LIMIT_SQL_LENGTH": MAX_SQL_CHARS,
    "SQLITE_LIMIT_COLUMN": 1000,
    "SQLITE_LIMIT_EXPR_DEPTH": 500,
    "SQLITE_LIMIT_COMPOUND_SELECT": 200,
    "SQLITE_LIMIT_VDBE_OP": 1_000_000,
    "SQLITE_LIMIT_FUNCTION_ARG": 100,
    "SQLITE_LIMIT_ATTACHED": 0,
    "SQLITE_LIMIT_LIKE_PATTERN_LENGTH": 50,  # LIKE/GLOB cost up to value × pattern in one call: ≤ ~0.5 s
    "SQLITE_LIMIT_VARIABLE_NUMBER": 32,
    "SQLITE_LIMIT_TRIGGER_DEPTH": 10,
    "SQLITE_LIMIT_WORKER_THREADS": 0,
}
HEAP_SOFT_LIMIT = 32 << 20  # SQLite starts recycling page cache past this (process-wide)
HEAP_HARD_LIMIT = 64 << 20  # SQLite's allocations fail past this (process-wide)
RESULT_BUDGET = 48 << 20  # bytes a result may take in Python (its row tuples and values)
_VALUE_BYTES = 48  # a value's object and pointer overhead in Python, about, beyond its marshalled size
_CHUNK_ROWS = 256  # rows fetched at a time, at most
_WATCH_SLACK_S = 0.002  # the watchdog wakes this long after the earliest deadline
_HEADER = b"SQLite format 3\x00"


@dataclass
class ExecResult:
    """Rows of a query, or the reason it has none."""

    rows: list[tuple[Any, ...]] | None
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


# -- opening ------------------------------------------------------------------------------------------------
def quote_ident(name: str) -> str:
    """`name` as an SQLite identifier (double-quoted, inner quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def database_uri(path: str | os.PathLike[str]) -> str:
    """A read-only URI for `path` after checking that it is a whole SQLite file; raises DatabaseOpenError.

    `immutable=1` for a WAL database without both of its `-wal` and `-shm` files (see the module's notes)."""
    p = Path(path)
    try:
        if not p.is_file():
            raise DatabaseOpenError(f"database not found: {_shown(p)}")
        resolved = p.resolve()
        size = resolved.stat().st_size
        with open(resolved, "rb") as fh:
            header = fh.read(100)
    except DatabaseOpenError:
        raise
    except (OSError, ValueError) as exc:  # unreadable, a NUL byte or an over-long name in the path, …
        raise DatabaseOpenError(f"cannot open the database {_shown(p)}: {_os_reason(exc)}") from exc
    if size == 0:
        raise DatabaseOpenError(f"the database file is empty: {p}")
    if not header.startswith(_HEADER) or len(header) < 100:
        raise DatabaseOpenError(f"not an SQLite database: {p}")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if page_size < 512 or page_size & (page_size - 1):
        raise DatabaseOpenError(f"not an SQLite database (its header is damaged): {p}")
    if header[24:28] == header[92:96] and pages and size < page_size * pages:
        raise DatabaseOpenError(f"the database file is truncated: {p} has {size:,} bytes, its header says "
                                f"{page_size * pages:,}")
    uri = f"file:{quote(str(resolved))}?mode=ro"
    if 2 in (header[18], header[19]):  # WAL mode
        wal, shm = (Path(f"{resolved}-wal"), Path(f"{resolved}-shm"))
        if not (wal.exists() and shm.exists()):
            uri += "&immutable=1"
    return uri


def _shown(p: Path) -> str:
    text = str(p).replace("\x00", "\\0")
    return text if len(text) <= 200 else text[:120] + f"…({len(text)} characters)"


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


_heap_limited = False


def _limit_heap(conn: sqlite3.Connection) -> None:
    """Cap SQLite's heap for the whole process, once; never raise a stricter cap set by someone else."""
    global _heap_limited
    if _heap_limited:
        return
    _heap_limited = True
    try:
        soft = conn.execute("PRAGMA soft_heap_limit").fetchone()[0]
        if not soft or soft > HEAP_SOFT_LIMIT:
            conn.execute(f"PRAGMA soft_heap_limit = {HEAP_SOFT_LIMIT}")
        conn.execute(f"PRAGMA hard_heap_limit = {HEAP_HARD_LIMIT}")  # only ever lowers the limit
    except sqlite3.Error:  # an SQLite older than 3.31: value, SQL and row limits still hold
        pass


def open_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open `path` so that nothing done through the connection can change the file or add files next to it,
    with the limits above. Raises DatabaseOpenError (one line) when it is not a readable SQLite database."""
    uri = database_uri(path)
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseOpenError(f"cannot open the database {_shown(Path(path))}: {exc}") from exc
    try:
        conn.text_factory = _decode_text  # text that is not UTF-8 never raises
        _limit_heap(conn)
        for pragma in ("query_only = ON", "trusted_schema = OFF", "temp_store = FILE"):
            conn.execute(f"PRAGMA {pragma}")
        for name, value in LIMITS.items():
            if hasattr(sqlite3, name):
                conn.setlimit(getattr(sqlite3, name), value)
        sqlite_guards.install(conn, MAX_VALUE_BYTES)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the schema is readable
    except (sqlite3.Error, MemoryError) as exc:
        conn.close()
        raise DatabaseOpenError(f"cannot read the database {_shown(Path(path))}: {exc or 'out of memory'}") from exc
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


# -- deadlines ----------------------------------------------------------------------------------------------
class _Guarded:
    """One thread's read-only connection, the deadline of the query it runs and the bytes its result may still
    take (`budget[0]`: a list, which the row factory of the large-value path reads fastest)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.deadline = math.inf
        self.timed_out = False
        self.budget = [RESULT_BUDGET]
        self.measure = _measuring(self.budget)
        conn.text_factory = str  # decoding in C; `ReadOnlyDatabase.execute` falls back to `_decode_text`
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, FAST_VALUE_BYTES)


def _measuring(budget: list[int]) -> Callable[[sqlite3.Cursor, tuple[Any, ...]], tuple[Any, ...]]:
    """A row factory that charges each row to `budget` as SQLite hands it over (marshalled size, plus each
    value's object overhead), so a result stops within one row of its budget however large its rows are.
    Values are marshalled one at a time for wide rows, so measuring never copies more than one value."""

    def measured(cursor: sqlite3.Cursor, row: tuple[Any, ...], dumps: Callable[[Any], bytes] = marshal.dumps,
                 overhead: int = _VALUE_BYTES) -> tuple[Any, ...]:
        n = len(row)
        size = len(dumps(row)) if n <= 4 else sum(map(len, map(dumps, row)))
        left = budget[0] - size - n * overhead
        budget[0] = left
        if left < 0:
            raise _Stop("runtime", f"the result is too large: more than {RESULT_BUDGET >> 20} MiB")
        return row

    return measured


class _Watchdog:
    """One daemon thread that interrupts connections whose query is past its deadline.

    It sleeps until the earliest deadline among the running queries (or until a query with an earlier one
    starts), so while queries end in time it hardly ever runs and never competes for the GIL. Registering a
    query costs a dict insert and a comparison."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, _Guarded] = {}
        self._wake = threading.Event()
        self._wake_at = math.inf  # when the thread will look next (inf while it scans: every watch wakes it)
        self._thread: threading.Thread | None = None

    def watch(self, guarded: _Guarded) -> None:
        self._running[id(guarded)] = guarded
        if guarded.deadline < self._wake_at:
            self._wake.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="lse-sql-watchdog", daemon=True)
                    self._thread.start()

    def unwatch(self, guarded: _Guarded) -> None:
        with self._lock:  # after this, the watchdog cannot interrupt the connection's next query
            self._running.pop(id(guarded), None)

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._wake.clear()
                self._wake_at = math.inf
                now = time.perf_counter()
                earliest = math.inf
                for guarded in list(self._running.values()):
                    if guarded.timed_out:
                        continue
                    if now > guarded.deadline:
                        guarded.timed_out = True
                        try:
                            guarded.conn.interrupt()
                        except sqlite3.Error:
                            pass
                    else:
                        earliest = min(earliest, guarded.deadline)
                self._wake_at = earliest
            self._wake.wait(None if earliest == math.inf else earliest - now + _WATCH_SLACK_S)


_WATCHDOG = _Watchdog()


_UDF_FAILED = "user-defined function raised exception"


def check_limits(timeout_s: float, row_cap: int) -> None:
    """A deadline that is not a finite positive number would never come (NaN compares false): refuse it."""
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a finite number above 0, got {timeout_s!r}")
    if not (isinstance(row_cap, int) and row_cap >= 1):
        raise ValueError(f"row_cap must be at least 1, got {row_cap!r}")


def _too_big(exc: sqlite3.Error) -> bool:
    """Whether `exc` says a value outgrew the limit (SQLite's own check, or one of the stand-ins')."""
    msg = str(exc)
    if msg == _UDF_FAILED:
        msg = sqlite_guards.peek_error() or ""
    return "too big" in msg.lower()


class _Stop(Exception):
    """The result outgrew its budget or the deadline passed while rows were being built in Python."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# -- execution ----------------------------------------------------------------------------------------------
class ReadOnlyDatabase:
    """Thread-safe executor over one database file: one read-only connection per thread."""

    def __init__(self, path: str | os.PathLike[str], timeout_s: float = 5.0, row_cap: int = 100_000) -> None:
        check_limits(timeout_s, row_cap)
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

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use): another thread may `interrupt()` the query it runs."""
        return self._guarded().conn

    def execute(self, sql: str, timeout_s: float | None = None, row_cap: int | None = None) -> ExecResult:
        """Run one query under the deadline, the memory limits and the row cap; never raises for SQL problems.

        Two paths: values up to `FAST_VALUE_BYTES`, rows fetched in chunks the budget can hold and measured a
        chunk at a time (every query, nearly); a query that meets a larger value runs again with values up to
        `MAX_VALUE_BYTES`, each row measured as it comes (within the same deadline)."""
        start = time.perf_counter()
        limit = self.timeout_s if timeout_s is None else timeout_s
        cap = self.row_cap if row_cap is None else row_cap
        check_limits(limit, cap)
        if len(sql) > MAX_SQL_CHARS:
            return ExecResult(None, "runtime", f"the query is too long ({len(sql):,} characters > "
                                               f"{MAX_SQL_CHARS:,})", 0.0)
        try:
            guarded = self._guarded()
        except DatabaseOpenError as exc:
            return ExecResult(None, "runtime", str(exc), time.perf_counter() - start)
        guarded.deadline, guarded.timed_out = start + limit, False
        _WATCHDOG.watch(guarded)
        try:
            try:
                rows = self._rows(guarded, sql, cap, large=False)
            except sqlite3.Error as exc:
                if guarded.timed_out or not _too_big(exc):
                    raise
                rows = self._rows(guarded, sql, cap, large=True)
            if rows is None:
                return ExecResult(None, "too_many_rows", f"more than {cap} rows", time.perf_counter() - start)
            return ExecResult(rows, seconds=time.perf_counter() - start)
        except _Stop as stop:
            message = f"timed out after {limit:g} s" if stop.kind == "timeout" else str(stop)
            return ExecResult(None, stop.kind, message, time.perf_counter() - start)
        except sqlite3.Error as exc:
            elapsed = time.perf_counter() - start
            if guarded.timed_out:
                return ExecResult(None, "timeout", f"timed out after {limit:g} s", elapsed)
            msg = str(exc) or type(exc).__name__
            if msg == _UDF_FAILED:
                msg = sqlite_guards.last_error() or msg
            if "not authorized" in msg.lower():
                return ExecResult(None, "not_a_query", f"refused: {msg}", elapsed)
            if "too big" in msg.lower():
                msg += f" (values are limited to {MAX_VALUE_BYTES // 1_000_000} MB)"
            return ExecResult(None, classify_error(msg), msg, elapsed)
        except MemoryError as exc:  # SQLite's heap limit (SQLITE_NOMEM) or Python's own
            msg = f"out of memory: the query needs more than SQLite's {HEAP_HARD_LIMIT >> 20} MiB heap limit"
            return ExecResult(None, "runtime", str(exc) or msg, time.perf_counter() - start)
        except (OverflowError, ValueError, RecursionError) as exc:
            return ExecResult(None, "runtime", f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
        finally:
            _WATCHDOG.unwatch(guarded)
            guarded.deadline = math.inf

    def _rows(self, guarded: _Guarded, sql: str, cap: int, large: bool) -> list[tuple[Any, ...]] | None:
        """`_fetch` on the fast or the large-value path; text that is not UTF-8 is decoded leniently, in Python."""
        conn = guarded.conn
        if large:
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
            conn.row_factory = guarded.measure
            guarded.budget[0] = RESULT_BUDGET
        try:
            try:
                return self._fetch(conn, sql, cap, guarded.deadline, large)
            except sqlite3.OperationalError as exc:
                if "could not decode" not in str(exc).lower():
                    raise
                conn.text_factory = _decode_text
                guarded.budget[0] = RESULT_BUDGET
                try:
                    return self._fetch(conn, sql, cap, guarded.deadline, large)
                finally:
                    conn.text_factory = str
        finally:
            if large:
                conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, FAST_VALUE_BYTES)
                conn.row_factory = None

    @staticmethod
    def _fetch(conn: sqlite3.Connection, sql: str, cap: int, deadline: float,
               large: bool) -> list[tuple[Any, ...]] | None:
        """All rows of `sql`, or None when there are more than `cap`; raises `_Stop` past the memory budget or
        the deadline (both checked between chunks; on the large-value path the row factory measures each row).

        On the fast path a chunk holds no more rows than the budget left could take if every one were as large
        as SQLite can make a row there (every column at the fast value limit, or its whole heap), and each chunk
        is measured in C, so a result stops within one row of its budget however its rows grow."""
        cur = conn.execute(sql)
        try:
            ncols = len(cur.description or ()) or 1
            worst_row = min(HEAP_HARD_LIMIT, ncols * FAST_VALUE_BYTES) + ncols * _VALUE_BYTES
            left = RESULT_BUDGET
            rows: list[tuple[Any, ...]] = []
            while True:
                want = min(_CHUNK_ROWS, cap + 1 - len(rows))
                if not large:
                    want = min(want, max(1, left // worst_row))
                chunk = cur.fetchmany(want)
                rows += chunk
                if len(rows) > cap:
                    return None
                if len(chunk) < want:
                    return rows
                if not large:
                    left -= len(marshal.dumps(chunk)) + len(chunk) * ncols * _VALUE_BYTES
                    if left < 0:
                        raise _Stop("runtime", f"the result is too large: more than {RESULT_BUDGET >> 20} MiB "
                                               f"in {len(rows):,} rows")
                if time.perf_counter() > deadline:
                    raise _Stop("timeout", "")
        finally:
            try:
                cur.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
