"""The real language server over stdio (pytest-lsp): diagnostics, code actions, runs on the buffer the user
sees, confirmed edits, cancel, untrusted workspaces, hostile stores and odd paths.

Exact checks use scripted replies from a real loopback OpenAI-compatible HTTP server (tests/openai_stub.py);
the worker process talks to it over HTTP like it would to vLLM serve or llama.cpp. Two kinds of client: one
like VS Code (work-done progress, change annotations, lens refresh) and a plain one like eglot (none of them).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from lse_engine.files.prompt_file import parse_prompt, replace_instructions
from tests.conftest import build_skill_workspace
from tests.openai_stub import ScriptedOpenAIServer
from tests.scripted import current_of, user_message

WORKDIR = Path(__file__).parent / ".lsp-work"
SERVER = [sys.executable, "-m", "lse_server", "--stdio"]
REQUEST_FAILED = -32803


def scripted_reply(messages: list[dict[str, Any]], request: dict[str, Any]) -> str:
    """Task model: right iff the question's tag is among the instruction words. Evolver: add the next tag."""
    user = user_message(messages)
    if "<current>" in user:
        cur = current_of(messages)
        have = set(cur.split())
        nxt = next(f"t{i}" for i in range(100) if f"t{i}" not in have)
        return f"<prompt>{cur} {nxt}</prompt>"
    system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
    instructions = system.split("**Instructions**\n", 1)[-1].split()
    tag, num = re.search(r"\[(t\d+)\] which row holds (\d+)\?", user).groups()
    return f"<answer>SELECT n FROM nums WHERE n = {num if tag in instructions else -1}</answer>"


class SlowReply:
    delay = 0.0

    def __call__(self, messages, request):
        if self.delay:
            time.sleep(self.delay)
        return scripted_reply(messages, request)


SLOW = SlowReply()


@pytest.fixture(scope="module")
def stub():
    with ScriptedOpenAIServer(SLOW) as srv:
        yield srv


def settings_for(stub, trusted: Any = True, **evolve: Any) -> dict[str, Any]:
    return {"trusted": trusted,
            "settings": {"model": {"backend": "openai", "name": "scripted", "baseUrl": stub.base_url,
                                   "batchSize": 4, "maxConcurrency": 4},
                         # the editor loop is what these tests are about: the best dev node wins (the paired test that
                         # must back a winner is tested in test_significance.py; 8 dev problems rarely pass it)
                         "evolve": {"rounds": 2, "batchSize": 4, "devSize": 8, "winnerTest": "none", **evolve}}}


EDIT_CAPS = types.WorkspaceEditClientCapabilities(
    document_changes=True, change_annotation_support=types.ChangeAnnotationsSupportOptions(groups_on_label=True))
VSCODE_LIKE = types.ClientCapabilities(
    window=types.WindowClientCapabilities(work_done_progress=True),
    workspace=types.WorkspaceClientCapabilities(
        apply_edit=True, workspace_edit=EDIT_CAPS,
        code_lens=types.CodeLensWorkspaceClientCapabilities(refresh_support=True)))
# eglot 1.9: versioned document changes, nothing else
PLAIN = types.ClientCapabilities(workspace=types.WorkspaceClientCapabilities(
    apply_edit=True, workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)))


def prepare(client: LanguageClient, questions: bool = True) -> None:
    """Record what the server sends; answer applyEdit (applied) and showMessageRequest (from `answers`; not
    registered with `questions=False`)."""
    client.run_progress: list[dict] = []
    client.apply_edits: list[types.ApplyWorkspaceEditParams] = []
    client.questions: list[types.ShowMessageRequestParams] = []
    client.answers: list[str] = []

    @client.feature("lse/runProgress")
    def on_progress(params):
        client.run_progress.append(_todict(params))

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def on_apply(params: types.ApplyWorkspaceEditParams):
        client.apply_edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    def on_question(params: types.ShowMessageRequestParams):
        client.questions.append(params)
        return types.MessageActionItem(client.answers.pop(0)) if client.answers else None

    if questions:
        client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)(on_question)

    @client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    def on_refresh(params):
        return None

    fix_code_action_parsing(client)


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient, stub):
    prepare(lsp_client)
    await lsp_client.initialize_session(types.InitializeParams(capabilities=VSCODE_LIKE,
                                                               initialization_options=settings_for(stub)))
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def plain(lsp_client: LanguageClient, stub):
    prepare(lsp_client)
    await lsp_client.initialize_session(types.InitializeParams(capabilities=PLAIN,
                                                               initialization_options=settings_for(stub)))
    yield
    await lsp_client.shutdown_session()


def fix_code_action_parsing(client: LanguageClient) -> None:
    """lsprotocol 2025.0.0 structures any `Command | CodeAction` holding a "command" key as a Command, so a
    CodeAction that carries a command (ours do; the LSP allows it) reaches pygls clients mangled. Editors
    parse it correctly; this restores the spec's reading on the test client's converter."""
    from typing import Union

    conv = client.protocol._converter

    def hook(obj: Any, _: type) -> types.Command | types.CodeAction:
        if isinstance(obj.get("command"), str):
            return conv.structure(obj, types.Command)
        return conv.structure(obj, types.CodeAction)

    conv.register_structure_hook(Union[types.Command, types.CodeAction], hook)  # noqa: UP007 (the key lsprotocol uses)


