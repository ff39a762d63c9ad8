"""The real language server over stdio (pytest-lsp): diagnostics, code actions, evolve/evaluate, cancel.

Exact checks use scripted replies from a real loopback OpenAI-compatible HTTP server (tests/openai_stub.py);
the worker process talks to it over HTTP like it would to vLLM serve or llama.cpp.
"""

from __future__ import annotations

import asyncio
import hashlib
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

from tests.conftest import build_skill_workspace
from tests.openai_stub import ScriptedOpenAIServer

WORKDIR = Path(__file__).parent / ".lsp-work"


def scripted_reply(messages: list[dict[str, Any]], request: dict[str, Any]) -> str:
    """Task model: right iff the question's tag is in the instructions. Evolver: add the next tag."""
    content = messages[-1]["content"]
    if messages[0]["content"].startswith("You improve the instructions"):
        cur = re.search(r"<current>\n(.*?)\n</current>", content, re.DOTALL).group(1)
        have = set(cur.split())
        nxt = next(f"t{i}" for i in range(100) if f"t{i}" not in have)
        return f"<prompt>{cur} {nxt}</prompt>"
    instr = content.split("Instructions:\n", 1)[-1].split()
    tag, num = re.search(r"\[(t\d+)\] which row holds (\d+)\?", content).groups()
    delay = float(request.get("metadata", {}).get("delay", 0) or 0)
    if delay:
        time.sleep(delay)
    return f"<answer>SELECT n FROM nums WHERE n = {num if tag in instr else -1}</answer>"


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


def settings_for(stub) -> dict[str, Any]:
    return {"settings": {"model": {"backend": "openai", "name": "scripted", "baseUrl": stub.base_url,
                                   "batchSize": 4, "maxConcurrency": 4},
                         "evolve": {"rounds": 2, "batchSize": 4, "devSize": 8}}}


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "lse_server", "--stdio"]))
async def client(lsp_client: LanguageClient, stub):
    lsp_client.run_progress: list[dict] = []
    lsp_client.apply_edits: list[types.ApplyWorkspaceEditParams] = []

    @lsp_client.feature("lse/runProgress")
    def on_progress(params):
        lsp_client.run_progress.append(params if isinstance(params, dict) else _todict(params))

    @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
    def on_apply(params: types.ApplyWorkspaceEditParams):
        lsp_client.apply_edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    fix_code_action_parsing(lsp_client)
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(window=types.WindowClientCapabilities(work_done_progress=True),
                                              workspace=types.WorkspaceClientCapabilities(apply_edit=True)),
        initialization_options=settings_for(stub),
    ))
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


def _todict(obj) -> dict:
    if isinstance(obj, dict):
        return obj
    return {k: getattr(obj, k) for k in dir(obj) if not k.startswith("_") and not callable(getattr(obj, k))}


def open_doc(client: LanguageClient, path: Path, text: str | None = None, lang: str = "yaml", version: int = 1) -> str:
    uri = path.resolve().as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
        uri=uri, language_id=lang, version=version, text=text if text is not None else path.read_text())))
    return uri


async def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def fresh_workspace(name: str) -> Path:
    import shutil

    root = WORKDIR / f"{name}-{time.time_ns()}"
    if root.exists():
        shutil.rmtree(root)
    return build_skill_workspace(root, n_problems=24)


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
    fixed = "\n".join(lines[:6]) + "\n"  # only the first problem
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [types.TextDocumentContentChangeWholeDocument(text=fixed)]))
    await wait_for(lambda: list(client.diagnostics.get(uri, [None])) == [], what="cleared diagnostics")


