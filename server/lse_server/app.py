"""The LSE language server: diagnostics, code actions, code lens, hover, commands and run progress.

A thin protocol layer: parsing and checks come from `lse_engine`; evaluate/evolve/train run in worker
processes (server/jobs.py) that alone write the run store; this process only reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from pathlib import Path
from typing import Any

from lse_server.documents import Analyzer, is_prompt, is_suite, too_large
from lse_server.jobs import Job, JobManager
from lse_server.settings import to_overrides
from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from lse_engine import __version__
from lse_engine.config import load_config
from lse_engine.errors import LSEError
from lse_engine.evolve.search import load_tree
from lse_engine.files import parse_prompt, parse_suite
from lse_engine.store import Store, new_run_id

log = logging.getLogger("lse_server")
DEBOUNCE_S = 0.25
RUN_PROGRESS = "lse/runProgress"
COMMANDS = ["lse.evaluate", "lse.evolve", "lse.cancel", "lse.showTree", "lse.train"]


class LseServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("lse-server", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.settings: dict[str, Any] = {}
        self.trusted = True  # an untrusted workspace (initializationOptions.trusted = false): no SQL, no models
        self.analyzer = Analyzer()
        self.jobs = JobManager(lambda job, msg: _on_job_line(self, job, msg), lambda job: _on_job_exit(self, job))
        self._debounce: dict[str, asyncio.Task] = {}
        self._stores: dict[Path, Store] = {}
        self._suites: dict[str, tuple[object, Any]] = {}  # uri -> (version or text hash, parsed suite)

    # -- helpers ---------------------------------------------------------------------------------
    def path_of(self, uri: str) -> str:
        path = to_fs_path(uri)
        if not path:
            raise ValueError(f"not a file URI: {uri}")
        return path

    def text_of(self, uri: str) -> tuple[str, int | None]:
        """Current text of a document (the editor's buffer when open, else the file) and its version."""
        doc = self.workspace.text_documents.get(uri)
        if doc is not None:
            return doc.source, doc.version
        path = Path(self.path_of(uri))
        if not path.is_file():
            raise FileNotFoundError(f"unknown document: {uri}")
        return path.read_text(encoding="utf-8", errors="replace"), None

    def suite_of(self, uri: str, text: str, version: int | None) -> Any:
        """The parsed suite of a document, cached per version (hover must not re-parse 1,500 problems)."""
        key = version if version is not None else hash(text)
        hit = self._suites.get(uri)
        if hit is not None and hit[0] == key:
            return hit[1]
        suite, _ = parse_suite(text, self.path_of(uri))
        self._suites[uri] = (key, suite)
        return suite

    def store_for(self, path: str | Path) -> Store | None:
        """The run store of the workspace containing `path`, opened read-only (None when there is none yet)."""
        try:
            cfg = load_config(path)
        except Exception:
            return None
        sp = cfg.store_path
        if sp not in self._stores:
            if not sp.exists():
                return None
            try:
                self._stores[sp] = Store(sp, readonly=True)
            except Exception:
                return None
        return self._stores[sp]

    def overrides(self) -> dict[str, Any]:
        return to_overrides(self.settings)


server = LseServer()


# -- lifecycle ------------------------------------------------------------------------------------------
@server.feature(types.INITIALIZE)
def on_initialize(ls: LseServer, params: types.InitializeParams) -> None:
    opts = params.initialization_options if isinstance(params.initialization_options, dict) else {}
    ls.settings = opts
    ls.trusted = opts.get("trusted") is not False


def check_settings(ls: LseServer) -> None:
    """Tell the user at once when the client's settings (or the workspace's lse.toml) are invalid."""
    try:
        load_config(ls.workspace.root_path or Path.cwd(), ls.overrides())
    except LSEError as exc:
        ls.window_show_message(types.ShowMessageParams(types.MessageType.Warning, f"LSE settings: {exc}"))


@server.feature(types.INITIALIZED)
def on_initialized(ls: LseServer, params: types.InitializedParams) -> None:
    check_settings(ls)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def on_config(ls: LseServer, params: types.DidChangeConfigurationParams) -> None:
    if isinstance(params.settings, dict) and params.settings:
        ls.settings = params.settings
        check_settings(ls)


@server.feature(types.SHUTDOWN)
async def on_shutdown(ls: LseServer, *args: Any) -> None:
    await ls.jobs.shutdown(grace_s=2.0)
    ls.analyzer.close()


@server.feature(types.EXIT)
def on_exit(ls: LseServer, *args: Any) -> None:
    ls.jobs.kill_all()


# -- diagnostics -------------------------------------------------------------------------------------
async def publish(ls: LseServer, uri: str) -> None:
    try:
        text, version = ls.text_of(uri)
        path = ls.path_of(uri)
    except Exception as exc:
        log.warning("cannot read %s: %s", uri, exc)
        return
    if is_suite(path):
        suite, diags = ls.analyzer.suite_parse(text, path)
        ls._suites[uri] = (version if version is not None else hash(text), suite)
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri, diags, version))
        if ls.trusted and suite is not None and not any(d.code in ("yaml", "json", "binary") for d in diags):
            loop = asyncio.get_running_loop()
            sql_diags = await loop.run_in_executor(ls.analyzer.pool, ls.analyzer.suite_sql, suite)
            current = ls.workspace.text_documents.get(uri)
            if current is not None and current.version != version:
                return  # a newer edit will publish
            ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri, diags + sql_diags, version))
    elif is_prompt(path):
        loop = asyncio.get_running_loop()
        diags = await loop.run_in_executor(ls.analyzer.pool, ls.analyzer.prompt, text, path)
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri, diags, version))