def _todict(obj: Any) -> Any:
    """Plain JSON values from what the pygls client hands over (custom payloads arrive as named tuples)."""
    if isinstance(obj, dict):
        return {k: _todict(v) for k, v in obj.items()}
    if hasattr(obj, "_asdict"):
        return {k: _todict(v) for k, v in obj._asdict().items()}
    if isinstance(obj, (list, tuple)):
        return [_todict(v) for v in obj]
    return obj


def open_doc(client: LanguageClient, path: Path, text: str | None = None, lang: str = "yaml", version: int = 1) -> str:
    uri = path.resolve().as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
        uri=uri, language_id=lang, version=version, text=text if text is not None else path.read_text())))
    return uri


def change_doc(client: LanguageClient, uri: str, text: str, version: int) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        [types.TextDocumentContentChangeWholeDocument(text=text)]))


async def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def done_of(client: LanguageClient, run_id: str) -> dict | None:
    return next((p for p in client.run_progress if p["runId"] == run_id and p["done"]), None)


async def run_to_end(client: LanguageClient, command: str, args: dict, timeout: float = 90) -> dict:
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(command, [args]))
    return await wait_for(lambda: done_of(client, result["runId"]), timeout=timeout, what=f"{command} to finish")


def apply_edits(text: str, edits: list[types.TextEdit]) -> str:
    """`text` with LSP text edits applied (ASCII test texts: characters are UTF-16 units)."""
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)

    def offset(pos: types.Position) -> int:
        if pos.line >= len(lines):
            return len(text)
        return starts[pos.line] + min(pos.character, len(lines[pos.line]))

    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        text = text[: offset(e.range.start)] + e.new_text + text[offset(e.range.end):]
    return text


def accuracy(prompt: Path, instructions: str, split: str, size: int | None = None) -> float:
    """What the scripted task model scores with `instructions` on a split (the first `size` problems)."""
    from lse_engine.files import load_suite

    problems = load_suite(prompt.parent / "nums.suite.yaml").split()[split][:size]
    tags = set(instructions.split())
    return sum(re.search(r"\[(t\d+)\]", p.question).group(1) in tags for p in problems) / len(problems)


def messages_of(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages]


def fresh_workspace(name: str, **kwargs: Any) -> Path:
    import shutil

    root = WORKDIR / f"{name}-{time.time_ns()}"
    if root.exists():
        shutil.rmtree(root)
    return build_skill_workspace(root, n_problems=24, **kwargs)


BROKEN_SUITE = """task: text-to-sql
database: nums.sqlite
problems:
  - id: ok
    question: which row holds 1?
    gold: SELECT n FROM nums WHERE n = 1
  - id: bad-parse
    question: broken
    gold: SELEC n FRM nums
  - id: bad-column
    question: wrong column
    gold: SELECT nn FROM nums
  - id: empty
    question: nothing
    gold: SELECT n FROM nums WHERE n > 1000
  - id: ok
    question: duplicate
    gold: SELECT 1
"""


# -- diagnostics ------------------------------------------------------------------------------------------------
async def test_broken_gold_sql_diagnostics_at_their_ranges_then_cleared(client: LanguageClient) -> None:
    prompt = fresh_workspace("diag")
    suite = prompt.parent / "broken.suite.yaml"
    suite.write_text(BROKEN_SUITE)
    uri = open_doc(client, suite)
    diags = await wait_for(lambda: (d := client.diagnostics.get(uri)) and len(d) >= 4 and d, what="diagnostics")
    by_code = {d.code: d for d in diags}
    assert set(by_code) >= {"gold-parse", "unknown-column", "gold-empty", "duplicate-id"}
    lines = BROKEN_SUITE.split("\n")
    assert by_code["gold-parse"].range.start.line == lines.index("    gold: SELEC n FRM nums")
    assert by_code["gold-parse"].range.start.character == len("    gold: ")
    assert by_code["unknown-column"].range.start.line == lines.index("    gold: SELECT nn FROM nums")
    assert by_code["gold-empty"].severity == types.DiagnosticSeverity.Warning
    second_ok = len(lines) - 1 - lines[::-1].index("  - id: ok")
    assert by_code["duplicate-id"].range.start.line == second_ok
    assert by_code["duplicate-id"].range.start.character == len("  - id: ")
    change_doc(client, uri, "\n".join(lines[:6]) + "\n", 2)  # only the first problem
    await wait_for(lambda: list(client.diagnostics.get(uri, [None])) == [], what="cleared diagnostics")


