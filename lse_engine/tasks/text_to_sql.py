"""Text-to-SQL: render schema + question + instructions, extract the SQL answer, score it as BIRD does."""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlglot
from sqlglot import exp

from lse_engine.llm.base import Chat
from lse_engine.tasks.base import Outcome, Problem
from lse_engine.tasks.sqlite_exec import ExecResult, ReadOnlyDatabase, open_readonly

logging.getLogger("sqlglot").setLevel(logging.ERROR)

SYSTEM_PROMPT = "You are an expert data analyst who answers questions by writing SQLite SQL."
_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.IGNORECASE | re.DOTALL)
_FENCE_RE = re.compile(r"```(?:[a-zA-Z]*)\n?(.*?)```", re.DOTALL)
_PREVIEW_ROWS = 5
_PREVIEW_CHARS = 400


def extract_sql(text: str) -> str | None:
    """The SQL in the last `<answer>` tag; else the last fenced code block; None when there is none."""
    if not text:
        return None
    answers = _ANSWER_RE.findall(text)
    if answers:
        candidate = answers[-1]
    else:
        fences = _FENCE_RE.findall(text)
        if not fences:
            return None
        candidate = fences[-1]
    fenced = _FENCE_RE.findall(candidate)
    if fenced:
        candidate = fenced[-1]
    candidate = candidate.strip()
    if candidate.lower().startswith("sql\n"):
        candidate = candidate[4:]
    return candidate.strip() or None


@functools.lru_cache(maxsize=8192)
def check_query(sql: str) -> tuple[str, str] | None:
    """Pre-parse with sqlglot: (error_kind, message) when `sql` is not exactly one read query.

    Memoised: a model often writes the same SQL for a problem under many prompt versions."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        return "syntax", str(exc).splitlines()[0][:300]
    except (RecursionError, ValueError) as exc:  # pathological input
        return "syntax", f"{type(exc).__name__}: could not parse"
    if len(statements) != 1:
        return "not_a_query", f"expected exactly one statement, got {len(statements)}"
    stmt = statements[0]
    if not isinstance(stmt, exp.Query):
        return "not_a_query", f"only read queries are allowed, got {stmt.key.upper()}"
    return None


def results_match(predicted: Sequence[tuple], gold: Sequence[tuple]) -> bool:
    """BIRD's rule: the sets of rows are equal (order and duplicates ignored, Python equality)."""
    return set(predicted) == set(gold)


def preview_rows(rows: Sequence[tuple] | None, limit: int = _PREVIEW_ROWS) -> str:
    """A short text rendering of the first rows of a result."""
    if rows is None:
        return ""
    shown = [repr(tuple(r)) for r in rows[:limit]]
    more = f" … ({len(rows)} rows)" if len(rows) > limit else f" ({len(rows)} rows)"
    text = ", ".join(shown) + more
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "…"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _example_values(conn, table: str, column: str, k: int) -> list[str]:
    try:
        rows = conn.execute(
            f"SELECT DISTINCT {_quote_ident(column)} FROM {_quote_ident(table)} "
            f"WHERE {_quote_ident(column)} IS NOT NULL LIMIT {int(k)}"
        ).fetchall()
    except Exception:
        return []
    out = []
    for (v,) in rows:
        s = repr(v) if not isinstance(v, bytes) else "<blob>"
        out.append(s if len(s) <= 40 else s[:37] + "…'")
    return out


