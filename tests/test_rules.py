"""The `pareto` (GEPA) and `textgrad` (TextGrad-style) rules: exact selection order with scripted models."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from lse_engine.evolve import prompts
from lse_engine.evolve.proposers import textgrad as evolver_prompt
from lse_engine.evolve.recorder import load_tree
from lse_engine.evolve.tree import RULES, Node, Tree
from lse_engine.llm.base import CancelToken
from lse_engine.runner import evolve
from lse_engine.workspace import Workspace
from tests.conftest import build_skill_workspace
from tests.scripted import ScriptedLLM, current_of
from tests.test_search import add_next_tag, skill_task_reply


def _tree(vectors: dict[int, str]) -> Tree:
    tree = Tree()
    for nid, bits in vectors.items():
        correct = tuple(b == "1" for b in bits)
        tree.add(Node(nid, None if nid == 0 else 0, f"p{nid}", round=nid, status="ok",
                      dev_score=sum(correct) / len(correct), dev_correct=correct))
    return tree


def test_rules_are_registered() -> None:
    assert {"ucb", "best", "chain", "pareto", "textgrad"} <= set(RULES)
    with pytest.raises(ValueError, match="unknown selection rule"):
        _tree({0: "1"}).select("nope")


def test_pareto_fronts_survivors_and_weights() -> None:
    # problems:  p0 p1 p2 p3 p4     (nobody solves p3: every node is on its front)
    tree = _tree({0: "10001", 1: "11000", 2: "00100", 3: "10000"})
    assert tree.pareto_fronts() == [{0, 1, 3}, {1}, {2}, {0, 1, 2, 3}, {0}]
    # node 3 is on fronts p0 and p3 only, both shared with others: dominated, dropped
    assert tree.pareto_weights() == {0: 3, 1: 3, 2: 2}
    # identical outcomes: one of the twins is dominated by the other (the newer goes; ties keep the older)
    twins = _tree({0: "10", 1: "10", 2: "01"})
    assert twins.pareto_weights() == {0: 1, 2: 1}


def test_pareto_draw_is_seeded_by_seed_and_round_and_proportional_to_wins() -> None:
    tree = _tree({0: "10001", 1: "11000", 2: "00100", 3: "10000"})
    counts: Counter[int] = Counter()
    for r in range(1, 2001):
        tree.selections = [0] * (r - 1)  # round r
        got = tree.select("pareto", seed=5).id
        expected = random.Random(f"5:{r}:pareto").choices([0, 1, 2], weights=[3, 3, 2], k=1)[0]
        assert got == expected
        counts[got] += 1
    assert 3 not in counts  # never a dominated node
    assert counts[0] / 2000 == pytest.approx(3 / 8, abs=0.04)
    assert counts[1] / 2000 == pytest.approx(3 / 8, abs=0.04)
    assert counts[2] / 2000 == pytest.approx(2 / 8, abs=0.04)


def test_pareto_without_outcomes_falls_back_to_best() -> None:
    tree = Tree()
    tree.add(Node(0, None, "a", status="ok", dev_score=0.2))
    tree.add(Node(1, 0, "b", status="ok", dev_score=0.6, round=1))
    assert tree.select("pareto").id == 1


def specialising_evolver(chat) -> str:
    """Specialises or generalises by the parent's size: a single tag becomes two (t_k and the next), two tags
    become the second alone. Every node solves its own tags' problems, so several nodes sit on fronts."""
    cur = current_of(chat).split()
    tags = [int(t[1:]) for t in cur if t.startswith("t")]
    if len(tags) == 1:
        return f"<prompt>t{tags[0]} t{(tags[0] + 1) % 4}</prompt>"
    return f"<prompt>t{tags[-1]}</prompt>"