async def test_gold_sql_time_limit_comes_from_the_workspace_settings(client: LanguageClient) -> None:
    """`[sql] gold_timeout_s` in lse.toml bounds the editor's gold checks too (the server's default is 30 s)."""
    prompt = fresh_workspace("gold-limit")
    (prompt.parent / "lse.toml").write_text("[sql]\ngold_timeout_s = 0.5\n")
    suite = prompt.parent / "slow.suite.yaml"
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) "
            "SELECT count(*) FROM c")
    suite.write_text(f"task: text-to-sql\ndatabase: nums.sqlite\nproblems:\n  - id: slow\n    question: count\n"
                     f"    gold: {slow}\n")
    started = time.monotonic()
    uri = open_doc(client, suite)
    diags = await wait_for(lambda: client.diagnostics.get(uri), timeout=20, what="diagnostics")
    assert [d.code for d in diags] == ["gold-timeout"]
    assert time.monotonic() - started < 10


async def test_prompt_files_that_are_not_lse_get_nothing(client: LanguageClient, stub) -> None:
    """A Copilot prompt file (`*.prompt.md`, no `suite:`) gets no diagnostics, actions or lenses; a prompt that
    names a missing suite does; the name pattern is a setting."""
    prompt = fresh_workspace("copilot")
    copilot = prompt.parent / ".github" / "prompts" / "review.prompt.md"
    copilot.parent.mkdir(parents=True)
    copilot.write_text("---\nmode: agent\ndescription: Review the change\n---\nReview ${file} for bugs.\n")
    bare = prompt.parent / "bare.prompt.md"
    bare.write_text("Just some instructions without front matter.\n")
    missing = prompt.parent / "other.prompt.md"
    missing.write_text("---\nsuite: missing.suite.yaml\n---\nhi\n")
    for path in (copilot, bare):
        uri = open_doc(client, path, lang="markdown")
        await wait_for(lambda uri=uri: uri in client.diagnostics, what="a publish")
        assert list(client.diagnostics[uri]) == []
        assert not await client.text_document_code_lens_async(types.CodeLensParams(types.TextDocumentIdentifier(uri)))
        actions = await client.text_document_code_action_async(types.CodeActionParams(
            types.TextDocumentIdentifier(uri), types.Range(types.Position(0, 0), types.Position(0, 0)),
            types.CodeActionContext(diagnostics=[])))
        assert not actions
        with pytest.raises(JsonRpcException, match="not an LSE prompt file"):
            await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evaluate", [{"uri": uri}]))
    uri = open_doc(client, missing, lang="markdown")
    diags = await wait_for(lambda: client.diagnostics.get(uri), what="missing suite diagnostic")
    assert diags[0].code == "missing-suite" and diags[0].range.start.line == 1
    # another name pattern for prompt files
    custom = prompt.parent / "shop.lse.md"
    custom.write_text("---\nsuite: missing.suite.yaml\n---\nhi\n")
    settings = settings_for(stub)
    settings["settings"]["files"] = {"prompts": ["*.lse.md"]}
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))
    try:
        uri = open_doc(client, custom, lang="markdown")
        diags = await wait_for(lambda: client.diagnostics.get(uri), what="diagnostics under the custom glob")
        assert diags[0].code == "missing-suite"
    finally:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings_for(stub)))


# -- runs on the buffer ---------------------------------------------------------------------------------------------
async def test_code_actions_lens_and_evaluate_end_to_end(client: LanguageClient) -> None:
    prompt = fresh_workspace("eval")
    uri = open_doc(client, prompt, lang="markdown")
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri), types.Range(types.Position(3, 0), types.Position(3, 0)),
        types.CodeActionContext(diagnostics=[])))
    titles = {a.title: a for a in actions}
    assert list(titles) == ["Evaluate prompt", "Evolve prompt"]  # the cheap one first
    cmd = titles["Evaluate prompt"].command
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(cmd.command, cmd.arguments))
    run_id = result["runId"]
    done = await wait_for(lambda: done_of(client, run_id), what="evaluate to finish")
    assert done["error"] is None and done["accuracy"] == {"train": pytest.approx(0.25), "dev": pytest.approx(0.25)}
    assert done["winnerDev"] == pytest.approx(0.25)
    assert "LSE evaluate of nums.prompt.md: train 25%, dev 25%" in messages_of(client)
    steps = [p for p in client.run_progress if p["runId"] == run_id and not p["done"]]
    assert steps and all(p["stepTotal"] >= p["stepDone"] >= 0 for p in steps)
    assert any(re.search(r"scoring \w+ \d+/\d+", p["message"]) for p in steps), [p["message"] for p in steps]
    token = f"lse-{run_id}"
    kinds = [type(v).__name__ for v in client.progress_reports[token]]
    assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(types.TextDocumentIdentifier(uri)))
    assert any(lens.command.title.startswith("dev 25% (evaluate") for lens in lenses)
    assert {"Evaluate", "Evolve", "Show tree"} <= {lens.command.title for lens in lenses}
    # hover on a suite problem: gold result and the latest outcome
    suite = prompt.parent / "nums.suite.yaml"
    suite_uri = open_doc(client, suite)
    text = suite.read_text().split("\n")
    line = next(i for i, s in enumerate(text) if "which row holds 3?" in s)
    hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(suite_uri),
                                                                     types.Position(line, 8)))
    assert "gold result" in hover.contents.value and "(3,)" in hover.contents.value
    assert "latest outcome" in hover.contents.value


