"""Runs: the commands that start and cancel them, their progress, the summary at the end, and the winner's
edit, which is always confirmed by the user and never overwrites what they typed meanwhile.

- A run scores the buffer the user sees (its text goes to the worker) and remembers the buffer's version.
- Progress: `$/progress` where the client supports it, else `window/logMessage`; `lse/runProgress` always.
  A client without code lenses (eglot 1.9, Helix: code actions and messages) is told when a run starts: what
  it does, on which splits, and how to cancel it (the "Cancel run" code action, which views.py offers on the
  prompt and its suite while the run goes).
- A cancelled run's message counts what was kept (scored answers, prompt versions scored on dev), read back
  from the run store after the worker (or, for a worker that had to be killed, the server) recorded the end.
- The end: a `window/showMessage` summary in every client, then, for an evolve that found a better prompt,
  the edit: annotated with `needsConfirmation` where the client supports change annotations, else after an
  Apply / Discard / Show diff question; when the answer is not Apply, or the client cannot ask (Helix), the
  code action "Apply evolved instructions" puts the winner in later. The edit replaces only the instructions
  (one edit: one undo step), against the buffer's current version; if the instructions were edited during the
  run, nothing is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import time
from dataclasses import dataclass
from typing import Any

from lsprotocol import types

from lse_engine.config import load_config
from lse_engine.files import parse_prompt, parse_suite
from lse_engine.files.prompt_file import PromptFile, instructions_range, replace_instructions
from lse_engine.progress import ProgressEvent
from lse_engine.store import new_run_id
from lse_server.args import UNTRUSTED, command_args
from lse_server.core import LseServer
from lse_server.errors import RequestFailed, one_line
from lse_server.jobs import Job
from lse_server.messages import (
    APPLY_TITLE,
    cancelled_message,
    percentage,
    progress_line,
    score_label,
    start_message,
    summary,
)
from lse_server.protocol import (
    CancelResult,
    Command,
    CommandArgs,
    Method,
    RunDone,
    RunKind,
    RunProgress,
    StartResult,
    TreeNode,
    WorkerInput,
)
from lse_server.store_reader import trained_evolvers

log = logging.getLogger("lse_server.runs")
LOG_EVERY_S = 2.0  # progress as log lines (clients without $/progress): at most this often, plus every node
LENS_REFRESH_S = 1.0
PLAN_BUDGET_S = 1.5
CANCEL_ANSWER_S = 1.0  # lse.cancel answers once the run ended, or after this long
APPLY, DISCARD, SHOW_DIFF = "Apply", "Discard", "Show diff"


# -- starting and cancelling ------------------------------------------------------------------------------------
async def start_run(ls: LseServer, kind: RunKind, args: CommandArgs) -> StartResult:
    if not ls.trusted:
        raise RequestFailed(UNTRUSTED)
    uri = args.get("uri")
    if not uri:
        raise RequestFailed(f"{kind} needs a prompt file: arguments [{{\"uri\": \"file:///…/x.prompt.md\"}}]")
    path = ls.path_of(uri)
    text, version = ls.text_of(uri)
    if not ls.is_prompt(path, text):
        raise RequestFailed(f"{path.name} is not an LSE prompt file (a *.prompt.md with `suite:` in its front matter)")
    prompt, issues = parse_prompt(text, path)
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        raise RequestFailed(f"fix {path.name} first: {errors[0].message}")
    running = ls.jobs.running_for(uri)
    if running is not None:
        raise RequestFailed(f"a run is already going for {path.name} (run {running.run_id}); cancel it first")
    run_id = new_run_id()
    job = Job(run_id=run_id, kind=kind, uri=uri, path=path, text=text, version=version,
              instructions=prompt.instructions, suite=prompt.suite_path, store=ls.store_path(path))
    ls.jobs.jobs[run_id] = job  # claimed before any await: a second start sees it
    announce = not ls.supports_code_lens()  # no lens to show the run: say what it does and how to stop it
    plan: dict[str, int] = {}
    if announce:
        try:
            plan = await ls.analyzer.run(run_plan, prompt, ls.overrides(), args.get("rounds"), budget_s=PLAN_BUDGET_S)
        except Exception as exc:  # noqa: BLE001 - the message goes without the counts
            log.info("no plan for the start message: %s", exc)
    if ls.supports_work_done_progress():
        job.token = f"lse-{run_id}"
        try:
            await asyncio.wait_for(ls.work_done_progress.create_async(job.token), 5)
            ls.work_done_progress.begin(job.token, types.WorkDoneProgressBegin(
                title=f"LSE {kind}: {path.name}", cancellable=True, message=progress_line(kind, None), percentage=0))
        except Exception as exc:  # noqa: BLE001 - the client still gets log lines and lse/runProgress
            log.info("no work done progress: %s", exc)
            job.token = ""
    if not job.token:
        ls.window_log_message(types.LogMessageParams(types.MessageType.Info,
                                                     f"LSE {kind} of {path.name}: started (run {run_id})"))
    settings = ls.overrides()
    if kind == "evolve" and args.get("evolver"):
        name = str(args["evolver"])
        if name not in trained_evolvers(ls.store_path(path)):
            ls.jobs.jobs.pop(run_id, None)
            job.done.set()
            raise RequestFailed(f"no trained evolver {name!r} in this workspace (lse train saves them under "
                                ".lse/evolvers/)")
        settings = {**settings, "evolver": {**settings.get("evolver", {}), "adapter": name}}
    work: WorkerInput = {"job": kind, "prompt": str(path), "runId": run_id, "resume": None,
                         "rounds": args.get("rounds"), "settings": settings, "text": text, "version": version}
    try:
        await ls.jobs.start(job, work)
    except Exception as exc:
        ls.jobs.jobs.pop(run_id, None)
        job.done.set()
        raise RequestFailed(f"cannot start the worker: {one_line(exc)}") from exc
    if announce:
        ls.show(start_message(kind, path.name, run_id, plan))
    return {"runId": run_id}


def run_plan(prompt: PromptFile, overrides: dict[str, Any], rounds: int | None) -> dict[str, int]:
    """What a run will score, for the start message: problems per split and rounds (blocking: a worker thread).
    The worker reads the same suite file and settings."""
    plan: dict[str, int] = {}
    suite_path = prompt.suite_path
    config = load_config(prompt.path, overrides)
    if suite_path is not None and suite_path.is_file():
        suite, _ = parse_suite(suite_path.read_text(encoding="utf-8", errors="replace"), suite_path)
        if suite is not None:
            plan.update({split: len(problems) for split, problems in suite.split().items()})
    plan["rounds"] = rounds or config.evolve.rounds
    plan["devSize"] = config.evolve.dev_size
    return plan


async def cancel_run(ls: LseServer, args: CommandArgs) -> CancelResult:
    """Cancel a run (by `runId`, else the one going for `uri`). Cancelling again, or a run that has ended, is
    answered (and, for a client with no other view of runs, said) without touching anything."""
    run_id = args.get("runId")
    if run_id:  # noqa: SIM108 - that run and no other (another editor's run, say, is not this server's to cancel)
        job = ls.jobs.jobs.get(run_id)
    else:
        job = ls.jobs.running_for(args["uri"]) if args.get("uri") else None
    if job is None or job.done.is_set():
        if job is not None:
            message = f"run {run_id} has already ended"
        else:
            message = f"no run {run_id} is going in this editor" if run_id else "no run is going"
        if not ls.supports_code_lens():
            ls.show(f"LSE: {message}")
        return {"cancelled": False, "runId": None, "message": message}
    try:  # answer at once when the worker stops at once; else soon (eglot waits for the answer, frozen)
        await asyncio.wait_for(asyncio.shield(ls.jobs.cancel_soon(job)), CANCEL_ANSWER_S)
    except asyncio.TimeoutError:
        return {"cancelled": True, "runId": job.run_id,
                "message": f"cancelling run {job.run_id}: its worker is stopping (a message follows)"}
    return {"cancelled": True, "runId": job.run_id, "message": f"cancelled run {job.run_id}"}


# -- progress ------------------------------------------------------------------------------------------------
@dataclass
class _Throttle:
    logged: float = 0.0
    refreshed: float = 0.0
    trailing: asyncio.TimerHandle | None = None  # a refresh due at the end of the throttle window


_throttles: dict[str, _Throttle] = {}


def _payload(job: Job, ev: ProgressEvent | None, done: bool, message: str) -> RunProgress:
    return {"runId": job.run_id, "uri": job.uri, "kind": job.kind, "done": done, "message": message,
            "round": ev.round if ev else 0, "rounds": ev.rounds if ev else 0, "step": ev.step if ev else "",
            "stepDone": ev.step_done if ev else 0, "stepTotal": ev.step_total if ev else 0,
            "etaS": ev.eta_s if ev else None, "rootDev": ev.root_dev if ev else None,
            "winnerDev": ev.winner_dev if ev else None,
            "node": _node(ev.node) if ev and isinstance(ev.node, dict) else None}


def _node(d: dict[str, Any]) -> TreeNode | None:
    """A node of a progress event (the engine's `Node.to_dict()`) as the protocol's TreeNode."""
    try:
        return {"id": int(d["id"]), "parent": d.get("parent"), "round": int(d.get("round") or 0),
                "status": str(d.get("status") or "ok"), "instructions": str(d.get("instructions") or ""),
                "dev": d.get("dev"), "train": d.get("train"), "visits": int(d.get("visits") or 0),
                "error": d.get("error"), "noAnswer": d.get("no_answer")}
    except (KeyError, TypeError, ValueError):
        return None


async def on_event(ls: LseServer, job: Job, ev: ProgressEvent) -> None:
    line = progress_line(job.kind, ev)
    ls.protocol.notify(Method.RUN_PROGRESS, _payload(job, ev, False, line))
    now = time.monotonic()
    throttle = _throttles.setdefault(job.run_id, _Throttle())
    if job.token:
        with contextlib.suppress(Exception):
            ls.work_done_progress.report(job.token, types.WorkDoneProgressReport(
                message=line, percentage=percentage(ev), cancellable=True))
    elif ev.node is not None or now - throttle.logged >= LOG_EVERY_S:
        throttle.logged = now
        ls.window_log_message(types.LogMessageParams(types.MessageType.Info,
                                                     f"LSE {job.kind} of {job.path.name}: {line}"))
    if ls.supports_lens_refresh():
        _refresh_throttled(ls, throttle, now)


def _refresh_throttled(ls: LseServer, throttle: _Throttle, now: float) -> None:
    """Lenses refresh at most once per LENS_REFRESH_S, and always after the last event of a burst (a refresh
    skipped by the throttle happens at the end of the window), so the lens never stays behind the progress."""
    if now - throttle.refreshed >= LENS_REFRESH_S:
        throttle.refreshed = now
        _refresh_lenses(ls)
    elif throttle.trailing is None:
        def trailing() -> None:
            throttle.trailing = None
            throttle.refreshed = time.monotonic()
            _refresh_lenses(ls)

        throttle.trailing = asyncio.get_running_loop().call_later(
            throttle.refreshed + LENS_REFRESH_S - now, trailing)


def _refresh_lenses(ls: LseServer) -> None:
    async def refresh() -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ls.workspace_code_lens_refresh_async(None), 5)

    task = asyncio.get_running_loop().create_task(refresh())
    ls.lens_refresh = task  # type: ignore[attr-defined]  # held: asyncio keeps tasks weakly


# -- the end ---------------------------------------------------------------------------------------------------
async def on_exit(ls: LseServer, job: Job) -> None:
    throttle = _throttles.pop(job.run_id, None)
    if throttle is not None and throttle.trailing is not None:
        throttle.trailing.cancel()
    res = job.result or {}
    error = None if job.result else (job.error or "failed")
    if job.cancelled or res.get("status") == "cancelled":
        error = "cancelled"
    name = job.path.name
    ev = job.last_event
    if error == "cancelled":
        message = cancelled_message(job.kind, name, job.run_id, kept(ls, job),
                                    recorded_by_server=job.closed_by_server)
    elif error:
        message = f"LSE {job.kind} of {name} failed: {one_line(error)}"
    else:
        message = summary(job.kind, name, res, rounds_fallback=ev.round if ev else None)
    if job.token:
        with contextlib.suppress(Exception):
            ls.work_done_progress.end(job.token, types.WorkDoneProgressEnd(message=message))
    done: RunDone = {**_payload(job, ev, True, message), "error": error, "winner": res.get("winner"),
                     "instructions": res.get("instructions"), "accuracy": res.get("accuracy") or {},
                     "rootTest": res.get("rootTest"), "winnerTest": res.get("winnerTest"),
                     "roundsDone": res.get("roundsDone"), "edits": res.get("edits"), "replies": res.get("replies"),
                     "noopReplies": res.get("noopReplies"), "winnerReason": res.get("winnerReason")}
    if job.kind == "evolve" and not error:
        done["rootDev"], done["winnerDev"] = res.get("rootDev"), res.get("winnerDev")
    elif job.kind == "evaluate" and not error:
        done["rootDev"] = done["winnerDev"] = (res.get("accuracy") or {}).get("dev")
    kind = types.MessageType.Error if error and error != "cancelled" else types.MessageType.Info
    ls.show(message, kind)  # first: a client that waits for the end has the summary by then
    ls.protocol.notify(Method.RUN_PROGRESS, done)
    if ls.supports_lens_refresh():
        _refresh_lenses(ls)
    if job.kind == "evolve" and not error and res.get("winner") not in (None, 0) and res.get("instructions"):
        try:
            await offer_winner(ls, job, res)
        except Exception as exc:
            log.error("offering the winner of run %s failed", job.run_id, exc_info=exc)
            ls.show(f"LSE: could not offer the winner of run {job.run_id}: {one_line(exc)}", types.MessageType.Error)


def kept(ls: LseServer, job: Job) -> dict[str, Any] | None:
    """What a run's store holds of it: the run row and its nodes (None: no store, or not readable)."""
    def read(store: Any) -> dict[str, Any]:
        run = store.get_run(job.run_id)
        if run is None or run.get("id") != job.run_id:
            return {"run": None, "nodes": []}
        return {"run": run, "nodes": store.get_nodes(job.run_id)}

    found: dict[str, Any] | None = ls.read_store(job.path, read)
    return found


@dataclass
class EditPlan:
    range: types.Range
    new_text: str
    version: int | None
    before: str  # the document's text now
    after: str  # and with the edit


def plan_edit(ls: LseServer, job: Job, instructions: str) -> EditPlan | str:
    """The edit that puts `instructions` into the document as it is now, or why there is none. The buffer may
    have changed during the run: only when its instructions are untouched (front matter edits are fine) does
    the winner replace them."""
    try:
        text, version = ls.text_of(job.uri)
    except RequestFailed as exc:
        return f"{job.path.name} cannot be read any more ({exc.message})"
    prompt, _ = parse_prompt(text, job.path)
    if (text, version) != (job.text, job.version) and prompt.instructions != job.instructions:
        return (f"{job.path.name} changed during the run (its instructions were edited), so LSE left them as they "
                f"are. The winner is in run {job.run_id}: Show tree, or `lse runs` in a terminal.")
    span = instructions_range(prompt)
    after = replace_instructions(prompt, instructions)
    lines = text.split("\n")
    start = len("\n".join(lines[: span.line])) + (1 if span.line else 0)
    if after[:start] != text[:start]:
        return f"LSE cannot place the instructions in {job.path.name} (the front matter moved)"
    codec = ls.workspace.position_codec
    end_char = codec.client_num_units(lines[span.end_line]) if span.end_line < len(lines) else 0
    rng = types.Range(types.Position(span.line, 0), types.Position(span.end_line, end_char))
    return EditPlan(rng, after[start:], version, text, after)


def _workspace_edit(ls: LseServer, job: Job, plan: EditPlan, annotation: types.ChangeAnnotation | None
                    ) -> types.WorkspaceEdit:
    if annotation is not None:
        edit = types.AnnotatedTextEdit(range=plan.range, new_text=plan.new_text, annotation_id=job.run_id)
        return types.WorkspaceEdit(
            document_changes=[types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(uri=job.uri, version=plan.version),
                edits=[edit])],
            change_annotations={job.run_id: annotation})
    text_edit = types.TextEdit(range=plan.range, new_text=plan.new_text)
    if ls.supports_document_changes():
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(uri=job.uri, version=plan.version),
            edits=[text_edit])])
    return types.WorkspaceEdit(changes={job.uri: [text_edit]})


