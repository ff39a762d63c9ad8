"""Checks on a suite's gold SQL: parses, names real tables and columns, runs in time, returns rows.

Results are cached per (database fingerprint, SQL text), so re-checking a suite as the user types only
runs the queries that changed. A check can run under a budget shorter than the gold limit (the editor's) and
be cancelled from another thread (`CheckCancel`: the query is interrupted).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp

from lse_engine.errors import DatabaseOpenError
from lse_engine.tasks.sqlite_exec import MAX_SQL_CHARS, ExecResult, ReadOnlyDatabase, open_readonly

MAX_NESTING = 100  # parentheses deep; sqlglot's parser recurses once per level (and more)


@dataclass
class GoldCheck:
    issues: list[tuple[str, str, str]] = field(default_factory=list)  # (code, message, severity)
    result: ExecResult | None = None
    slow_s: float | None = None  # the query could not finish within this budget (shorter than the gold limit)
    cancelled: bool = False  # stopped by a CheckCancel: says nothing about the query


def read_schema(db_path: str | Path) -> dict[str, set[str]]:
    """Lower-cased table name -> lower-cased column names (a view whose definition fails has none).

    Raises DatabaseOpenError when the file is not a readable SQLite database."""
    conn = open_readonly(db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")]
        schema: dict[str, set[str]] = {}
        for t in tables:
            try:
                cols = conn.execute(f'PRAGMA table_info("{t.replace(chr(34), chr(34) * 2)}")').fetchall()
            except sqlite3.Error:
                cols = []
            schema[t.lower()] = {c[1].lower() for c in cols}
        return schema
    except sqlite3.Error as exc:
        raise DatabaseOpenError(f"cannot read the schema of {db_path}: {exc}") from exc
    finally:
        conn.close()


def name_issues(sql: str, schema: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """Parse errors and names that are not in the schema (CTEs, aliases and subquery outputs allowed).

    SQL too long or nested too deeply to parse safely is a `gold-parse` error, never a crash."""
    if len(sql) > MAX_SQL_CHARS:
        return [("gold-parse", f"gold SQL is too long ({len(sql):,} characters > {MAX_SQL_CHARS:,})", "error")]
    depth = _nesting(sql)
    if depth > MAX_NESTING:
        return [("gold-parse", f"gold SQL nests {depth} parentheses deep (at most {MAX_NESTING} are checked)",
                 "error")]
    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        return [("gold-parse", f"gold SQL does not parse: {(str(exc).splitlines() or [''])[0][:300]}", "error")]
    except (RecursionError, MemoryError, ValueError) as exc:
        return [("gold-parse", f"gold SQL cannot be parsed: {type(exc).__name__}", "error")]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return [("gold-parse", "gold SQL must be exactly one read query", "error")]
    tree = statements[0]
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    aliases = {a.alias.lower() for a in tree.find_all(exp.Alias) if a.alias}
    aliases |= {t.alias.lower() for t in tree.find_all(exp.TableAlias) if t.name}
    for ta in tree.find_all(exp.TableAlias):
        aliases |= {c.name.lower() for c in ta.columns}
    issues = []
    known_columns = set().union(*schema.values()) if schema else set()
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if name and name not in schema and name not in ctes and not table.args.get("db"):
            issues.append(("unknown-table", f"no table named {table.name!r} in the database", "error"))
    for col in tree.find_all(exp.Column):
        name = col.name.lower()
        if not name or name in aliases or name == "*" or isinstance(col.this, exp.Star):
            continue
        qualifier = col.table.lower()
        if not qualifier and isinstance(col.this, exp.Identifier) and col.this.quoted and name not in known_columns:
            continue  # SQLite reads an unknown double-quoted name as a string literal
        if qualifier and qualifier in schema:
            if name not in schema[qualifier]:
                issues.append(("unknown-column", f"table {col.table!r} has no column {col.name!r}", "error"))
        elif name not in known_columns and not ctes:
            issues.append(("unknown-column", f"no column named {col.name!r} in any table", "error"))
    return issues


def _nesting(sql: str) -> int:
    """The deepest parenthesis nesting outside string literals and quoted names (an upper bound is enough)."""
    if sql.count("(") <= MAX_NESTING:
        return sql.count("(")
    depth = deepest = 0
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"`[":
            quote = "]" if ch == "[" else ch
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


class CheckCancel:
    """Stops a gold check from another thread: the query it runs is interrupted and the check is not cached
    (the editor cancels the check of a document version that a newer one replaced)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.cancelled = False

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._conn is not None:
                self._conn.interrupt()

    def _attach(self, conn: sqlite3.Connection | None) -> bool:
        """Let `cancel` interrupt `conn` (None: no longer); False when the check was cancelled already."""
        with self._lock:
            self._conn = conn
            return not self.cancelled


