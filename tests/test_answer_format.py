"""No instructions can push the task model out of the answer format (issue 20): asked for the answer alone its
reply begins inside `<answer>`; asked to reason first, a reply that ends without an answer gets one bounded
continuation begun at `<answer>`. Scripted replies at the model boundary; scoring against SQLite is real."""

from __future__ import annotations

from pathlib import Path

from lse_engine.llm.base import Chat, Sampling, continues_reply
from lse_engine.scoring import ANSWER_TOKENS
from lse_engine.workspace import Workspace
from tests.scripted import ScriptedLLM, question_of


def _number(chat: Chat) -> str:
    user = next(m["content"] for m in chat if m["role"] == "user")
    return user.split("which row holds ", 1)[1].split("?", 1)[0]


def test_asked_for_the_query_alone_the_reply_begins_inside_the_answer(skill_workspace: Path) -> None:
    seen: list[Chat] = []

    def reply(chat: Chat) -> str:  # a model that would chat on if it could: it continues the answer block
        seen.append(chat)
        return f"SELECT n FROM nums WHERE n = {_number(chat)}</answer>"

    task = ScriptedLLM(reply, "task")
    ws = Workspace(skill_workspace, {"task": {"show_work": False}}, llms={"model": task})
    dev = ws.splits()["dev"][:3]
    _, outs = ws.scorer().score("Let's walk through the question and the database first.", dev)
    assert all(continues_reply(c) and c[-1]["content"] == "<answer>" for c in seen)
    assert [o.correct for o in outs] == [True, True, True]
    assert outs[0].completion == f"<answer>SELECT n FROM nums WHERE n = {_number(seen[0])}</answer>"
    ws.close()


def test_an_endpoint_that_answers_a_new_turn_keeps_one_answer_tag(skill_workspace: Path) -> None:
    task = ScriptedLLM(lambda chat: f"<answer>SELECT n FROM nums WHERE n = {_number(chat)}</answer>", "task")
    ws = Workspace(skill_workspace, {"task": {"show_work": False}}, llms={"model": task})
    _, outs = ws.scorer().score("t0", ws.splits()["dev"][:2])
    assert all(o.correct and o.completion.count("<answer>") == 1 for o in outs)
    ws.close()


def test_a_reply_that_reasons_without_answering_gets_one_bounded_continuation(skill_workspace: Path) -> None:
    calls: list[tuple[Chat, Sampling]] = []

    def reply(chat: Chat, sampling: Sampling) -> str:
        calls.append((chat, sampling))
        if continues_reply(chat):  # the continuation: the reply so far, then "<answer>"
            return f"SELECT n FROM nums WHERE n = {_number(chat)}</answer>"
        if question_of(chat).startswith("[t1]"):
            return "1. **Identify the Relevant Table** The table nums holds numbers. 2. **Filter** ..."
        return f"Easy. <answer>SELECT n FROM nums WHERE n = {_number(chat)}</answer>"

    reply.takes_sampling = True  # type: ignore[attr-defined]
    task = ScriptedLLM(reply, "task")
    ws = Workspace(skill_workspace, llms={"model": task})  # show_work = true: the reference's template
    dev = [p for p in ws.splits()["dev"] if p.question.startswith(("[t0]", "[t1]"))][:6]
    _, outs = ws.scorer().score("t0", dev)
    assert all(o.correct for o in outs)
    asked = [(c, s) for c, s in calls if continues_reply(c)]
    assert len(asked) == sum(p.question.startswith("[t1]") for p in dev) > 0  # only the rows without an answer
    chat, sampling = asked[0]
    assert chat[-1]["content"].startswith("1. **Identify the Relevant Table**")
    assert chat[-1]["content"].endswith("...\n\n<answer>") and sampling.max_tokens == ANSWER_TOKENS
    wandered = next(o for p, o in zip(dev, outs, strict=True) if p.question.startswith("[t1]"))
    assert "**Filter** ...\n\n<answer>SELECT n FROM nums WHERE n = " in wandered.completion
    assert wandered.completion_tokens == 2 * 5  # both parts are counted
    ws.close()