def _run(prompt: Path, evolver_reply, settings, cancel=None, run_id=None, evo_hook=None):
    task = ScriptedLLM(skill_task_reply, "task")
    evo = ScriptedLLM(evolver_reply, "evolver")
    evo.on_call = evo_hook
    ws = Workspace(prompt, settings, llms={"model": task, "evolver": evo})
    return ws, evolve(ws, run_id=run_id, cancel=cancel), evo


def test_pareto_search_selects_exactly_as_gepa_replayed(tmp_path: Path) -> None:
    settings = {"evolve": {"rule": "pareto", "rounds": 8, "seed": 11}}
    ws, result, _ = _run(build_skill_workspace(tmp_path / "ws"), specialising_evolver, settings)
    tree = load_tree(ws.store, result.run_id, outcomes=True)
    scored = [n for n in tree.nodes.values() if n.status == "ok"]
    assert all(n.dev_correct is not None and len(n.dev_correct) == 20 for n in scored)
    # GEPA's acceptance rule: a child reaches dev only if it strictly beats its parent on the same minibatch
    fb = {(b["node_id"], b["round"]): b["score"] for b in ws.store.get_batches(result.run_id) if b["split"] == "feedback"}
    children = [n for n in tree.nodes.values() if n.id and n.status in ("ok", "rejected")]
    assert {n.status for n in children} == {"ok", "rejected"}
    for n in children:
        assert (fb[(n.id, n.round)] > fb[(n.parent, n.round)]) == (n.status == "ok")
    assert tree.nodes[0].dev_correct == tuple(result.tree.nodes[0].dev_correct or ())
    survivors_seen = set()
    for r, chosen in enumerate(tree.selections, start=1):
        before = Tree()
        for n in tree.nodes.values():
            if n.round < r:
                before.add(Node(n.id, n.parent, n.instructions, n.round, n.status, n.dev_score,
                                dev_correct=n.dev_correct))
        before.selections = list(tree.selections[: r - 1])
        weights = before.pareto_weights()
        assert chosen in weights, (r, weights)
        ids = list(weights)
        expected = random.Random(f"11:{r}:pareto").choices(ids, weights=[weights[i] for i in ids], k=1)[0]
        assert chosen == expected
        survivors_seen |= set(weights)
    assert len(survivors_seen) >= 2


def test_pareto_run_resumes_to_the_same_tree(tmp_path: Path) -> None:
    settings = {"evolve": {"rule": "pareto", "rounds": 6, "seed": 4}}
    _, full, _ = _run(build_skill_workspace(tmp_path / "full"), specialising_evolver, settings)
    prompt = build_skill_workspace(tmp_path / "cut")
    cancel = CancelToken()
    _, cut, _ = _run(prompt, specialising_evolver, settings, cancel=cancel,
                     evo_hook=lambda n: cancel.cancel() if n == 4 else None)
    assert cut.status == "cancelled"
    _, resumed, _ = _run(prompt, specialising_evolver, settings, run_id=cut.run_id)
    shape = lambda t: [(n.id, n.parent, n.instructions, n.dev_score) for n in t.nodes.values()]  # noqa: E731
    assert resumed.tree.selections == full.tree.selections
    assert shape(resumed.tree) == shape(full.tree)


def test_textgrad_kept_chain_unit() -> None:
    tree = Tree()
    tree.add(Node(0, None, "a", status="ok", dev_score=0.5))
    tree.add(Node(1, 0, "b", round=1, status="ok", dev_score=0.6))
    tree.add(Node(2, 1, "c", round=2, status="ok", dev_score=0.1))  # dropped: reverted
    tree.add(Node(3, 1, "d", round=3, status="failed"))  # no usable edit
    assert [tree.kept(n) for n in tree.nodes.values()] == [True, True, False, False]
    assert tree.select("textgrad").id == 1
    tree.add(Node(4, 1, "e", round=4, status="ok", dev_score=0.6))  # equal: kept (no drop)
    assert tree.select("textgrad").id == 4


