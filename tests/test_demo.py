"""The demo workspace `examples/shop`: deterministic database, a varied suite whose gold queries all work."""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from lse_examples.shop import build_db

from lse_engine.files import load_prompt, load_suite
from lse_engine.models import on_disk

SHOP = Path(build_db.__file__).resolve().parent


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo workspace with its database built (the repo's copy is never written)."""
    dest = tmp_path_factory.mktemp("shop")
    for name in ("shop.suite.yaml", "shop.prompt.md", "lse.toml"):
        shutil.copy(SHOP / name, dest / name)
    build_db.build(dest / "shop.sqlite")
    return dest


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return yaml.safe_load((SHOP / "shop.suite.yaml").read_text(encoding="utf-8"))["problems"]


def test_database_is_byte_identical_and_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    a = build_db.build(tmp_path / "a" / "shop.sqlite")
    elapsed = time.perf_counter() - started
    b = tmp_path / "b.sqlite"
    assert build_db.main([str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    build_db.build(a)  # rebuilding over an existing file replaces it with the same bytes
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in a.parent.iterdir()) == ["shop.sqlite"]  # no temporary files left
    assert elapsed < 2.0


def test_database_shape(workspace: Path) -> None:
    conn = sqlite3.connect(f"file:{workspace / 'shop.sqlite'}?mode=ro", uri=True)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert {"customers", "products", "orders", "order_items", "reviews"} <= set(tables) and len(tables) >= 6
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    assert 500 <= sum(counts.values()) <= 5000
    assert conn.execute("SELECT COUNT(*) FROM customers WHERE email IS NULL").fetchone()[0] > 0
    assert conn.execute("SELECT COUNT(*) FROM reviews WHERE comment IS NULL").fetchone()[0] > 0
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("SELECT COUNT(*) FROM orders WHERE order_date NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'"
                        ).fetchone()[0] == 0
    conn.close()


def test_every_gold_query_returns_rows(workspace: Path) -> None:
    suite = load_suite(workspace / "shop.suite.yaml")  # validates keys, ids and the database
    conn = sqlite3.connect(f"file:{workspace / 'shop.sqlite'}?mode=ro", uri=True)
    for p in suite.problems:
        rows = conn.execute(p.gold).fetchall()
        assert rows, f"{p.id}: gold returns no rows"
        assert any(v is not None for row in rows for v in row), f"{p.id}: gold returns only NULL"
    conn.close()


def test_gold_scores_itself_correct(workspace: Path) -> None:
    from lse_engine.tasks.text_to_sql import SQLiteTask

    suite = load_suite(workspace / "shop.suite.yaml")
    task = SQLiteTask(suite.database, timeout_s=5.0)
    try:
        outcomes = task.score(suite.problems, [f"<answer>{p.gold}</answer>" for p in suite.problems])
    finally:
        task.close()
    assert [o.problem_id for o in outcomes if not o.correct] == []


def test_suite_size_ids_and_split(workspace: Path, problems: list[dict]) -> None:
    ids = [p["id"] for p in problems]
    assert len(ids) == len(set(ids))
    assert 36 <= len(problems) <= 40
    suite = load_suite(workspace / "shop.suite.yaml")
    assert (suite.dev_fraction, suite.seed) == (0.4, 0)
    split = suite.split()
    assert len(split["dev"]) == round(0.4 * len(problems)) and len(split["train"]) >= 20
    assert sum(1 for p in problems if p.get("evidence")) >= 5


def test_question_mix(problems: list[dict]) -> None:
    golds = [" ".join(p["gold"].split()).upper() for p in problems]

    def count(pattern: str) -> int:
        return sum(1 for g in golds if re.search(pattern, g))

    mix = Counter({
        "join": count(r"\bJOIN\b"),
        "aggregate": count(r"\b(COUNT|SUM|AVG|MIN|MAX)\s*\("),
        "group by": count(r"\bGROUP BY\b"),
        "having": count(r"\bHAVING\b"),
        "date": count(r"STRFTIME|JULIANDAY|\bDATE\s*\(|_DATE\b"),
        "null": count(r"IS (NOT )?NULL|COALESCE|IFNULL"),
        "top-k": count(r"ORDER BY .* LIMIT \d+"),
        "subquery": count(r"\(\s*SELECT\b"),
        "distinct": count(r"\bDISTINCT\b"),
    })
    minimum = {"join": 5, "aggregate": 5, "group by": 5, "having": 2, "date": 3, "null": 3, "top-k": 3,
               "subquery": 2, "distinct": 1}
    assert all(mix[k] >= n for k, n in minimum.items()), dict(mix)
    assert {p.get("difficulty") for p in problems} == {"simple", "moderate", "challenging"}


def test_prompt_and_settings(workspace: Path) -> None:
    prompt = load_prompt(SHOP / "shop.prompt.md")
    assert prompt.suite_ref == "shop.suite.yaml"
    assert "<answer>" in prompt.instructions and len(prompt.instructions) < 400
    from lse_engine.config import load_config

    cfg = load_config(workspace)
    assert cfg.model.model == "smollm2" and cfg.model.backend == "transformers"
    assert (cfg.evolve.rounds, cfg.evolve.rule, cfg.evolve.evolver_prefill) == (3, "ucb", True)


@pytest.mark.slow
@pytest.mark.skipif(not on_disk("smollm2"), reason="SmolLM2 not downloaded: lse models pull smollm2")
def test_smollm2_answers_demo_questions_scored_by_execution(workspace: Path) -> None:
    """The demo's real model on a few demo questions: SQL is extracted and executed, outcomes are stored.

    SmolLM2-135M is weak at SQL, so correctness is not asserted; that each reply is a real, scored attempt is."""
    from lse_engine.tasks.base import Problem
    from lse_engine.workspace import Workspace

    ws = Workspace(workspace / "shop.prompt.md", {"model": {"sampling": {"max_tokens": 64}}})
    try:
        problems: list[Problem] = ws.splits()["train"][:3]
        keys, outs = ws.scorer().score(ws.prompt.instructions, problems)
        assert ws.task_llm().model_id.endswith("SmolLM2-135M-Instruct.Q4_1.gguf:")
        for problem, out in zip(problems, outs):
            assert out.problem_id == problem.id and out.completion.strip()
            assert out.prompt_tokens > 300  # the schema with example values went in
            assert out.correct or out.error_kind in {"no_answer", "not_a_query", "syntax", "no_such_table",
                                                     "no_such_column", "runtime", "timeout", "wrong_result"}
            assert out.expected_preview and "rows" in out.expected_preview  # the gold query ran
        assert set(ws.store.get_outcomes(keys)) == set(keys)
    finally:
        ws.close()
