"""Spider dev from ../shared: every gold query that runs in SQLite is scored correct against itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lse_engine.files import load_suite
from lse_engine.importers import import_spider
from lse_engine.tasks.base import Problem

SPIDER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spider-dev"

pytestmark = pytest.mark.skipif(not (SPIDER / "dev.json").is_file(),
                                reason=f"Spider dev not found at {SPIDER} (shared data is absent in a user's clone)")


def runs(db: Path, sql: str) -> bool:
    """Whether `sql` executes without error on a read-only connection (bounded by a step budget)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    steps = [0]

    def budget() -> int:
        steps[0] += 1
        return steps[0] > 20_000  # x 1000 VM instructions: far more than any Spider dev query needs

    conn.set_progress_handler(budget, 1000)
    try:
        conn.execute(sql).fetchall()
        return True
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def test_spider_gold_scores_itself(tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    from lse_engine.tasks.text_to_sql import SQLiteTask

    res = import_spider(SPIDER, tmp_path)
    assert len(res.suites) == 19
    assert set(res.skipped) == {"wta_1"}
    total = ran = 0
    wrong: list[str] = []
    for path in res.suites:
        suite = load_suite(path)
        assert suite.database is not None
        problems = [Problem(id=p.id, question=p.question, gold=p.gold) for p in suite.problems]
        task = SQLiteTask(suite.database, timeout_s=10.0, row_cap=100_000)
        try:
            outcomes = task.score(problems, [f"<answer>{p.gold}</answer>" for p in problems])
        finally:
            task.close()
        for p, out in zip(problems, outcomes, strict=True):
            total += 1
            if not runs(suite.database, p.gold):
                continue
            ran += 1
            if not out.correct:
                wrong.append(f"{path.stem}/{p.id}: {out.error_kind}: {out.error} | {p.gold}")
    record_property("spider_gold_total", total)
    record_property("spider_gold_ran", ran)
    print(f"Spider dev: {ran} of {total} gold queries run in SQLite; {ran - len(wrong)} scored correct")
    assert total == res.problems
    assert ran >= 0.9 * total
    assert not wrong, f"{len(wrong)} gold queries scored wrong against themselves:\n" + "\n".join(wrong[:30])
