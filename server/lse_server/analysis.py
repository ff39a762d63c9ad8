"""The checks behind diagnostics and hovers, without the server: parsing in a thread pool under a time budget,
gold SQL checks in threads of their own that a newer check can cancel.

Parsing has a pool of its own, so a gold query that runs long never holds up the parse a hover or the next
keystroke's diagnostics wait for. Each gold query runs in its own thread of a larger pool, under the editor's
check budget (shorter than scoring's gold limit), and is interrupted when the check that asked for it is
cancelled (a newer version of the document, the document closed): one endless query costs one thread for at
most the budget, and no other document waits for it.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lsprotocol import types

from lse_engine.config import load_config
from lse_engine.files import Issue, Span, Suite, parse_prompt, parse_suite
from lse_engine.tasks.sql_checks import CheckCancel, GoldCheck, GoldChecker

MAX_CHARS = 5_000_000
PARSE_BUDGET_S = 2.0
SOURCE = "lse"
SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "info": types.DiagnosticSeverity.Information,
}


def to_range(span: Span) -> types.Range:
    end_line, end_col = span.end_line, span.end_col
    if (end_line, end_col) <= (span.line, span.col):
        end_line, end_col = span.line, span.col + 1
    return types.Range(types.Position(span.line, span.col), types.Position(end_line, end_col))


def to_diagnostic(issue: Issue) -> types.Diagnostic:
    return types.Diagnostic(range=to_range(issue.span), message=issue.message, code=issue.code,
                            severity=SEVERITY.get(issue.severity, types.DiagnosticSeverity.Error), source=SOURCE)


def at_top(code: str, message: str, severity: types.DiagnosticSeverity) -> types.Diagnostic:
    return types.Diagnostic(range=types.Range(types.Position(0, 0), types.Position(0, 1)), code=code,
                            message=message, severity=severity, source=SOURCE)


def too_large(text: str) -> types.Diagnostic | None:
    if len(text) > MAX_CHARS:
        return at_top("too-large", f"file too large to check ({len(text) / 1e6:.1f} MB > {MAX_CHARS / 1e6:.0f} MB)",
                      types.DiagnosticSeverity.Warning)
    return None


class Analyzer:
    """Parses documents in one small pool and runs gold queries in a larger one; gold checks are cached per
    database and query (GoldChecker)."""

    def __init__(self, sql_timeout_s: float = 30.0, workers: int = 2, check_workers: int = 16) -> None:
        self.sql_timeout_s = sql_timeout_s  # gold SQL: BIRD's 30 s, unless lse.toml says otherwise
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="lse-parse")
        self.sql_pool = ThreadPoolExecutor(check_workers, thread_name_prefix="lse-check")
        self._checkers: dict[tuple[str, int, int, float], GoldChecker] = {}
        self._lock = threading.Lock()
        self._running: set[CheckCancel] = set()  # gold queries in flight (interrupted when the server closes)

    def gold_timeout_s(self, suite_path: Path) -> float:
        """The workspace's `[sql] gold_timeout_s` (lse.toml above the suite), else the server's default."""
        try:
            return load_config(suite_path.parent).sql.gold_timeout_s
        except Exception:  # no settings, or settings with errors (reported where they are edited)
            return self.sql_timeout_s

    def checker(self, db: Path, timeout_s: float | None = None) -> GoldChecker:
        """The cached checker of a database file as it is now (blocking: it opens the file)."""
        st = db.stat()
        timeout = self.sql_timeout_s if timeout_s is None else timeout_s
        key = (str(db), st.st_size, st.st_mtime_ns, timeout)
        with self._lock:
            found = self._checkers.get(key)
            if found is None:
                found = self._checkers[key] = GoldChecker(db, timeout_s=timeout)
            return found

    async def run(self, fn: Any, *args: Any, budget_s: float | None = PARSE_BUDGET_S, sql: bool = False) -> Any:
        """`fn(*args)` in the parse pool (`sql`: the SQL pool); TimeoutError past `budget_s` (the thread finishes on
        its own)."""
        future = asyncio.get_running_loop().run_in_executor(self.sql_pool if sql else self.pool, fn, *args)
        return await asyncio.wait_for(asyncio.shield(future), budget_s) if budget_s else await future

    async def gold(self, checker: GoldChecker, sql: str, budget_s: float) -> GoldCheck:
        """One gold query's checks, the query running at most `budget_s`. Cancelling the awaiting task interrupts
        the query (its thread is free at once)."""
        hit = checker.cached(sql)
        if hit is not None:
            return hit
        cancel = CheckCancel()
        self._running.add(cancel)
        future = asyncio.get_running_loop().run_in_executor(self.sql_pool, checker.check, sql, budget_s, cancel)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.cancel()
            raise
        finally:
            self._running.discard(cancel)

    def suite_parse(self, text: str, path: str) -> tuple[Suite | None, list[types.Diagnostic]]:
        big = too_large(text)
        if big:
            return None, [big]
        suite, issues = parse_suite(text, path)
        return suite, [to_diagnostic(i) for i in issues]

    def prompt(self, text: str, path: str) -> list[types.Diagnostic]:
        big = too_large(text)
        if big:
            return [big]
        prompt, issues = parse_prompt(text, path)
        diags = [to_diagnostic(i) for i in issues]
        suite_path = prompt.suite_path
        if suite_path is not None and suite_path.is_file():
            suite_text: str | None = None
            err: str | None = None
            try:
                suite_text = suite_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                err = str(exc)
            errors: list[Issue] = []
            if suite_text is not None and not too_large(suite_text):
                _, suite_issues = parse_suite(suite_text, suite_path)
                errors = [i for i in suite_issues if i.severity == "error"]
            if err or errors:
                first = err or f"{suite_path.name}:{errors[0].span.line + 1}: {errors[0].message}"
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                diags.append(types.Diagnostic(range=to_range(prompt.suite_span), code="invalid-suite", source=SOURCE,
                                              message=f"the suite is invalid: {first}{more}",
                                              severity=types.DiagnosticSeverity.Error))
        return diags

    def close(self) -> None:
        for cancel in list(self._running):
            cancel.cancel()
        for pool in (self.pool, self.sql_pool):
            pool.shutdown(wait=False, cancel_futures=True)