def _diff(plan: EditPlan, name: str) -> str:
    lines = difflib.unified_diff(plan.before.splitlines(keepends=True), plan.after.splitlines(keepends=True),
                                 f"{name} (now)", f"{name} (evolved)")
    return "".join(lines)


class CannotAsk(Exception):
    """The client does not answer `window/showMessageRequest` (Helix 25.07 has no such request)."""


async def _ask(ls: LseServer, message: str, actions: list[str]) -> str | None:
    """The title the user picked, or None (dismissed); CannotAsk when the client failed the request."""
    try:
        answer = await ls.window_show_message_request_async(types.ShowMessageRequestParams(
            type=types.MessageType.Info, message=message, actions=[types.MessageActionItem(a) for a in actions]))
    except Exception as exc:  # noqa: BLE001 - a client without the request answers with an error
        log.info("showMessageRequest failed: %s", exc)
        raise CannotAsk(str(exc)) from exc
    return answer.title if answer is not None else None


async def offer_winner(ls: LseServer, job: Job, res: dict[str, Any]) -> None:
    """Put the winner's instructions into the prompt, after the user confirms. Where the user does not say
    Apply (or the client cannot ask), the code action "Apply evolved instructions" does it later."""
    instructions = str(res["instructions"])
    label = score_label(res.get("rootDev"), res.get("winnerDev"))
    plan = plan_edit(ls, job, instructions)
    if isinstance(plan, str):
        ls.show(plan, types.MessageType.Warning)
        return
    if ls.supports_annotations():
        annotation = types.ChangeAnnotation(label=label, needs_confirmation=True,
                                            description=f"evolved by run {job.run_id}: node #{res.get('winner')}")
        await _apply(ls, job, _workspace_edit(ls, job, plan, annotation), label)
        return
    question = f"{label} for {job.path.name}. Replace its instructions with the evolved ones?"
    try:
        choice = await _ask(ls, question, [APPLY, DISCARD, SHOW_DIFF])
        if choice == SHOW_DIFF:
            ls.show(_diff(plan, job.path.name) or "(no difference)")
            choice = await _ask(ls, question, [APPLY, DISCARD])
    except CannotAsk:
        job.unapplied = res
        ls.show(f"{label} for {job.path.name} (run {job.run_id}). To put the evolved instructions in: the code "
                f"action “{APPLY_TITLE}” on {job.path.name}.")
        return
    if choice != APPLY:
        job.unapplied = res
        ls.show(f"LSE: kept {job.path.name} as it is; the winner stays in run {job.run_id} (the code action "
                f"“{APPLY_TITLE}” puts it in).")
        return
    await apply_winner(ls, job, res)


