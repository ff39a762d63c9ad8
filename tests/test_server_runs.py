"""The run loop in every client and checks that never wait behind each other (issue 24), against the real
language server over stdio (pytest-lsp) and a real loopback OpenAI-compatible server with scripted replies.

- A client with code actions and messages alone (eglot 1.9, Helix: no `$/progress`, no code lenses) is told
  when a run starts, can cancel it with a code action on the prompt or its suite, and gets the result.
- A worker that does not stop when asked is killed, and its run is recorded `cancelled` with what was kept.
- An endless gold query delays neither other documents' diagnostics nor hovers, a newer version of the
  document interrupts it, and it ends in a "could not finish in N s" diagnostic.
- Bad input: cancelling twice and after the end, quitting while the Apply question is open, two editors on
  one workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client

from tests.openai_stub import ScriptedOpenAIServer
from tests.test_server import (
    BROKEN_SUITE,
    PLAIN,
    SERVER,
    VSCODE_LIKE,
    _children,
    change_doc,
    done_of,
    fresh_workspace,
    messages_of,
    open_doc,
    prepare,
    scripted_reply,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="watches processes through /proc")
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
CANCEL_HOW = "To cancel it: the code action “Cancel run” on the prompt or its suite (command lse.cancel)."


class Replies:
    """The scripted models of tests/test_server.py, each reply `delay` seconds late (a run that lasts)."""

    delay = 0.0

    def __call__(self, messages: list[dict[str, Any]], request: dict[str, Any]) -> str:
        if self.delay:
            time.sleep(self.delay)
        return scripted_reply(messages, request)


REPLIES = Replies()


@pytest.fixture(scope="module")
def stub() -> Any:
    with ScriptedOpenAIServer(REPLIES) as srv:
        yield srv


@pytest.fixture(autouse=True)
def quick_replies() -> Any:
    yield
    REPLIES.delay = 0.0


@contextlib.asynccontextmanager
async def editor(stub: Any, caps: types.ClientCapabilities = PLAIN, checks: dict[str, Any] | None = None,
                 questions: bool = True) -> AsyncIterator[LanguageClient]:
    """A real lse-server process and a client with `caps` (PLAIN: like eglot 1.9), trusted. `questions=False`:
    the client answers `window/showMessageRequest` with an error, as Helix 25.07 does."""
    client = make_test_lsp_client()
    await client.start_io(*SERVER)
    prepare(client, questions=questions)
    options = settings_for(stub)
    if checks:
        options["settings"]["checks"] = checks
    await client.initialize_session(types.InitializeParams(capabilities=caps, initialization_options=options))
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_session(), 15)
        await client.stop()


def server_pid(client: LanguageClient) -> int:
    return client._server.pid  # type: ignore[attr-defined,union-attr]


async def code_actions(client: LanguageClient, uri: str) -> list[types.CodeAction]:
    found = await client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri), types.Range(types.Position(3, 0), types.Position(3, 0)),
        types.CodeActionContext(diagnostics=[])))
    return [a for a in found or [] if isinstance(a, types.CodeAction)]


async def execute(client: LanguageClient, command: str, args: dict[str, Any]) -> Any:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command, [args]))


def message(client: LanguageClient, prefix: str) -> types.ShowMessageParams | None:
    return next((m for m in client.messages if m.message.startswith(prefix)), None)


def store_counts(prompt: Path, run_id: str) -> tuple[str, str, int, int, int]:
    """status, message, task calls of the run; outcomes in the store; the run's nodes scored on dev."""
    db = sqlite3.connect(prompt.parent / ".lse" / "lse.db")
    try:
        status, note, calls = db.execute("SELECT status, message, task_calls FROM runs WHERE id = ?", [run_id]).fetchone()
        outcomes = db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
        scored = db.execute("SELECT COUNT(*) FROM nodes WHERE run_id = ? AND dev_score IS NOT NULL", [run_id]).fetchone()[0]
    finally:
        db.close()
    return status, note or "", calls, outcomes, scored


async def scored_root(client: LanguageClient, run_id: str) -> None:
    await wait_for(lambda: any(p["runId"] == run_id and (p.get("node") or {}).get("dev") is not None
                               for p in client.run_progress), timeout=60, what="the root scored on dev")