def textgrad_evolver():
    """Critiques name the failed problem; edits: +tag, BROKEN (a drop), +tag, a no-op word (no drop), +tag."""
    edits = {"n": 0}
    plan = ["tag", "broken", "tag", "same", "tag", "tag"]

    def reply(chat) -> str:
        system = chat[0]["content"]
        if system == prompts.CRITIC_SYSTEM:
            pid = "q" + re.search(r"^Question: \[t\d+\] which row holds (\d+)\?", chat[-1]["content"],
                                  re.MULTILINE).group(1)
            return f"thinking… <critique>{pid} needs its tag</critique>"
        assert system == prompts.OPTIMIZER_SYSTEM
        step = plan[edits["n"]]
        edits["n"] += 1
        cur = current_of(chat)
        new = {"tag": add_next_tag(cur), "broken": f"{cur} BROKEN", "same": f"{cur} please"}[step]
        return f"<prompt>{new}</prompt>"

    return reply


def test_textgrad_critiques_each_failure_then_edits_once_and_reverts_on_a_drop(tmp_path: Path) -> None:
    settings = {"evolve": {"rule": "textgrad", "rounds": 6, "seed": 2}}
    ws, result, evo = _run(build_skill_workspace(tmp_path / "ws"), textgrad_evolver(), settings)
    tree = result.tree
    dev = {n.id: n.dev_score for n in tree.nodes.values()}
    assert dev[1] > dev[0]  # +t1
    assert dev[2] == 0.0  # BROKEN: a drop
    assert dev[3] > dev[1]  # round 3 reverted to node 1, then +t2
    assert dev[4] == dev[3]  # a no-op edit: no drop, kept
    assert tree.selections == [0, 1, 1, 3, 4, 5]
    assert [tree.nodes[i].parent for i in (1, 2, 3, 4, 5, 6)] == [0, 1, 1, 3, 4, 5]
    # per round: one critique chat per failure of the feedback batch (one batched call), then one edit
    run = ws.store.get_run(result.run_id)
    batches = {(b["node_id"], b["round"], b["split"]): b for b in ws.store.get_batches(result.run_id)}
    critic_chats = [c for c in evo.calls if c[0]["content"] == prompts.CRITIC_SYSTEM]
    edit_chats = [c for c in evo.calls if c[0]["content"] == prompts.OPTIMIZER_SYSTEM]
    assert len(edit_chats) == 6
    for r, parent in enumerate(tree.selections, start=1):
        fb = batches[(parent, r, "feedback")]
        child = next(n for n in tree.nodes.values() if n.round == r and n.id != 0)
        failures = fb["n"] - fb["correct"]
        assert child.attempts == failures + 1
        assert child.feedback.count("needs its tag") == failures
        assert f"{failures} failures" in child.feedback or failures == 0
    assert len(critic_chats) == sum(tree.nodes[i].attempts - 1 for i in range(1, 7))
    assert run["evolver_calls"] == sum(n.attempts for n in tree.nodes.values() if n.id)
    # the edit sees the aggregated critiques, not the raw feedback
    assert "needs its tag" in edit_chats[0][-1]["content"] and "Ground truth" not in edit_chats[0][-1]["content"]
    assert result.winner.id in (3, 4, 5, 6) and "BROKEN" not in result.winner.instructions


def test_critique_parsing_and_aggregation() -> None:
    assert evolver_prompt.parse_critique("x <critique> say\n  more </critique>") == "say more"
    assert evolver_prompt.parse_critique("plain words") == "plain words"
    assert len(evolver_prompt.parse_critique("w " * 1000)) <= evolver_prompt.CRITIQUE_CHARS
    text = evolver_prompt.aggregate_critiques([("q1", "use joins"), ("q2", "")], 5)
    assert "Accuracy: 3/5" in text and "1. [q1] use joins" in text and "[q2]" not in text
    assert "No critiques" in evolver_prompt.aggregate_critiques([], 4)
