"""Text-to-SQL: render the fixed template (`sql_template`), extract the SQL answer, score it as BIRD does."""

from __future__ import annotations

import functools
import logging
import marshal
import os
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import sqlglot
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import Token, Tokenizer, TokenType

from lse_engine.llm.base import Chat
from lse_engine.tags import extract_tag
from lse_engine.tasks import sql_claims, sql_facts, sql_feedback, sql_template, sql_values
from lse_engine.tasks.base import GOLD_FAILED, ColumnValues, Finding, Outcome, Problem
from lse_engine.tasks.sql_schema import Schema
from lse_engine.tasks.sqlite_exec import (
    MAX_SQL_CHARS,
    ExecResult,
    ReadOnlyDatabase,
    check_limits,
    open_readonly,
    quote_ident,
)

logging.getLogger("sqlglot").setLevel(logging.ERROR)

_FENCE_RE = re.compile(r"```(?:[a-zA-Z]*)\n?(.*?)```", re.DOTALL)
_PREVIEW_ROWS = 5
_PREVIEW_CHARS = 400
PARALLEL_FROM_S = 0.001  # seconds of scoring per problem from which a thread pool beats one thread
_SQLITE = Dialect.get_or_raise("sqlite")
_LEXERS = threading.local()
_MAIN_STATEMENTS = {TokenType.SELECT, TokenType.VALUES, TokenType.INSERT, TokenType.UPDATE, TokenType.DELETE,
                    TokenType.REPLACE, TokenType.MERGE}
_NOT_A_KEYWORD = {TokenType.VAR, TokenType.IDENTIFIER, TokenType.NUMBER, TokenType.STRING}


def extract_sql(text: str) -> str | None:
    """The SQL of the reply's answer block (`tags.extract_tag`: the last closed one, nesting-aware; a block
    cut off by the stop string or token limit counts), else its last fenced code block; None when absent."""
    if not text:
        return None
    candidate = extract_tag(text, "answer", unclosed=True)
    if candidate is None:
        fences = _FENCE_RE.findall(text)
        if not fences:
            return None
        candidate = fences[-1]
    fenced = _FENCE_RE.findall(candidate) if "```" in candidate else None
    if fenced:
        candidate = fenced[-1]
    elif candidate.lstrip().startswith("```"):  # a fence opened inside the block and never closed
        candidate = candidate.lstrip()[3:]
        candidate = candidate[3:] if candidate[:3].lower() == "sql" else candidate
    candidate = candidate.strip()
    if candidate.lower().startswith("sql\n"):
        candidate = candidate[4:]
    return candidate.strip() or None


@functools.lru_cache(maxsize=8192)
def check_query(sql: str) -> tuple[str, str] | None:
    """Check with sqlglot's SQLite lexer: (error_kind, message) when `sql` is not exactly one read query.

    Tokens settle both questions exactly (statements are split at top-level `;` tokens, as sqlglot's
    parser splits them; the kind is the leading keyword, or for WITH the first keyword after the CTEs),
    at a quarter of a full parse's cost, which would exceed SQLite's time to run a typical query. Any
    other syntax error is SQLite's to report: it prepares a statement before running any of it.
    Memoised: a model often writes the same SQL for a problem under many prompt versions."""
    try:
        tokens = _lexer().tokenize(sql)
    except sqlglot.errors.SqlglotError as exc:
        return "syntax", str(exc).splitlines()[0][:300]
    except (RecursionError, ValueError) as exc:  # pathological input
        return "syntax", f"{type(exc).__name__}: could not tokenize"
    statements: list[list[Token]] = [tokens]
    if ";" in sql:
        statements = [[]]
        for token in tokens:
            if token.token_type is TokenType.SEMICOLON:
                statements.append([])
            else:
                statements[-1].append(token)
    statements = [s for s in statements if s]
    if len(statements) != 1:
        return "not_a_query", f"expected exactly one statement, got {len(statements)}"
    head = _statement_head(statements[0])
    if head is None:
        return "syntax", "WITH and no statement after its common table expressions"
    if head.token_type is TokenType.SELECT:
        return None
    if head.token_type in _NOT_A_KEYWORD:
        return "syntax", f"near {head.text!r}: a query starts with SELECT or WITH"
    return "not_a_query", f"only read queries are allowed, got {head.text.split()[0].upper()}"


