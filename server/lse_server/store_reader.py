"""Read-only, time-limited access to a workspace's run store (`.lse/lse.db`), safe against a hostile file.

A cloned repository can carry any `.lse/lse.db`: a `runs` view over an endless query, triggers, generated
columns computing gigabyte blobs. Before the server reads a store it checks, on a separate read-only
connection, that the file holds only plain tables named as ours (no views, triggers, virtual tables or
generated columns); every read then runs under a deadline and a value-size limit. A store that fails either
is skipped (and logged once) until the file is replaced.

The worker processes write stores; the server writes one thing, once: `close_run`, the end of a run whose
worker it had to kill (or that died) before the worker could record it. The worker is gone by then, so there
is still one writer per run.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from lse_engine.store import Store

log = logging.getLogger("lse_server.store")
T = TypeVar("T")
DEADLINE_S = 1.0  # one read (a code lens, a hover) never takes longer
MAX_VALUE_BYTES = 32 * 1024 * 1024  # no stored value is this big; a hostile one is refused, not allocated
_INTERNAL = ("sqlite_",)


def connection(store: Store) -> sqlite3.Connection:
    """The store's SQLite connection (set up by the engine when the store opens)."""
    return store.db.conn


def _ro_uri(path: Path) -> str:
    return f"file:{quote(str(path))}?mode=ro"


class Deadline:
    """A progress handler that interrupts a connection's statement once `seconds` have passed."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.until = float("inf")
        conn.set_progress_handler(lambda: int(time.monotonic() > self.until), 1000)

    @contextlib.contextmanager
    def limit(self, seconds: float) -> Iterator[None]:
        self.until = time.monotonic() + seconds
        try:
            yield
        finally:
            self.until = float("inf")


def _harden(conn: sqlite3.Connection) -> None:
    if hasattr(conn, "setlimit"):  # Python 3.11+
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 1_000_000)
    conn.execute("PRAGMA busy_timeout = 200")
    conn.execute("PRAGMA query_only = 1")
    conn.execute("PRAGMA trusted_schema = 0")


_reference: frozenset[str] | None = None
_reference_lock = threading.Lock()


def reference_tables() -> set[str]:
    """The table names a store made by this engine version holds (built once in a temporary folder)."""
    global _reference
    with _reference_lock:
        if _reference is None:
            with tempfile.TemporaryDirectory(prefix="lse-schema-") as tmp:
                store = Store(Path(tmp) / "lse.db")
                rows = connection(store).execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                names = {r[0] for r in rows}
                store.close()
            _reference = frozenset(names)
        return set(_reference)


def check_store(path: Path, seconds: float = DEADLINE_S) -> str | None:
    """Why the file at `path` is not a store the server may read, or None when it is."""
    try:
        conn = sqlite3.connect(_ro_uri(path), uri=True)
    except sqlite3.Error as exc:
        return f"cannot open it: {exc}"
    try:
        _harden(conn)
        deadline = Deadline(conn)
        with deadline.limit(seconds):
            rows = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
            known = reference_tables()
            for kind, name, sql in rows:
                if str(name).startswith(_INTERNAL):
                    continue
                if kind not in ("table", "index"):
                    return f"it holds a {kind} ({name}); a run store has tables only"
                if kind == "table":
                    if name not in known:
                        return f"unknown table {name!r}"
                    if str(sql or "").lstrip().upper().startswith("CREATE VIRTUAL"):
                        return f"{name} is a virtual table"
                    hidden = [c for c in conn.execute(f'PRAGMA table_xinfo("{name}")') if c[6] in (2, 3)]
                    if hidden:
                        return f"{name} has generated columns"
            return None
    except sqlite3.Error as exc:
        return f"cannot read its schema: {exc}"
    finally:
        conn.close()


class StoreReader:
    """The run stores of open workspaces, each checked once and read under a deadline."""

    def __init__(self, deadline_s: float = DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self._open: dict[Path, tuple[tuple[int, int], Store | None, Deadline | None]] = {}

    def _store(self, path: Path) -> tuple[Store, Deadline] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        key = (st.st_dev, st.st_ino)
        hit = self._open.get(path)
        if hit is not None and hit[0] == key:
            return (hit[1], hit[2]) if hit[1] is not None and hit[2] is not None else None
        if hit is not None and hit[1] is not None:
            hit[1].close()
        why = check_store(path, self.deadline_s)
        if why is not None:
            log.warning("not reading the run store %s: %s", path, why)
            self._open[path] = (key, None, None)
            return None
        try:
            store = Store(path, readonly=True)
            _harden(connection(store))
        except Exception as exc:  # noqa: BLE001 - any failure to open means: no store to show
            log.warning("cannot open the run store %s: %s", path, exc)
            self._open[path] = (key, None, None)
            return None
        deadline = Deadline(connection(store))
        self._open[path] = (key, store, deadline)
        return store, deadline

    def read(self, path: Path, fn: Callable[[Store], T]) -> T | None:
        """`fn(store)` under the deadline; None when there is no readable store or the read fails."""
        found = self._store(path)
        if found is None:
            return None
        store, deadline = found
        try:
            with deadline.limit(self.deadline_s):
                return fn(store)
        except (sqlite3.Error, ValueError, KeyError, TypeError, MemoryError) as exc:
            log.warning("reading the run store %s failed: %s", path, exc)
            return None

    def close(self) -> None:
        for _, store, _ in self._open.values():
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()
        self._open.clear()


def close_run(path: Path, run_id: str, pid: int, status: str, message: str, seconds: float = 2.0) -> bool:
    """Record the end of run `run_id` whose worker (process `pid`) is dead: status and message, only if the run
    still reads `running` under that worker's pid (a run the worker closed itself, or another process resumed,
    is left alone). True when it was recorded. The file is checked first, like a store the server reads."""
    if not path.is_file():
        return False
    why = check_store(path, seconds)
    if why is not None:
        log.warning("not recording the end of run %s in %s: %s", run_id, path, why)
        return False
    try:
        conn = sqlite3.connect(str(path), timeout=seconds)
    except sqlite3.Error as exc:
        log.warning("cannot record the end of run %s in %s: %s", run_id, path, exc)
        return False
    try:
        conn.execute("PRAGMA trusted_schema = 0")
        with conn:
            cur = conn.execute("UPDATE runs SET status = ?, message = ?, updated = ? "
                               "WHERE id = ? AND status = 'running' AND pid = ?",
                               [status, message, time.time(), run_id, pid])
        return cur.rowcount == 1
    except sqlite3.Error as exc:
        log.warning("cannot record the end of run %s in %s: %s", run_id, path, exc)
        return False
    finally:
        conn.close()


def trained_evolvers(store: Path | None) -> list[str]:
    """The evolvers `lse train` saved in the workspace of `store` (newest first)."""
    folder = store.parent / "evolvers" if store is not None else None
    if folder is None or not folder.is_dir():
        return []
    found = [d for d in folder.iterdir() if (d / "lse_meta.json").is_file()]
    return [d.name for d in sorted(found, key=lambda d: (d / "lse_meta.json").stat().st_mtime, reverse=True)]
