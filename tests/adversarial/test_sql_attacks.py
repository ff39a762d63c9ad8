"""The SQL corpus through the scoring API: each attack as predicted SQL, as gold SQL and through the editor's gold
check, in a child process. For each: the expected verdict, within the deadline + 0.5 s, peak memory growth
≤ 200 MB, the database's bytes unchanged, no file created, and the process alive at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial import harness, sql_corpus

TIMEOUT_S = 0.5  # the deadline of every query here (predicted and gold): timeouts cost the corpus little time


def test_the_corpus_has_a_hundred_kinds_of_attack() -> None:
    names = [a.name for a in [*sql_corpus.CORPUS, *sql_corpus.ANSWERS]]
    assert len(set(names)) == len(names) >= 100
    assert {a.family for a in sql_corpus.CORPUS} >= {"write", "time", "memory", "parser", "cpu", "valid"}


def _run(tmp_path: Path, *args: str) -> list[harness.Result]:
    results, rc = harness.run_child("sql", tmp_path, "--timeout", str(TIMEOUT_S), *args)
    assert rc == 0, "the scoring process died"
    return results


def test_one_attack_of_each_kind_holds(tmp_path: Path) -> None:
    results = _run(tmp_path, "--quick")
    assert len(results) >= 25  # three paths each (answer-format attacks: predicted only)
    assert harness.failures(results) == []


@pytest.mark.slow
def test_every_attack_holds_as_predicted_gold_and_checked_sql(tmp_path: Path) -> None:
    results = _run(tmp_path)
    attacks = [*sql_corpus.CORPUS, *sql_corpus.ANSWERS]
    assert len(results) == 3 * len(sql_corpus.CORPUS) + len(sql_corpus.ANSWERS)
    assert {r.name for r in results} == {a.name for a in attacks}
    assert harness.failures(results) == []
    # the deadline is what stops the endless ones, and it stops them in time
    timeouts = [r for r in results if r.verdict == "timeout"]
    assert len(timeouts) >= 40 and max(r.seconds for r in timeouts) <= TIMEOUT_S + harness.SLACK_S


def test_a_wal_database_gets_no_wal_or_shm_files(tmp_path: Path) -> None:
    import sqlite3

    from lse_engine.tasks.base import Problem
    from lse_engine.tasks.sql_checks import GoldChecker
    from lse_engine.tasks.text_to_sql import SQLiteTask

    db = tmp_path / "wal.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (a)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    conn.commit()
    conn.close()
    before = harness.tree_state(tmp_path)
    assert sorted(before) == ["wal.sqlite"]
    task = SQLiteTask(db)
    checker = GoldChecker(db)
    try:
        out = task.score([Problem("q", "?", "SELECT count(*) FROM t")], ["<answer>SELECT count(a) FROM t</answer>"])
        assert out[0].correct and checker.check("SELECT a FROM t").issues == []
    finally:
        task.close()
        checker.close()
    assert harness.tree_state(tmp_path) == before  # byte-identical, and no -wal or -shm next to it
    # with a writer holding the database open (its -wal and -shm exist), we read its latest commit
    writer = sqlite3.connect(db)
    writer.execute("INSERT INTO t VALUES (10)")
    writer.commit()
    task = SQLiteTask(db)
    try:
        assert task.db.execute("SELECT count(*) FROM t").rows == [(11,)]
    finally:
        task.close()
        writer.close()