def _lexer() -> Tokenizer:
    """This thread's SQLite tokenizer (a tokenizer keeps state while it runs; building one costs a third of a run)."""
    lexer = getattr(_LEXERS, "lexer", None)
    if lexer is None:
        lexer = _LEXERS.lexer = _SQLITE.tokenizer()
    return lexer


def _statement_head(tokens: list[Token]) -> Token | None:
    """The keyword that decides a statement's kind: the first one, past opening parentheses and CTEs."""
    i = 0
    while i < len(tokens) - 1 and tokens[i].token_type is TokenType.L_PAREN:
        i += 1
    if tokens[i].token_type is not TokenType.WITH:
        return tokens[i]
    depth = 0
    for token in tokens[i + 1:]:
        if token.token_type is TokenType.L_PAREN:
            depth += 1
        elif token.token_type is TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and token.token_type in _MAIN_STATEMENTS:
            return token
    return None


def results_match(predicted: Iterable[tuple[Any, ...]], gold: Iterable[tuple[Any, ...]]) -> bool:
    """BIRD's rule: the sets of rows are equal (order and duplicates ignored, Python equality).

    `gold` may already be a set, as `SQLiteTask` keeps each gold query's rows: it is not copied then."""
    return set(predicted) == (gold if isinstance(gold, (set, frozenset)) else set(gold))


def preview_rows(rows: Sequence[tuple[Any, ...]] | None, limit: int = _PREVIEW_ROWS) -> str:
    """A short text rendering of the first rows of a result, e.g. "(1, 'a'), (2, 'b') (2 rows)".

    Built value by value and cut at `_PREVIEW_CHARS`: a 5 MB value costs no more than a short one."""
    if rows is None:
        return ""
    head = rows[:limit]
    if len(marshal.dumps(list(head))) <= _PREVIEW_CHARS:  # short values (their repr is at most ~4x): repr them all
        shown = repr(list(head))[1:-1]
        more = f" … ({len(rows)} rows)" if len(rows) > limit else f" ({len(rows)} rows)"
        text = shown + more
        return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "…"
    parts: list[str] = []
    used = 0
    for row in rows[:limit]:
        cells = [_value_repr(v, _PREVIEW_CHARS - used) for v in row]
        part = "(" + ", ".join(cells) + ("," if len(cells) == 1 else "") + ")"
        parts.append(part)
        used += len(part) + 2
        if used > _PREVIEW_CHARS:
            break
    shown = ", ".join(parts)
    more = f" … ({len(rows)} rows)" if len(rows) > limit else f" ({len(rows)} rows)"
    text = shown + more
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "…"


def _value_repr(value: object, room: int) -> str:
    """`repr(value)`, of a prefix when a text or blob is longer than the room left (it is cut anyway)."""
    if isinstance(value, (str, bytes)) and len(value) > room + 1:
        return repr(value[: max(0, room) + 1])
    return repr(value)