async def test_an_evolver_trained_on_the_workspace_is_offered_for_its_next_run(client: LanguageClient) -> None:
    prompt = fresh_workspace("trained")
    for name in ("older", "mine"):  # what `lse train` leaves: the weights and lse_meta.json
        folder = prompt.parent / ".lse" / "evolvers" / name
        folder.mkdir(parents=True)
        (folder / "lse_meta.json").write_text(json.dumps({"name": name}))
        time.sleep(0.02)
    uri = open_doc(client, prompt, lang="markdown")
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri), types.Range(types.Position(3, 0), types.Position(3, 0)),
        types.CodeActionContext(diagnostics=[])))
    titles = [a.title for a in actions]
    assert titles == ["Evaluate prompt", "Evolve prompt", "Evolve prompt with trained evolver mine",
                      "Evolve prompt with trained evolver older"]  # newest first
    cmd = actions[2].command
    assert cmd.command == "lse.evolve" and list(cmd.arguments) == [{"uri": uri, "evolver": "mine"}]
    with pytest.raises(JsonRpcException) as refused:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            "lse.evolve", [{"uri": uri, "evolver": "nope"}]))
    assert "no trained evolver 'nope' in this workspace" in refused.value.message


async def test_evaluate_scores_the_unsaved_buffer(client: LanguageClient) -> None:
    """The file on disk says `t0`; the buffer says `t0 t1`: the run scores the buffer."""
    prompt = fresh_workspace("unsaved-eval")
    on_disk = prompt.read_text()
    uri = open_doc(client, prompt, lang="markdown")
    change_doc(client, uri, on_disk.replace("t0\n", "t0 t1\n"), 2)
    done = await run_to_end(client, "lse.evaluate", {"uri": uri})
    assert done["accuracy"] == {"train": pytest.approx(accuracy(prompt, "t0 t1", "train")),
                                "dev": pytest.approx(accuracy(prompt, "t0 t1", "dev"))}
    assert done["accuracy"] != {"train": pytest.approx(accuracy(prompt, "t0", "train")),
                                "dev": pytest.approx(accuracy(prompt, "t0", "dev"))}
    assert prompt.read_text() == on_disk  # nothing written
    store = sqlite3.connect(prompt.parent / ".lse" / "lse.db")
    root = store.execute("SELECT root_instructions FROM runs WHERE id = ?", [done["runId"]]).fetchone()[0]
    assert root == "t0 t1"


async def test_evolve_puts_the_winner_into_the_unsaved_buffer_exactly(client: LanguageClient) -> None:
    """An unsaved line is part of what evolves; the winner replaces exactly the instructions, once, guarded by
    the buffer's version, labelled with the scores, and needs the user's confirmation."""
    prompt = fresh_workspace("evolve")
    buffer = prompt.read_text().replace("t0\n", "t0 keep-me\n")
    uri = open_doc(client, prompt, text=buffer, lang="markdown", version=7)
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": uri}]))
    run_id = result["runId"]
    with pytest.raises(JsonRpcException) as again:  # one run per prompt file at a time: a one-line RequestFailed
        await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": uri}]))
    assert again.value.code == REQUEST_FAILED and "already going" in again.value.message
    assert "\n" not in again.value.message and again.value.data is None
    done = await wait_for(lambda: done_of(client, run_id), timeout=90, what="evolve to finish")
    assert done["error"] is None and done["winner"] not in (None, 0)
    assert done["instructions"] == "t0 keep-me t1 t2" and done["rootDev"] == pytest.approx(0.25)
    assert done["winnerDev"] == pytest.approx(0.75) and done["roundsDone"] == 2
    assert ("LSE evolve of nums.prompt.md: dev 25% → 75%, 2 rounds, 2 edits from 2 evolver replies (0 repeated "
            "instructions)") in messages_of(client)
    nodes = [p for p in client.run_progress if p["runId"] == run_id and not p["done"] and p.get("node")]
    assert nodes and {"id", "parent", "dev", "instructions"} <= set(nodes[-1]["node"])
    edits = await wait_for(lambda: client.apply_edits, what="workspace/applyEdit")
    assert len(edits) == 1 and len(edits[0].edit.document_changes) == 1
    change = edits[0].edit.document_changes[0]
    assert change.text_document.version == 7 and len(change.edits) == 1
    after = apply_edits(buffer, change.edits)
    assert after == replace_instructions(parse_prompt(buffer, prompt)[0], done["instructions"])
    assert after == "---\nsuite: nums.suite.yaml\n---\nt0 keep-me t1 t2\n"
    annotation = edits[0].edit.change_annotations[change.edits[0].annotation_id]
    assert annotation.needs_confirmation and annotation.label == "LSE: dev 25% → 75%"
    tree = _todict(await client.protocol.send_request_async("lse/tree", {"runId": run_id}))
    assert tree["runId"] == run_id and len(tree["nodes"]) == 3 and tree["winner"] == done["winner"]
    assert tree["winnerDev"] == pytest.approx(0.75) and "★ winner" in tree["text"]
    shown = await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.showTree", [{"uri": uri}]))
    assert shown["runId"] == run_id and shown["text"].startswith(f"run {run_id} (evolve, done")