KEPT = (r"Kept in the run store: (\d+) scored answers and (\d+) prompt versions? scored on dev \(best dev \d+%\); "
        r"`lse evolve nums\.prompt\.md --resume {run} ` continues it\.").replace(" ` continues", "` continues")


# -- 1. code actions and messages alone -----------------------------------------------------------------------------
async def test_a_client_with_code_actions_and_messages_alone_gets_the_whole_loop(stub: Any) -> None:
    """No `$/progress`, no code lenses (eglot 1.9): a message when the run starts (what, which splits, how to
    cancel), "Cancel run" among the code actions of the prompt and its suite, the run ends within 5 s of it,
    a message says what was kept, and no worker is left."""
    prompt = fresh_workspace("plain-loop")
    async with editor(stub, PLAIN) as client:
        uri = open_doc(client, prompt, lang="markdown")
        suite_uri = open_doc(client, prompt.parent / "nums.suite.yaml")
        REPLIES.delay = 0.3
        sent = time.monotonic()
        run_id = (await execute(client, "lse.evolve", {"uri": uri, "rounds": 50}))["runId"]
        start = await wait_for(lambda: message(client, "LSE evolve of nums.prompt.md started"), timeout=3,
                               what="the start message")
        assert time.monotonic() - sent < 3
        assert start.type == types.MessageType.Info
        assert start.message == (f"LSE evolve of nums.prompt.md started (run {run_id}): 50 rounds: it learns from "
                                 f"train (12 problems), picks the winner on dev (8 problems). {CANCEL_HOW}")
        await scored_root(client, run_id)
        actions = await code_actions(client, uri)
        assert len(actions) == 1
        assert re.fullmatch(r"Cancel run \(evolve of nums\.prompt\.md: round \d+/50 · .+\)", actions[0].title)
        assert actions[0].command.command == "lse.cancel"
        assert list(actions[0].command.arguments) == [{"uri": uri, "runId": run_id}]
        on_suite = await code_actions(client, suite_uri)
        assert [list(a.command.arguments) for a in on_suite] == [[{"uri": uri, "runId": run_id}]]
        assert on_suite[0].title.startswith("Cancel run (evolve of nums.prompt.md: ")
        asked = time.monotonic()
        answer = await client.workspace_execute_command_async(types.ExecuteCommandParams(
            actions[0].command.command, actions[0].command.arguments))
        end = await wait_for(lambda: message(client, f"LSE evolve of nums.prompt.md cancelled (run {run_id})"),
                             timeout=5, what="the cancelled message")
        assert time.monotonic() - asked < 5
        # the answer comes at once: "cancelled" when the worker stopped in time, else "cancelling" (a busy
        # machine); either way the end message above arrived within 5 s
        assert (answer["cancelled"], answer["runId"]) == (True, run_id)
        assert answer["message"] in (f"cancelled run {run_id}",
                                     f"cancelling run {run_id}: its worker is stopping (a message follows)")
        kept = re.fullmatch(rf"LSE evolve of nums\.prompt\.md cancelled \(run {run_id}\)\. " + KEPT.format(run=run_id),
                            end.message)
        assert kept, end.message
        status, _, calls, outcomes, scored = store_counts(prompt, run_id)
        assert status == "cancelled" and int(kept.group(1)) == calls == outcomes and int(kept.group(2)) == scored >= 1
        await wait_for(lambda: _children(server_pid(client)) == [], timeout=2, what="no worker left")
        assert not client.progress_reports  # nothing it could not show
        assert [a.title for a in await code_actions(client, uri)] == ["Evaluate prompt", "Evolve prompt"]
        assert not await code_actions(client, suite_uri)


