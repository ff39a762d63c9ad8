"""`evaluate` and the outcome cache: a second identical run makes no model calls and runs no SQL."""

from __future__ import annotations

import re
from pathlib import Path

from lse_engine.files import load_prompt
from lse_engine.runner import apply_winner, evaluate, evolve
from lse_engine.workspace import Workspace
from tests.scripted import ScriptedLLM, current_of
from tests.test_search import skill_task_reply


def _expected(ws: Workspace, split: str) -> float:
    probs = ws.splits()[split]
    return sum(re.match(r"\[(t\d+)\]", p.question).group(1) == "t0" for p in probs) / len(probs)


def test_second_identical_eval_uses_the_cache(skill_workspace: Path) -> None:
    llm = ScriptedLLM(skill_task_reply, "task")
    ws = Workspace(skill_workspace, llms={"model": llm})
    first = evaluate(ws)
    assert first.calls == 40 and first.cached == 0
    assert first.accuracy["dev"] == _expected(ws, "dev") and first.accuracy["train"] == _expected(ws, "train")
    ws.close()

    llm2 = ScriptedLLM(skill_task_reply, "task")
    ws2 = Workspace(skill_workspace, llms={"model": llm2})
    second = evaluate(ws2)
    assert llm2.generate_calls == 0 and second.calls == 0 and second.cached == 40
    assert ws2.task._gold == {}  # not even the gold queries ran
    assert second.accuracy == first.accuracy
    runs = ws2.store.list_runs()
    assert [r["kind"] for r in runs] == ["evaluate", "evaluate"] and runs[0]["root_dev"] == first.accuracy["dev"]
    # outcomes carry what feedback needs
    _, out = second.rows["dev"][0]
    assert out.completion.startswith("<answer>") and out.expected_preview


def test_changed_instructions_or_model_miss_the_cache(skill_workspace: Path) -> None:
    ws = Workspace(skill_workspace, llms={"model": ScriptedLLM(skill_task_reply, "task")})
    evaluate(ws)
    other = ScriptedLLM(skill_task_reply, "other-model")
    ws2 = Workspace(skill_workspace, llms={"model": other})
    assert evaluate(ws2).calls == 40


def test_apply_winner_writes_instructions_and_refuses_after_edit(skill_workspace: Path) -> None:
    ws = Workspace(skill_workspace, {"evolve": {"rounds": 2}}, llms={
        "model": ScriptedLLM(skill_task_reply, "task"),
        "evolver": ScriptedLLM(lambda chat: f"<prompt>{current_of(chat)} t1</prompt>", "evolver"),
    })
    result = evolve(ws)
    run = ws.store.get_run(result.run_id)
    assert result.winner.id != 0
    apply_winner(ws.prompt, run, result.winner.instructions)
    assert load_prompt(skill_workspace).instructions == result.winner.instructions
    assert skill_workspace.read_text().startswith("---\nsuite: nums.suite.yaml\n---\n")
    try:
        apply_winner(ws.prompt, run, "other")
    except Exception as exc:
        assert "changed on disk" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("apply must refuse after the file changed")
