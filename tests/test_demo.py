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
    """The conventions the demo is about are really in the data: cents, one-letter status codes, two-letter
    category and country codes, capitalised cities, yyyymmdd days, a Y/N flag."""
    conn = sqlite3.connect(f"file:{workspace / 'shop.sqlite'}?mode=ro", uri=True)
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert {"customers", "products", "orders", "order_items", "reviews", "suppliers"} <= set(tables)
    counts = {t: one(f"SELECT COUNT(*) FROM {t}") for t in tables}
    assert 500 <= sum(counts.values()) <= 5000
    assert one("SELECT COUNT(*) FROM customers WHERE email IS NULL") > 0
    assert one("SELECT COUNT(*) FROM reviews WHERE comment IS NULL") > 0
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    for table, column in (("orders", "order_day"), ("customers", "signup_day"), ("reviews", "review_day")):
        assert one(f"SELECT COUNT(*) FROM {table} WHERE typeof({column}) != 'integer' OR {column} NOT BETWEEN "
                   f"20200101 AND 20261231 OR {column} % 100 NOT BETWEEN 1 AND 31 "
                   f"OR {column} / 100 % 100 NOT BETWEEN 1 AND 12") == 0
    assert {r[0] for r in conn.execute("SELECT DISTINCT status_code FROM orders")} == set("PSDCR")
    assert {r[0] for r in conn.execute("SELECT DISTINCT category_code FROM products")} == {
        "BK", "EL", "HK", "SP", "TY", "CL", "BT"}
    assert one("SELECT COUNT(*) FROM customers WHERE country_code NOT GLOB '[A-Z][A-Z]' OR city != upper(city)") == 0
    assert {r[0] for r in conn.execute("SELECT DISTINCT loyalty FROM customers")} == {"Y", "N"}
    assert one("SELECT COUNT(*) FROM products WHERE typeof(price_cents) != 'integer' OR price_cents < 100") == 0
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
    assert 50 <= len(problems) <= 70
    suite = load_suite(workspace / "shop.suite.yaml")
    assert (suite.dev_fraction, suite.test_fraction, suite.seed) == (0.25, 0.3, 2)
    split = suite.split()
    assert {k: len(v) for k, v in split.items()} == {"train": 26, "dev": 15, "test": 18}
    assert not any(p.get("evidence") for p in problems)  # the conventions are for the prompt to learn


CONVENTIONS = {  # what a gold query must know that the question does not say
    "money in cents": r"_cents\b",
    "order status codes": r"\bstatus_code\b",
    "category codes": r"\bcategory_code\b",
    "country codes": r"\bcountry_code\b",
    "cities in capitals": r"\bcity = '[A-Z ]+'",
    "days as yyyymmdd": r"_day\b",
    "loyalty flag": r"\bloyalty\b",
}


def test_each_convention_a_test_question_needs_is_learnable_from_train(workspace: Path) -> None:
    """The demo's promise rests on this: every convention behind a test question comes up in train questions
    too (where the search sees failures), and each in several questions."""
    split = load_suite(workspace / "shop.suite.yaml").split()

    def uses(part: str, pattern: str) -> int:
        return sum(1 for p in split[part] if re.search(pattern, p.gold))

    for name, pattern in CONVENTIONS.items():
        total = sum(uses(part, pattern) for part in split)
        assert total >= 4, f"{name}: only in {total} questions"
        if uses("test", pattern):
            assert uses("train", pattern) >= 1, f"{name}: in test questions, never in train"
    needing = [p for p in split["test"] if any(re.search(pat, p.gold) for pat in CONVENTIONS.values())]
    assert len(needing) >= 0.75 * len(split["test"])
    mix = Counter(m.group(1) if m else "rows" for p in load_suite(workspace / "shop.suite.yaml").problems
                  for m in [re.search(r"\b(COUNT|SUM|AVG|MIN|MAX)\(", p.gold.upper())])
    assert len(mix) >= 4 and mix["rows"] >= 10, dict(mix)  # lists, counts, sums, averages


def test_prompt_and_settings(workspace: Path) -> None:
    prompt = load_prompt(SHOP / "shop.prompt.md")
    assert prompt.suite_ref == "shop.suite.yaml"
    assert "<answer>" in prompt.instructions and len(prompt.instructions) < 400
    from lse_engine.config import load_config

    cfg = load_config(workspace)
    assert (cfg.model.model, cfg.model.backend) == ("qwen2.5-coder-0.5b", "transformers")
    assert cfg.evolver.model == "qwen2.5-coder-1.5b"
    assert (cfg.evolve.rounds, cfg.evolve.rule, cfg.evolve.request) == (3, "ucb", "facts")


@pytest.mark.slow
@pytest.mark.skipif(not on_disk("qwen2.5-coder-0.5b"),
                    reason="the demo model is not downloaded: lse models pull qwen2.5-coder-0.5b")
def test_demo_model_answers_demo_questions_scored_by_execution(workspace: Path) -> None:
    """The demo's real task model on a few demo questions: SQL is extracted and executed, outcomes are stored.

    Correctness is not asserted (the seed prompt does not know the conventions); that each reply is a real,
    scored attempt is."""
    from lse_engine.tasks.base import Problem
    from lse_engine.workspace import Workspace

    ws = Workspace(workspace / "shop.prompt.md", {"model": {"sampling": {"max_tokens": 64}}})
    try:
        problems: list[Problem] = ws.splits()["train"][:3]
        keys, outs = ws.scorer().score(ws.prompt.instructions, problems)
        assert '"qwen2.5-coder-0.5b"' in ws.task_llm().model_id
        for problem, out in zip(problems, outs, strict=True):
            assert out.problem_id == problem.id and out.completion.strip()
            assert out.prompt_tokens > 300  # the schema with example values went in
            assert out.correct or out.error_kind in {"no_answer", "not_a_query", "syntax", "no_such_table",
                                                     "no_such_column", "runtime", "timeout", "wrong_result"}
            assert out.expected_preview and "rows" in out.expected_preview  # the gold query ran
        assert set(ws.store.get_outcomes(keys)) == set(keys)
    finally:
        ws.close()
