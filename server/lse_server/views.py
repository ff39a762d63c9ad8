"""What editors show of prompts, suites and runs: code actions, code lenses, hovers, trees and run lists.

Every view of the run store goes through `LseServer.read_store` (time-limited; nothing at all when the
workspace is untrusted).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types

from lse_engine.evolve.recorder import load_tree
from lse_engine.evolve.tree import Node, Tree
from lse_engine.files import Suite, parse_prompt
from lse_server.args import UNTRUSTED, command_args
from lse_server.core import LseServer
from lse_server.documents import is_suite
from lse_server.errors import RequestFailed
from lse_server.jobs import Job
from lse_server.messages import APPLY_TITLE, CANCEL_TITLE, pct, progress_line, score_label
from lse_server.protocol import Command, CommandArgs, Method, RunsResult, RunSummary, TreeNode, TreeResult
from lse_server.store_reader import trained_evolvers
from lse_server.uris import path_to_uri

log = logging.getLogger("lse_server.views")
GOLD_BUDGET_S = 3.0  # a hover's gold query


def _cmd(title: str, name: str, args: CommandArgs) -> types.Command:
    return types.Command(title=title, command=name, arguments=[args])


def _prompt_at(ls: LseServer, uri: str) -> Path | None:
    """The path of an LSE prompt file (None for anything else, unreadable files included)."""
    found = _prompt_text(ls, uri)
    return found[0] if found else None


def _prompt_text(ls: LseServer, uri: str) -> tuple[Path, str] | None:
    try:
        path = ls.path_of(uri)
        text, _ = ls.text_of(uri)
    except RequestFailed:
        return None
    return (path, text) if ls.is_prompt(path, text) else None


def cancel_title(job: Job) -> str:
    """"Cancel run (evolve of x.prompt.md: round 2/5 · scoring dev 3/8)": the action, with the progress."""
    return f"{CANCEL_TITLE} ({job.kind} of {job.path.name}: {progress_line(job.kind, job.last_event)})"


def _action(title: str, name: str, args: CommandArgs) -> types.CodeAction:
    return types.CodeAction(title=title, kind=types.CodeActionKind.Source, command=_cmd(title, name, args))


def code_actions(ls: LseServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """On a prompt: Evaluate (first: the cheap one), Apply evolved instructions (an evolve's winner not put in
    yet, its instructions still those the run started from), Evolve; while a run of it goes, Cancel run instead. On a
    suite: Cancel run for each run going on a prompt that uses it (so a client with code actions alone, eglot
    or Helix, can always stop a run)."""
    uri = params.text_document.uri
    if ls.is_suite_uri(uri):
        suite = ls.path_of(uri).resolve()
        return [_action(cancel_title(job), Command.CANCEL, {"uri": job.uri, "runId": job.run_id})
                for job in ls.jobs.running() if job.suite == suite]
    found = _prompt_text(ls, uri)
    if found is None:
        return []
    job = ls.jobs.running_for(uri)
    if job is not None:
        return [_action(cancel_title(job), Command.CANCEL, {"uri": uri, "runId": job.run_id})]
    actions = [_action("Evaluate prompt", Command.EVALUATE, {"uri": uri})]
    pending = ls.jobs.unapplied_for(uri)
    unchanged = pending is not None and parse_prompt(found[1], found[0])[0].instructions == pending.instructions
    if pending is not None and pending.unapplied and unchanged:
        label = score_label(pending.unapplied.get("rootDev"), pending.unapplied.get("winnerDev")).removeprefix("LSE: ")
        actions.append(_action(f"{APPLY_TITLE} ({label}, run {pending.run_id})", Command.APPLY_WINNER,
                               {"uri": uri, "runId": pending.run_id}))
    actions.append(_action("Evolve prompt", Command.EVOLVE, {"uri": uri}))
    configured = ls.overrides().get("evolver", {}).get("adapter")
    for name in trained_evolvers(ls.store_path(found[0]))[:3]:  # what `lse train` made here, offered for this run
        if name != configured:
            actions.append(_action(f"Evolve prompt with trained evolver {name}", Command.EVOLVE,
                                   {"uri": uri, "evolver": name}))
    return actions


def code_lens(ls: LseServer, params: types.CodeLensParams) -> list[types.CodeLens]:
    uri = params.text_document.uri
    path = _prompt_at(ls, uri)
    if path is None:
        return []
    top = types.Range(types.Position(0, 0), types.Position(0, 0))
    lenses = []
    runs = ls.read_store(path, lambda s: s.list_runs(str(path.resolve()), limit=20)) or []
    scored = next((r for r in runs if r.get("winner_dev") is not None and r.get("status") == "done"), None)
    if scored:
        when = dt.datetime.fromtimestamp(scored["created"]).strftime("%Y-%m-%d %H:%M")
        label = f"dev {pct(scored['winner_dev'])} ({scored['kind']}, {when})"
        lenses.append(types.CodeLens(top, _cmd(label, Command.SHOW_TREE, {"uri": uri, "runId": scored["id"]})))
    elif runs:
        lenses.append(types.CodeLens(top, _cmd(f"last run: {runs[0]['status']}", Command.SHOW_TREE, {"uri": uri})))
    job = ls.jobs.running_for(uri)
    if job is not None:
        line = progress_line(job.kind, job.last_event)
        lenses.append(types.CodeLens(top, _cmd(f"{job.kind}: {line} (Cancel)", Command.CANCEL,
                                               {"uri": uri, "runId": job.run_id})))
    lenses += [types.CodeLens(top, _cmd("Evaluate", Command.EVALUATE, {"uri": uri})),
               types.CodeLens(top, _cmd("Evolve", Command.EVOLVE, {"uri": uri})),
               types.CodeLens(top, _cmd("Show tree", Command.SHOW_TREE, {"uri": uri}))]
    return lenses


async def hover(ls: LseServer, params: types.HoverParams) -> types.Hover | None:
    uri = params.text_document.uri
    path = ls.path_of(uri)
    if not is_suite(str(path), ls.globs):
        return None
    text, version = ls.text_of(uri)
    try:
        suite = await ls.suite_of(uri, text, version)
    except asyncio.TimeoutError:
        return None
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
        parts.append("_untrusted workspace: gold SQL is not run, no outcomes are read_")
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n".join(parts)))
    if suite.task == "text-to-sql" and suite.database is not None and suite.database.is_file():
        parts.append(await _gold(ls, suite, problem.gold))
    suite_path = str(suite.path.resolve()) if suite.path else str(path.resolve())
    found = ls.read_store(path, lambda s: s.latest_outcome(suite_path, problem.id))
    if found:
        out, meta = found
        when = dt.datetime.fromtimestamp(meta["created"]).strftime("%Y-%m-%d %H:%M")
        verdict = "✓ correct" if out.correct else f"✗ {out.error_kind}: {out.error or ''}"
        parts.append(f"**latest outcome** ({meta['kind']} {meta['run']}, node {meta['node']}, {when}): {verdict}")
        if out.answer:
            parts.append(f"```sql\n{out.answer}\n```")
    elif _split_of(suite, problem.id) == "test":
        parts.append("_a test problem: Evaluate scores train and dev only; an Evolve scores test once, at its end "
                     "(the original prompt and the winner), and reports both in its result message_")
    else:
        parts.append("_no outcome yet: run Evaluate on a prompt that uses this suite_")
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n".join(parts)))


def _split_of(suite: Suite, problem_id: str) -> str | None:
    return next((name for name, problems in suite.split().items() if any(p.id == problem_id for p in problems)), None)


async def _gold(ls: LseServer, suite: Suite, gold: str) -> str:
    analyzer = ls.analyzer
    try:
        timeout = await analyzer.run(analyzer.gold_timeout_s, suite.path)
        checker = await analyzer.run(analyzer.checker, suite.database, timeout, sql=True)
        check = await analyzer.gold(checker, gold, GOLD_BUDGET_S)
    except asyncio.TimeoutError:
        return "**gold result**: _the database took too long to open_"
    except Exception as exc:  # noqa: BLE001 - not a database, unreadable
        return f"**gold fails**: cannot open the database: {exc}"
    if check.slow_s is not None:
        return f"**gold result**: _not known: the query did not finish within {check.slow_s:g} s here_"
    res = check.result
    if res is not None and res.ok:
        from lse_engine.tasks.text_to_sql import preview_rows

        return f"**gold result**: `{preview_rows(res.rows)}`"
    return f"**gold fails**: {res.error if res is not None else 'not run'}"


# -- trees and runs -----------------------------------------------------------------------------------------
def to_tree_node(node: Node) -> TreeNode:
    return {"id": node.id, "parent": node.parent, "round": node.round, "status": node.status,
            "instructions": node.instructions, "dev": node.dev_score, "train": node.train_score,
            "visits": node.visits, "error": node.error, "noAnswer": node.no_answer}


def tree_as_text(tree: Tree, title: str) -> str:
    """The tree as plain text (the CLI's `lse tree` rendering without colours)."""
    from rich.console import Console

    from lse_engine.report import tree_text

    try:
        buffer = io.StringIO()
        Console(file=buffer, width=120, color_system=None, force_terminal=False).print(tree_text(tree, title))
        return buffer.getvalue()
    except Exception:  # noqa: BLE001 - markup in instructions: list the nodes plainly
        winner = tree.winner().id if tree.nodes else None
        lines = [title] + [f"{'  ' * _depth(tree, n)}#{n.id} dev {pct(n.dev_score)} · train {pct(n.train_score)}"
                           f"{' ★ winner' if n.id == winner else ''}" for n in tree.nodes.values()]
        return "\n".join(lines) + "\n"


def _depth(tree: Tree, node: Node) -> int:
    depth, seen = 0, set()
    while node.parent is not None and node.parent in tree.nodes and node.id not in seen:
        seen.add(node.id)
        node = tree.nodes[node.parent]
        depth += 1
    return depth


def _require_trust(ls: LseServer) -> None:
    if not ls.trusted:
        raise RequestFailed(UNTRUSTED)


def tree_result(ls: LseServer, args: CommandArgs) -> TreeResult:
    _require_trust(ls)
    run_id, uri = args.get("runId"), args.get("uri")
    path = ls.path_of(uri) if uri else None
    job = ls.jobs.jobs.get(run_id or "")
    near = path or (job.path if job else ls.root())

    def read(store: Any) -> tuple[dict[str, Any], Tree] | None:
        if run_id:
            run = store.get_run(run_id)
        else:
            runs = store.list_runs(str(path.resolve()) if path else None, 20)
            run = next((r for r in runs if r["kind"] == "evolve"), runs[0] if runs else None)
        return (run, load_tree(store, run["id"])) if run else None

    found = ls.read_store(near, read)
    if found is None:
        what = f"run {run_id}" if run_id else f"runs for {path.name}" if path else "runs"
        raise RequestFailed(f"no {what} in this workspace's run store: Evaluate or Evolve a prompt first")
    run, tree = found
    winner = tree.winner().id if tree.nodes else None
    title = f"run {run['id']} ({run['kind']}, {run['status']}, rule {run.get('rule') or '-'})"
    return {"runId": run["id"], "kind": run["kind"], "rule": run.get("rule"), "status": run["status"],
            "prompt": run["prompt"], "promptUri": path_to_uri(run["prompt"]), "rootDev": run.get("root_dev"),
            "winnerDev": run.get("winner_dev"), "winner": winner,
            "nodes": [to_tree_node(n) for n in tree.nodes.values()], "text": tree_as_text(tree, title)}


def runs_result(ls: LseServer, args: CommandArgs) -> RunsResult:
    _require_trust(ls)
    path = ls.path_of(args["uri"]) if args.get("uri") else None
    runs = ls.read_store(path or ls.root(), lambda s: s.list_runs(str(path.resolve()) if path else None, 100)) or []
    summaries: list[RunSummary] = [
        {"runId": r["id"], "prompt": r["prompt"], "promptUri": path_to_uri(r["prompt"]), "kind": r["kind"],
         "status": r["status"], "started": r["created"], "rule": r.get("rule"), "rootDev": r.get("root_dev"),
         "winnerDev": r.get("winner_dev"), "winner": r.get("winner")}
        for r in runs
    ]
    return {"runs": summaries}


def register(ls: LseServer) -> None:
    ls.feature(types.TEXT_DOCUMENT_CODE_ACTION,
               types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.Source]))(code_actions)
    ls.feature(types.TEXT_DOCUMENT_CODE_LENS)(code_lens)
    ls.feature(types.TEXT_DOCUMENT_HOVER)(hover)

    @ls.command(Command.SHOW_TREE)
    def show_tree(ls: LseServer, *args: Any) -> TreeResult:
        return tree_result(ls, command_args(args))

    @ls.feature(Method.TREE)
    def request_tree(ls: LseServer, params: Any) -> TreeResult:
        return tree_result(ls, command_args(params))

    @ls.feature(Method.RUNS)
    def request_runs(ls: LseServer, params: Any) -> RunsResult:
        return runs_result(ls, command_args(params))
