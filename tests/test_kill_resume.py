"""kill -9 in the middle of a run (real subprocesses), then resume: nothing committed is lost or re-scored; one
process at a time grows a run; two runs on one workspace both finish.

The runs happen in `tests/kill_target.py`, with the scripted models below (fast, deterministic, every model
call accounted for) or the tiny random model (the real transformers backend)."""

from __future__ import annotations

import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lse_engine.runner import evolve
from lse_engine.store import new_run_id
from lse_engine.workspace import Workspace
from tests.conftest import build_skill_workspace
from tests.scripted import ScriptedLLM, current_of, instructions_of, question_of
from tests.test_search import add_next_tag, skill_task_reply

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path(__file__).parent / "kill_target.py"
SETTINGS = {"evolve": {"rounds": 6, "batch_size": 5, "dev_size": 20, "seed": 11}}
_TINY = {"backend": "transformers", "model": "tiny", "sampling": {"max_tokens": 8}}
TINY_SETTINGS = {"model": _TINY, "evolver": {**_TINY, "sampling": {"max_tokens": 24, "temperature": 0.7}},
                 "evolve": {"rounds": 16, "batch_size": 3, "dev_size": 4, "evolver_prefill": True, "seed": 3}}
task_reply = skill_task_reply


def evolver_reply(chat) -> str:
    return f"<prompt>{add_next_tag(current_of(chat))}</prompt>"


class Target:
    """`kill_target.py` in a subprocess, its stdout lines read in a thread."""

    def __init__(self, prompt: Path, run_id: str, mode: str, model: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, str(TARGET), str(prompt), run_id, mode, model], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, count: int, prefix: str = "event", timeout: float = 120) -> bool:
        """Wait until `count` lines starting with `prefix` have come; False when the process ended first."""
        deadline = time.monotonic() + timeout
        while sum(line.startswith(prefix) for line in self.seen) < count:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                return False
            self.seen.append(line)
        return True

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def finish(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout)
        self.wait_for(10**9, timeout=5)  # drain
        return rc


def _snapshot(db: Path, run_id: str) -> tuple[set, set, dict[str, float]]:
    """Committed nodes (what they are and their dev score; a train score may come later), batches, and each
    cached outcome's commit time (a re-scored outcome gets a new one)."""
    conn = sqlite3.connect(db)
    try:
        nodes = set(conn.execute("SELECT id, parent, instructions, status, dev_score FROM nodes "
                                 "WHERE run_id = ? AND status != 'pending'", [run_id]).fetchall())
        batches = set(conn.execute("SELECT node_id, split, round, keys, score FROM batches WHERE run_id = ?",
                                   [run_id]).fetchall())
        outcomes = dict(conn.execute("SELECT key, created FROM outcomes").fetchall())
    finally:
        conn.close()
    return nodes, batches, outcomes


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def _assert_kept(before: tuple[set, set, dict[str, float]], after: tuple[set, set, dict[str, float]]) -> None:
    nodes, batches, outcomes = before
    assert nodes <= after[0], "a committed node was lost or changed"
    assert batches <= after[1], "a committed batch was lost or changed"
    rescored = [k for k, created in outcomes.items() if after[2].get(k) != created]
    assert rescored == [], f"{len(rescored)} committed outcomes were scored again"


def _problem_of(ws: Workspace):
    by_question = {p.question: p for p in ws.suite.problems}
    return lambda chat: by_question[question_of(chat)]


@pytest.mark.slow
def test_kill_9_mid_round_then_resume(tmp_path: Path) -> None:
    prompt = build_skill_workspace(tmp_path / "ws")
    db = prompt.parent / ".lse" / "lse.db"
    run_id = new_run_id()
    target = Target(prompt, run_id, "new", "scripted")
    try:
        assert target.wait_for(1, "ready")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # two rounds committed, then land somewhere inside the next
            target.wait_for(len([s for s in target.seen if s.startswith("event")]) + 1)
            if db.exists() and len([n for n in _snapshot(db, run_id)[0] if n[0] > 0 and n[3] == "ok"]) >= 2:
                break
        time.sleep(0.15)
        assert target.proc.poll() is None, "the run finished before it could be killed"
    finally:
        target.kill()
    before = _snapshot(db, run_id)
    assert len(before[0]) >= 3

    task = ScriptedLLM(task_reply, "task")
    ws = Workspace(prompt, SETTINGS, llms={"model": task, "evolver": ScriptedLLM(evolver_reply, "evolver")})
    resumed = evolve(ws, run_id=run_id)
    assert resumed.status == "done"
    _assert_kept(before, _snapshot(db, run_id))
    scorer, problem_of = ws.scorer(), _problem_of(ws)
    regenerated = [c for c in task.calls if scorer.key(instructions_of(c), problem_of(c)) in before[2]]
    assert regenerated == []  # no model call for anything committed
    # and the run ends where an uninterrupted run with the same seed and replies ends
    fresh = build_skill_workspace(tmp_path / "fresh")
    ws2 = Workspace(fresh, SETTINGS, llms={"model": ScriptedLLM(task_reply, "task"),
                                           "evolver": ScriptedLLM(evolver_reply, "evolver")})
    full = evolve(ws2)
    shape = lambda t: [(n.id, n.parent, n.instructions, n.dev_score) for n in t.nodes.values()]  # noqa: E731
    assert shape(resumed.tree) == shape(full.tree)
    assert _integrity(db) == "ok"