async def test_winner_never_overwrites_instructions_edited_during_the_run(client: LanguageClient) -> None:
    prompt = fresh_workspace("edited")
    text = prompt.read_text()
    uri = open_doc(client, prompt, lang="markdown")
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": uri}]))
    change_doc(client, uri, text.replace("t0\n", "t0\nanswer in lower case\n"), 2)
    await wait_for(lambda: done_of(client, result["runId"]), timeout=90, what="evolve to finish")
    warning = await wait_for(lambda: next((m for m in client.messages if "changed during the run" in m.message), None),
                             what="a refusal")
    assert warning.type == types.MessageType.Warning and result["runId"] in warning.message
    await asyncio.sleep(0.3)
    assert not client.apply_edits


async def test_winner_follows_a_front_matter_edit_made_during_the_run(client: LanguageClient) -> None:
    """Only the front matter changed during the run: the edit is made against the new version. The range's end
    counts UTF-16 units (an emoji is two), so nothing of the last line is left behind."""
    prompt = fresh_workspace("front")
    uri = open_doc(client, prompt, text="---\nsuite: nums.suite.yaml\n---\nt0 😀", lang="markdown")
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": uri}]))
    edited = "---\nsuite: nums.suite.yaml\nname: numbers\n---\nt0 😀"
    change_doc(client, uri, edited, 5)
    await wait_for(lambda: done_of(client, result["runId"]), timeout=90, what="evolve to finish")
    edits = await wait_for(lambda: client.apply_edits, what="workspace/applyEdit")
    change = edits[0].edit.document_changes[0]
    assert change.text_document.version == 5
    assert change.edits[0].range.start == types.Position(4, 0) and change.edits[0].range.end == types.Position(4, 5)
    assert apply_edits(edited, change.edits) == "---\nsuite: nums.suite.yaml\nname: numbers\n---\nt0 😀 t1 t2\n"


async def test_without_annotations_the_server_asks_apply_discard_show_diff(plain: LanguageClient) -> None:
    """A client without change annotations or work-done progress (eglot): progress as log lines, a summary,
    then a question before the edit; Show diff shows the diff and asks again."""
    prompt = fresh_workspace("plain")
    text = prompt.read_text()
    uri = open_doc(plain, prompt, lang="markdown", version=3)
    plain.answers[:] = ["Show diff", "Apply"]
    done = await run_to_end(plain, "lse.evolve", {"uri": uri})
    edits = await wait_for(lambda: plain.apply_edits, what="workspace/applyEdit")
    assert [q.message for q in plain.questions] == [
        "LSE: dev 25% → 75% for nums.prompt.md. Replace its instructions with the evolved ones?"] * 2
    assert [[a.title for a in q.actions] for q in plain.questions] == [["Apply", "Discard", "Show diff"],
                                                                        ["Apply", "Discard"]]
    diff = next(m for m in messages_of(plain) if m.startswith("--- nums.prompt.md (now)"))
    assert "-t0\n+t0 t1 t2\n" in diff
    change = edits[0].edit.document_changes[0]
    assert change.text_document.version == 3 and not edits[0].edit.change_annotations
    assert apply_edits(text, change.edits) == replace_instructions(parse_prompt(text, prompt)[0], done["instructions"])
    logs = [m.message for m in plain.log_messages if m.message.startswith("LSE evolve of nums.prompt.md: round")]
    assert logs and all(m.type == types.MessageType.Info for m in plain.log_messages if m.message in logs)
    # the server says so once the client has answered applyEdit: a message that follows the edit, not with it
    await wait_for(lambda: any("now holds the evolved instructions" in m for m in messages_of(plain)),
                   what="the applied message")


async def test_discarding_the_winner_leaves_the_buffer(plain: LanguageClient) -> None:
    prompt = fresh_workspace("discard")
    uri = open_doc(plain, prompt, lang="markdown")
    plain.answers[:] = ["Discard"]
    done = await run_to_end(plain, "lse.evolve", {"uri": uri})
    kept = await wait_for(lambda: next((m for m in messages_of(plain) if m.startswith("LSE: kept")), None),
                          what="the discard message")
    assert done["runId"] in kept and not plain.apply_edits


async def test_an_evolve_that_keeps_the_root_says_so(client: LanguageClient, stub) -> None:
    prompt = fresh_workspace("root-best")
    prompt.write_text("---\nsuite: nums.suite.yaml\n---\nt0 t1 t2 t3\n")  # every tag: nothing to improve
    uri = open_doc(client, prompt, lang="markdown")
    done = await run_to_end(client, "lse.evolve", {"uri": uri})
    assert done["winner"] == 0
    await wait_for(lambda: any(m.startswith("LSE evolve of nums.prompt.md: the original prompt stays (dev 100%")
                               and m.endswith("; no edit scored above the seed on dev") for m in messages_of(client)),
                   what="the summary, with why the seed stays")
    assert not client.apply_edits


