"""The whole loop from the command line with a real (tiny, random) transformers model on CPU: `lse demo --tiny`,
`lse evolve` under a seed and a budget, `lse runs`, `lse tree` (text and image), `--resume` and `--apply`.

Scores are noise with a random model; these tests assert structure, persistence, budgets and determinism.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from lse_engine import cli
from lse_engine.cli import main
from tests.conftest import build_skill_workspace


@pytest.fixture()
def tiny_cache(tmp_path: Path, tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--tiny` finds the session's tiny model instead of building one."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny-model").symlink_to(tiny_model_dir)
    monkeypatch.setenv("LSE_CACHE_DIR", str(tmp_path / "cache"))


def _rows(db: Path, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_demo_tiny_runs_evolve_and_test_then_runs_and_tree(tmp_path: Path, tiny_cache: None,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    demo = tmp_path / "demo"
    monkeypatch.setattr(cli.console, "width", 160)  # a wide terminal: one row per run, no wrapped lines
    assert main(["demo", "--tiny", "--dir", str(demo), "--rounds", "2"]) == 0
    shown = capsys.readouterr().out
    assert "seed prompt vs the evolved winner" in shown and "test (18 questions the search never saw)" in shown
    assert "2 rounds" in shown and "wall time" in shown
    db = demo / ".lse" / "lse.db"
    runs = _rows(db, "SELECT id, kind, status, task_calls, evolver_calls FROM runs ORDER BY created")
    assert [(r[1], r[2]) for r in runs] == [("evolve", "done")]
    evolve_id = runs[0][0]
    assert runs[0][3] >= 15 + 18  # the seed on dev and on test at least
    assert runs[0][4] >= 2  # at least one evolver call per round
    nodes = _rows(db, "SELECT id, parent, status FROM nodes WHERE run_id = ? ORDER BY id", evolve_id)
    assert [n[0] for n in nodes] == [0, 1, 2] and all(n[1] is not None for n in nodes[1:])
    assert len(_rows(db, "SELECT * FROM selections WHERE run_id = ?", evolve_id)) == 2
    assert (demo / "shop.sqlite").is_file() and (demo / "shop.prompt.md").is_file()
    assert main(["runs", "--workspace", str(demo)]) == 0
    listing = capsys.readouterr().out
    assert evolve_id in listing and listing.count("done") == 1
    image = tmp_path / "tree.png"
    assert main(["tree", evolve_id, "--workspace", str(demo), "--image", str(image)]) == 0
    out = capsys.readouterr().out
    assert "#0" in out and "#2" in out and "★ winner" in out
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _evolve(prompt: Path, *extra: str) -> str:
    """Run `lse evolve` with the tiny model; returns the run id."""
    assert main(["evolve", str(prompt), "--tiny", "--seed", "5", *extra]) in (0, 130)
    db = prompt.parent / ".lse" / "lse.db"
    return _rows(db, "SELECT id FROM runs WHERE kind = 'evolve' ORDER BY created DESC LIMIT 1")[0][0]


def _tree(prompt: Path, run_id: str) -> list[tuple]:
    return _rows(prompt.parent / ".lse" / "lse.db",
                 "SELECT id, parent, status, instructions, dev_score FROM nodes WHERE run_id = ? ORDER BY id", run_id)


@pytest.mark.slow
def test_evolve_is_deterministic_under_a_seed_and_stops_at_its_budget(tmp_path: Path, tiny_cache: None) -> None:
    a = build_skill_workspace(tmp_path / "a", n_problems=16)
    b_dir = tmp_path / "b"
    shutil.copytree(a.parent, b_dir)
    b = b_dir / a.name
    tree_a = _tree(a, _evolve(a, "--rounds", "3", "--batch-size", "3", "--dev-size", "4"))
    tree_b = _tree(b, _evolve(b, "--rounds", "3", "--batch-size", "3", "--dev-size", "4"))
    assert len(tree_a) == 4 and tree_a == tree_b  # the same seed, the same tree: edits, statuses, scores
    # a model-call budget stops the run before its rounds are done, at a round boundary
    run = _evolve(a, "--rounds", "50", "--batch-size", "3", "--dev-size", "4", "--max-model-calls", "25")
    status, message, calls = _rows(a.parent / ".lse" / "lse.db",
                                   "SELECT status, message, task_calls + evolver_calls FROM runs WHERE id = ?",
                                   run)[0]
    assert status == "done" and "budget" in message and 25 <= calls < 25 + 3 + 3 + 4 + 3
    assert len(_tree(a, run)) < 51


@pytest.mark.slow
def test_resume_continues_a_run_and_apply_writes_the_winner(tmp_path: Path, tiny_cache: None) -> None:
    prompt = build_skill_workspace(tmp_path / "ws", n_problems=16)
    settings = ["--batch-size", "3", "--dev-size", "4"]
    run = _evolve(prompt, "--rounds", "2", *settings)
    assert len(_tree(prompt, run)) == 3
    before = prompt.read_text()
    assert main(["evolve", str(prompt), "--tiny", "--resume", run, "--rounds", "4", "--apply", *settings]) == 0
    tree = _tree(prompt, run)
    assert len(tree) == 5 and [n[0] for n in tree] == [0, 1, 2, 3, 4]  # two more rounds on the same run
    winner = _rows(prompt.parent / ".lse" / "lse.db", "SELECT winner FROM runs WHERE id = ?", run)[0][0]
    after = prompt.read_text()
    assert after.startswith("---\nsuite: nums.suite.yaml\n---\n")  # front matter untouched
    if winner == 0:
        assert after == before
    else:
        assert after.split("---\n", 2)[2].strip() == tree[winner][3].strip()


def test_evolve_into_a_file_writes_progress_lines_as_it_works(tmp_path: Path, tiny_cache: None) -> None:
    """Output to a log (not a terminal): plain lines as work happens, readable before the run ends."""
    import os
    import subprocess
    import sys
    import time

    prompt = build_skill_workspace(tmp_path / "ws", n_problems=40)
    log = tmp_path / "evolve.log"
    env = {**os.environ, "COLUMNS": "200"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lse_engine.cli", "evolve", str(prompt), "--tiny",
                                 "--rounds", "30", "--batch-size", "3", "--dev-size", "20"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 120
            seen = ""
            while time.monotonic() < deadline and "round 2/30: expanding" not in seen:
                time.sleep(0.5)
                seen = log.read_text()
            running = proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert running, "the run ended before its progress could be read"
    lines = seen.splitlines()
    assert any(line.startswith("[") and "root scored: dev " in line for line in lines)
    assert any("round 1/30: expanding node 0" in line for line in lines)
    assert any("round 1: evolver reply 1/" in line for line in lines)  # each reply's verdict
    assert any(": scored " in line and "/" in line for line in lines)  # counted scoring steps
    assert "\x1b[" not in seen  # plain text, no terminal control codes