async def test_a_client_that_cannot_ask_puts_the_winner_in_with_a_code_action(stub: Any) -> None:
    """A client without `window/showMessageRequest` (Helix 25.07 answers it with an error): the end message says
    how to put the winner in, and the code action "Apply evolved instructions" does it, once, as one edit against
    the buffer's version."""
    from lse_engine.files.prompt_file import parse_prompt, replace_instructions
    from tests.test_server import apply_edits

    prompt = fresh_workspace("cannot-ask")
    text = prompt.read_text()
    async with editor(stub, PLAIN, questions=False) as client:
        uri = open_doc(client, prompt, lang="markdown", version=4)
        run_id = (await execute(client, "lse.evolve", {"uri": uri}))["runId"]
        done = await wait_for(lambda: done_of(client, run_id), timeout=90, what="the evolve")
        said = await wait_for(lambda: message(client, "LSE: dev 25% → 75% for nums.prompt.md"), what="how to apply")
        assert said.message == (f"LSE: dev 25% → 75% for nums.prompt.md (run {run_id}). To put the evolved "
                                "instructions in: the code action “Apply evolved instructions” on nums.prompt.md.")
        assert not client.apply_edits
        actions = await code_actions(client, uri)
        assert [a.title for a in actions] == ["Evaluate prompt",
                                              f"Apply evolved instructions (dev 25% → 75%, run {run_id})",
                                              "Evolve prompt"]
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            actions[1].command.command, actions[1].command.arguments))
        edits = await wait_for(lambda: client.apply_edits, what="the edit")
        change = edits[0].edit.document_changes[0]
        assert len(edits) == 1 and change.text_document.version == 4 and len(change.edits) == 1
        assert apply_edits(text, change.edits) == replace_instructions(parse_prompt(text, prompt)[0],
                                                                       done["instructions"])
        await wait_for(lambda: message(client, "LSE: nums.prompt.md now holds the evolved instructions"),
                       what="the applied message")
        assert [a.title for a in await code_actions(client, uri)] == ["Evaluate prompt", "Evolve prompt"]
        with pytest.raises(JsonRpcException, match=f"no evolved instructions to put in from run {run_id}"):
            await execute(client, "lse.applyWinner", {"uri": uri, "runId": run_id})


