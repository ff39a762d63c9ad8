"""Feedback summaries and evolver reply parsing, from real scored outcomes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lse_engine.evolve.feedback import summarize
from lse_engine.evolve.proposers.reference import build_chat
from lse_engine.evolve.replies import parse_edit
from lse_engine.tasks.base import Problem
from lse_engine.tasks.text_to_sql import SQLiteTask


def _outcomes(tmp_path: Path):
    db = tmp_path / "f.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id INTEGER, city TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, ["Oslo", "Rome"][i % 2]) for i in range(20)])
    conn.commit()
    conn.close()
    task = SQLiteTask(db)
    problems = [Problem(f"p{i}", f"question {i}", "SELECT COUNT(*) FROM t") for i in range(12)]
    replies = (["I count rows.\n<answer>SELECT COUNT(*) FROM t</answer>"] * 5
               + ["<answer>SELECT nope FROM t</answer>"] * 3
               + ["<answer>SELEC 1</answer>", "nothing", "<answer>SELECT 1</answer>",
                  "<answer>WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c</answer>"])
    task.db.timeout_s = 0.2
    outs = task.score(problems, replies)
    task.close()
    return problems, outs


def test_summary_shows_every_problem_as_the_reference_does(tmp_path: Path) -> None:
    problems, outs = _outcomes(tmp_path)
    text = summarize(problems, outs)
    entries = text.split("\n" + "=" * 50 + "\n")
    assert len(entries) == 12  # every problem, right and wrong, in batch order
    assert entries[0].startswith("Problem 1: accuracy=1.00\nQuestion: question 0\nModel's response:\n"
                                 "SELECT COUNT(*) FROM t\nGround truth: SELECT COUNT(*) FROM t\nCorrect: True")
    assert "Model's full thinking process:\nI count rows.\n<answer>SELECT COUNT(*) FROM t</answer>" in entries[0]
    assert entries[5].startswith("Problem 6: accuracy=0.00") and "Error: no_such_column: no such column: nope" in entries[5]
    assert "Error: syntax" in entries[8] and "Error: no_answer" in entries[9] and "Model's response:\n(no answer)" in entries[9]
    assert "Error: timeout" in entries[11]
    assert "Result of the model's query: (1,) (1 rows)" in entries[10] and "Expected result: (20,) (1 rows)" in entries[10]


def test_summary_respects_its_budget_dropping_successes_first(tmp_path: Path) -> None:
    problems, outs = _outcomes(tmp_path)
    full = summarize(problems, outs)
    small = summarize(problems, outs, max_chars=len(full) // 3)
    assert len(small) <= len(full) // 3 + 400 and "left out to stay within the feedback budget" in small
    assert "Problem 6: accuracy=0.00" in small  # failures stay longest


def test_evolver_chat_and_reply_parsing() -> None:
    chat = build_chat("Old rules.", "Problem 1: accuracy=0.00\nCorrect: False", "text-to-sql",
                      agent_prompt="Task Overview: … schema …\n**Instructions**\nOld rules.")
    user = chat[-1]["content"]
    assert "<current>\nOld rules.\n</current>" in user and "<prompt>[your new instructions]</prompt>" in user
    assert "Current prompt:\nTask Overview: … schema …" in user and "over 1 problems" in user
    assert parse_edit("thinking <prompt> New rules. </prompt>", False, 100) == ("New rules.", None)
    assert parse_edit("<prompt>a</prompt> later <prompt>b</prompt>", False, 100) == ("b", None)
    assert parse_edit("no tags", False, 100)[0] is None
    assert "empty" in parse_edit("<prompt>  </prompt>", False, 100)[1]
    assert "too long" in parse_edit("<prompt>" + "x" * 101 + "</prompt>", False, 100)[1]
    assert parse_edit("<prompt>unclosed", False, 100)[0] is None
    # a prefilled reply: the open block is the whole new prompt
    assert parse_edit("<prompt>\nNew rules.", True, 100) == ("New rules.", None)
    assert parse_edit("no tags", True, 100)[0] is None


def test_parsing_bugs_from_the_fidelity_review() -> None:
    """Issue 13's examples: prose mentioning the tag, and a prefilled reply that repeats it."""
    assert parse_edit("I will write them inside the <prompt> tags.\n<prompt>\nUse LIKE for names.\n</prompt>",
                      False, 500) == ("Use LIKE for names.", None)
    assert parse_edit("<prompt>\n<prompt>\nUse LIKE for names.\n</prompt>", True, 500) == ("Use LIKE for names.", None)
    assert parse_edit("<prompt>\n<prompt>\nUse LIKE for names.", True, 500) == ("Use LIKE for names.", None)