class GoldChecker:
    """Checks gold queries of one database with a cache; thread-safe. `timeout_s` is the gold limit (scoring's).

    A check may get a shorter `budget_s` (the editor's diagnostics): a query that cannot finish within it is
    reported as `gold-slow` (not checked), never as a gold timeout, and is not run again under a budget it
    already exceeded."""

    def __init__(self, db_path: str | Path, timeout_s: float = 30.0) -> None:
        self.db_path = Path(db_path)
        self.timeout_s = timeout_s
        self.db = ReadOnlyDatabase(self.db_path, timeout_s=timeout_s, row_cap=100_000)
        self.schema = read_schema(self.db_path)
        self._cache: dict[str, GoldCheck] = {}
        self._slow: dict[str, float] = {}  # sql -> the longest budget it did not finish within
        self._lock = threading.Lock()

    def cached(self, sql: str) -> GoldCheck | None:
        return self._cache.get(sql)

    def check(self, sql: str, budget_s: float | None = None, cancel: CheckCancel | None = None) -> GoldCheck:
        """The checks of one gold query; with `budget_s` below the gold limit, the query runs at most that long.
        A cancelled check comes back with `cancelled` set and leaves no trace in the cache."""
        hit = self._cache.get(sql)
        if hit is not None:
            return hit
        limit = self.timeout_s if budget_s is None else min(budget_s, self.timeout_s)
        issues = name_issues(sql, self.schema)
        if any(code == "gold-parse" for code, _, _ in issues):
            return self._keep(sql, GoldCheck(issues=issues))
        if limit < self.timeout_s and self._slow.get(sql, 0.0) >= limit:
            return self._slow_check(issues, limit)
        if cancel is not None and not cancel._attach(self.db.connection()):
            return GoldCheck(issues=issues, cancelled=True)
        try:
            res = self.db.execute(sql, timeout_s=limit)
        finally:
            if cancel is not None:
                cancel._attach(None)
        if cancel is not None and cancel.cancelled:
            return GoldCheck(issues=issues, result=res, cancelled=True)
        if res.error_kind == "timeout" and limit < self.timeout_s:
            with self._lock:
                self._slow[sql] = max(limit, self._slow.get(sql, 0.0))
            return self._slow_check(issues, limit)
        result = GoldCheck(issues=issues, result=res)
        if res.error_kind == "timeout":
            result.issues.append(("gold-timeout", f"gold SQL {res.error}", "error"))
        elif not res.ok:
            if not result.issues:  # name problems already explain most execution errors
                result.issues.append(("gold-error", f"gold SQL fails: {res.error}", "error"))
        elif not res.rows:
            result.issues.append(("gold-empty", "gold SQL returns no rows: every answer with an empty "
                                                "result would count as correct", "warning"))
        return self._keep(sql, result)

    def _slow_check(self, issues: list[tuple[str, str, str]], limit: float) -> GoldCheck:
        message = (f"gold SQL could not finish in {limit:g} s, the editor's check budget (scoring allows it "
                   f"{self.timeout_s:g} s), so its result is not checked here")
        return GoldCheck(issues=[*issues, ("gold-slow", message, "warning")], slow_s=limit)

    def _keep(self, sql: str, result: GoldCheck) -> GoldCheck:
        with self._lock:
            self._cache[sql] = result
        return result

    def close(self) -> None:
        self.db.close()