async def test_cancel_mid_run_stops_quickly_and_keeps_the_file(client: LanguageClient) -> None:
    prompt = fresh_workspace("cancel")
    before = hashlib.sha256(prompt.read_bytes()).hexdigest()
    uri = open_doc(client, prompt, lang="markdown")
    SLOW.delay = 0.3
    try:
        result = await client.workspace_execute_command_async(
            types.ExecuteCommandParams("lse.evolve", [{"uri": uri, "rounds": 50}]))
        run_id = result["runId"]
        await wait_for(lambda: any(p["runId"] == run_id and (p.get("round") or 0) >= 1 for p in client.run_progress),
                       timeout=60, what="round 1")
        lenses = await client.text_document_code_lens_async(types.CodeLensParams(types.TextDocumentIdentifier(uri)))
        running = next(lens for lens in lenses if lens.command.command == "lse.cancel")
        assert re.match(r"evolve: round \d+/50 · ", running.command.title), running.command.title
        start = time.monotonic()
        cancelled = await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.cancel", [{"uri": uri}]))
        done = await wait_for(lambda: done_of(client, run_id), timeout=15, what="cancelled run to end")
        elapsed = time.monotonic() - start
    finally:
        SLOW.delay = 0.0
    assert cancelled == {"cancelled": True, "runId": run_id, "message": f"cancelled run {run_id}"}
    assert done["error"] == "cancelled" and elapsed < 8
    assert hashlib.sha256(prompt.read_bytes()).hexdigest() == before
    assert not client.apply_edits
    store = sqlite3.connect(prompt.parent / ".lse" / "lse.db")
    status = store.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()[0]
    pending = store.execute("SELECT COUNT(*) FROM nodes WHERE run_id = ? AND status = 'ok' AND dev_score IS NULL",
                            [run_id]).fetchone()[0]
    assert status == "cancelled" and pending == 0
    again = await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.cancel", [{"uri": uri}]))
    assert again == {"cancelled": False, "runId": None, "message": "no run is going"}


# -- bad input, errors, paths ------------------------------------------------------------------------------------
async def test_malformed_input_never_kills_the_server(client: LanguageClient) -> None:
    prompt = fresh_workspace("bad")
    root = prompt.parent
    garbage = root / "garbage.suite.yaml"
    uri1 = open_doc(client, garbage, text="task: text-to-sql\n\x00\x01\xff binary \x00 junk")
    big = root / "big.suite.yaml"
    uri2 = open_doc(client, big, text="problems:\n" + ("  - id: x\n" * 5_300_000))
    notdb = root / "notdb.suite.yaml"
    (root / "fake.sqlite").write_text("this is not a database")
    uri3 = open_doc(client, notdb, text="task: text-to-sql\ndatabase: fake.sqlite\nproblems:\n"
                                        "  - {id: a, question: q, gold: SELECT 1}\n")
    d1 = await wait_for(lambda: client.diagnostics.get(uri1), what="binary diagnostic")
    d2 = await wait_for(lambda: client.diagnostics.get(uri2), what="size diagnostic")
    d3 = await wait_for(lambda: client.diagnostics.get(uri3), what="not-sqlite diagnostic")
    assert d1[0].code == "binary" and d2[0].code == "too-large" and d3[0].code == "not-sqlite"
    missing = (root / "nowhere.suite.yaml").as_uri()
    for request in (client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(missing),
                                                                        types.Position(0, 0))),
                    client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": missing}])),
                    client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": "http://x/y"}])),
                    client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": prompt.as_uri(),
                                                                                                     "rounds": "many"}]))):
        with pytest.raises(JsonRpcException) as failed:
            await request
        assert failed.value.code == REQUEST_FAILED and "\n" not in failed.value.message and not failed.value.data
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(types.TextDocumentIdentifier(
        (root / "nowhere.prompt.md").as_uri())))
    assert not lenses
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(prompt.as_uri()), types.Range(types.Position(0, 0), types.Position(0, 0)),
        types.CodeActionContext(diagnostics=[])))
    assert len(actions) == 2


async def test_invalid_settings_are_reported_at_once(client: LanguageClient, stub) -> None:
    bad = settings_for(stub)
    bad["settings"]["evolve"]["roundz"] = 3
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=bad))
    msg = await wait_for(lambda: next((m for m in client.messages if "roundz" in m.message), None),
                         what="a settings warning")
    assert msg.type == types.MessageType.Warning and "unknown key" in msg.message
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings_for(stub)))


async def test_server_log_reaches_the_client_at_its_level(client: LanguageClient) -> None:
    """The server's log goes to the client as window/logMessage at the record's level (info as info), one line
    per failed request, no traceback."""
    prompt = fresh_workspace("log")
    with pytest.raises(JsonRpcException):
        await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evaluate", [{"uri": (
            prompt.parent / "none.prompt.md").as_uri()}]))
    failed = await wait_for(lambda: next((m for m in client.log_messages if "no such file" in m.message), None),
                            what="the failure in the log")
    assert failed.type == types.MessageType.Info and "Traceback" not in failed.message
    assert "\n" not in failed.message