async def test_code_actions_lens_and_evaluate_end_to_end(client: LanguageClient) -> None:
    prompt = fresh_workspace("eval")
    uri = open_doc(client, prompt, lang="markdown")
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri), types.Range(types.Position(3, 0), types.Position(3, 0)),
        types.CodeActionContext(diagnostics=[])))
    titles = {a.title: a for a in actions}
    assert {"Evolve prompt", "Evaluate prompt"} <= set(titles)
    cmd = titles["Evaluate prompt"].command
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(cmd.command, cmd.arguments))
    run_id = result["runId"]
    done = await wait_for(lambda: next((p for p in client.run_progress if p["runId"] == run_id and p["done"]), None),
                          what="evaluate to finish")
    assert done["error"] is None and done["dev"] == pytest.approx(0.25) and done["train"] == pytest.approx(0.25)
    token = f"lse-{run_id}"
    kinds = [type(v).__name__ for v in client.progress_reports[token]]
    assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(types.TextDocumentIdentifier(uri)))
    assert any(lens.command.title.startswith("dev 25%") for lens in lenses)
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


async def test_evolve_end_to_end_applies_the_winner(client: LanguageClient) -> None:
    prompt = fresh_workspace("evolve")
    uri = open_doc(client, prompt, lang="markdown", version=7)
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": uri}]))
    run_id = result["runId"]
    again = None
    try:
        await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": uri}]))
    except Exception as exc:  # one run per prompt file at a time
        again = str(exc)
    assert again and "already going" in again
    done = await wait_for(lambda: next((p for p in client.run_progress if p["runId"] == run_id and p["done"]), None),
                          timeout=60, what="evolve to finish")
    assert done["error"] is None and done["winner"] not in (None, 0)
    nodes = [p for p in client.run_progress if p["runId"] == run_id and not p["done"] and p.get("node")]
    assert nodes, "lse/runProgress streamed node scores"
    edit = await wait_for(lambda: client.apply_edits, what="workspace/applyEdit")
    change = edit[0].edit.document_changes[0]
    assert change.text_document.version == 7
    new_text = change.edits[0].new_text
    assert new_text.strip() in ("t0 t1 t2", "t0 t1") and "t1" in new_text
    annotation = edit[0].edit.change_annotations[change.edits[0].annotation_id]
    assert annotation.needs_confirmation and re.match(r"LSE: dev \d+% → \d+%", annotation.label)
    assert change.edits[0].range.start.line == 3  # the instructions, not the front matter
    tree = await client.protocol.send_request_async("lse/tree", {"runId": run_id})
    tree = _todict(tree)
    assert tree["runId"] == run_id and len(tree["nodes"]) == 3 and tree["winner"] == done["winner"]


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
        start = time.monotonic()
        await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.cancel", [{"uri": uri}]))
        done = await wait_for(lambda: next((p for p in client.run_progress if p["runId"] == run_id and p["done"]), None),
                              timeout=15, what="cancelled run to end")
        elapsed = time.monotonic() - start
    finally:
        SLOW.delay = 0.0
    assert done["error"] == "cancelled" and elapsed < 8
    assert hashlib.sha256(prompt.read_bytes()).hexdigest() == before
    assert not client.apply_edits
    store = sqlite3.connect(prompt.parent / ".lse" / "lse.db")
    status = store.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()[0]
    pending = store.execute("SELECT COUNT(*) FROM nodes WHERE run_id = ? AND status = 'ok' AND dev_score IS NULL",
                            [run_id]).fetchone()[0]
    assert status == "cancelled" and pending == 0


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
    with pytest.raises(JsonRpcException):
        await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(missing),
                                                                 types.Position(0, 0)))
    with pytest.raises(JsonRpcException):
        await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": missing}]))
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(types.TextDocumentIdentifier(
        (root / "nowhere.prompt.md").as_uri())))
    assert {lens.command.title for lens in lenses} >= {"Evaluate"}
    # still alive and answering
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(prompt.as_uri()), types.Range(types.Position(0, 0), types.Position(0, 0)),
        types.CodeActionContext(diagnostics=[])))
    assert len(actions) == 2