# -- 6. a worker that does not stop ----------------------------------------------------------------------------------
async def test_a_worker_that_does_not_stop_is_killed_and_its_run_recorded_as_cancelled(stub: Any) -> None:
    """The worker is frozen (SIGSTOP: it cannot handle SIGTERM, like one stuck in a long native call): the
    server kills it after the grace period and records the run `cancelled` in the store (`lse runs` says so);
    the message counts what the store kept."""
    prompt = fresh_workspace("frozen")
    async with editor(stub, VSCODE_LIKE) as client:
        uri = open_doc(client, prompt, lang="markdown")
        REPLIES.delay = 0.2
        run_id = (await execute(client, "lse.evolve", {"uri": uri, "rounds": 50}))["runId"]
        await scored_root(client, run_id)
        workers = _children(server_pid(client))
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGSTOP)
        try:
            asked = time.monotonic()
            answer = await execute(client, "lse.cancel", {"uri": uri})
            done = await wait_for(lambda: done_of(client, run_id), timeout=15, what="the run to end")
            waited = time.monotonic() - asked
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(workers[0], signal.SIGKILL)
        assert answer["cancelled"] is True and done["error"] == "cancelled"
        assert 4 < waited < 10  # the grace period (5 s), then the kill
        end = await wait_for(lambda: message(client, f"LSE evolve of nums.prompt.md cancelled (run {run_id})"),
                             what="the cancelled message")
        kept = re.fullmatch(rf"LSE evolve of nums\.prompt\.md cancelled \(run {run_id}\); its worker did not stop in "
                            r"time, so the language server stopped it and recorded the end\. " + KEPT.format(run=run_id),
                            end.message)
        assert kept, end.message
        status, note, calls, outcomes, scored = store_counts(prompt, run_id)
        assert status == "cancelled" and "recorded by the language server" in note
        assert int(kept.group(1)) == calls == outcomes > 0 and int(kept.group(2)) == scored >= 1
        listed = subprocess.run([sys.executable, "-m", "lse_engine.cli", "runs", "--workspace", str(prompt.parent)],
                                capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
        row = next(line for line in listed.stdout.splitlines() if run_id in line)
        assert "cancelled" in row and "running" not in row
        await wait_for(lambda: _children(server_pid(client)) == [], timeout=2, what="no worker left")


# -- 5. no head-of-line waits ------------------------------------------------------------------------------------------
def endless_suite(path: Path) -> int:
    """A suite whose second problem's gold query never ends; returns that gold line (0-based)."""
    lines = ["task: text-to-sql", "database: nums.sqlite", "problems:",
             "  - id: one", "    question: which row holds 1?", "    gold: SELECT n FROM nums WHERE n = 1",
             "  - id: endless", "    question: count for ever", f"    gold: {ENDLESS}"]
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


async def test_an_endless_gold_query_holds_up_no_other_check(stub: Any) -> None:
    """Two suites with an endless gold query each are being checked: a third suite's SQL diagnostics and a
    hover on the first suite still come at once, and the endless query ends in a diagnostic saying it could not
    finish within the editor's budget (`checks.goldBudgetS`), at its gold range."""
    prompt = fresh_workspace("head-of-line")
    root = prompt.parent
    async with editor(stub, VSCODE_LIKE, checks={"goldBudgetS": 3}) as client:
        first, second, other = root / "a.suite.yaml", root / "b.suite.yaml", root / "broken.suite.yaml"
        gold_line = endless_suite(first)
        endless_suite(second)
        other.write_text(BROKEN_SUITE)
        opened = time.monotonic()
        first_uri, _ = open_doc(client, first), open_doc(client, second)
        await asyncio.sleep(0.5)  # both endless queries run by now
        other_uri = open_doc(client, other)
        found = await wait_for(lambda: {"gold-parse", "gold-empty", "unknown-column"}
                               <= {d.code for d in client.diagnostics.get(other_uri, [])}, timeout=5,
                               what="the other suite's SQL diagnostics")
        assert found and time.monotonic() - opened < 4  # not the 30 s gold timeout (nor 3 s budgets queued)
        asked = time.monotonic()
        hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(first_uri),
                                                                         types.Position(4, 6)))
        assert time.monotonic() - asked < 1.5 and "**gold result**: `(1,) (1 rows)`" in hover.contents.value
        slow = await wait_for(lambda: [d for d in client.diagnostics.get(first_uri, []) if d.code == "gold-slow"],
                              timeout=8, what="the could-not-finish diagnostic")
        assert 2.5 < time.monotonic() - opened < 8
        assert [d.message for d in slow] == ["gold SQL could not finish in 3 s, the editor's check budget (scoring "
                                             "allows it 30 s), so its result is not checked here"]
        assert slow[0].severity == types.DiagnosticSeverity.Warning
        assert slow[0].range.start == types.Position(gold_line, len("    gold: "))
        hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(first_uri),
                                                                         types.Position(gold_line - 1, 6)))
        assert "**gold result**: _not known: the query did not finish within 3 s here_" in hover.contents.value


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def busy(pid: int, seconds: float) -> float:
    """The share of one core the process used over the next `seconds`."""
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


async def test_a_newer_version_or_closing_the_document_interrupts_its_gold_query(stub: Any) -> None:
    """A running endless query burns a core; editing the suite (a newer version without it) or closing it stops
    the query at once, long before its budget (20 s here) runs out."""
    prompt = fresh_workspace("superseded")
    root = prompt.parent
    async with editor(stub, VSCODE_LIKE, checks={"goldBudgetS": 20}) as client:
        pid = server_pid(client)
        suite = root / "a.suite.yaml"
        endless_suite(suite)
        uri = open_doc(client, suite)
        await asyncio.sleep(0.5)
        assert await busy(pid, 1.0) > 0.2  # the endless query runs
        change_doc(client, uri, "\n".join(suite.read_text().split("\n")[:6]) + "\n", 2)  # only the first problem
        await asyncio.sleep(1.0)
        assert await busy(pid, 1.0) < 0.1
        assert list(client.diagnostics[uri]) == []
        other = root / "b.suite.yaml"
        endless_suite(other)
        other_uri = open_doc(client, other)
        await asyncio.sleep(0.5)
        assert await busy(pid, 1.0) > 0.2
        client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(other_uri)))
        await asyncio.sleep(0.5)
        assert await busy(pid, 1.0) < 0.1


