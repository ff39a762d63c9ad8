"""The paper's method as the reference has it: fixed templates, what the evolver sees, one tag parser, k samples,
no-op edits, several candidates, lazy models and counted progress. Scripted models at the model boundary;
SQLite, scoring, the store and the search are real."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lse_engine.errors import FileFormatError
from lse_engine.evolve.proposers.facts import FACTS_HEADER
from lse_engine.evolve.recorder import load_tree
from lse_engine.llm.base import CancelToken, Completion
from lse_engine.llm.pool import LazyLLM, ModelPool
from lse_engine.progress import ProgressEvent
from lse_engine.runner import evaluate, evolve
from lse_engine.tasks.base import Problem
from lse_engine.tasks.multiple_choice import MultipleChoiceTask, extract_letter
from lse_engine.tasks.text_to_sql import extract_sql
from lse_engine.workspace import Workspace
from tests.conftest import build_skill_workspace
from tests.scripted import ScriptedLLM, current_of
from tests.test_search import add_next_tag, skill_task_reply


# -- templates -------------------------------------------------------------------------------------------------
def test_sql_template_is_fixed_around_the_instructions(skill_workspace: Path) -> None:
    ws = Workspace(skill_workspace)
    problem = Problem("q1", "How many?", "SELECT 1", evidence="n is a number")
    for instructions in ("", "Never use tags. Answer in prose."):
        system, user = (m["content"] for m in ws.task.render(instructions, problem))
        assert system.startswith("Task Overview:\nYou are a data science expert.")
        assert 'CREATE TABLE "nums"' in system and system.endswith(f"**Instructions**\n{instructions}")
        assert user.startswith("Question:\nHow many?\nEvidence: n is a number\n\n**Instructions**\n")
        # the answer format is the template's: no edit of the instructions removes it
        assert user.endswith("Follow the instructions and show your work. When you are ready, return the final\n"
                             "SQL query in tags: <answer> ... </answer>")
    assert "CREATE TABLE" not in ws.task.agent_prompt("x", show_schema=False)
    ws.close()
    # `[task] show_work = false`: the closing line asks for the query alone; the system message and format stay
    answer_only = Workspace(skill_workspace, overrides={"task": {"show_work": False}})
    system2, user2, reply = (m["content"] for m in answer_only.task.render("Be brief.", problem))
    assert system2 == Workspace(skill_workspace).task.render("Be brief.", problem)[0]["content"]
    assert user2 == ("Question:\nHow many?\nEvidence: n is a number\n\n**Instructions**\nBe brief.\n\n"
                     "Follow the instructions. Return only the final SQL query in tags: <answer> ... </answer>")
    assert reply == "<answer>"  # the reply begins inside the answer: no instructions can talk the model out of it
    answer_only.close()
    with pytest.raises(FileFormatError, match=r"show_work must be a boolean"):
        Workspace(skill_workspace, overrides={"task": {"show_work": "no"}})


def test_multiple_choice_template_and_exact_letters() -> None:
    task = MultipleChoiceTask()
    system, user = (m["content"] for m in task.render("Think twice.", Problem("m", "Which?", "B", options=["x", "y"])))
    assert system.endswith("**Instructions**\nThink twice.")
    assert user == ("Question:\nWhich?\n\nChoices:\nA. x\nB. y\n\nFollow the instructions and show your work. "
                    "When you are ready, return the answer letter in tags: <answer> ... </answer>")
    _, user2, reply = MultipleChoiceTask(show_work=False).render("", Problem("m", "Which?", "B", options=["x", "y"]))
    assert user2["content"].endswith("\n\nFollow the instructions. Return only the answer letter in tags: "
                                     "<answer> ... </answer>")
    assert reply == {"role": "assistant", "content": "<answer>"}
    # issue 13, A3: a word is not a letter
    assert extract_letter("<answer>Cell membrane</answer>", 4) is None
    assert extract_letter("the answer is a tricky one", 4) is None
    assert extract_letter("<answer>A cell</answer>", 4) is None
    assert extract_letter("<answer>(C) Golgi</answer>", 4) == "C"
    assert extract_letter("So the answer is B.", 4) == "B"
    assert extract_letter("<answer>E</answer>", 4) is None  # out of range


def test_sql_answer_parsing_ignores_stray_tags() -> None:
    """Issue 13, A2: a stray <answer> before or after the real block."""
    assert extract_sql("I put the query in <answer> tags.\n<answer>SELECT 1</answer>") == "SELECT 1"
    assert extract_sql("<answer>SELECT 1</answer>\nThe <answer> tag above holds it.") == "SELECT 1"
    assert extract_sql("Let me think.\n<answer>\n```sql\nSELECT 2\n```\n</answer>") == "SELECT 2"
    assert extract_sql("<answer>SELECT 3 FROM t WHERE") == "SELECT 3 FROM t WHERE"  # cut by the stop string
    # the real 0.5B model ends some replies inside the closing tag; the tag's start is not SQL
    assert extract_sql("so:\n\n<answer>SELECT COUNT(DISTINCT c) FROM o</answer") == "SELECT COUNT(DISTINCT c) FROM o"
    assert extract_sql("<answer>SELECT 4 FROM t</ans") == "SELECT 4 FROM t"
    assert extract_sql("<answer>SELECT a FROM t WHERE b </c") == "SELECT a FROM t WHERE b </c"  # not the tag
    assert extract_sql("no answer") is None


# -- what the evolver sees -------------------------------------------------------------------------------------
def _run(prompt: Path, evolver_reply, overrides=None, task_reply=skill_task_reply, **kw):
    task = ScriptedLLM(task_reply, "task")
    evo = ScriptedLLM(evolver_reply, "evolver")
    ws = Workspace(prompt, overrides, llms={"model": task, "evolver": evo})
    return ws, evolve(ws, **kw), task, evo


def test_evolver_sees_schema_and_every_problem_with_full_responses(skill_workspace: Path) -> None:
    ws, result, _, evo = _run(skill_workspace, lambda chat: f"<prompt>{add_next_tag(current_of(chat))}</prompt>",
                              {"evolve": {"rounds": 1, "batch_size": 6}})
    request = evo.calls[0]
    assert [m["role"] for m in request] == ["user"]
    text = request[0]["content"]
    assert text.startswith("You are an expert at designing text-to-SQL agents.")
    assert 'CREATE TABLE "nums"' in text and "<current>\nt0\n</current>" in text
    assert "Evaluation summary over 6 problems and the agent's full thinking process:" in text
    assert len(re.findall(r"^Problem \d: accuracy=", text, re.MULTILINE)) == 6  # right and wrong alike
    assert text.count("Model's full thinking process:\n<answer>SELECT n FROM nums") == 6
    assert "knowledge about the database" in text
    child = result.tree.nodes[1]
    recorded = json.loads(child.evolver_chat)  # stored exactly as sent, with what training needs to ask it again
    assert recorded["kind"] == "reference" and recorded["chats"] == [request]
    ws.close()
    hidden, _, _, evo2 = _run(build_skill_workspace(skill_workspace.parent / "h"),
                              lambda chat: f"<prompt>{add_next_tag(current_of(chat))}</prompt>",
                              {"evolve": {"rounds": 1, "show_schema": False}})
    assert "CREATE TABLE" not in evo2.calls[0][0]["content"]
    hidden.close()


def test_noop_edits_are_retried_recorded_and_never_scored(skill_workspace: Path) -> None:
    replies = iter(["<prompt>t0</prompt>", "<prompt>  t0\n</prompt>", "nothing here", "<prompt>t0 t1</prompt>"])
    ws, result, task, _ = _run(skill_workspace, lambda chat: next(replies),
                               {"evolve": {"rounds": 1, "evolver_retries": 3}})
    child = result.tree.nodes[1]
    assert child.instructions == "t0 t1" and child.status == "ok" and child.attempts == 4
    attempts = ws.store.get_attempts(result.run_id)
    assert [a["verdict"] for a in attempts] == ["noop", "noop", "invalid", "ok"]
    assert attempts[1]["raw"] == "<prompt>  t0\n</prompt>"
    assert result.replies == 4 and result.noop_replies == 2 and result.invalid_replies == 1
    ws.close()


def test_a_round_of_only_noops_adds_a_noop_node_and_scores_nothing(skill_workspace: Path) -> None:
    ws, result, task, _ = _run(skill_workspace, lambda chat: f"<prompt>{current_of(chat)}</prompt>",
                               {"evolve": {"rounds": 2, "evolver_retries": 1}})
    assert [n.status for n in result.tree.nodes.values()] == ["ok", "noop", "noop"]
    assert result.edits == 0 and result.noop_replies == 4 and result.winner.id == 0
    assert {b["node_id"] for b in ws.store.get_batches(result.run_id)} == {0}
    summary = ws.store.get_run(result.run_id)["result"]
    assert summary["edits"] == 0 and summary["noop_replies"] == 4
    ws.close()


def test_several_candidates_keep_the_best_on_the_batch(skill_workspace: Path) -> None:
    replies = iter(["<prompt>t0 BROKEN</prompt>", "<prompt>t0 t1</prompt>"])
    ws, result, _, _ = _run(skill_workspace, lambda chat: next(replies), {"evolve": {"rounds": 1, "candidates": 2}})
    assert result.tree.nodes[1].instructions == "t0 t1"
    scores = [a["batch_score"] for a in ws.store.get_attempts(result.run_id)]
    assert scores[0] == 0.0 and scores[1] > 0
    ws.close()


def test_evolver_and_task_calls_carry_stop_strings(skill_workspace: Path) -> None:
    seen = []

    class Recording(ScriptedLLM):
        def generate(self, chats, sampling):
            seen.append((self.name, sampling.stop))
            return super().generate(chats, sampling)

    ws = Workspace(skill_workspace, {"evolve": {"rounds": 1}}, llms={
        "model": Recording(skill_task_reply, "task"),
        "evolver": Recording(lambda chat: f"<prompt>{add_next_tag(current_of(chat))}</prompt>", "evolver")})
    evolve(ws)
    assert {stop for name, stop in seen if name == "task"} == {("</answer>",)}
    assert {stop for name, stop in seen if name == "evolver"} == {("</prompt>",)}
    ws.close()


# -- k samples -------------------------------------------------------------------------------------------------
def test_k_samples_per_problem_are_cached_by_sample_index(skill_workspace: Path) -> None:
    calls = {"n": 0}

    def alternating(chat) -> str:  # right on every other generation: the mean over samples is what counts
        calls["n"] += 1
        num = re.search(r"which row holds (\d+)", chat[-1]["content"]).group(1)
        return f"<answer>SELECT n FROM nums WHERE n = {num if calls['n'] % 2 else -1}</answer>"

    settings = {"model": {"sampling": {"samples": 4, "temperature": 0.7}}}
    llm = ScriptedLLM(alternating, "task")
    ws = Workspace(skill_workspace, settings, llms={"model": llm})
    report = evaluate(ws, ("dev",))
    assert report.calls == 20 * 4 and len(report.rows["dev"]) == 80
    assert report.accuracy["dev"] == 0.5
    batch = ws.store.get_batches(report.run_id)[0]
    assert len(set(batch["keys"])) == 80 and batch["problem_ids"][:4] == [batch["problem_ids"][0]] * 4
    ws.close()
    again = Workspace(skill_workspace, settings, llms={"model": ScriptedLLM(alternating, "task")})
    assert evaluate(again, ("dev",)).calls == 0  # every sample cached
    again.close()


# -- models load only when needed --------------------------------------------------------------------------------
def test_a_fully_cached_eval_loads_no_model(skill_workspace: Path) -> None:
    builds = []

    def factory(mc):
        builds.append(mc.model)
        return ScriptedLLM(skill_task_reply, "task")

    settings = {"model": {"backend": "transformers", "model": "some-model"}}
    pool = ModelPool(skill_workspace.parent, factory)
    ws = Workspace(skill_workspace, settings, models=pool)
    assert evaluate(ws).calls == 40 and builds == ["some-model"]
    ws.close()
    pool.close()
    pool2 = ModelPool(skill_workspace.parent, factory)
    ws2 = Workspace(skill_workspace, settings, models=pool2)
    assert evaluate(ws2).calls == 0 and builds == ["some-model"]  # the cache answered: nothing loaded
    llm = ws2.task_llm()
    assert isinstance(llm, LazyLLM) and not llm.loaded
    ws2.close()
    pool2.close()


def test_task_model_and_evolver_share_weights_once(skill_workspace: Path) -> None:
    pool = ModelPool(skill_workspace.parent, lambda mc: ScriptedLLM(skill_task_reply, mc.model))
    ws = Workspace(skill_workspace, {"model": {"backend": "transformers", "model": "m"}}, models=pool)
    assert ws.task_llm() is ws.evolver_llm()  # the evolver follows [model] unless it names its own weights
    other = Workspace(skill_workspace, {"model": {"backend": "transformers", "model": "m"},
                                        "evolver": {"model": "e"}}, models=pool)
    assert other.evolver_llm() is not other.task_llm()
    ws.close()
    other.close()


# -- progress and cancellation -----------------------------------------------------------------------------------
def test_eval_reports_counts_and_a_cancelled_eval_reports_what_it_did(skill_workspace: Path) -> None:
    events: list[ProgressEvent] = []
    cancel = CancelToken()
    llm = ScriptedLLM(skill_task_reply, "task")
    llm.on_call = lambda n: cancel.cancel() if n == 3 else None
    ws = Workspace(skill_workspace, {"model": {"batch_size": 5}}, llms={"model": llm})
    report = evaluate(ws, cancel=cancel, progress=events.append)
    counted = [e for e in events if e.step_total]
    assert counted[0].step == "scoring train" and counted[0].step_total == 20
    assert [e.step_done for e in counted if e.step_done] == [5, 10, 15]
    assert all(e.eta_s is not None for e in counted if e.step_done)
    assert report.status == "cancelled" and report.calls == 15
    run = ws.store.get_run(report.run_id)
    assert run["status"] == "cancelled" and "15 model calls" in run["message"]
    ws.close()


def test_evolve_reports_test_split_scores_when_the_suite_has_one(tmp_path: Path) -> None:
    prompt = build_skill_workspace(tmp_path / "ws")
    suite = prompt.parent / "nums.suite.yaml"
    suite.write_text(suite.read_text().replace("split:\n  dev: 0.5\n  seed: 0", "split:\n  dev: 0.4\n  test: 0.3\n  seed: 0"))
    ws, result, _, _ = _run(prompt, lambda chat: f"<prompt>{add_next_tag(current_of(chat))}</prompt>",
                            {"evolve": {"rounds": 3}})
    test = ws.splits()["test"]
    assert len(test) == 12 and result.root_test is not None and result.winner_test is not None
    assert result.winner_test > result.root_test
    assert ws.store.get_run(result.run_id)["result"]["winner_test"] == result.winner_test
    searched = {pid for b in ws.store.get_batches(result.run_id) for pid in b["problem_ids"]}
    assert {p.id for p in test}.isdisjoint(searched)  # the search never saw the test split
    assert load_tree(ws.store, result.run_id).winner().id == result.winner.id
    ws.close()


@pytest.mark.parametrize("prefill", [False, True])
def test_a_reply_stopped_at_the_closing_tag_parses(skill_workspace: Path, prefill: bool) -> None:
    """Backends cut the reply before the stop string `</prompt>`; the search reads it as closed."""

    class StopsAtTag(ScriptedLLM):
        def generate(self, chats, sampling):
            outs = super().generate(chats, sampling)
            return [Completion(o.text.split("</prompt>")[0], 10, 5, "stop") for o in outs]

    reply = (lambda chat: "t0 t1\n</prompt>") if prefill else (lambda chat: "thinking…<prompt>t0 t1</prompt>")
    ws = Workspace(skill_workspace, {"evolve": {"rounds": 1, "evolver_prefill": prefill}},
                   llms={"model": ScriptedLLM(skill_task_reply, "task"), "evolver": StopsAtTag(reply, "evolver")})
    result = evolve(ws)
    assert result.tree.nodes[1].instructions == "t0 t1" and result.tree.nodes[1].status == "ok"
    ws.close()


def test_the_paper_preset_in_lse_toml_with_the_files_own_settings_on_top(tmp_path: Path) -> None:
    from lse_engine.config import load_config
    from lse_engine.errors import FileFormatError

    (tmp_path / "lse.toml").write_text('preset = "paper"\n[evolve]\nrounds = 7\n')
    cfg = load_config(tmp_path)
    assert cfg.evolve.rounds == 7 and cfg.evolve.batch_size == 10 and cfg.evolve.dev_size == 50
    assert (cfg.model.sampling.samples, cfg.model.sampling.temperature, cfg.model.sampling.max_tokens) == (8, 0.7, 4096)
    assert cfg.sql.timeout_s == 30.0 and cfg.train.reward_on == "holdout"
    (tmp_path / "lse.toml").write_text('preset = "papr"\n[evolve]\nrounds = 2\n')
    with pytest.raises(FileFormatError, match="preset must be one of 'paper'"):
        load_config(tmp_path)


# -- small evolvers --------------------------------------------------------------------------------------------
def test_compact_request_lists_mistakes_and_prefills_the_current_instructions(skill_workspace: Path) -> None:
    ws, result, _, evo = _run(skill_workspace, lambda chat: "t1\n</prompt>",
                              {"evolve": {"rounds": 1, "batch_size": 6, "request": "compact", "evolver_prefill": True}})
    request, prefill = evo.calls[0]
    assert prefill == {"role": "assistant", "content": "<prompt>\nt0\n- "}
    text = request["content"]
    assert "CREATE TABLE" not in text and "full thinking process" not in text
    wrong = [o for o in ws.store.get_outcomes(ws.store.get_batches(result.run_id)[1]["keys"]).values() if not o.correct]
    assert text.count("   Correct query: SELECT n FROM nums WHERE n = ") == len(wrong) > 0
    assert result.tree.nodes[1].instructions == "t0\n- t1"  # the reply continued the list
    ws.close()


def test_replies_that_copy_the_request_or_run_out_of_tokens_are_not_edits() -> None:
    from lse_engine.evolve.replies import parse_edit

    schema = 'CREATE TABLE "orders" (\n  "order_id" INTEGER, -- examples: 42, 59\n  "status_code" TEXT, -- ' \
             "examples: 'S', 'D'\n  PRIMARY KEY (\"order_id\")\n);"
    request = f"Current prompt:\nTask Overview: …\n{schema}\n<current>\nOld rule.\n</current>"
    echo = f"<prompt>\nTask Overview: …\n{schema}\n</prompt>"
    assert "copies the request" in parse_edit(echo, True, 8000, request=request, current="Old rule.")[1]
    kept = "<prompt>\nOld rule.\n- status_code 'C' means cancelled\n</prompt>"
    assert parse_edit(kept, True, 8000, request=request, current="Old rule.")[0].endswith("cancelled")
    cut = "<prompt>\n- money is stored in cents\n- status codes are"
    assert "token limit" in parse_edit(cut, True, 8000, hit_limit=True)[1]
    assert parse_edit(cut, True, 8000)[0].startswith("- money")  # ended by the model itself: accepted


def test_quoting_one_query_as_an_example_is_not_copying() -> None:
    from lse_engine.evolve.replies import copies

    gold = "SELECT SUM(i.quantity * i.unit_price_cents) / 100.0 FROM order_items i JOIN orders o ON o.order_id = i.order_id"
    request = f"Mistakes:\n1. Question: revenue?\n   Correct query: {gold}\n"
    rules = ("Prices and fees are stored in integer cents: divide by 100 for dollars.\nStatus codes: P pending, "
             "S shipped, D delivered, C cancelled, R returned.\nDays are integers yyyymmdd.\n"
             f"Example: {gold}\n")
    assert not copies(rules, request, "Old rule.")
    assert copies(f"{gold} {gold}", request + gold, "Old rule.")


def _coded_workspace(root: Path) -> Path:
    """Orders with a coded status and a region in capitals; questions that need one code or one region each."""
    import sqlite3

    import yaml

    root.mkdir(parents=True)
    conn = sqlite3.connect(root / "shop.sqlite")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status_code TEXT, region TEXT, fee_cents INTEGER)")
    rows = [(i, "DCP"[i % 3], ["NORTH", "SOUTH"][i % 2], 100 * i) for i in range(1, 31)]
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    asks = [("delivered", "status_code = 'D'"), ("cancelled", "status_code = 'C'"), ("pending", "status_code = 'P'"),
            ("in the north", "region = 'NORTH'"), ("in the south", "region = 'SOUTH'")]
    problems = [{"id": f"q{i}", "question": f"Which orders are {what} (#{i})?",
                 "gold": f"SELECT id FROM orders WHERE {where}"}
                for i, (what, where) in enumerate(asks * 4)]
    suite = {"task": "text-to-sql", "database": "shop.sqlite", "split": {"dev": 0.25, "seed": 0}, "problems": problems}
    (root / "shop.suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    (root / "shop.prompt.md").write_text("---\nsuite: shop.suite.yaml\n---\nAnswer in SQL.\n")
    return root / "shop.prompt.md"


def test_facts_request_asks_about_each_missed_column_once_showing_how_it_stores_values(tmp_path: Path) -> None:
    temperatures = []

    def fact(chat, sampling) -> str:
        temperatures.append(sampling.temperature)
        column = re.search(r"The correct query compares (\w+) with ", chat[0]["content"]).group(1)
        assert chat[-1] == {"role": "assistant", "content": f"Fact: In this database, the column {column}"}
        return {"status_code": " stores the state. 'D' is delivered, 'C' cancelled, 'P' pending.\nmore text",
                "region": " stores regions in capital letters."}[column]

    fact.takes_sampling = True  # type: ignore[attr-defined]
    prompt = _coded_workspace(tmp_path / "ws")
    ws, result, _, evo = _run(prompt, fact, {"evolve": {"rounds": 2, "batch_size": 10, "request": "facts"}},
                              task_reply=lambda chat: "<answer>SELECT id FROM orders WHERE id > 99</answer>")
    # every question of a batch is wrong, yet each column is asked about once, with every value it holds
    first = [c[0]["content"] for c in evo.calls[:2]]
    assert sorted(re.search(r"compares (\w+)", t).group(1) for t in first) == \
        ["region", "status_code"]
    status = next(t for t in first if "compares status_code" in t)
    assert "In the database, orders.status_code holds only these values: 'C', 'D', 'P'." in status
    assert "Correct query: SELECT id FROM orders WHERE status_code = " in status
    child = result.tree.nodes[1]
    assert child.instructions.splitlines()[1:] == [
        FACTS_HEADER,
        "- The column status_code stores the state. 'D' is delivered, 'C' cancelled, 'P' pending.",
        "- The column region stores regions in capital letters."] or \
        child.instructions.splitlines()[2:] == [
        "- The column region stores regions in capital letters.",
        "- The column status_code stores the state. 'D' is delivered, 'C' cancelled, 'P' pending."]
    assert temperatures[0] == 0.0  # the first candidate decodes greedily
    # round 2 starts from node 1, which describes both columns (nothing to ask, no evolver call), or from the root
    # and gets node 1's facts again, maybe in another order (a repeat, retried); either way no child is scored
    second = result.tree.nodes[2]
    assert second.status == "noop"
    assert len(evo.calls) == 2 if second.parent == 1 else {c[-1]["content"] for c in evo.calls[2:]} == \
        {c[-1]["content"] for c in evo.calls[:2]}
    attempts = ws.store.get_attempts(result.run_id)
    assert attempts[0]["verdict"] == "ok" and attempts[0]["raw"].startswith("Fact: In this database, the column ")
    ws.close()


def test_with_examples_each_wrong_answer_becomes_a_worked_example_and_a_question_sees_the_two_closest(
        tmp_path: Path) -> None:
    from lse_engine.evolve.proposers import request_from_record
    from lse_engine.llm.base import Sampling
    from lse_engine.tasks.sql_facts import NOTES_HEADER, split_facts

    prompt = _coded_workspace(tmp_path / "ws")
    ws, result, task, _ = _run(prompt, lambda chat: " stores nothing useful.",
                               {"evolve": {"rounds": 1, "batch_size": 10, "request": "facts", "examples": True}},
                               task_reply=lambda chat: "<answer>SELECT id FROM orders WHERE id > 99</answer>")
    child = result.tree.nodes[1]
    # the evolver's replies name no value (no usable fact), yet the edit holds the batch's mistakes as examples
    _, facts = split_facts(child.instructions)
    train = {p.id: p for p in ws.splits()["train"]}
    batch = json.loads(child.evolver_chat)["examples"]
    assert facts == batch and len(batch) == 10
    for fact in facts:  # each one a wrong train answer's question with its gold query, on one line
        question, gold = re.fullmatch(r'Example: "(.*)" is answered by: (.*)', fact).groups()
        assert any(p.question == question and p.gold == gold for p in train.values())
    # the record gives training the same examples back
    again = request_from_record(child.evolver_chat, "facts", Sampling())
    assert again is not None and list(again.examples) == batch
    # scoring the child on dev, each question was shown its two closest examples, and those share its words
    dev = {p.question for p in ws.splits()["dev"]}
    shown = [m["content"] for chat in task.calls for m in chat
             if m["role"] == "user" and m["content"].startswith(NOTES_HEADER)]
    assert shown and len(shown) == len(dev)
    for user in shown:
        notes, question = user.split("\n\nQuestion:", 1)
        examples = [line for line in notes.splitlines() if line.startswith("- Example:")]
        assert len(examples) == 2
        what = re.search(r"are (.*) \(#", question).group(1)  # "delivered", "in the north", ...
        same = [f"- {e}" for e in batch if f"are {what} (#" in e]  # the batch's examples of the same kind
        assert examples[:len(same)] == same[:2]
    ws.close()


def test_a_fact_about_a_coded_column_must_say_what_a_code_means(tmp_path: Path) -> None:
    from lse_engine.evolve.proposers.facts import explains_codes, fits_column
    from lse_engine.tasks.base import ColumnValues

    def fact(chat) -> str:
        column = re.search(r"The correct query compares (\w+) with ", chat[0]["content"]).group(1)
        return {"status_code": " stores the state. The values 'D', 'C' and 'P' each represent a specific state.",
                "region": " stores regions in capital letters."}[column]

    prompt = _coded_workspace(tmp_path / "ws")
    ws, result, _, _ = _run(prompt, fact, {"evolve": {"rounds": 1, "batch_size": 10, "request": "facts"}},
                            task_reply=lambda chat: "<answer>SELECT id FROM orders WHERE id > 99</answer>")
    # the status reply names the codes and no meaning (the 1.5B wrote such replies): it is not kept
    assert result.tree.nodes[1].instructions.splitlines()[1:] == [
        FACTS_HEADER, "- The column region stores regions in capital letters."]
    assert "each represent a specific state" in ws.store.get_attempts(result.run_id)[0]["raw"]  # kept as written
    ws.close()
    codes = ColumnValues("products.category_code", "listed", ("'EL'", "'BK'", "'O''B'"),
                         ("'Wireless Mouse'", "", "")).codes()
    assert codes == ["EL", "BK", "O'B"] and ColumnValues("orders.fee_cents", "numbers", ("100", "3000")).codes() == []
    for said, explains in [("The possible values are 'EL' for electronics, 'BK' for books.", True),
                           ("'BK' stands for \"Books\"", True), ("It holds books ('BK').", True),
                           ("The values 'EL', 'BK' each represent a category of product.", False),
                           ("It holds values such as 'EL' and 'BK'.", False), ("'EL' is a code.", False)]:
        assert explains_codes(said, codes) is explains, said
    assert explains_codes("Prices are in cents.", [])  # not a coded column: nothing to explain
    # which values are codes follows from the data: a value no question names ('D') needs a meaning; a value the
    # questions name ('NORTH' for "north") needs none, and a fact about such a column quotes none of them (the
    # 0.5B copied 'TOKYO' into questions about Paris)
    asked = ["How many customers live in Oslo?", "Which orders went to Tokyo or the north?"]
    regions = ColumnValues("orders.region", "listed", ("'NORTH'", "'SOUTH'"))
    assert fits_column("Regions are in capitals.", regions, asked)  # 'NORTH' is named: a word, no meaning needed
    assert not fits_column("Regions are in capitals.", regions, ["How many orders?"])  # named nowhere: codes
    for cities in (ColumnValues("customers.city", "text", ("'OSLO'", "'PARIS'", "'NEW YORK'", "'TOKYO'")),
                   ColumnValues("customers.city", "listed", ("'OSLO'", "'TOKYO'"))):
        assert not fits_column("The column city stores each customer's city, with 'TOKYO' representing Tokyo.",
                               cities, asked)
        assert fits_column("The column city stores each customer's city in capital letters.", cities, asked)
    statuses = ColumnValues("orders.status_code", "listed", ("'D'", "'C'"))
    assert fits_column("The column status_code stores the order's state: 'D' for delivered.", statuses)
    assert not fits_column("The column status_code stores the order's state.", statuses)
    assert fits_column("The column fee_cents stores fees in cents: 1000 is 10 dollars.",
                       ColumnValues("t.fee_cents", "numbers", ("100", "3000"))) and fits_column("Any fact at all.", None)


def test_a_value_compared_with_a_column_is_found_in_the_gold_query_and_the_column_described(tmp_path: Path) -> None:
    from lse_engine.tasks.sql_values import MissedValue, describe_values, missed_values
    from lse_engine.tasks.sqlite_exec import ReadOnlyDatabase

    gold = ("SELECT COUNT(*) FROM orders AS o JOIN items i ON i.order_id = o.id WHERE o.status_code = 'C' "
            "AND o.day BETWEEN 20240101 AND 20241231 AND i.price_cents < 1000")
    assert missed_values("SELECT COUNT(*) FROM orders WHERE status = 'cancelled' AND price_cents < 1000", gold) == [
        MissedValue("status_code", "orders", ("'C'",)), MissedValue("day", "orders", ("20240101", "20241231"))]
    assert missed_values(gold, gold) == []  # nothing missed
    assert missed_values("SELECT 1", "not sql at all (") == []
    prompt = _coded_workspace(tmp_path / "ws")
    db = ReadOnlyDatabase(prompt.parent / "shop.sqlite")
    before = (prompt.parent / "shop.sqlite").read_bytes()
    assert describe_values(db, "orders", "status_code") == "orders.status_code holds only these values: 'C', 'D', 'P'"
    assert describe_values(db, None, "region") == "orders.region holds only these values: 'NORTH', 'SOUTH'"
    assert describe_values(db, "orders", "fee_cents") == "orders.fee_cents holds numbers from 100 to 3000"
    assert describe_values(db, "orders", "no_such_column") is None
    assert describe_values(db, None, "nowhere") is None
    db.close()
    assert (prompt.parent / "shop.sqlite").read_bytes() == before  # read-only
    # a table that names its rows gives each code one row's name, so the evolver can tell what the code stands for
    from lse_examples.shop import build_db  # the demo's database is built, not committed: build a fresh copy

    shop = ReadOnlyDatabase(build_db.build(tmp_path / "demo" / "shop.sqlite"))
    assert describe_values(shop, "products", "category_code") == (
        "products.category_code holds only these values: 'EL' (e.g. 'Wireless Mouse'), 'BK' (e.g. 'The Art of SQL'), "
        "'CL' (e.g. 'Rain Jacket'), 'HK' (e.g. 'Chef Knife'), 'SP' (e.g. 'Yoga Mat'), 'TY' (e.g. 'Wooden Train Set'), "
        "'BT' (e.g. 'Face Cream')")
    assert describe_values(shop, "customers", "loyalty") == "customers.loyalty holds only these values: 'N', 'Y'"
    shop.close()


def test_a_fact_must_name_a_value_and_is_cut_to_its_sentence() -> None:
    from lse_engine.evolve.proposers.facts import parse_fact, with_facts

    # replies the 1.5B evolver gave on the demo's mistakes
    assert parse_fact(" The correct query knows that city names are stored in capitals, e.g. 'OSLO'.") == \
        "City names are stored in capitals, e.g. 'OSLO'."
    assert parse_fact("The database stores shipping fees in cents, not dollars. An example value is 100 cents.") == \
        "The database stores shipping fees in cents, not dollars."
    assert parse_fact('The database stores customer information in the "customers" table and order information '
                      'in the "orders" table.') is None  # restates the schema: no value
    assert parse_fact("SQLite stores data in a table format, with each row representing a record.") is None
    # SQL's own words are not values; the prefill's lead-in is dropped (the block's header says it)
    assert parse_fact("In this database, use WHERE clause to filter data based on specific conditions.") is None
    assert parse_fact("In this database, use BETWEEN for date ranges, not = for single dates.") is None
    assert parse_fact("In this database, 'GB' is the correct country code for the United Kingdom.") == \
        "'GB' is the correct country code for the United Kingdom."
    assert parse_fact("") is None
    # the column request's replies: the column's sentence is kept with the values that follow it; a sentence about
    # the one mistake is not a fact
    assert parse_fact("In this database, the column status_code stores the status of each order. The possible "
                      "values are 'D' for 'Delivered', 'C' for 'Cancelled'.") == \
        "The column status_code stores the status of each order. The possible values are 'D' for 'Delivered', 'C' " \
        "for 'Cancelled'."
    assert parse_fact("In this database, the column price_cents stores prices in cents. The correct query uses "
                      "price_cents > 20000 to select products.") == "The column price_cents stores prices in cents."
    # one fact per column, however the column is quoted
    assert parse_fact("In this database, the column `price_cents` stores the price in cents.") == \
        "The column price_cents stores the price in cents."
    assert with_facts("Rule A.", ["The column price_cents stores prices in cents.",
                                  "The column price_cents stores the price of products in cents.",
                                  "The column fee_cents stores fees in cents."]) == \
        f"Rule A.\n{FACTS_HEADER}\n- The column price_cents stores prices in cents.\n" \
        "- The column fee_cents stores fees in cents."
    first = with_facts("Rule A.", ["Codes: 'HK' is home."])
    assert first == f"Rule A.\n{FACTS_HEADER}\n- Codes: 'HK' is home."
    merged = with_facts(first, ["Codes: 'HK' is home.", "Fees are in cents.", "fees are in  cents.",
                                "Codes: \"HK\" is home.", "Codes: `HK` is home."])
    assert merged == f"Rule A.\n{FACTS_HEADER}\n- Codes: 'HK' is home.\n- Fees are in cents."