class _Counting:
    """The tiny model, with every chat it is asked for recorded (a wrapper, not a fake: the model answers)."""

    def __init__(self, llm) -> None:
        self.llm = llm
        self.calls: list = []

    @property
    def model_id(self) -> str:
        return self.llm.model_id

    def generate(self, chats, sampling):
        self.calls.extend(chats)
        return self.llm.generate(chats, sampling)

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_kill_9_twenty_times_with_the_tiny_model_then_resume(tmp_path: Path, tiny_model_dir: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """20 kills at random points (after a random number of progress events, plus a random delay: during model
    loading, scoring, the evolver's reply, a commit), each followed by a resume in a new process."""
    prompt = build_skill_workspace(tmp_path / "ws", n_problems=16)
    db = prompt.parent / ".lse" / "lse.db"
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny-model").symlink_to(tiny_model_dir)
    env = {"LSE_CACHE_DIR": str(tmp_path / "cache")}
    run_id = new_run_id()
    rng = random.Random(20)
    before: tuple[set, set, dict[str, float]] = (set(), set(), {})
    kills = 0
    for attempt in range(40):  # until 20 kills landed: a kill after the process ended does not count
        if kills == 20:
            break
        target = Target(prompt, run_id, "new" if attempt == 0 else "resume", "tiny", env)
        try:
            target.wait_for(rng.randint(1, 10))
            time.sleep(rng.uniform(0, 0.3))
            kills += target.proc.poll() is None
        finally:
            target.kill()
        if not db.exists():
            continue
        after = _snapshot(db, run_id)
        _assert_kept(before, after)
        assert _integrity(db) == "ok"
        before = after
    assert kills == 20, f"only {kills} of {attempt + 1} kills landed while the run was working"
    assert len(before[0]) >= 3, "the run made progress across the kills"

    monkeypatch.setenv("LSE_CACHE_DIR", env["LSE_CACHE_DIR"])
    loader = Workspace(prompt, TINY_SETTINGS)
    tiny = _Counting(loader.task_llm())
    ws = Workspace(prompt, TINY_SETTINGS, llms={"model": tiny, "evolver": tiny})
    result = evolve(ws, run_id=run_id)
    assert result.status == "done" and result.rounds_done == TINY_SETTINGS["evolve"]["rounds"]
    _assert_kept(before, _snapshot(db, run_id))
    scorer, problem_of = ws.scorer(), _problem_of(ws)
    task_chats = [c for c in tiny.calls if question_of(c)]
    assert not [c for c in task_chats if scorer.key(instructions_of(c), problem_of(c)) in before[2]]
    assert _integrity(db) == "ok"
    loader.close()
    ws.close()


@pytest.mark.slow
def test_a_second_resume_of_a_running_run_is_refused_as_busy(tmp_path: Path) -> None:
    prompt = build_skill_workspace(tmp_path / "ws")
    db = prompt.parent / ".lse" / "lse.db"
    run_id = new_run_id()
    first = Target(prompt, run_id, "new", "slow")
    try:
        assert first.wait_for(3)
        second = Target(prompt, run_id, "resume", "scripted")
        assert second.finish(60) == 3
        busy = next(line for line in second.seen if line.startswith("error:"))
        assert busy == (f"error: busy: run {run_id} is being run by pid {first.proc.pid}; wait for it to finish "
                        "(or stop it) and resume it then")
        from lse_engine.cli import main

        assert main(["evolve", str(prompt), "--resume", run_id]) == 2  # the CLI says the same, before any model loads
        assert first.finish() == 0
    finally:
        first.kill()
    # the run is what an uninterrupted run is: the refused resume changed nothing
    fresh = build_skill_workspace(tmp_path / "fresh")
    ws = Workspace(fresh, SETTINGS, llms={"model": ScriptedLLM(task_reply, "task"),
                                          "evolver": ScriptedLLM(evolver_reply, "evolver")})
    full = evolve(ws)
    conn = sqlite3.connect(db)
    nodes = conn.execute("SELECT id, parent, instructions, dev_score FROM nodes WHERE run_id = ? ORDER BY id",
                         [run_id]).fetchall()
    conn.close()
    assert nodes == [(n.id, n.parent, n.instructions, n.dev_score) for n in full.tree.nodes.values()]
    assert _integrity(db) == "ok"


@pytest.mark.slow
def test_two_runs_on_one_workspace_at_once_both_finish(tmp_path: Path) -> None:
    prompt = build_skill_workspace(tmp_path / "ws")
    db = prompt.parent / ".lse" / "lse.db"
    runs = [new_run_id() + "-a", new_run_id() + "-b"]
    targets = [Target(prompt, run, "new", "scripted") for run in runs]
    try:
        assert [t.finish() for t in targets] == [0, 0]
    finally:
        for t in targets:
            t.kill()
    conn = sqlite3.connect(db)
    statuses = conn.execute("SELECT id, status FROM runs ORDER BY id").fetchall()
    conn.close()
    assert statuses == sorted((run, "done") for run in runs)
    assert _integrity(db) == "ok"