# -- bad input -----------------------------------------------------------------------------------------------------
async def test_cancelling_twice_then_after_the_end(stub: Any) -> None:
    """Two cancels at once stop the run once: the worker gets one request, stops by itself and records the run
    `cancelled` (a second SIGTERM used to kill it before it could). Cancelling after the end, by id or with a
    Cancel action offered before, answers that the run has ended, and says so."""
    prompt = fresh_workspace("twice")
    async with editor(stub, PLAIN) as client:
        uri = open_doc(client, prompt, lang="markdown")
        REPLIES.delay = 0.3
        run_id = (await execute(client, "lse.evolve", {"uri": uri, "rounds": 50}))["runId"]
        await scored_root(client, run_id)
        stale = (await code_actions(client, uri))[0]
        answers = await asyncio.gather(execute(client, "lse.cancel", {"uri": uri}),
                                       execute(client, "lse.cancel", {"runId": run_id}))
        assert answers == [{"cancelled": True, "runId": run_id, "message": f"cancelled run {run_id}"}] * 2
        await wait_for(lambda: done_of(client, run_id), timeout=10, what="the run to end")
        status, note, *_ = store_counts(prompt, run_id)
        assert status == "cancelled" and "language server" not in note  # the worker recorded it itself
        await asyncio.sleep(0.3)
        assert [p["runId"] for p in client.run_progress if p["done"]] == [run_id]
        assert len([m for m in messages_of(client) if m.startswith("LSE evolve of nums.prompt.md cancelled")]) == 1
        ended = {"cancelled": False, "runId": None, "message": f"run {run_id} has already ended"}
        assert await execute(client, "lse.cancel", {"runId": run_id}) == ended
        assert await client.workspace_execute_command_async(types.ExecuteCommandParams(
            stale.command.command, stale.command.arguments)) == ended
        said = await wait_for(lambda: [m for m in messages_of(client) if m == f"LSE: run {run_id} has already ended"],
                              what="the already-ended message")
        assert len(said) == 2
        assert await execute(client, "lse.cancel", {"uri": uri}) == {"cancelled": False, "runId": None,
                                                                      "message": "no run is going"}


async def test_quitting_while_the_apply_question_is_open(stub: Any, capfd: pytest.CaptureFixture[str]) -> None:
    """The editor quits while the server's Apply / Discard question is unanswered: the server ends cleanly
    (exit code 0, no traceback), nothing is written to the file, no worker is left."""
    prompt = fresh_workspace("quit-asking")
    before = prompt.read_text()
    client = make_test_lsp_client()
    await client.start_io(*SERVER)
    prepare(client, questions=False)
    never = asyncio.Event()
    asked: list[str] = []

    @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
    async def on_question(params: types.ShowMessageRequestParams) -> None:
        asked.append(params.message)
        await never.wait()

    await client.initialize_session(types.InitializeParams(capabilities=PLAIN,
                                                           initialization_options=settings_for(stub)))
    try:
        uri = open_doc(client, prompt, lang="markdown")
        run_id = (await execute(client, "lse.evolve", {"uri": uri}))["runId"]
        await wait_for(lambda: asked, timeout=90, what="the Apply question")
        pid = server_pid(client)
        await asyncio.wait_for(client.shutdown_session(), 15)
        assert client._server.returncode == 0  # type: ignore[union-attr]
    finally:
        never.set()
        try:
            await client.stop()
        except RuntimeError as exc:  # pygls' client fails its own handler task, still unanswered, on the exit
            if "set_exception" not in str(exc):
                raise
    assert prompt.read_text() == before and not client.apply_edits
    assert not Path(f"/proc/{pid}").exists() or _children(pid) == []
    status, *_ = store_counts(prompt, run_id)
    assert status == "done"  # the run itself was over; only the question was open
    assert "Traceback" not in capfd.readouterr().err