@pytest.mark.parametrize("folder", ["ws#1", "ws?x", "ws 2 ünï"])
async def test_workspace_folders_with_uri_characters(client: LanguageClient, folder: str) -> None:
    parent = WORKDIR / f"uri-{time.time_ns()}"
    prompt = build_skill_workspace(parent / folder, n_problems=8)
    uri = open_doc(client, prompt, lang="markdown")
    assert ("%23" in uri) == ("#" in folder) and ("%3F" in uri) == ("?" in folder)
    await wait_for(lambda: uri in client.diagnostics, what="diagnostics")
    assert list(client.diagnostics[uri]) == []
    done = await run_to_end(client, "lse.evaluate", {"uri": uri})
    assert done["error"] is None
    assert (prompt.parent / ".lse" / "lse.db").is_file()
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(types.TextDocumentIdentifier(uri)))
    assert any(lens.command.title.startswith("dev ") for lens in lenses)
    runs = _todict(await client.protocol.send_request_async("lse/runs", {"uri": uri}))
    assert [r["promptUri"] for r in runs["runs"]] == [uri]
    assert sorted(p.name for p in parent.iterdir()) == [folder]  # no stray file beside the workspace


# -- trust and hostile stores ----------------------------------------------------------------------------------------
HOSTILE_STORE = """
CREATE VIEW runs AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x AS id, 'evolve' AS kind,
  '{prompt}' AS prompt, '' AS suite, 'done' AS status, x AS created, 0.99 AS winner_dev, 0 AS root_dev, NULL AS rule,
  0 AS winner FROM c;
"""


def plant_store(root: Path, prompt: Path, hostile: bool) -> None:
    """A store under `.lse/`: a `runs` view over an endless query (hostile), or a real finished run."""
    (root / ".lse").mkdir(exist_ok=True)
    db = sqlite3.connect(root / ".lse" / "lse.db")
    if hostile:
        db.executescript(HOSTILE_STORE.format(prompt=str(prompt.resolve())))
    else:
        from lse_engine.store import Store

        db.close()
        store = Store(root / ".lse" / "lse.db")
        run = store.create_run("evaluate", str(prompt.resolve()), str(root / "nums.suite.yaml"))
        store.update_run(run, status="done", winner_dev=0.99, root_dev=0.99)
        store.close()
        return
    db.commit()
    db.close()


async def test_hostile_store_never_freezes_the_server(client: LanguageClient) -> None:
    prompt = fresh_workspace("hostile")
    plant_store(prompt.parent, prompt, hostile=True)
    uri = open_doc(client, prompt, lang="markdown")
    start = time.monotonic()
    lenses = await asyncio.wait_for(client.text_document_code_lens_async(
        types.CodeLensParams(types.TextDocumentIdentifier(uri))), 5)
    assert time.monotonic() - start < 3
    assert [lens.command.title for lens in lenses] == ["Evaluate", "Evolve", "Show tree"]
    with pytest.raises(JsonRpcException, match="no runs for nums.prompt.md"):
        await asyncio.wait_for(client.protocol.send_request_async("lse/tree", {"uri": uri}), 5)
    logged = await wait_for(lambda: next((m for m in client.log_messages if "not reading the run store" in m.message),
                                         None), what="the store refusal in the log")
    assert "view" in logged.message and logged.type == types.MessageType.Warning