async def apply_winner(ls: LseServer, job: Job, res: dict[str, Any]) -> None:
    """The winner's edit against the buffer as it is now (the user may have typed while deciding), applied."""
    plan = plan_edit(ls, job, str(res["instructions"]))
    if isinstance(plan, str):
        ls.show(plan, types.MessageType.Warning)
        return
    job.unapplied = None
    if not await _apply(ls, job, _workspace_edit(ls, job, plan, None), score_label(res.get("rootDev"),
                                                                                    res.get("winnerDev"))):
        job.unapplied = res


async def apply_command(ls: LseServer, args: CommandArgs) -> None:
    """`lse.applyWinner` (the code action): put in the winner of run `runId` (else the latest unapplied one of
    `uri`), without asking again: choosing the action is the confirmation."""
    run_id = args.get("runId")
    job = ls.jobs.jobs.get(run_id) if run_id else ls.jobs.unapplied_for(args["uri"]) if args.get("uri") else None
    if job is None or not job.unapplied:
        raise RequestFailed(f"no evolved instructions to put in{f' from run {run_id}' if run_id else ''}")
    await apply_winner(ls, job, job.unapplied)


async def _apply(ls: LseServer, job: Job, edit: types.WorkspaceEdit, label: str) -> bool:
    """Send the edit; True when the client applied it. Either way the user is told."""
    try:
        result = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label=label))
    except Exception as exc:  # noqa: BLE001
        ls.show(f"LSE: the edit was not applied: {one_line(exc)}", types.MessageType.Warning)
        return False
    if result.applied:
        ls.show(f"LSE: {job.path.name} now holds the evolved instructions ({label.removeprefix('LSE: ')}); "
                "save to keep them, undo to go back.")
    else:
        reason = result.failure_reason or "declined"
        log.info("applyEdit %s: not applied (%s)", job.run_id, reason)
        ls.show(f"LSE: {job.path.name} was left as it is ({reason}); the winner stays in run {job.run_id}.")
    return bool(result.applied)