async def test_two_editors_on_one_workspace(stub: Any) -> None:
    """Two editors (two servers) on one workspace: one evolves the prompt while the other evaluates it; both
    runs finish with their results in the one store, each editor gets its own edit or message, and neither can
    cancel the other's run."""
    prompt = fresh_workspace("two-editors")
    async with editor(stub, VSCODE_LIKE) as first, editor(stub, PLAIN) as second:
        uri_a, uri_b = open_doc(first, prompt, lang="markdown"), open_doc(second, prompt, lang="markdown")
        REPLIES.delay = 0.05
        evolve = (await execute(first, "lse.evolve", {"uri": uri_a}))["runId"]
        evaluate = (await execute(second, "lse.evaluate", {"uri": uri_b}))["runId"]
        assert await execute(second, "lse.cancel", {"uri": uri_b, "runId": evolve}) == {
            "cancelled": False, "runId": None, "message": f"no run {evolve} is going in this editor"}
        done_b = await wait_for(lambda: done_of(second, evaluate), timeout=90, what="the evaluate")
        done_a = await wait_for(lambda: done_of(first, evolve), timeout=90, what="the evolve")
        assert done_b["error"] is None and done_b["accuracy"] == {"train": pytest.approx(0.25),
                                                                   "dev": pytest.approx(0.25)}
        assert done_a["error"] is None and done_a["instructions"] == "t0 t1 t2"
        edits = await wait_for(lambda: first.apply_edits, what="the winner's edit in the first editor")
        assert len(edits) == 1 and not second.apply_edits
        assert "LSE evaluate of nums.prompt.md: train 25%, dev 25%" in messages_of(second)
        assert store_counts(prompt, evolve)[0] == store_counts(prompt, evaluate)[0] == "done"


async def test_hovering_a_test_problem_says_what_scores_it(stub: Any) -> None:
    """Evaluate scores train and dev only: a test problem's hover says so (not "run Evaluate"); a dev problem's
    hover still points to Evaluate."""
    prompt = fresh_workspace("hover-test")
    suite = prompt.parent / "split.suite.yaml"
    suite.write_text("task: text-to-sql\ndatabase: nums.sqlite\nproblems:\n"
                     "  - id: held\n    question: which row holds 2?\n    gold: SELECT n FROM nums WHERE n = 2\n"
                     "    split: test\n"
                     "  - id: picked\n    question: which row holds 3?\n    gold: SELECT n FROM nums WHERE n = 3\n"
                     "    split: dev\n")
    async with editor(stub, VSCODE_LIKE) as client:
        uri = open_doc(client, suite)
        held = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri),
                                                                        types.Position(4, 6)))
        picked = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri),
                                                                          types.Position(8, 6)))
    assert held.contents.value.split("\n\n")[-1] == (
        "_a test problem: Evaluate scores train and dev only; an Evolve scores test once, at its end (the original "
        "prompt and the winner), and reports both in its result message_")
    assert picked.contents.value.split("\n\n")[-1] == "_no outcome yet: run Evaluate on a prompt that uses this suite_"


def test_the_cancelled_message_counts_what_the_store_holds() -> None:
    """Every case of the cancelled message, from the run row and nodes the store returns (the runs above cover the
    evolve ones end to end)."""
    from lse_server.messages import cancelled_message

    head = "LSE evaluate of p.prompt.md cancelled (run r1)"
    assert cancelled_message("evaluate", "p.prompt.md", "r1", None) == f"{head}."  # no store to read
    assert cancelled_message("evaluate", "p.prompt.md", "r1", {"run": None, "nodes": []}) == (
        f"{head} before it recorded anything: nothing was kept.")
    assert cancelled_message("evaluate", "p.prompt.md", "r1", {"run": {"task_calls": 0}, "nodes": [{"dev_score": None}]}) == (
        f"{head} before it scored anything: nothing was kept.")
    assert cancelled_message("evaluate", "p.prompt.md", "r1", {"run": {"task_calls": 1}, "nodes": []}) == (
        f"{head}. Kept in the run store: 1 scored answer; an Evaluate of the same instructions reuses them.")
    assert cancelled_message("train", "p.prompt.md", "r1", {"run": {"task_calls": 5}, "nodes": []},
                             recorded_by_server=True) == (
        "LSE train of p.prompt.md cancelled (run r1); its worker did not stop in time, so the language server "
        "stopped it and recorded the end.")
