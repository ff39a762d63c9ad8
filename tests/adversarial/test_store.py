"""The run store under pressure: processes opening one new workspace at once, a read-only `.lse/`, a full disk.
Each ends in a working store or one `error: …` line from `lse`, never a traceback or a damaged store."""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import build_skill_workspace
from tests.openai_stub import ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
LSE = Path(sys.executable).with_name("lse")
OPENER = """
import sys, time
from lse_engine.store import Store
start = float(sys.argv[2])
while time.time() < start:
    pass
store = Store(sys.argv[1])
store.create_run("evaluate", "p", "s")
store.close()
"""


def _rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_three_processes_opening_one_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    for trial in range(12):
        db = tmp_path / str(trial) / ".lse" / "lse.db"
        start = time.time() + 0.8  # all three past their imports, then open at the same instant
        procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(db), str(start)], cwd=ROOT,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], errors
        assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
        assert _rows(db, "SELECT count(*) FROM runs") == [(3,)]


def _eval(prompt: Path, base_url: str, **popen) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LSE), "eval", str(prompt), "--quiet", "--backend", "openai", "--base-url", base_url],
                          capture_output=True, text=True, timeout=120, **popen)


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _reply(messages, request) -> str:
    return "<answer>SELECT 1</answer>"


def test_a_read_only_store_folder_is_one_line(tmp_path: Path) -> None:
    prompt = build_skill_workspace(tmp_path / "ws", n_problems=4)
    lse_dir = prompt.parent / ".lse"
    lse_dir.mkdir()
    lse_dir.chmod(0o555)
    command: list[str] = []
    if os.geteuid() == 0:  # root ignores permissions: drop that power for the child
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: a read-only folder cannot be enforced")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    try:
        with ScriptedOpenAIServer(_reply) as srv:
            proc = subprocess.run([*command, str(LSE), "eval", str(prompt), "--quiet", "--backend", "openai",
                                   "--base-url", srv.base_url], capture_output=True, text=True, timeout=120)
        line = _one_error_line(proc)
        assert f"the run store {lse_dir / 'lse.db'} cannot be written" in line and "writable" in line
        assert sorted(os.listdir(lse_dir)) == []
    finally:
        lse_dir.chmod(0o755)


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_store_that_cannot_grow_is_one_line_and_keeps_what_was_committed(tmp_path: Path) -> None:
    """A file-size limit makes writes fail as a full disk does (EFBIG; ENOSPC on a real full disk)."""
    prompt = build_skill_workspace(tmp_path / "ws", n_problems=40)
    db = prompt.parent / ".lse" / "lse.db"
    with ScriptedOpenAIServer(_reply) as srv:
        first = _eval(prompt, srv.base_url, preexec_fn=_limit_file_size(160 << 10))
        line = _one_error_line(first)
        assert "run store" in line or "disk" in line, line
    if db.exists():
        assert _rows(db, "PRAGMA integrity_check") == [("ok",)]


def test_a_full_disk_is_one_line(tmp_path: Path) -> None:
    """On a real full file system (a 256 kB tmpfs; where mounting is not allowed, skipped)."""
    prompt = build_skill_workspace(tmp_path / "ws", n_problems=40)
    lse_dir = prompt.parent / ".lse"
    lse_dir.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(lse_dir)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        (lse_dir / "filler").write_bytes(b"\0" * (120 << 10))  # leave ~136 kB: the store starts, then fills up
        with ScriptedOpenAIServer(_reply) as srv:
            line = _one_error_line(_eval(prompt, srv.base_url))
        assert "disk is full" in line, line
        assert _rows(lse_dir / "lse.db", "PRAGMA integrity_check") == [("ok",)]
    finally:
        subprocess.run(["umount", str(lse_dir)], check=False)


def test_a_store_of_the_previous_schema_is_migrated_and_its_runs_read(tmp_path: Path) -> None:
    """Schema 2 named the winner's dev score `best_dev`; opening the store renames it (one name per value) and
    adds the nodes' per-problem dev outcomes, keeping every row."""
    from lse_engine.evolve.recorder import load_tree
    from lse_engine.store import Store

    db = tmp_path / ".lse" / "lse.db"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT, prompt TEXT, suite TEXT, status TEXT, created FLOAT,
          updated FLOAT, rule TEXT, seed INTEGER, prompt_sha TEXT, root_instructions TEXT, winner INTEGER,
          root_dev FLOAT, best_dev FLOAT, model_id TEXT, evolver_id TEXT, task_calls INTEGER, evolver_calls INTEGER,
          tokens INTEGER, config TEXT, message TEXT, result TEXT, pid INTEGER);
        CREATE TABLE nodes (run_id TEXT, id INTEGER, parent INTEGER, round INTEGER, status TEXT, instructions TEXT,
          train_score FLOAT, dev_score FLOAT, heldout_score FLOAT, parent_heldout FLOAT, evolver_output TEXT,
          feedback TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, error TEXT, attempts INTEGER,
          created FLOAT, evolver_chat TEXT, PRIMARY KEY (run_id, id));
        INSERT INTO runs VALUES ('r1', 'evolve', 'p.prompt.md', 's.suite.yaml', 'done', 1, 1, 'ucb', 0, '', 'x', 1,
          0.25, 0.5, 'm', 'e', 10, 2, 100, '{"evolve": {"rule": "ucb"}}', '', '{"winner": 1}', 1);
        INSERT INTO nodes VALUES ('r1', 0, NULL, 0, 'ok', 'x', NULL, 0.25, NULL, NULL, '', '', 0, 0, NULL, 0, 1, '');
        INSERT INTO nodes VALUES ('r1', 1, 0, 1, 'ok', 'x y', NULL, 0.5, NULL, NULL, '', '', 0, 0, NULL, 1, 1, '');
        PRAGMA user_version = 2;
    """)
    conn.close()
    store = Store(db)
    run = store.get_run("r1")
    assert run is not None and run["winner_dev"] == 0.5 and run["root_dev"] == 0.25 and "best_dev" not in run
    tree = load_tree(store, "r1")
    assert tree.winner().id == 1  # runs made before the paired test: the best dev score won, and still does
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == 3
    store.close()
