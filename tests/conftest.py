"""Shared fixtures: small real workspaces (SQLite database, suite, prompt file, lse.toml) built per test."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def build_skill_workspace(root: Path, n_problems: int = 40, tags: int = 4, toml: str = "") -> Path:
    """A workspace where problem i has tag t{i % tags}; returns the prompt file path.

    The database holds numbers 0..99; problem i asks for the number i (gold: SELECT n FROM nums WHERE n = i).
    """
    root.mkdir(parents=True, exist_ok=True)
    db = root / "nums.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE nums (n INTEGER PRIMARY KEY, label TEXT)")
    conn.executemany("INSERT INTO nums VALUES (?, ?)", [(i, f"n{i}") for i in range(100)])
    conn.commit()
    conn.close()
    problems = [
        {"id": f"q{i}", "question": f"[t{i % tags}] which row holds {i}?", "gold": f"SELECT n FROM nums WHERE n = {i}"}
        for i in range(n_problems)
    ]
    suite = {"task": "text-to-sql", "database": "nums.sqlite", "split": {"dev": 0.5, "seed": 0}, "problems": problems}
    (root / "nums.suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    prompt = root / "nums.prompt.md"
    prompt.write_text("---\nsuite: nums.suite.yaml\n---\nt0\n")
    (root / "lse.toml").write_text(toml or "[evolve]\nrounds = 4\nbatch_size = 5\ndev_size = 20\n")
    return prompt


@pytest.fixture()
def skill_workspace(tmp_path: Path) -> Path:
    return build_skill_workspace(tmp_path / "ws")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from lse_engine.llm.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
