"""Diagnostics for suites and LSE prompt files: the engine's parsers, then gold SQL checks (trusted only).

Parsing runs in a thread pool under a time budget, so a hostile file (an alias bomb, say) costs a
diagnostic, never the server's replies.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from lse_engine.config import load_config
from lse_engine.files import Issue, Span, Suite, parse_prompt, parse_suite
from lse_engine.tasks.sql_checks import GoldChecker
from lse_server.documents import is_suite

if TYPE_CHECKING:
    from lse_server.core import LseServer

log = logging.getLogger("lse_server.diagnostics")
MAX_CHARS = 5_000_000
PARSE_BUDGET_S = 2.0
DEBOUNCE_S = 0.25
SOURCE = "lse"
_SEVERITY = {
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
                            severity=_SEVERITY.get(issue.severity, types.DiagnosticSeverity.Error), source=SOURCE)


def _at_top(code: str, message: str, severity: types.DiagnosticSeverity) -> types.Diagnostic:
    return types.Diagnostic(range=types.Range(types.Position(0, 0), types.Position(0, 1)), code=code,
                            message=message, severity=severity, source=SOURCE)


def too_large(text: str) -> types.Diagnostic | None:
    if len(text) > MAX_CHARS:
        return _at_top("too-large", f"file too large to check ({len(text) / 1e6:.1f} MB > {MAX_CHARS / 1e6:.0f} MB)",
                       types.DiagnosticSeverity.Warning)
    return None


class Analyzer:
    """Parses documents and checks gold SQL in two thread pools; gold checks are cached per database and query.

    Parsing has a pool of its own: a gold query that runs to its 30 s timeout must not hold up the parse a hover
    or the next keystroke's diagnostics wait for."""

    def __init__(self, sql_timeout_s: float = 30.0, workers: int = 2) -> None:  # gold SQL: BIRD's 30 s
        self.sql_timeout_s = sql_timeout_s
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="lse-parse")
        self.sql_pool = ThreadPoolExecutor(workers, thread_name_prefix="lse-check")
        self._checkers: dict[tuple[str, int, int, float], GoldChecker] = {}
        self._lock = threading.Lock()

    def gold_timeout_s(self, suite_path: Path) -> float:
        """The workspace's `[sql] gold_timeout_s` (lse.toml above the suite), else the server's default."""
        try:
            return load_config(suite_path.parent).sql.gold_timeout_s
        except Exception:  # no settings, or settings with errors (reported where they are edited)
            return self.sql_timeout_s

    def checker(self, db: Path, timeout_s: float | None = None) -> GoldChecker:
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
            checker = self.checker(suite.database, self.gold_timeout_s(suite.path))
        except Exception as exc:  # not a database, unreadable, …
            return [types.Diagnostic(range=to_range(suite.database_span), code="not-sqlite", source=SOURCE,
                                     message=f"cannot open the database: {exc}",
                                     severity=types.DiagnosticSeverity.Error)]
        out = []
        for problem in suite.problems:
            check = checker.check(problem.gold)
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
        for pool in (self.pool, self.sql_pool):
            pool.shutdown(wait=False, cancel_futures=True)


async def publish(ls: LseServer, uri: str) -> None:
    """Parse a document and publish its diagnostics; SQL checks follow in a second publish when trusted."""
    try:
        text, version = ls.text_of(uri)
        path = str(ls.path_of(uri))
    except Exception as exc:  # noqa: BLE001 - a document we cannot read gets no diagnostics
        log.info("cannot read %s: %s", uri, exc)
        return

    def send(diags: list[types.Diagnostic]) -> None:
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri, diags, version))

    analyzer = ls.analyzer
    try:
        if is_suite(path, ls.globs):
            suite, diags = await analyzer.run(analyzer.suite_parse, text, path)
            ls.remember_suite(uri, text, version, suite)
            send(diags)
            if ls.trusted and suite is not None and not any(d.code in ("yaml", "json", "binary") for d in diags):
                sql_diags = await analyzer.run(analyzer.suite_sql, suite, budget_s=None, sql=True)
                if ls.version_of(uri) == version:  # else a newer edit publishes
                    send(diags + sql_diags)
        elif ls.is_prompt(path, text):
            send(await analyzer.run(analyzer.prompt, text, path))
        else:
            send([])  # a prompt-named file that is not LSE's (no `suite:`): nothing from us
    except asyncio.TimeoutError:
        log.warning("checking %s took over %.0f s; gave up", path, PARSE_BUDGET_S)
        send([_at_top("too-slow", f"this file takes over {PARSE_BUDGET_S:.0f} s to parse (nested aliases? a huge "
                      "file?); LSE does not check it", types.DiagnosticSeverity.Warning)])


def schedule(ls: LseServer, uri: str, delay: float) -> None:
    """Publish diagnostics for `uri` after `delay` seconds, replacing any publish scheduled before."""
    old = ls.debounce.pop(uri, None)
    if old is not None:
        old.cancel()

    async def later() -> None:
        await asyncio.sleep(delay)
        try:
            await publish(ls, uri)
        except Exception:
            log.exception("diagnostics failed for %s", uri)

    ls.debounce[uri] = asyncio.get_running_loop().create_task(later())


def register(ls: LseServer) -> None:
    @ls.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LseServer, params: types.DidOpenTextDocumentParams) -> None:
        schedule(ls, params.text_document.uri, 0)

    @ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LseServer, params: types.DidChangeTextDocumentParams) -> None:
        schedule(ls, params.text_document.uri, DEBOUNCE_S)

    @ls.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: LseServer, params: types.DidSaveTextDocumentParams) -> None:
        uri = params.text_document.uri
        schedule(ls, uri, 0)
        if ls.is_suite_uri(uri):  # prompts depend on their suite: re-check the open ones
            for other in list(ls.workspace.text_documents):
                if other != uri and not ls.is_suite_uri(other):
                    schedule(ls, other, DEBOUNCE_S)

    @ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LseServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        task = ls.debounce.pop(uri, None)
        if task is not None:
            task.cancel()
        ls.forget_suite(uri)
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri, []))
