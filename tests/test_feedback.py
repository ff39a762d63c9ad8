"""Feedback summaries and evolver reply parsing, from real scored outcomes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lse_engine.evolve.evolver import build_chat, parse_reply
from lse_engine.evolve.feedback import summarize
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
    replies = (["<answer>SELECT COUNT(*) FROM t</answer>"] * 5 + ["<answer>SELECT nope FROM t</answer>"] * 3
               + ["<answer>SELEC 1</answer>", "nothing", "<answer>SELECT 1</answer>",
                  "<answer>WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c</answer>"])
    task.db.timeout_s = 0.2
    outs = task.score(problems, replies)
    task.close()
    return problems, outs


def test_summary_lists_failures_first_with_error_classes(tmp_path: Path) -> None:
    problems, outs = _outcomes(tmp_path)
    text = summarize(problems, outs, max_tokens=4000, successes_shown=2)
    assert text.startswith("Accuracy: 5/12 (42%).")
    assert "no such column ×3" in text and "syntax error ×1" in text and "timeout ×1" in text
    assert "no answer ×1" in text and "wrong result ×1" in text
    first_right = text.index(": RIGHT")
    assert all(text.index(f"### {p.id}: WRONG") < first_right for p, o in zip(problems, outs) if not o.correct)
    assert text.count(": RIGHT") == 2  # a sample of successes, not all of them
    assert "Gold SQL: SELECT COUNT(*) FROM t" in text and "Expected result: (20,)" in text


def test_summary_respects_its_token_budget(tmp_path: Path) -> None:
    problems, outs = _outcomes(tmp_path)
    small = summarize(problems, outs, max_tokens=150)
    assert len(small) <= 150 * 4 + 200 and "omitted to stay within the feedback budget" in small


def test_evolver_chat_and_reply_parsing() -> None:
    chat = build_chat("Old rules.", "Accuracy: 1/2", "text-to-sql")
    assert "<current>\nOld rules.\n</current>" in chat[-1]["content"] and "<prompt>" in chat[-1]["content"]
    assert parse_reply("thinking <prompt> New rules. </prompt>", 100) == ("New rules.", None)
    assert parse_reply("<prompt>a</prompt> later <prompt>b</prompt>", 100) == ("b", None)
    assert parse_reply("no tags", 100)[0] is None
    assert "empty" in parse_reply("<prompt>  </prompt>", 100)[1]
    assert "too long" in parse_reply("<prompt>" + "x" * 101 + "</prompt>", 100)[1]
    assert parse_reply("<prompt>unclosed", 100)[0] is None
    # a prefilled reply: the open block is the whole new prompt
    assert parse_reply("<prompt>\nNew rules.", 100, allow_unclosed=True) == ("New rules.", None)
    assert parse_reply("<prompt>a</prompt> <prompt>b", 100, allow_unclosed=True) == ("a", None)
    assert parse_reply("no tags", 100, allow_unclosed=True)[0] is None
