"""Winners beyond noise and racing (issue 20): the statistics, and the search using them on a real SQLite suite
with scripted replies at the model boundary."""

from __future__ import annotations

from pathlib import Path

import pytest

from lse_engine.evolve.significance import behind, compare, paired_interval, problems_needed, sign_test
from lse_engine.runner import evolve
from lse_engine.workspace import Workspace
from tests.conftest import build_skill_workspace
from tests.scripted import ScriptedLLM, current_of, instructions_of, question_of
from tests.test_search import skill_task_reply


def test_the_sign_test_is_exact_and_one_sided() -> None:
    assert sign_test(5, 0) == pytest.approx(1 / 32) and sign_test(10, 0) == pytest.approx(1 / 1024)
    assert sign_test(0, 0) == 1.0 and sign_test(0, 3) == 1.0
    assert sign_test(9, 1) == pytest.approx(11 / 1024)  # P(Bin(10, 1/2) >= 9)
    v = compare([1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], alpha=0.05, comparisons=3)
    assert (v.wins, v.losses) == (5, 1) and v.p == pytest.approx(3 * 7 / 64) and not v.beats
    assert compare([1] * 8, [0] * 8, alpha=0.05).beats
    assert v.words() == "5 wins, 1 losses on dev, p = 0.328 (3 edits compared; α 0.05)"


def test_racing_stops_a_child_behind_beyond_noise_or_out_of_reach() -> None:
    assert behind([0] * 8, [1, 1, 0, 0, 0, 0, 0, 0], remaining=32, alpha=0.05) is None  # 0-2: could be noise
    assert "p = 0.0156" in (behind([0] * 24, [1, 0, 0, 0] * 6, remaining=16, alpha=0.05) or "")  # 0-6
    assert "cannot get ahead" in (behind([0] * 16, [1] * 4 + [0] * 12, remaining=4, alpha=0.05) or "")
    assert behind([1, 0] * 8, [0, 1] * 8, remaining=8, alpha=0.05) is None  # even


def test_how_many_problems_a_gain_needs() -> None:
    assert problems_needed(0.05, 0.2) == 495  # +5 points, a fifth of problems answered differently
    assert problems_needed(0.20, 0.3) == 47  # +20 points
    mean, lo, hi = paired_interval([1, 1, 1, 0, 1, 1], [0, 1, 0, 0, 1, 0])
    assert mean == pytest.approx(0.5) and lo <= mean <= hi and lo > 0


def _run(tmp_path: Path, evolver_reply, overrides: dict) -> tuple[Workspace, object]:
    prompt = build_skill_workspace(tmp_path, n_problems=80, toml="[evolve]\nbatch_size = 5\ndev_size = 40\n")
    ws = Workspace(prompt, overrides, llms={"model": ScriptedLLM(skill_task_reply, "task"),
                                            "evolver": ScriptedLLM(evolver_reply, "evolver")})
    return ws, evolve(ws)


def test_a_winner_must_beat_the_seed_beyond_noise(tmp_path: Path) -> None:
    # the edit adds t1: 10 more dev questions right, none lost: it wins
    ws, result = _run(tmp_path / "a", lambda chat: f"<prompt>{current_of(chat)} t1</prompt>", {"evolve": {"rounds": 1}})
    t1 = sum(p.question.startswith("[t1]") for p in ws.splits()["dev"][:40])
    assert result.winner.id == 1 and result.winner.dev_score == pytest.approx(result.root_dev + t1 / 40)
    summary = ws.store.get_run(result.run_id)["result"]
    assert summary["winner_reason"] == (f"#1 beats the seed beyond noise: {t1} wins, 0 losses on dev, "
                                        f"p = {sign_test(t1, 0):.3g} (α 0.05)")
    ws.close()


def test_an_edit_ahead_by_noise_keeps_the_seed_and_says_why(tmp_path: Path) -> None:
    prompt = build_skill_workspace(tmp_path, n_problems=80, toml="[evolve]\nbatch_size = 5\ndev_size = 40\n")
    dev = Workspace(prompt).splits()["dev"][:40]
    lucky = {p.question for p in dev if p.question.startswith("[t1]")}
    lucky = set(sorted(lucky)[:2])  # "lucky" answers two more dev questions right, nothing else changes

    def task(chat) -> str:
        if "lucky" in instructions_of(chat) and question_of(chat) in lucky:
            return f"<answer>SELECT n FROM nums WHERE n = {question_of(chat).split('holds ')[1].rstrip('?')}</answer>"
        return skill_task_reply(chat)

    def workspace(overrides: dict) -> Workspace:
        return Workspace(prompt, overrides, llms={"model": ScriptedLLM(task, "task"),
                                                  "evolver": ScriptedLLM(lambda c: f"<prompt>{current_of(c)} lucky</prompt>")})

    ws = workspace({"evolve": {"rounds": 1}})
    result = evolve(ws)
    edit = result.tree.nodes[1]
    assert edit.status == "ok" and edit.dev_score == pytest.approx(result.root_dev + 2 / 40)  # better on dev ...
    assert result.winner.id == 0  # ... but not beyond noise: the seed stays
    reason = ws.store.get_run(result.run_id)["result"]["winner_reason"]
    assert reason == "#1 (best on dev) does not beat the seed beyond noise: 2 wins, 0 losses on dev, p = 0.25 (α 0.05)"
    ws.close()
    ws2 = workspace({"evolve": {"rounds": 1, "winner_test": "none"}})  # the paper's report: the best dev score wins
    assert evolve(ws2).winner.id == 1
    ws2.close()


def breaking_evolver():
    """Every edit breaks the prompt (the task model answers nothing right with BROKEN in its instructions)."""
    calls = []

    def reply(chat) -> str:
        calls.append(chat)
        return f"<prompt>{current_of(chat)} BROKEN v{len(calls)}</prompt>"

    return reply


def test_a_child_far_behind_its_parent_stops_part_way_through_dev(tmp_path: Path) -> None:
    ws, result = _run(tmp_path / "ucb", breaking_evolver(), {"evolve": {"rounds": 2}})
    raced = result.tree.nodes[1]
    assert raced.status == "raced" and raced.dev_correct is not None and 8 <= len(raced.dev_correct) < 40
    assert "losses against its parent" in (raced.error or "")
    dev = next(b for b in ws.store.get_batches(result.run_id, 1) if b["split"] == "dev")
    assert dev["n"] == len(raced.dev_correct) < 40  # what was scored is recorded, no more
    assert result.tree.selections == [0, 0]  # a raced child is not expanded
    summary = ws.store.get_run(result.run_id)["result"]
    assert summary["raced"] == 2 and summary["dev_skipped"] == 80 - sum(
        len(n.dev_correct or ()) for n in result.tree.nodes.values() if n.id)
    ws.close()
    # the chain baseline follows every edit: its children are scored whole
    ws, result = _run(tmp_path / "chain", breaking_evolver(), {"evolve": {"rounds": 2, "rule": "chain"}})
    assert [n.status for n in result.tree.nodes.values()] == ["ok", "ok", "ok"]
    assert all(len(n.dev_correct or ()) == 40 for n in result.tree.nodes.values())
    ws.close()
