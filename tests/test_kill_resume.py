"""kill -9 in the middle of a round (a real subprocess), then resume: nothing committed is lost or re-scored."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lse_engine.runner import evolve
from lse_engine.store import new_run_id
from lse_engine.workspace import Workspace
from tests.conftest import build_skill_workspace
from tests.scripted import ScriptedLLM, current_of, instructions_of
from tests.test_search import add_next_tag, skill_task_reply

SETTINGS = {"evolve": {"rounds": 6, "batch_size": 5, "dev_size": 20, "seed": 11}}
task_reply = skill_task_reply


def evolver_reply(chat) -> str:
    return f"<prompt>{add_next_tag(current_of(chat))}</prompt>"


def _snapshot(db: Path, run_id: str):
    conn = sqlite3.connect(db)
    nodes = conn.execute("SELECT id, parent, instructions, status, dev_score, heldout_score FROM nodes "
                         "WHERE run_id = ? ORDER BY id", [run_id]).fetchall()
    batches = conn.execute("SELECT node_id, split, round, keys FROM batches WHERE run_id = ?", [run_id]).fetchall()
    keys = {k for (k,) in conn.execute("SELECT key FROM outcomes")}
    conn.close()
    return nodes, batches, keys


@pytest.mark.slow
def test_kill_9_mid_round_then_resume(tmp_path: Path) -> None:
    prompt = build_skill_workspace(tmp_path / "ws")
    db = prompt.parent / ".lse" / "lse.db"
    run_id = new_run_id()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "kill_target.py"), str(prompt), run_id],
                            cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if not db.exists():
                continue
            try:
                conn = sqlite3.connect(db)
                done = conn.execute("SELECT COUNT(*) FROM nodes WHERE run_id = ? AND status = 'ok' AND id > 0",
                                    [run_id]).fetchone()[0]
                conn.close()
            except sqlite3.Error:
                continue
            if done >= 2:
                break
        time.sleep(0.15)  # land somewhere inside the next round
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    nodes_before, batches_before, keys_before = _snapshot(db, run_id)
    assert len(nodes_before) >= 3

    task = ScriptedLLM(task_reply, "task")
    ws = Workspace(prompt, SETTINGS, llms={"model": task, "evolver": ScriptedLLM(evolver_reply, "evolver")})
    resumed = evolve(ws, run_id=run_id)
    assert resumed.status == "done"
    nodes_after, batches_after, _ = _snapshot(db, run_id)
    # nothing committed was lost or changed
    scored_before = [n for n in nodes_before if n[3] != "pending"]
    assert all(n in nodes_after for n in scored_before)
    assert set(batches_before) <= set(batches_after)
    # nothing committed was re-generated
    problems = {p.question: p for p in ws.suite.problems}
    scorer = ws.scorer()
    regenerated = [c for c in task.calls
                   if scorer.key(instructions_of(c), problems[c[-1]["content"].split("Question: ")[1].split("\n")[0]])
                   in keys_before]
    assert regenerated == []
    # and the run ends where an uninterrupted run with the same seed and replies ends
    fresh = build_skill_workspace(tmp_path / "fresh")
    ws2 = Workspace(fresh, SETTINGS, llms={"model": ScriptedLLM(task_reply, "task"),
                                           "evolver": ScriptedLLM(evolver_reply, "evolver")})
    full = evolve(ws2)
    shape = lambda t: [(n.id, n.parent, n.instructions, n.dev_score) for n in t.nodes.values()]  # noqa: E731
    assert shape(resumed.tree) == shape(full.tree)
