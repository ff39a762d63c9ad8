"""Diagnostics for suites and LSE prompt files: the engine's parsers, then gold SQL checks (trusted only).

One check per document at a time: an edit, a save or closing the document cancels the check under way (its
running gold query is interrupted) before the next starts. Checks of different documents run side by side,
and each gold query runs under the editor's check budget, so one slow query delays nothing but its own
suite's last publish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from lsprotocol import types

from lse_engine.files import Span, Suite
from lse_server.analysis import PARSE_BUDGET_S, SEVERITY, SOURCE, at_top, to_range
from lse_server.core import LseServer
from lse_server.documents import is_suite

log = logging.getLogger("lse_server.diagnostics")
DEBOUNCE_S = 0.25
PARTIAL_EVERY_S = 1.0  # a long gold check publishes what it has found so far this often


async def gold_diagnostics(ls: LseServer, suite: Suite,
                           send: Callable[[list[types.Diagnostic]], None] | None = None) -> list[types.Diagnostic]:
    """Gold SQL checks for every problem, on the range of its `gold` value; cancellable between and during
    queries. `send(found_so_far)` is called when the check has run for a while."""
    if suite.task != "text-to-sql" or suite.database is None or not suite.database.is_file():
        return []
    analyzer = ls.analyzer
    try:
        timeout = await analyzer.run(analyzer.gold_timeout_s, suite.path)
        checker = await analyzer.run(analyzer.checker, suite.database, timeout, sql=True)
    except asyncio.TimeoutError:
        return [types.Diagnostic(range=to_range(suite.database_span), code="not-sqlite", source=SOURCE,
                                 message="the database took too long to open",
                                 severity=types.DiagnosticSeverity.Warning)]
    except Exception as exc:  # not a database, unreadable, …
        return [types.Diagnostic(range=to_range(suite.database_span), code="not-sqlite", source=SOURCE,
                                 message=f"cannot open the database: {exc}", severity=types.DiagnosticSeverity.Error)]
    budget = ls.check_budget_s()
    out: list[types.Diagnostic] = []
    shown = time.monotonic()
    for problem in suite.problems:
        check = await analyzer.gold(checker, problem.gold, budget)
        span = suite.spans.get(problem.id, {}).get("gold", Span(problem.line - 1, 0, problem.line - 1, 1))
        for code, message, severity in check.issues:
            out.append(types.Diagnostic(range=to_range(span), message=message, code=code, source=SOURCE,
                                        severity=SEVERITY[severity]))
        if send is not None and time.monotonic() - shown >= PARTIAL_EVERY_S:
            shown = time.monotonic()
            send(list(out))
    return out


async def publish(ls: LseServer, uri: str) -> None:
    """Parse a document and publish its diagnostics; SQL checks follow in later publishes when trusted."""
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
                sql_diags = await gold_diagnostics(ls, suite, send=lambda found: send(diags + found))
                if ls.version_of(uri) == version:  # else a newer edit publishes
                    send(diags + sql_diags)
        elif ls.is_prompt(path, text):
            send(await analyzer.run(analyzer.prompt, text, path))
        else:
            send([])  # a prompt-named file that is not LSE's (no `suite:`): nothing from us
    except asyncio.TimeoutError:
        log.warning("checking %s took over %.0f s; gave up", path, PARSE_BUDGET_S)
        send([at_top("too-slow", f"this file takes over {PARSE_BUDGET_S:.0f} s to parse (nested aliases? a huge "
                     "file?); LSE does not check it", types.DiagnosticSeverity.Warning)])


def schedule(ls: LseServer, uri: str, delay: float) -> None:
    """Check `uri` after `delay` seconds, cancelling the check scheduled or under way before (its gold query is
    interrupted)."""
    old = ls.debounce.pop(uri, None)
    if old is not None:
        old.cancel()

    async def later() -> None:
        await asyncio.sleep(delay)
        try:
            await publish(ls, uri)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("diagnostics failed for %s", uri)
        finally:
            if ls.debounce.get(uri) is task:
                del ls.debounce[uri]

    task = ls.debounce[uri] = asyncio.get_running_loop().create_task(later())


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
