"""Tree search behaviour with scripted replies at the model boundary; everything else is real."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from lse_engine.evolve.recorder import load_tree
from lse_engine.evolve.tree import Node, Tree
from lse_engine.llm.base import CancelToken
from lse_engine.runner import evolve
from lse_engine.workspace import Workspace
from tests.scripted import ScriptedLLM, current_of, instructions_of, question_of


def skill_task_reply(chat) -> str:
    """Answers a `[tK]` question right iff tK is in the instructions and they are not BROKEN."""
    instr = instructions_of(chat).split()
    q = question_of(chat)
    tag, num = re.match(r"\[(t\d+)\] which row holds (\d+)\?", q).groups()
    ok = tag in instr and "BROKEN" not in instr
    return f"<answer>SELECT n FROM nums WHERE n = {num if ok else -1}</answer>"


def add_next_tag(current: str) -> str:
    have = set(current.split())
    nxt = next(f"t{i}" for i in range(100) if f"t{i}" not in have)
    return f"{current} {nxt}"


def collapsing_evolver():
    """First edit breaks everything; later edits add the next missing skill to whatever they are shown."""
    calls = {"n": 0}

    def reply(chat) -> str:
        calls["n"] += 1
        cur = current_of(chat)
        new = f"{add_next_tag(cur)} BROKEN" if calls["n"] == 1 else add_next_tag(cur)
        return f"thinking…<prompt>{new}</prompt>"

    return reply


def run(prompt: Path, evolver_reply, overrides=None, cancel=None, run_id=None):
    task = ScriptedLLM(skill_task_reply, "task")
    evo = ScriptedLLM(evolver_reply, "evolver")
    ws = Workspace(prompt, overrides, llms={"model": task, "evolver": evo})
    result = evolve(ws, run_id=run_id, cancel=cancel)
    return ws, result, task, evo


def test_ucb_backtracks_after_a_collapse_where_chain_cannot(tmp_path: Path) -> None:
    from tests.conftest import build_skill_workspace

    ucb_ws, ucb, _, _ = run(build_skill_workspace(tmp_path / "ucb"), collapsing_evolver(),
                            {"evolve": {"rule": "ucb", "rounds": 4}})
    chain_ws, chain, _, _ = run(build_skill_workspace(tmp_path / "chain"), collapsing_evolver(),
                                {"evolve": {"rule": "chain", "rounds": 4}})
    # round 1 collapses in both (child #1 scores 0 on dev)
    assert ucb.tree.nodes[1].dev_score == 0.0 and chain.tree.nodes[1].dev_score == 0.0
    # UCB goes back to the root in round 2; chain keeps extending the broken child
    assert ucb.tree.selections[1] == 0
    assert chain.tree.selections == [0, 1, 2, 3]
    assert all(chain.tree.nodes[i].dev_score == 0.0 for i in (1, 2, 3, 4))
    assert chain.winner.id == 0
    assert ucb.winner.dev_score > ucb.root_dev
    assert ucb.winner.id != 0 and "BROKEN" not in ucb.winner.instructions


def test_visits_and_ucb_order_follow_the_formula(skill_workspace: Path) -> None:
    ws, result, _, _ = run(skill_workspace, lambda chat: f"<prompt>{add_next_tag(current_of(chat))}</prompt>",
                           {"evolve": {"rule": "ucb", "rounds": 6, "c": 0.3}})
    tree = result.tree
    c = 0.3
    # replay: before round r, the nodes created in earlier rounds with their selection counts
    for r, chosen in enumerate(tree.selections, start=1):
        existing = [n for n in tree.nodes.values() if n.round < r and n.status == "ok"]
        counts = {n.id: tree.selections[: r - 1].count(n.id) for n in existing}
        n_sel = max(r - 1, 1)
        value = {n.id: n.dev_score + c * math.sqrt(math.log(n_sel) / max(1, counts[n.id])) for n in existing}
        best = max(value.values())
        expected = min(i for i, v in value.items() if v == best)
        assert chosen == expected, (r, value)
    for node in tree.nodes.values():
        assert node.visits == tree.selections.count(node.id)


def test_tree_unit_ucb_value() -> None:
    tree = Tree()
    tree.add(Node(0, None, "a", status="ok", dev_score=0.5))
    tree.add(Node(1, 0, "b", status="ok", dev_score=0.4, round=1))
    tree.record_selection(0)
    tree.record_selection(0)
    assert tree.ucb_value(tree.nodes[0], 2.0) == pytest.approx(0.5 + 2 * math.sqrt(math.log(2) / 2))
    assert tree.ucb_value(tree.nodes[1], 2.0) == pytest.approx(0.4 + 2 * math.sqrt(math.log(2) / 1))
    assert tree.select("ucb", 2.0).id == 1
    assert tree.select("best").id == 0
    assert tree.select("chain").id == 1


def test_malformed_evolver_output_is_retried_then_recorded_as_failed(skill_workspace: Path) -> None:
    replies = iter(["no tags at all", "<prompt>   </prompt>", "<prompt>" + "x" * 10_000 + "</prompt>"] * 10)
    ws, result, _, evo = run(skill_workspace, lambda chat: next(replies),
                             {"evolve": {"rounds": 2, "evolver_retries": 2}})
    failed = [n for n in result.tree.nodes.values() if n.status == "failed"]
    assert len(failed) == 2 and evo.generate_calls == 6
    assert "too long" in failed[0].error and failed[0].attempts == 3
    assert result.winner.id == 0 and result.status == "done"


def test_acceptance_gate_skips_dev_for_children_no_better(skill_workspace: Path) -> None:
    ws, result, task, _ = run(skill_workspace, lambda chat: f"<prompt>{current_of(chat)} BROKEN</prompt>",
                              {"evolve": {"rounds": 3, "acceptance_gate": True}})
    children = [n for n in result.tree.nodes.values() if n.id != 0]
    # round 1's edit is rejected on the batch; rounds 2 and 3 expand the root again and get the same edit back,
    # which is no edit at all: never scored
    assert [n.status for n in children] == ["rejected", "noop", "noop"]
    assert all(n.dev_score is None for n in children)
    assert [b["node_id"] for b in ws.store.get_batches(result.run_id) if b["split"] == "feedback" and b["node_id"]] == [1]
    dev_batches = [b for b in ws.store.get_batches(result.run_id) if b["split"] == "dev"]
    assert [b["node_id"] for b in dev_batches] == [0]


def test_budget_on_model_calls_stops_the_run(skill_workspace: Path) -> None:
    ws, result, task, evo = run(skill_workspace, lambda chat: f"<prompt>{add_next_tag(current_of(chat))}</prompt>",
                                {"evolve": {"rounds": 50, "max_model_calls": 60}})
    run_row = ws.store.get_run(result.run_id)
    assert result.status == "budget" and "budget" in result.message
    assert len(result.tree.selections) < 50
    assert run_row["task_calls"] + run_row["evolver_calls"] >= 60


def test_determinism_under_a_seed(tmp_path: Path) -> None:
    from tests.conftest import build_skill_workspace

    def evo(chat):
        return f"<prompt>{add_next_tag(current_of(chat))}</prompt>"

    trees = []
    for name in ("a", "b"):
        _, result, _, _ = run(build_skill_workspace(tmp_path / name), evo, {"evolve": {"rounds": 5, "seed": 7}})
        trees.append([(n.id, n.parent, n.instructions, n.dev_score) for n in result.tree.nodes.values()])
    assert trees[0] == trees[1]


def test_cancel_stops_promptly_and_resume_reaches_the_same_tree(tmp_path: Path) -> None:
    from tests.conftest import build_skill_workspace

    def evo(chat):
        return f"<prompt>{add_next_tag(current_of(chat))}</prompt>"

    settings = {"evolve": {"rounds": 5, "seed": 3}}
    _, full, _, _ = run(build_skill_workspace(tmp_path / "full"), evo, settings)

    prompt = build_skill_workspace(tmp_path / "cut")
    cancel = CancelToken()
    task = ScriptedLLM(skill_task_reply, "task")
    evolver = ScriptedLLM(evo, "evolver")
    evolver.on_call = lambda n: cancel.cancel() if n == 3 else None  # cancel during round 3's expansion
    ws = Workspace(prompt, settings, llms={"model": task, "evolver": evolver})
    calls_before = task.generate_calls
    cut = evolve(ws, cancel=cancel)
    assert cut.status == "cancelled"
    assert ws.store.get_run(cut.run_id)["status"] == "cancelled"
    # stopped within one model call of the cancel: the child of round 3 was recorded but not scored
    assert task.generate_calls - calls_before < 200
    committed = {(r["id"], r["instructions"]) for r in ws.store.get_nodes(cut.run_id)}
    keys_before = {r["key"] for r in ws.store.db.query("SELECT key FROM outcomes")}

    task2 = ScriptedLLM(skill_task_reply, "task")
    ws2 = Workspace(prompt, settings, llms={"model": task2, "evolver": ScriptedLLM(evo, "evolver")})
    resumed = evolve(ws2, run_id=cut.run_id)
    assert resumed.status == "done"
    assert committed <= {(r["id"], r["instructions"]) for r in ws2.store.get_nodes(cut.run_id)}
    regenerated = [c for c in task2.calls if ws2.scorer().key(instructions_of(c), _problem(ws2, c)) in keys_before]
    assert regenerated == []
    shape = lambda t: [(n.id, n.parent, n.instructions, n.dev_score, n.status) for n in t.nodes.values()]  # noqa: E731
    assert shape(resumed.tree) == shape(full.tree)
    assert shape(load_tree(ws2.store, cut.run_id)) == shape(full.tree)


def _problem(ws: Workspace, chat):
    q = question_of(chat)
    return next(p for p in ws.suite.problems if p.question == q)


def test_evolver_prefill_starts_the_reply_at_the_prompt_tag(skill_workspace: Path) -> None:
    """With evolver_prefill the evolver continues a reply begun with <prompt>; an unclosed block that ended on its
    own is the new prompt, and the stored raw output includes the prefilled tag."""
    def reply(chat) -> str:
        assert chat[-1] == {"role": "assistant", "content": "<prompt>\n"}
        return add_next_tag(current_of(chat[:-1]))  # no tags at all: the prefill supplied the opening one

    ws, result, _, evo = run(skill_workspace, reply, {"evolve": {"rounds": 2, "evolver_prefill": True}})
    children = [n for n in result.tree.nodes.values() if n.id != 0]
    assert [n.status for n in children] == ["ok", "ok"]
    assert children[0].instructions == "t0 t1" and children[0].evolver_output.startswith("<prompt>\n")
    assert all(c[-1]["role"] == "assistant" for c in evo.calls)