def schedule(ls: LseServer, uri: str, delay: float) -> None:
    old = ls._debounce.pop(uri, None)
    if old is not None:
        old.cancel()

    async def later() -> None:
        await asyncio.sleep(delay)
        try:
            await publish(ls, uri)
        except Exception:
            log.exception("diagnostics failed for %s", uri)

    ls._debounce[uri] = asyncio.get_running_loop().create_task(later())


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
async def did_open(ls: LseServer, params: types.DidOpenTextDocumentParams) -> None:
    schedule(ls, params.text_document.uri, 0)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: LseServer, params: types.DidChangeTextDocumentParams) -> None:
    schedule(ls, params.text_document.uri, DEBOUNCE_S)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
async def did_save(ls: LseServer, params: types.DidSaveTextDocumentParams) -> None:
    schedule(ls, params.text_document.uri, 0)
    # prompts depend on their suite: re-check open prompt files when a suite is saved
    if is_suite(params.text_document.uri):
        for uri in list(ls.workspace.text_documents):
            if is_prompt(uri):
                schedule(ls, uri, DEBOUNCE_S)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: LseServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(params.text_document.uri, []))


# -- code actions, code lens ----------------------------------------------------------------------------
def _cmd(title: str, name: str, uri: str) -> types.Command:
    return types.Command(title=title, command=name, arguments=[{"uri": uri}])


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.Source]))
def code_actions(ls: LseServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    uri = params.text_document.uri
    if not is_prompt(uri):
        return []
    return [
        types.CodeAction(title="Evolve prompt", kind=types.CodeActionKind.Source, command=_cmd("Evolve prompt", "lse.evolve", uri)),
        types.CodeAction(title="Evaluate prompt", kind=types.CodeActionKind.Source,
                         command=_cmd("Evaluate prompt", "lse.evaluate", uri)),
    ]


@server.feature(types.TEXT_DOCUMENT_CODE_LENS)
def code_lens(ls: LseServer, params: types.CodeLensParams) -> list[types.CodeLens]:
    uri = params.text_document.uri
    if not is_prompt(uri):
        return []
    top = types.Range(types.Position(0, 0), types.Position(0, 0))
    lenses = []
    try:
        path = ls.path_of(uri)
        store = ls.store_for(path)
        runs = store.list_runs(str(Path(path).resolve()), limit=20) if store else []
    except Exception:
        runs = []
    scored = next((r for r in runs if r.get("best_dev") is not None and r["status"] == "done"), None)
    if scored:
        when = dt.datetime.fromtimestamp(scored["created"]).strftime("%Y-%m-%d %H:%M")
        label = f"dev {scored['best_dev']:.0%} ({scored['kind']}, {when})"
        lenses.append(types.CodeLens(top, _cmd(label, "lse.showTree", uri)))
    elif runs:
        lenses.append(types.CodeLens(top, _cmd(f"last run: {runs[0]['status']}", "lse.showTree", uri)))
    job = ls.jobs.running_for(uri)
    if job is not None:
        ev = job.last_event
        lenses.append(types.CodeLens(top, _cmd(f"{job.kind} running: {ev.get('message', 'starting…')} (Cancel)",
                                               "lse.cancel", uri)))
    lenses += [types.CodeLens(top, _cmd("Evaluate", "lse.evaluate", uri)),
               types.CodeLens(top, _cmd("Evolve", "lse.evolve", uri)),
               types.CodeLens(top, _cmd("Show tree", "lse.showTree", uri))]
    return lenses


# -- hover ------------------------------------------------------------------------------------------
@server.feature(types.TEXT_DOCUMENT_HOVER)
async def hover(ls: LseServer, params: types.HoverParams) -> types.Hover | None:
    uri = params.text_document.uri
    if not is_suite(uri):
        return None
    text, version = ls.text_of(uri)
    if too_large(text):
        return None
    path = ls.path_of(uri)
    suite = ls.suite_of(uri, text, version)
    if suite is None:
        return None
    line = params.position.line
    problem = None
    for p in suite.problems:
        item = suite.spans.get(p.id, {}).get("_item")
        if item and item.line <= line <= item.end_line:
            problem = p
    if problem is None:
        return None
    parts = [f"**{problem.id}** — {problem.question}"]
    if not ls.trusted:
        parts.append("_untrusted workspace: gold SQL is not run_")
    elif suite.task == "text-to-sql" and suite.database is not None and suite.database.is_file():
        checker = ls.analyzer.checker(suite.database)
        check = checker.cached(problem.gold)
        if check is None:
            loop = asyncio.get_running_loop()
            check = await loop.run_in_executor(ls.analyzer.pool, checker.check, problem.gold)
        res = check.result
        if res is not None and res.ok:
            from lse_engine.tasks.text_to_sql import preview_rows

            parts.append(f"**gold result**: `{preview_rows(res.rows)}`")
        elif res is not None:
            parts.append(f"**gold fails**: {res.error}")
    store = ls.store_for(path)
    found = store.latest_outcome(str(Path(path).resolve()), problem.id) if store else None
    if found:
        out, meta = found
        when = dt.datetime.fromtimestamp(meta["created"]).strftime("%Y-%m-%d %H:%M")
        verdict = "✓ correct" if out.correct else f"✗ {out.error_kind}: {out.error or ''}"
        parts.append(f"**latest outcome** ({meta['kind']} {meta['run']}, node {meta['node']}, {when}): {verdict}")
        if out.answer:
            parts.append(f"```sql\n{out.answer}\n```")
    else:
        parts.append("_no outcome yet: run Evaluate on a prompt that uses this suite_")
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n".join(parts)))


# -- commands ------------------------------------------------------------------------------------------
def _arg(args: tuple[Any, ...]) -> dict[str, Any]:
    first = args[0] if args else {}
    if isinstance(first, str):
        return {"uri": first}
    return first if isinstance(first, dict) else {}


def _supports_progress(ls: LseServer) -> bool:
    window = ls.client_capabilities.window
    return bool(window and window.work_done_progress)


def _supports_lens_refresh(ls: LseServer) -> bool:
    ws = ls.client_capabilities.workspace
    return bool(ws and ws.code_lens and ws.code_lens.refresh_support)


async def start_job(ls: LseServer, kind: str, args: tuple[Any, ...]) -> dict[str, Any]:
    if not ls.trusted:
        raise ValueError("this workspace is not trusted: LSE runs no SQL and loads no model here")
    a = _arg(args)
    uri = a.get("uri")
    if not uri:
        raise ValueError(f"{kind} needs a prompt file: arguments [{{'uri': ...}}]")
    path = ls.path_of(uri)
    if not is_prompt(path) and kind != "train":
        raise ValueError(f"not a prompt file (*.prompt.md): {uri}")
    text, version = ls.text_of(uri)
    if kind != "train":
        prompt, issues = parse_prompt(text, path)
        errors = [i for i in issues if i.severity == "error"]
        if errors:
            raise ValueError(f"fix the prompt file first: {errors[0].message}")
    running = ls.jobs.running_for(uri)
    if running is not None:
        raise ValueError(f"a run is already going for this prompt (run {running.run_id}); cancel it first")
    run_id = new_run_id()
    job = Job(run_id=run_id, kind=kind, uri=uri, path=Path(path), token=f"lse-{run_id}", version=version)
    ls.jobs.jobs[run_id] = job
    if _supports_progress(ls):
        try:
            await asyncio.wait_for(ls.work_done_progress.create_async(job.token), 5)
            ls.work_done_progress.begin(job.token, types.WorkDoneProgressBegin(
                title=f"LSE {kind}: {Path(path).name}", cancellable=True, message="starting (loading models)…",
                percentage=0))
        except Exception as exc:  # the client still gets lse/runProgress
            log.info("no work done progress: %s", exc)
            job.token = ""
    else:
        job.token = ""
    await ls.jobs.start(job, ls.overrides(), rounds=a.get("rounds"))
    return {"runId": run_id}


@server.command("lse.evaluate")
async def cmd_evaluate(ls: LseServer, *args: Any) -> dict[str, Any]:
    return await start_job(ls, "evaluate", args)


@server.command("lse.evolve")
async def cmd_evolve(ls: LseServer, *args: Any) -> dict[str, Any]:
    return await start_job(ls, "evolve", args)


@server.command("lse.train")
async def cmd_train(ls: LseServer, *args: Any) -> dict[str, Any]:
    return await start_job(ls, "train", args)


@server.command("lse.cancel")
async def cmd_cancel(ls: LseServer, *args: Any) -> dict[str, Any]:
    a = _arg(args)
    job = ls.jobs.jobs.get(a.get("runId", "")) or (ls.jobs.running_for(a["uri"]) if a.get("uri") else None)
    if job is None or job.done.is_set():
        return {"cancelled": False, "message": "no run is going"}
    await ls.jobs.cancel(job)
    return {"cancelled": True, "runId": job.run_id}


@server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
async def progress_cancel(ls: LseServer, params: types.WorkDoneProgressCancelParams) -> None:
    job = ls.jobs.by_token(str(params.token))
    if job is not None and not job.done.is_set():
        await ls.jobs.cancel(job)


def tree_json(ls: LseServer, a: dict[str, Any]) -> dict[str, Any]:
    run_id, uri = a.get("runId"), a.get("uri")
    path = ls.path_of(uri) if uri else None
    store = ls.store_for(path or Path.cwd())
    if store is None:
        job = ls.jobs.jobs.get(run_id or "")
        store = ls.store_for(job.path) if job else None
    if store is None:
        raise ValueError("no run store yet: evaluate or evolve a prompt first")
    run = store.get_run(run_id) if run_id else next(
        (r for r in store.list_runs(str(Path(path).resolve()) if path else None, 20) if r["kind"] == "evolve"), None)
    if run is None:
        raise ValueError(f"no run {run_id or 'for ' + str(uri)}")
    tree = load_tree(store, run["id"])
    winner = tree.winner().id if tree.nodes else None
    return {"runId": run["id"], "kind": run["kind"], "rule": run.get("rule"), "status": run["status"],
            "prompt": run["prompt"], "rootDev": run.get("root_dev"), "bestDev": run.get("best_dev"), "winner": winner,
            "nodes": [n.to_dict() for n in tree.nodes.values()]}


@server.command("lse.showTree")
def cmd_show_tree(ls: LseServer, *args: Any) -> dict[str, Any]:
    return tree_json(ls, _arg(args))


@server.feature("lse/tree")
def req_tree(ls: LseServer, params: Any) -> dict[str, Any]:
    return tree_json(ls, _params(params))


@server.feature("lse/runs")
def req_runs(ls: LseServer, params: Any) -> dict[str, Any]:
    a = _params(params)
    path = ls.path_of(a["uri"]) if a.get("uri") else None
    store = ls.store_for(path or (ls.workspace.root_path or Path.cwd()))
    if store is None:
        return {"runs": []}
    runs = store.list_runs(str(Path(path).resolve()) if path else None, 100)
    return {"runs": [{"runId": r["id"], "prompt": r["prompt"], "promptUri": from_fs_path(r["prompt"]),
                      "kind": r["kind"], "status": r["status"], "started": r["created"], "rule": r.get("rule"),
                      "rootDev": r.get("root_dev"), "bestDev": r.get("best_dev"), "winner": r.get("winner")}
                     for r in runs]}


def _params(params: Any) -> dict[str, Any]:
    if isinstance(params, dict):
        return params
    if params is None:
        return {}
    return {k: getattr(params, k) for k in dir(params) if not k.startswith("_") and k in ("runId", "uri")}


# -- job progress → LSP ------------------------------------------------------------------------------------
async def _on_job_line(ls: LseServer, job: Job, msg: dict[str, Any]) -> None:
    ev = msg.get("event")
    if ev is None:
        return
    rounds = ev.get("rounds") or 0
    pct = int(100 * (ev.get("round") or 0) / rounds) if rounds else None
    best = ev.get("best_dev")
    message = ev.get("message", "")
    if best is not None and job.kind == "evolve":
        message = f"{message} · best dev {best:.0%}"
    if job.token:
        with contextlib.suppress(Exception):
            ls.work_done_progress.report(job.token, types.WorkDoneProgressReport(message=message, percentage=pct,
                                                                                 cancellable=True))
    ls.protocol.notify(RUN_PROGRESS, {
        "runId": job.run_id, "uri": job.uri, "kind": job.kind, "round": ev.get("round"), "rounds": rounds,
        "bestDev": best, "rootDev": ev.get("root_dev"), "node": ev.get("node"), "done": False,
        "message": ev.get("message", ""),
    })


async def _on_job_exit(ls: LseServer, job: Job) -> None:
    res = job.result or {}
    error = None if job.result else (job.error or "failed")
    if job.cancelled or res.get("status") == "cancelled":
        error = "cancelled"
    summary = error or _summary(job, res)
    if job.token:
        with contextlib.suppress(Exception):
            ls.work_done_progress.end(job.token, types.WorkDoneProgressEnd(message=summary))
    payload = {"runId": job.run_id, "uri": job.uri, "kind": job.kind, "done": True, "message": summary,
               "error": error, "rootDev": res.get("rootDev"), "bestDev": res.get("winnerDev")}
    if job.kind == "evaluate":
        acc = res.get("accuracy") or {}
        payload.update(acc, rootDev=acc.get("dev"), bestDev=acc.get("dev"))
    if job.kind == "evolve":
        payload["winner"] = res.get("winner")
        payload["instructions"] = res.get("instructions")
    ls.protocol.notify(RUN_PROGRESS, payload)
    if error and error != "cancelled":
        ls.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"LSE {job.kind} failed: {error}"))
    if job.kind == "evolve" and not error and res.get("winner") not in (None, 0):
        await _apply_winner(ls, job, res)
    if _supports_lens_refresh(ls):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ls.workspace_code_lens_refresh_async(None), 5)


