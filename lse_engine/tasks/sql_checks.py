"""Checks on a suite's gold SQL: parses, names real tables and columns, runs in time, returns rows.

Results are cached per (database fingerprint, SQL text), so re-checking a suite as the user types only
runs the queries that changed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp

from lse_engine.tasks.sqlite_exec import ExecResult, ReadOnlyDatabase, open_readonly


@dataclass
class GoldCheck:
    issues: list[tuple[str, str, str]] = field(default_factory=list)  # (code, message, severity)
    result: ExecResult | None = None


def read_schema(db_path: str | Path) -> dict[str, set[str]]:
    """Lower-cased table name -> lower-cased column names."""
    conn = open_readonly(db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")]
        return {
            t.lower(): {c[1].lower() for c in conn.execute(f'PRAGMA table_info("{t.replace(chr(34), chr(34) * 2)}")')}
            for t in tables
        }
    finally:
        conn.close()


def name_issues(sql: str, schema: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """Parse errors and names that are not in the schema (CTEs, aliases and subquery outputs allowed)."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        return [("gold-parse", f"gold SQL does not parse: {str(exc).splitlines()[0]}", "error")]
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


class GoldChecker:
    """Checks gold queries of one database with a cache; thread-safe."""

    def __init__(self, db_path: str | Path, timeout_s: float = 5.0) -> None:
        self.db_path = Path(db_path)
        self.db = ReadOnlyDatabase(self.db_path, timeout_s=timeout_s, row_cap=100_000)
        self.schema = read_schema(self.db_path)
        self._cache: dict[str, GoldCheck] = {}
        self._lock = threading.Lock()

    def cached(self, sql: str) -> GoldCheck | None:
        return self._cache.get(sql)

    def check(self, sql: str) -> GoldCheck:
        hit = self._cache.get(sql)
        if hit is not None:
            return hit
        result = GoldCheck(issues=name_issues(sql, self.schema))
        if not any(code == "gold-parse" for code, _, _ in result.issues):
            res = self.db.execute(sql)
            result.result = res
            if res.error_kind == "timeout":
                result.issues.append(("gold-timeout", f"gold SQL {res.error}", "error"))
            elif not res.ok:
                if not result.issues:  # name problems already explain most execution errors
                    result.issues.append(("gold-error", f"gold SQL fails: {res.error}", "error"))
            elif not res.rows:
                result.issues.append(("gold-empty", "gold SQL returns no rows: every answer with an empty "
                                                    "result would count as correct", "warning"))
        with self._lock:
            self._cache[sql] = result
        return result

    def close(self) -> None:
        self.db.close()