UNTRUSTED_VALUES = [False, "false", 0, None, "true"]


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), params=UNTRUSTED_VALUES)
async def untrusted(lsp_client: LanguageClient, request, stub):
    prepare(lsp_client)
    options = settings_for(stub, trusted=request.param)
    await lsp_client.initialize_session(types.InitializeParams(capabilities=VSCODE_LIKE, initialization_options=options))
    yield
    await lsp_client.shutdown_session()


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists child processes through /proc")
async def test_untrusted_means_no_sql_no_model_no_store(untrusted: LanguageClient, stub) -> None:
    """Anything but `trusted: true` is untrusted. Every command, action, lens, hover and setting is tried: no
    SQL runs, no worker starts, no model is called, the run store is never opened (a hostile one included)."""
    client = untrusted
    prompt = fresh_workspace("untrusted")
    root = prompt.parent
    suite = root / "broken.suite.yaml"
    suite.write_text(BROKEN_SUITE)
    other = root / "other"
    other_prompt = build_skill_workspace(other, n_problems=8)
    plant_store(root, prompt, hostile=True)
    plant_store(other, other_prompt, hostile=False)
    calls_before = len(stub.requests)
    server_pid = getattr(getattr(client, "_server", None), "pid", None)
    suite_uri = open_doc(client, suite)
    diags = await wait_for(lambda: client.diagnostics.get(suite_uri), what="parse diagnostics")
    uri = open_doc(client, prompt, lang="markdown")
    other_uri = open_doc(client, other_prompt, lang="markdown")
    await asyncio.sleep(0.5)  # SQL checks, were they to run, would publish again by now
    assert {d.code for d in client.diagnostics[suite_uri]} == {d.code for d in diags} == {"duplicate-id"}
    line = BROKEN_SUITE.split("\n").index("    question: which row holds 1?")
    hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(suite_uri),
                                                                     types.Position(line, 6)))
    assert "untrusted" in hover.contents.value and "gold result" not in hover.contents.value
    for doc in (uri, other_uri):
        lenses = await asyncio.wait_for(client.text_document_code_lens_async(
            types.CodeLensParams(types.TextDocumentIdentifier(doc))), 5)
        assert [lens.command.title for lens in lenses] == ["Evaluate", "Evolve", "Show tree"]  # no store read
        actions = await client.text_document_code_action_async(types.CodeActionParams(
            types.TextDocumentIdentifier(doc), types.Range(types.Position(0, 0), types.Position(0, 0)),
            types.CodeActionContext(diagnostics=[])))
        for action in actions:
            with pytest.raises(JsonRpcException, match="not trusted"):
                await client.workspace_execute_command_async(types.ExecuteCommandParams(
                    action.command.command, action.command.arguments))
        for lens in lenses:
            with pytest.raises(JsonRpcException, match="not trusted"):
                await client.workspace_execute_command_async(types.ExecuteCommandParams(
                    lens.command.command, lens.command.arguments))
        for command in ("lse.evaluate", "lse.evolve", "lse.train", "lse.showTree"):
            with pytest.raises(JsonRpcException, match="not trusted") as refused:
                await client.workspace_execute_command_async(types.ExecuteCommandParams(command, [{"uri": doc}]))
            assert refused.value.code == REQUEST_FAILED
        for method, params in (("lse/tree", {"uri": doc}), ("lse/runs", {}), ("lse/runs", {"uri": doc})):
            with pytest.raises(JsonRpcException, match="not trusted"):
                await client.protocol.send_request_async(method, params)
    cancel = await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.cancel", [{"uri": uri}]))
    assert cancel["cancelled"] is False
    # settings cannot grant trust
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"trusted": True, "settings": {"trusted": True, "evolve": {"rounds": 1}}}))
    with pytest.raises(JsonRpcException, match="not trusted"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evaluate", [{"uri": uri}]))
    await asyncio.sleep(0.3)
    assert len(stub.requests) == calls_before
    assert not (root / ".lse" / "lse.db-wal").exists() and not (other / ".lse" / "lse.db-wal").exists()
    assert server_pid is None or _children(server_pid) == []
    assert not client.run_progress


# -- the protocol ------------------------------------------------------------------------------------------------
def _ts_interfaces(source: str) -> dict[str, set[str]]:
    """Interface name -> field names (with inherited ones) of a TypeScript module."""
    found: dict[str, set[str]] = {}
    parents: dict[str, str] = {}
    for m in re.finditer(r"export interface (\w+)(?: extends (\w+))? \{(.*?)\n\}", source, re.DOTALL):
        name, parent, body = m.groups()
        body = re.sub(r"/\*.*?\*/|//[^\n]*", "", body, flags=re.DOTALL)
        found[name] = set(re.findall(r"^\s*(\w+)\??:", body, re.MULTILINE))
        if parent:
            parents[name] = parent
    for name, parent in parents.items():
        found[name] |= found.get(parent, set())
    return found


def test_protocol_ts_mirrors_protocol_py() -> None:
    """Every client-facing payload of lse_server/protocol.py has an interface of the same name and fields in
    vscode-client/src/protocol.ts, and the command and method names agree."""
    from typing import get_type_hints

    from lse_server import protocol

    ts = (Path(__file__).parents[1] / "vscode-client" / "src" / "protocol.ts").read_text()
    interfaces = _ts_interfaces(ts)
    shared = ["CommandArgs", "StartResult", "CancelResult", "TreeNode", "TreeResult", "RunSummary", "RunsResult",
              "RunProgress", "RunDone"]
    for name in shared:
        fields = set(get_type_hints(getattr(protocol, name)))
        assert interfaces.get(name) == fields, f"{name}: protocol.ts {sorted(interfaces.get(name, []))} != {sorted(fields)}"
    for value in protocol.Command.ALL:
        assert f"'{value}'" in ts, value
    for value in (protocol.Method.RUN_PROGRESS, protocol.Method.TREE, protocol.Method.RUNS):
        assert f"'{value}'" in ts, value


@pytest.mark.slow
async def test_train_command_learns_from_the_prompts_runs(client: LanguageClient, stub, tiny_model_dir: str) -> None:
    prompt = fresh_workspace("train")
    uri = open_doc(client, prompt, lang="markdown")
    await run_to_end(client, "lse.evolve", {"uri": uri})
    settings = settings_for(stub)
    settings["settings"]["evolver"] = {"backend": "transformers", "name": tiny_model_dir,
                                       "sampling": {"maxTokens": 16, "temperature": 1.0}}
    settings["settings"]["train"] = {"name": "lsp-evolver", "steps": 1, "states": 1, "samples": 2,
                                     "rolloutMaxTokens": 16, "rewardOn": "batch", "taskModel": "model"}
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))
    try:
        done = await run_to_end(client, "lse.train", {"uri": uri}, timeout=240)
    finally:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings_for(stub)))
    run_id = done["runId"]
    assert done["error"] is None and "saved" in done["message"]
    steps = [p for p in client.run_progress if p["runId"] == run_id and not p["done"] and p.get("rounds")]
    assert steps and steps[-1]["rounds"] == 1
    kinds = [type(v).__name__ for v in client.progress_reports[f"lse-{run_id}"]]
    assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
    adapter = prompt.parent / ".lse" / "evolvers" / "lsp-evolver"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "lse_meta.json").is_file()
