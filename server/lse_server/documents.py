"""Diagnostics for suite and prompt documents, built from the engine's parsers and gold SQL checks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lsprotocol import types

from lse_engine.files import Issue, Span, Suite, parse_prompt, parse_suite
from lse_engine.tasks.sql_checks import GoldChecker

MAX_CHARS = 5_000_000
SOURCE = "lse"
_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "info": types.DiagnosticSeverity.Information,
}


def is_suite(path: str) -> bool:
    return path.endswith((".suite.yaml", ".suite.yml", ".suite.json"))


def is_prompt(path: str) -> bool:
    return path.endswith(".prompt.md")


def to_range(span: Span) -> types.Range:
    end_line, end_col = span.end_line, span.end_col
    if (end_line, end_col) <= (span.line, span.col):
        end_line, end_col = span.line, span.col + 1
    return types.Range(types.Position(span.line, span.col), types.Position(end_line, end_col))


def to_diagnostic(issue: Issue) -> types.Diagnostic:
    return types.Diagnostic(range=to_range(issue.span), message=issue.message, code=issue.code,
                            severity=_SEVERITY.get(issue.severity, types.DiagnosticSeverity.Error), source=SOURCE)


def too_large(text: str) -> types.Diagnostic | None:
    if len(text) > MAX_CHARS:
        return types.Diagnostic(range=types.Range(types.Position(0, 0), types.Position(0, 1)), code="too-large",
                                message=f"file too large to check ({len(text) / 1e6:.1f} MB > {MAX_CHARS / 1e6:.0f} MB)",
                                severity=types.DiagnosticSeverity.Warning, source=SOURCE)
    return None


class Analyzer:
    """Parses documents and checks gold SQL; gold checks are cached per database and query."""

    def __init__(self, sql_timeout_s: float = 5.0, workers: int = 2) -> None:
        self.sql_timeout_s = sql_timeout_s
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="lse-check")
        self._checkers: dict[tuple[str, int, int], GoldChecker] = {}
        self._lock = threading.Lock()

    def checker(self, db: Path) -> GoldChecker:
        st = db.stat()
        key = (str(db), st.st_size, st.st_mtime_ns)
        with self._lock:
            found = self._checkers.get(key)
            if found is None:
                found = self._checkers[key] = GoldChecker(db, timeout_s=self.sql_timeout_s)
            return found

    def suite_parse(self, text: str, path: str) -> tuple[Suite | None, list[types.Diagnostic]]:
        big = too_large(text)
        if big:
            return None, [big]
        suite, issues = parse_suite(text, path)
        return suite, [to_diagnostic(i) for i in issues]

    def suite_sql(self, suite: Suite) -> list[types.Diagnostic]:
        """Gold SQL checks for every problem, on the range of its `gold` value (blocking: run in `pool`)."""
        if suite.task != "text-to-sql" or suite.database is None or not suite.database.is_file():
            return []
        try:
            checker = self.checker(suite.database)
        except Exception as exc:  # not a database, unreadable, …
            return [types.Diagnostic(range=to_range(suite.database_span), code="not-sqlite", source=SOURCE,
                                     message=f"cannot open the database: {exc}",
                                     severity=types.DiagnosticSeverity.Error)]
        out = []
        checks = list(zip(suite.problems, map(checker.check, (p.gold for p in suite.problems))))
        for problem, check in checks:
            span = suite.spans.get(problem.id, {}).get("gold", Span(problem.line - 1, 0, problem.line - 1, 1))
            for code, message, severity in check.issues:
                out.append(types.Diagnostic(range=to_range(span), message=message, code=code, source=SOURCE,
                                            severity=_SEVERITY[severity]))
        return out

    def prompt(self, text: str, path: str) -> list[types.Diagnostic]:
        big = too_large(text)
        if big:
            return [big]
        prompt, issues = parse_prompt(text, path)
        diags = [to_diagnostic(i) for i in issues]
        suite_path = prompt.suite_path
        if suite_path is not None and suite_path.is_file():
            try:
                suite_text = suite_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                suite_text, err = None, str(exc)
            else:
                err = None
            errors = []
            if suite_text is not None:
                if too_large(suite_text):
                    errors = []
                else:
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
        self.pool.shutdown(wait=False, cancel_futures=True)
