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