def render_schema(db_path: str | os.PathLike[str], example_values: int = 3) -> str:
    """CREATE statements of every table, each column annotated with a few example values."""
    conn = open_readonly(db_path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        blocks = []
        for table in tables:
            cols = conn.execute(f"PRAGMA table_info({_quote_ident(table)})").fetchall()
            fks = conn.execute(f"PRAGMA foreign_key_list({_quote_ident(table)})").fetchall()
            pk = [c[1] for c in sorted(cols, key=lambda c: c[5]) if c[5]]
            lines = []
            for _cid, name, ctype, _notnull, _default, _pk in cols:
                examples = _example_values(conn, table, name, example_values) if example_values else []
                comment = f" -- examples: {', '.join(examples)}" if examples else ""
                lines.append((f"  {_quote_ident(name)} {ctype or ''}".rstrip(), comment))
            if pk:
                lines.append((f"  PRIMARY KEY ({', '.join(_quote_ident(p) for p in pk)})", ""))
            for fk in fks:
                lines.append(
                    (f"  FOREIGN KEY ({_quote_ident(fk[3])}) REFERENCES {_quote_ident(fk[2])}({_quote_ident(fk[4] or fk[3])})", "")
                )
            body = []
            for i, (decl, comment) in enumerate(lines):
                sep = "," if i < len(lines) - 1 else ""
                body.append(f"{decl}{sep}{comment}")
            blocks.append(f"CREATE TABLE {_quote_ident(table)} (\n" + "\n".join(body) + "\n);")
        return "\n\n".join(blocks)
    finally:
        conn.close()


def render_user_message(schema: str, problem: Problem, instructions: str) -> str:
    """The fixed template; only `instructions` evolves."""
    parts = ["Database schema:", schema, "", f"Question: {problem.question}"]
    if problem.evidence:
        parts.append(f"Evidence: {problem.evidence}")
    parts += ["", "Instructions:", instructions.strip()]
    return "\n".join(parts)


class SQLiteTask:
    """Text-to-SQL against one SQLite database, scored by execution with BIRD's set comparison."""

    kind = "text-to-sql"

    def __init__(
        self,
        database: str | os.PathLike[str],
        timeout_s: float = 5.0,
        row_cap: int = 100_000,
        example_values: int = 3,
        workers: int | None = None,
    ) -> None:
        self.database = Path(database)
        self.db = ReadOnlyDatabase(self.database, timeout_s=timeout_s, row_cap=row_cap)
        self.example_values = example_values
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self._schema: str | None = None
        self._gold: dict[str, ExecResult] = {}
        self._gold_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def fingerprint(self) -> str:
        st = self.database.stat()
        return f"sqlite:{self.database.resolve()}:{st.st_size}:{st.st_mtime_ns}"

    @property
    def schema(self) -> str:
        if self._schema is None:
            self._schema = render_schema(self.database, self.example_values)
        return self._schema

    def render(self, instructions: str, problem: Problem) -> Chat:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": render_user_message(self.schema, problem, instructions)},
        ]

    def gold_result(self, problem: Problem) -> ExecResult:
        """The gold query's result, computed once per gold SQL text."""
        key = problem.gold
        cached = self._gold.get(key)
        if cached is not None:
            return cached
        result = self.db.execute(problem.gold)
        with self._gold_lock:
            self._gold.setdefault(key, result)
        return result

    def _score_one(self, problem: Problem, completion: str) -> Outcome:
        gold = self.gold_result(problem)
        out = Outcome(problem_id=problem.id, correct=False, completion=completion)
        out.expected_preview = preview_rows(gold.rows) if gold.ok else f"gold failed: {gold.error}"
        sql = extract_sql(completion)
        out.answer = sql
        if not sql:
            out.error_kind, out.error = "no_answer", "no SQL found in <answer> tags or a fenced block"
            return out
        problem_found = check_query(sql)
        if problem_found:
            out.error_kind, out.error = problem_found
            return out
        pred = self.db.execute(sql)
        if not pred.ok:
            out.error_kind, out.error = pred.error_kind, pred.error
            return out
        out.result_preview = preview_rows(pred.rows)
        if not gold.ok:
            out.error_kind, out.error = "runtime", f"gold query failed: {gold.error}"
            return out
        out.correct = results_match(pred.rows or [], gold.rows or [])
        if not out.correct:
            out.error_kind, out.error = "wrong_result", "result differs from the expected result"
        return out

    def score(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Outcome]:
        if len(problems) != len(completions):
            raise ValueError("one completion per problem expected")
        if len(problems) <= 1 or self.workers == 1:
            return [self._score_one(p, c) for p, c in zip(problems, completions)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lse-sql")
        return list(self._pool.map(self._score_one, problems, completions))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.db.close()
