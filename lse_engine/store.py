"""The run store: `.lse/lse.db`, SQLite in WAL mode via sqlite-utils.

Tables: `outcomes` (cache keyed by model, sampling, environment, rendered chat and gold), `runs`, `nodes`,
`selections` (one per round: which node was expanded), `batches` (a node scored on a list of problems;
outcome keys point into the cache) and `states` (training states). Each write commits at once, so a
crash or kill -9 loses at most the work in flight. One process writes (the CLI or the server's worker);
readers (the language server) see committed rows thanks to WAL.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import re
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import sqlite_utils

from lse_engine.errors import StoreError
from lse_engine.records import AttemptRow, BatchRow, NodeRow, RunRow, SelectionRow
from lse_engine.tasks.base import Outcome

SCHEMA_VERSION = 3  # 3: runs.best_dev is runs.winner_dev; nodes gain dev_outcomes and no_answer


class Store:
    """Access to one workspace's run store."""

    db: sqlite_utils.Database

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False) -> None:
        """Open (and, unless `readonly`, create and migrate) the store; StoreError (one line) when it cannot."""
        self.path = Path(path)
        _open_store(self, readonly)

    def _migrate(self) -> None:
        t = self.db.table
        if "outcomes" not in self.db.table_names():
            t("outcomes").create({"key": str, "problem_id": str, "correct": int, "data": str, "created": float},
                                 pk="key")
        if "runs" not in self.db.table_names():
            t("runs").create(
                {
                    "id": str, "kind": str, "prompt": str, "suite": str, "status": str, "created": float,
                    "updated": float, "rule": str, "seed": int, "prompt_sha": str, "root_instructions": str,
                    "winner": int, "root_dev": float, "winner_dev": float, "model_id": str, "evolver_id": str,
                    "task_calls": int, "evolver_calls": int, "tokens": int, "config": str, "message": str,
                    "result": str, "pid": int,
                },
                pk="id",
            )
            t("runs").create_index(["prompt", "created"])
        if "nodes" not in self.db.table_names():
            t("nodes").create(
                {
                    "run_id": str, "id": int, "parent": int, "round": int, "status": str, "instructions": str,
                    "train_score": float, "dev_score": float, "heldout_score": float, "parent_heldout": float,
                    "evolver_output": str, "feedback": str, "prompt_tokens": int, "completion_tokens": int,
                    "error": str,
                    "attempts": int, "created": float,
                },
                pk=("run_id", "id"),
            )
        if "selections" not in self.db.table_names():
            t("selections").create({"run_id": str, "round": int, "node_id": int, "created": float},
                                   pk=("run_id", "round"))
        if "batches" not in self.db.table_names():
            t("batches").create(
                {
                    "run_id": str, "node_id": int, "split": str, "round": int, "problem_ids": str, "keys": str,
                    "correct": int, "n": int, "score": float, "created": float,
                },
                pk=("run_id", "node_id", "split", "round"),
            )
        if "attempts" not in self.db.table_names():  # every evolver reply, usable or not
            t("attempts").create(
                {"run_id": str, "round": int, "attempt": int, "node_id": int, "raw": str, "instructions": str,
                 "verdict": str, "error": str, "prompt_tokens": int, "completion_tokens": int,
                 "batch_score": float, "created": float},
                pk=("run_id", "round", "attempt"),
            )
        self._add_missing_columns("nodes", {"evolver_chat": str, "dev_outcomes": str, "no_answer": float})
        if "best_dev" in self.db.table("runs").columns_dict:  # schema 2: one name per value from now on
            self.db.execute("ALTER TABLE runs RENAME COLUMN best_dev TO winner_dev")
        if "states" not in self.db.table_names():
            t("states").create(
                {"id": str, "run_id": str, "node_id": int, "data": str, "created": float}, pk="id"
            )
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.db.conn.commit()

    def _add_missing_columns(self, table: str, columns: dict[str, type]) -> None:
        """Columns added after a store was created (an older store gains them empty)."""
        have = set(self.db.table(table).columns_dict)
        for name, kind in columns.items():
            if name not in have:
                self.db.table(table).add_column(name, kind)

    # -- outcomes cache -------------------------------------------------------------------------
    def get_outcomes(self, keys: Sequence[str]) -> dict[str, Outcome]:
        found: dict[str, Outcome] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for key, data in self.db.execute(f"SELECT key, data FROM outcomes WHERE key IN ({marks})", chunk):
                found[key] = Outcome.from_dict(json.loads(data))
        return found

    def put_outcomes(self, items: Iterable[tuple[str, Outcome]]) -> None:
        now = time.time()
        rows = [
            {"key": k, "problem_id": o.problem_id, "correct": int(o.correct), "data": json.dumps(o.to_dict()),
             "created": now}
            for k, o in items
        ]
        if rows:
            with self.db.conn:
                self.db.table("outcomes").upsert_all(rows, pk="key")

    def latest_outcome(self, suite: str, problem_id: str) -> tuple[Outcome, dict[str, Any]] | None:
        """The newest outcome for a problem of `suite`, with the run it came from."""
        rows = self.db.execute(
            "SELECT b.problem_ids, b.keys, r.id, r.kind, b.node_id, b.created FROM batches b "
            "JOIN runs r ON r.id = b.run_id WHERE r.suite = ? AND b.problem_ids LIKE ? "
            "ORDER BY b.created DESC LIMIT 20",
            [suite, f'%"{problem_id}"%'],
        ).fetchall()
        for ids_json, keys_json, run_id, kind, node_id, created in rows:
            ids = json.loads(ids_json)
            if problem_id in ids:
                key = json.loads(keys_json)[ids.index(problem_id)]
                found = self.get_outcomes([key]).get(key)
                if found:
                    return found, {"run": run_id, "kind": kind, "node": node_id, "created": created}
        return None

    # -- runs -----------------------------------------------------------------------------------
    def create_run(self, kind: str, prompt: str, suite: str, run_id: str | None = None, **fields: Any) -> str:
        run_id = run_id or new_run_id()
        now = time.time()
        row = {"id": run_id, "kind": kind, "prompt": prompt, "suite": suite, "status": "running", "created": now,
               "updated": now, "task_calls": 0, "evolver_calls": 0, "tokens": 0, "pid": os.getpid()}
        row.update({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in fields.items()})
        with self.db.conn:
            self.db.table("runs").insert(row)
        return run_id

    def update_run(self, run_id: str, **fields: Any) -> None:
        fields = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in fields.items()}
        fields["updated"] = time.time()
        with self.db.conn:
            self.db.table("runs").update(run_id, fields)

    def add_usage(self, run_id: str, task_calls: int = 0, evolver_calls: int = 0, tokens: int = 0) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE runs SET task_calls = task_calls + ?, evolver_calls = evolver_calls + ?, "
                "tokens = tokens + ?, updated = ? WHERE id = ?",
                [task_calls, evolver_calls, tokens, time.time(), run_id],
            )

    def get_run(self, run_id: str) -> RunRow | None:
        rows = list(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
        if not rows:
            rows = list(self.db.query("SELECT * FROM runs WHERE id LIKE ? ORDER BY created DESC", [run_id + "%"]))
        return _decode_run(rows[0]) if rows else None

    def model_calls(self, run_id: str) -> tuple[int, int]:
        """(task-model calls, evolver calls) charged to a run so far; (0, 0) for an unknown run."""
        run = self.get_run(run_id)
        return ((run["task_calls"] or 0), (run["evolver_calls"] or 0)) if run else (0, 0)

    def list_runs(self, prompt: str | None = None, limit: int = 50) -> list[RunRow]:
        if prompt:
            q = "SELECT * FROM runs WHERE prompt = ? ORDER BY created DESC LIMIT ?"
            args: list[Any] = [prompt, limit]
        else:
            q, args = "SELECT * FROM runs ORDER BY created DESC LIMIT ?", [limit]
        return [_decode_run(r) for r in self.db.query(q, args)]

    # -- nodes, selections, batches ---------------------------------------------------------------
    def add_node(self, run_id: str, node: NodeRow) -> None:
        row = {"run_id": run_id, "created": time.time(), **node}
        with self.db.conn:
            self.db.table("nodes").upsert(row, pk=("run_id", "id"))

    def update_node(self, run_id: str, node_id: int, **fields: Any) -> None:
        with self.db.conn:
            self.db.table("nodes").update((run_id, node_id), fields)

    def get_nodes(self, run_id: str) -> list[NodeRow]:
        return [cast(NodeRow, r) for r in self.db.query("SELECT * FROM nodes WHERE run_id = ? ORDER BY id", [run_id])]

    def add_attempt(self, run_id: str, round_: int, attempt: int, **fields: Any) -> None:
        """Record one evolver reply (re-recording the same attempt after a resume replaces it)."""
        row = {"run_id": run_id, "round": round_, "attempt": attempt, "created": time.time(), **fields}
        with self.db.conn:
            self.db.table("attempts").upsert(row, pk=("run_id", "round", "attempt"))

    def get_attempts(self, run_id: str, round_: int | None = None) -> list[AttemptRow]:
        if round_ is None:
            rows = self.db.query("SELECT * FROM attempts WHERE run_id = ? ORDER BY round, attempt", [run_id])
        else:
            rows = self.db.query("SELECT * FROM attempts WHERE run_id = ? AND round = ? ORDER BY attempt",
                                 [run_id, round_])
        return [cast(AttemptRow, r) for r in rows]

    def add_selection(self, run_id: str, round_: int, node_id: int) -> None:
        with self.db.conn:
            self.db.table("selections").upsert({"run_id": run_id, "round": round_, "node_id": node_id,
                                          "created": time.time()}, pk=("run_id", "round"))

    def get_selections(self, run_id: str) -> list[SelectionRow]:
        return [cast(SelectionRow, r)
                for r in self.db.query("SELECT * FROM selections WHERE run_id = ? ORDER BY round", [run_id])]

    def add_batch(self, run_id: str, node_id: int, split: str, round_: int, problem_ids: Sequence[str],
                  keys: Sequence[str], outcomes: Sequence[Outcome]) -> float:
        correct = sum(o.correct for o in outcomes)
        score = correct / len(outcomes) if outcomes else 0.0
        with self.db.conn:
            self.db.table("batches").upsert(
                {"run_id": run_id, "node_id": node_id, "split": split, "round": round_,
                 "problem_ids": json.dumps(list(problem_ids)), "keys": json.dumps(list(keys)), "correct": correct,
                 "n": len(outcomes), "score": score, "created": time.time()},
                pk=("run_id", "node_id", "split", "round"),
            )
        return score

    def get_batches(self, run_id: str, node_id: int | None = None) -> list[BatchRow]:
        if node_id is None:
            rows = self.db.query("SELECT * FROM batches WHERE run_id = ? ORDER BY created", [run_id])
        else:
            rows = self.db.query("SELECT * FROM batches WHERE run_id = ? AND node_id = ? ORDER BY created",
                                 [run_id, node_id])
        out = []
        for r in rows:
            r["problem_ids"] = json.loads(r["problem_ids"])
            r["keys"] = json.loads(r["keys"])
            out.append(cast(BatchRow, r))
        return out

    def close(self) -> None:
        self.db.conn.close()


def new_run_id() -> str:
    """A sortable, unique run id (time + random suffix)."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _decode_run(row: dict[str, Any]) -> RunRow:
    for key in ("config", "result"):
        value = row.get(key)
        try:
            decoded = json.loads(value) if isinstance(value, str) and value else None
        except json.JSONDecodeError:
            decoded = None
        row[key] = decoded if isinstance(decoded, dict) else None
    return cast(RunRow, row)


# -- opening, concurrency and failures (one line for the user, retries while another process holds the file) --
_TRANSIENT = ("database is locked", "database is busy", "already exists", "duplicate column")
OPEN_PATIENCE_S = 60.0  # how long opening waits for other processes creating or migrating the same store


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        if not path.exists():
            raise FileNotFoundError(path)
        # the path percent-encoded: a folder named `ws#1` or `ws?x` must not end the URI early
        return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    gitignore = path.parent / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")
    return sqlite3.connect(str(path), check_same_thread=False, timeout=30)


def _open_store(store: Store, readonly: bool) -> None:
    """Connect `store.db`; a writer also switches to WAL and migrates inside `BEGIN IMMEDIATE`, so processes
    opening one new store at once take turns. Lock contention is retried for `OPEN_PATIENCE_S`."""
    deadline = time.monotonic() + OPEN_PATIENCE_S
    delay = 0.02
    while True:
        conn: sqlite3.Connection | None = None
        try:
            conn = _connect(store.path, readonly)
            conn.execute("PRAGMA busy_timeout = 30000")
            store.db = sqlite_utils.Database(conn)
            if not readonly:
                store.db.execute("PRAGMA journal_mode = WAL")
                store.db.execute("PRAGMA synchronous = NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                store._migrate()
                if conn.in_transaction:
                    conn.commit()
            return
        except FileNotFoundError:
            raise
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.rollback()
                    conn.close()
            if _is_transient(exc) and time.monotonic() < deadline:
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)
                continue
            raise StoreError(store_failure(store.path, exc)) from exc


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and any(t in str(exc).lower() for t in _TRANSIENT)


def store_failure(path: Path, exc: BaseException) -> str:
    """One line saying why the store at `path` cannot be used, and what to do."""
    text = str(exc).lower()
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "disk is full" in text or "disk full" in text:
        return f"the run store {path} cannot be written: the disk is full; free some space and run again"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or "readonly" in text \
            or "read-only" in text:
        return (f"the run store {path} cannot be written ({reason}): make {path.parent} writable, or work in a "
                "folder you can write to")
    if "not a database" in text or "malformed" in text:
        return f"the run store {path} is damaged ({reason}); move it aside and run again to start a new one"
    if _is_transient(exc):
        return f"the run store {path} stayed locked by another process for {OPEN_PATIENCE_S:g} s ({reason})"
    return f"cannot use the run store {path}: {reason}"


class RunLock:
    """An exclusive, per-run lock file under `.lse/locks/` (flock: the OS drops it when the holder dies, kill -9
    included), so two processes never grow one run's tree at once. Without flock (Windows) it locks nothing."""

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.folder = Path(store_path).parent / "locks"
        self._fd: int | None = None

    def file(self, run_id: str) -> Path:
        """The lock file of `run_id`."""
        return self.folder / f"{re.sub(r'[^A-Za-z0-9._-]', '_', run_id)}.lock"

    def acquire(self, run_id: str, doing: str = "resumed") -> None:
        """Hold the lock of `run_id`; StoreError "busy: run X is being resumed by pid N" when another holds it."""
        self.release()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.file(run_id), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(store_failure(self.folder, exc)) from exc
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            self._fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", errors="replace").split()
            os.close(fd)
            pid, verb = (holder + ["?", "resumed"])[:2]
            raise StoreError(f"busy: run {run_id} is being {verb} by pid {pid}; wait for it to finish (or stop "
                             "it) and resume it then") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {doing}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