def _summary(job: Job, res: dict[str, Any]) -> str:
    if job.kind == "evaluate":
        acc = res.get("accuracy") or {}
        return ", ".join(f"{k} {v:.0%}" for k, v in acc.items()) or "done"
    if job.kind == "evolve":
        root, best = res.get("rootDev"), res.get("winnerDev")
        if root is None or best is None:
            return "done"
        return f"dev {root:.0%} → {best:.0%}" + ("" if res.get("winner") else " (the original prompt is still best)")
    return res.get("message", "done")


async def _apply_winner(ls: LseServer, job: Job, res: dict[str, Any]) -> None:
    """Replace the prompt's instructions, guarded by the document version, with a needs-confirmation label."""
    try:
        text, version = ls.text_of(job.uri)
    except Exception as exc:
        log.warning("cannot apply the winner: %s", exc)
        return
    prompt, _ = parse_prompt(text, job.path)
    lines = text.split("\n")
    start = types.Position(prompt.body_line, 0)
    end = types.Position(len(lines) - 1, len(lines[-1]))
    new_text = res["instructions"].strip("\n") + "\n"
    label = f"LSE: dev {res.get('rootDev') or 0:.0%} → {res.get('winnerDev') or 0:.0%}"
    annotation_id = f"lse-evolve-{job.run_id}"
    edit = types.WorkspaceEdit(
        document_changes=[types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(uri=job.uri, version=job.version),
            edits=[types.AnnotatedTextEdit(range=types.Range(start, end), new_text=new_text,
                                           annotation_id=annotation_id)],
        )],
        change_annotations={annotation_id: types.ChangeAnnotation(
            label=label, needs_confirmation=True,
            description=f"evolved by run {job.run_id}: node #{res.get('winner')}")},
    )
    if job.version is not None and version != job.version:
        ls.window_show_message(types.ShowMessageParams(
            types.MessageType.Warning,
            f"{job.path.name} changed during the run; not applying. The winner is in run {job.run_id}."))
        return
    try:
        result = await asyncio.wait_for(
            ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label=label)), 600)
        log.info("applyEdit %s: applied=%s %s", job.run_id, result.applied, result.failure_reason or "")
    except Exception as exc:
        log.warning("applyEdit failed: %s", exc)