async def test_prompt_without_suite_gets_a_diagnostic(client: LanguageClient) -> None:
    prompt = fresh_workspace("nosuite")
    lonely = prompt.parent / "lonely.prompt.md"
    uri = open_doc(client, lonely, text="Just some instructions without front matter.\n", lang="markdown")
    diags = await wait_for(lambda: client.diagnostics.get(uri), what="prompt diagnostic")
    assert diags[0].code == "missing-suite"
    other = prompt.parent / "other.prompt.md"
    uri2 = open_doc(client, other, text="---\nsuite: missing.suite.yaml\n---\nhi\n", lang="markdown")
    diags2 = await wait_for(lambda: client.diagnostics.get(uri2), what="missing suite diagnostic")
    assert diags2[0].code == "missing-suite" and diags2[0].range.start.line == 1


async def test_invalid_settings_are_reported_at_once(client: LanguageClient, stub) -> None:
    bad = settings_for(stub)
    bad["settings"]["evolve"]["roundz"] = 3
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=bad))
    msg = await wait_for(lambda: next((m for m in client.messages if "roundz" in m.message), None),
                         what="a settings warning")
    assert msg.type == types.MessageType.Warning and "unknown key" in msg.message
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings_for(stub)))


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "lse_server", "--stdio"]))
async def untrusted(lsp_client: LanguageClient):
    fix_code_action_parsing(lsp_client)
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(), initialization_options={"trusted": False}))
    yield
    await lsp_client.shutdown_session()


async def test_untrusted_workspace_runs_no_sql_and_no_model(untrusted: LanguageClient) -> None:
    prompt = fresh_workspace("untrusted")
    suite = prompt.parent / "broken.suite.yaml"
    suite.write_text(BROKEN_SUITE)
    uri = open_doc(untrusted, suite)
    diags = await wait_for(lambda: untrusted.diagnostics.get(uri), what="parse diagnostics")
    await asyncio.sleep(0.5)  # SQL checks, were they to run, would publish again by now
    assert {d.code for d in untrusted.diagnostics[uri]} == {d.code for d in diags} == {"duplicate-id"}
    line = BROKEN_SUITE.split("\n").index("    question: which row holds 1?")
    hover = await untrusted.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri),
                                                                        types.Position(line, 6)))
    assert "untrusted" in hover.contents.value and "gold result" not in hover.contents.value
    with pytest.raises(JsonRpcException, match="not trusted"):
        await untrusted.workspace_execute_command_async(
            types.ExecuteCommandParams("lse.evaluate", [{"uri": prompt.as_uri()}]))


@pytest.mark.slow
async def test_train_command_learns_from_the_prompts_runs(client: LanguageClient, stub, tiny_model_dir: str) -> None:
    prompt = fresh_workspace("train")
    uri = open_doc(client, prompt, lang="markdown")
    first = await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.evolve", [{"uri": uri}]))
    await wait_for(lambda: any(p["runId"] == first["runId"] and p["done"] for p in client.run_progress),
                   timeout=60, what="the evolve run that gives training states")
    settings = settings_for(stub)
    settings["settings"]["evolver"] = {"backend": "transformers", "name": tiny_model_dir,
                                       "sampling": {"maxTokens": 16, "temperature": 1.0}}
    settings["settings"]["train"] = {"name": "lsp-evolver", "steps": 1, "states": 1, "samples": 2,
                                     "rolloutMaxTokens": 16, "rewardOn": "batch", "taskModel": "model"}
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))
    try:
        result = await client.workspace_execute_command_async(types.ExecuteCommandParams("lse.train", [{"uri": uri}]))
        run_id = result["runId"]
        done = await wait_for(lambda: next((p for p in client.run_progress if p["runId"] == run_id and p["done"]),
                                           None), timeout=240, what="training to finish")
    finally:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings_for(stub)))
    assert done["error"] is None and "saved" in done["message"]
    steps = [p for p in client.run_progress if p["runId"] == run_id and not p["done"] and p.get("rounds")]
    assert steps and steps[-1]["rounds"] == 1
    kinds = [type(v).__name__ for v in client.progress_reports[f"lse-{run_id}"]]
    assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
    adapter = prompt.parent / ".lse" / "evolvers" / "lsp-evolver"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "lse_meta.json").is_file()