def _example_values(conn: sqlite3.Connection, table: str, column: str, k: int) -> list[str]:
    try:
        rows = conn.execute(
            f"SELECT DISTINCT {quote_ident(column)} FROM {quote_ident(table)} "
            f"WHERE {quote_ident(column)} IS NOT NULL LIMIT {int(k)}"
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
            cols = conn.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()
            fks = conn.execute(f"PRAGMA foreign_key_list({quote_ident(table)})").fetchall()
            pk = [c[1] for c in sorted(cols, key=lambda c: c[5]) if c[5]]
            lines = []
            for _cid, name, ctype, _notnull, _default, _pk in cols:
                examples = _example_values(conn, table, name, example_values) if example_values else []
                comment = f" -- examples: {', '.join(examples)}" if examples else ""
                lines.append((f"  {quote_ident(name)} {ctype or ''}".rstrip(), comment))
            if pk:
                lines.append((f"  PRIMARY KEY ({', '.join(quote_ident(p) for p in pk)})", ""))
            for fk in fks:
                lines.append(
                    (f"  FOREIGN KEY ({quote_ident(fk[3])}) REFERENCES "
                     f"{quote_ident(fk[2])}({quote_ident(fk[4] or fk[3])})", "")
                )
            body = []
            for i, (decl, comment) in enumerate(lines):
                sep = "," if i < len(lines) - 1 else ""
                body.append(f"{decl}{sep}{comment}")
            blocks.append(f"CREATE TABLE {quote_ident(table)} (\n" + "\n".join(body) + "\n);")
        return "\n\n".join(blocks)
    finally:
        conn.close()


class _Gold(NamedTuple):
    """A gold query's result with what scoring needs of it, made once: its preview and its set of rows."""

    result: ExecResult
    preview: str
    rows: frozenset[tuple[Any, ...]] | None


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
        gold_timeout_s: float = 30.0,
        show_work: bool = True,
        facts: str = "per-question",
    ) -> None:
        """`timeout_s` bounds each predicted query, `gold_timeout_s` each gold query (BIRD's harness: 30 s);
        `show_work` picks the template's closing line (`sql_template`); `facts` where the instructions' facts go
        ("always": in the instructions, for every question; "per-question": with the questions they concern,
        `sql_facts`)."""
        self.database = Path(database)
        self.db = ReadOnlyDatabase(self.database, timeout_s=timeout_s, row_cap=row_cap)
        check_limits(gold_timeout_s, row_cap)
        self.gold_timeout_s = gold_timeout_s
        self.example_values = example_values
        self.show_work = show_work
        self.facts = facts
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self._schema: str | None = None
        self._gold: dict[str, _Gold] = {}
        self._stored: dict[tuple[str | None, str], ColumnValues | None] = {}  # how columns store values (findings)
        self._gold_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._recent_seconds: deque[float] = deque(maxlen=5)  # the last problems scored in this thread

    def fingerprint(self) -> str:
        st = self.database.stat()
        return f"sqlite:{self.database.resolve()}:{st.st_size}:{st.st_mtime_ns}"

    @property
    def schema(self) -> str:
        if self._schema is None:
            self._schema = render_schema(self.database, self.example_values)
        return self._schema

    def render(self, instructions: str, problem: Problem) -> Chat:
        if self.facts == "per-question" and sql_facts.FACTS_HEADER in instructions:
            base, facts = sql_facts.split_facts(instructions)
            question = problem.question + (f" {problem.evidence}" if problem.evidence else "")
            notes = sql_facts.notes_for(facts, question, *self._tables_and_columns)
            return sql_template.render(self.schema, base, problem, self.show_work, notes)
        return sql_template.render(self.schema, instructions, problem, self.show_work)

    @functools.cached_property
    def _tables_and_columns(self) -> tuple[frozenset[str], frozenset[str]]:
        """The database's table names and column names, as written (`sql_facts.notes_for`)."""
        schema = self.schema_map
        return frozenset(schema.columns), frozenset(c for cols in schema.columns.values() for c in cols)

    def agent_prompt(self, instructions: str, show_schema: bool = True) -> str:
        """The fixed system prompt around `instructions` (what the evolver is shown as "the current prompt")."""
        return sql_template.agent_prompt(self.schema if show_schema else sql_template.SCHEMA_HIDDEN, instructions)

    def has_answer(self, reply: str) -> bool:
        return extract_sql(reply) is not None

    def findings(self, problem: Problem, outcome: Outcome) -> list[Finding]:
        """What the database and the gold query tell about a wrong answer, computed (read-only): a column looked up
        in the wrong table or a table that does not exist (`sql_feedback.misplaced`); the gold query's comparisons
        of a column with a value the answer lacks, each with how that column stores its values (`sql_values`);
        else the first place the queries differ, when it is a value; and a result of the wrong shape."""
        if outcome.correct or not outcome.answer:
            return []
        try:
            return self._findings(problem, outcome)
        except Exception as exc:  # a gold query or schema the parser cannot read: feedback without findings
            logging.getLogger(__name__).debug("no findings for %s: %s", problem.id, exc)
            return []

    def _findings(self, problem: Problem, outcome: Outcome) -> list[Finding]:
        assert outcome.answer is not None
        found = []
        quoting = sql_feedback.unquoted(self.schema_map, outcome)
        if quoting is not None:
            found.append(quoting)
        placed = sql_feedback.misplaced(self.schema_map, outcome, problem.gold) if quoting is None else None
        if placed is not None:
            found.append(placed)
        values = []
        for missed in sql_values.missed_values(outcome.answer, problem.gold):
            stored = self._column_values(missed.table, missed.column)
            if stored is not None:
                text = (f"the correct query compares {missed.column} with {' and '.join(missed.values)}; "
                        f"{stored.describe()}")
                values.append(Finding("value", text, column=missed.column, values=missed.values, stored=stored))
        found += values
        edits = sql_values.query_edits(outcome.answer, problem.gold) if not values else []
        if edits and sql_values.has_literal(edits[0][1]):  # a value the model got wrong: knowledge about the data
            wrote, should = edits[0]
            found.append(Finding("literal", f"the correct query writes {should or 'nothing'} where the wrong one "
                                            f"wrote {wrote or 'nothing'}", wrote=wrote, should=should))
        shape = sql_feedback.result_shape(outcome, problem.gold)
        return found + ([shape] if shape is not None else [])

    @functools.cached_property
    def schema_map(self) -> Schema:
        """The database's tables, columns and keys (read once)."""
        return Schema.read(self.db)

    def names(self) -> set[str]:
        """Every table and column name of the database, lower-cased."""
        return self.schema_map.names()

    def contradictions(self, text: str) -> list[str]:
        """What `text` states that the database contradicts (`sql_claims`). Worked examples are not read: their
        query is a gold query ("SELECT T2.Make FROM cars_data AS T1 JOIN car_names AS T2" is no claim that
        cars_data has Make)."""
        stated = "\n".join(line for line in text.splitlines() if not sql_facts.is_example(sql_facts.unbulleted(line)))
        return sql_claims.contradictions(self.schema_map, self._column_values, stated)

    def _column_values(self, table: str | None, column: str) -> ColumnValues | None:
        where = (table, column)
        if where not in self._stored:
            self._stored[where] = sql_values.column_values(self.db, table, column)
        return self._stored[where]

    def gold_result(self, problem: Problem) -> ExecResult:
        """The gold query's result, computed once per gold SQL text."""
        return self._gold_entry(problem.gold).result

    def _gold_entry(self, sql: str) -> _Gold:
        cached = self._gold.get(sql)
        if cached is not None:
            return cached
        result = self.db.execute(sql, timeout_s=self.gold_timeout_s)
        entry = _Gold(result, preview_rows(result.rows) if result.ok else f"gold failed: {result.error}",
                      frozenset(result.rows) if result.rows is not None else None)
        with self._gold_lock:
            return self._gold.setdefault(sql, entry)

    def _score_one(self, problem: Problem, completion: str) -> Outcome:
        gold = self._gold_entry(problem.gold)
        out = Outcome(problem_id=problem.id, correct=False, completion=completion, expected_preview=gold.preview)
        sql = extract_sql(completion)
        out.answer = sql
        if not sql:
            out.error_kind, out.error = "no_answer", "no SQL found in <answer> tags or a fenced block"
            return out
        problem_found = check_query(sql) if len(sql) <= MAX_SQL_CHARS else \
            ("runtime", f"the query is too long ({len(sql):,} characters > {MAX_SQL_CHARS:,})")
        if problem_found:
            out.error_kind, out.error = problem_found
            return out
        pred = self.db.execute(sql)
        if pred.rows is None:
            out.error_kind, out.error = pred.error_kind, pred.error
            return out
        out.result_preview = preview_rows(pred.rows)
        if gold.rows is None:
            out.error_kind, out.error = "runtime", f"{GOLD_FAILED}: {gold.result.error}"
            return out
        out.result_rows, out.result_cols = len(pred.rows), (len(pred.rows[0]) if pred.rows else None)
        gold_rows = gold.result.rows or []
        out.expected_rows, out.expected_cols = len(gold_rows), (len(gold_rows[0]) if gold_rows else None)
        out.correct = results_match(pred.rows, gold.rows)
        if not out.correct:
            out.error_kind, out.error = "wrong_result", "result differs from the expected result"
        return out

    def score(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Outcome]:
        """Score in order; threads take over once problems are known to cost enough SQL time to pay for them.

        SQLite releases the GIL while it runs a query, so threads help with heavy queries; with light ones
        the GIL hand-offs cost more than the queries. Each call scores its first problem in this thread,
        timing it; threads start once the median of the last few such times is high enough (a median, so that
        one stalled query does not start them)."""
        if len(problems) != len(completions):
            raise ValueError("one completion per problem expected")
        outcomes: list[Outcome] = []
        i = 0
        while i < len(problems) and (i == 0 or not self._threads_pay()):
            start = time.perf_counter()
            outcomes.append(self._score_one(problems[i], completions[i]))
            self._recent_seconds.append(time.perf_counter() - start)
            i += 1
        if i < len(problems):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lse-sql")
            outcomes.extend(self._pool.map(self._score_one, problems[i:], completions[i:]))
        return outcomes

    def _threads_pay(self) -> bool:
        recent = self._recent_seconds
        return self.workers > 1 and len(recent) >= 3 and sorted(recent)[len(recent) // 2] >= PARALLEL_FROM_S

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.db.close()