def register(ls: LseServer) -> None:
    async def handle_event(job: Job, ev: ProgressEvent) -> None:
        await on_event(ls, job, ev)

    async def handle_exit(job: Job) -> None:
        await on_exit(ls, job)

    ls.jobs.on_event = handle_event
    ls.jobs.on_exit = handle_exit

    @ls.command(Command.EVALUATE)
    async def evaluate(ls: LseServer, *args: Any) -> StartResult:
        return await start_run(ls, "evaluate", command_args(args))

    @ls.command(Command.EVOLVE)
    async def evolve(ls: LseServer, *args: Any) -> StartResult:
        return await start_run(ls, "evolve", command_args(args))

    @ls.command(Command.TRAIN)
    async def train(ls: LseServer, *args: Any) -> StartResult:
        return await start_run(ls, "train", command_args(args))

    @ls.command(Command.CANCEL)
    async def cancel(ls: LseServer, *args: Any) -> CancelResult:
        return await cancel_run(ls, command_args(args))

    @ls.command(Command.APPLY_WINNER)
    async def apply(ls: LseServer, *args: Any) -> None:
        if not ls.trusted:
            raise RequestFailed(UNTRUSTED)
        await apply_command(ls, command_args(args))

    @ls.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    async def progress_cancel(ls: LseServer, params: types.WorkDoneProgressCancelParams) -> None:
        job = ls.jobs.by_token(str(params.token))
        if job is not None and not job.done.is_set():
            await ls.jobs.cancel_soon(job)

