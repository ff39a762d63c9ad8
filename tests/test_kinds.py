"""Every closed set of names lives in `lse_engine.kinds`: the settings' checks, the modules that act on the names,
the CLI's choices and the VS Code extension's settings all offer exactly those, and every bound on a setting is
the one `config.py` applies (on lse.toml, CLI flags and the editor's settings alike)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from lse_engine import kinds
from lse_engine.config import MAX_ROUNDS, check_setting, load_config
from lse_engine.errors import LSEError

ROOT = Path(__file__).resolve().parents[1]


def _choices(parser: argparse.ArgumentParser) -> dict[tuple[str, str], tuple[str, ...]]:
    """(subcommand, option) → choices, for every option of every subcommand that has them."""
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for a in sub._actions:
                    if a.choices and not isinstance(a, argparse._SubParsersAction):
                        found[(name, a.option_strings[0] if a.option_strings else a.dest)] = tuple(a.choices)
    return found


def test_the_cli_offers_exactly_the_kinds() -> None:
    from lse_engine.cli import build_parser

    choices = _choices(build_parser())
    expected = {("evolve", "--rule"): kinds.RULES, ("evolve", "--backend"): kinds.BACKEND_CHOICES,
                ("bench", "benchmark"): kinds.BENCHMARKS, ("bench", "--protocol"): kinds.BENCH_PROTOCOLS,
                ("bench", "--source-split"): kinds.SOURCE_SPLITS, ("import", "source"): kinds.BENCHMARKS,
                ("import", "--split"): kinds.SOURCE_SPLITS, ("train", "--method"): kinds.TRAIN_METHODS,
                ("train", "--reward-on"): kinds.REWARD_ON, ("train", "--holdout-by"): kinds.HOLDOUT_BY,
                ("train", "--advantage"): kinds.ADVANTAGES, ("train", "--reward"): kinds.REWARDS,
                ("train", "--task-model"): kinds.TASK_MODEL_MODES}
    for where, names in expected.items():
        assert choices[where] == names, where
    assert all(set(names) <= set(kinds.BACKEND_CHOICES) for (_, opt), names in choices.items() if opt == "--backend")


@pytest.mark.parametrize("key, names", [
    ("evolve.rule", kinds.RULES), ("evolve.request", kinds.REQUESTS), ("model.backend", kinds.BACKEND_CHOICES),
    ("model.dtype", kinds.DTYPES), ("train.method", kinds.TRAIN_METHODS), ("train.loss_agg", kinds.LOSS_AGGREGATIONS),
    ("train.advantage", kinds.ADVANTAGES), ("train.reward", kinds.REWARDS), ("train.reward_on", kinds.REWARD_ON),
    ("train.noop_reward", kinds.NOOP_REWARDS), ("train.holdout_by", kinds.HOLDOUT_BY),
    ("train.task_model", kinds.TASK_MODEL_MODES), ("task.facts", kinds.FACTS_MODES)])
def test_settings_accept_exactly_the_kinds(key: str, names: tuple[str, ...]) -> None:
    assert all(check_setting(key, name) is None for name in names)
    assert check_setting(key, "nope") is not None


def test_the_modules_act_on_every_kind() -> None:
    from lse_engine.evolve.proposers import PROPOSERS
    from lse_engine.evolve.tree import Node, Tree
    from lse_engine.llm.transformers_backend import _torch_dtype

    assert tuple(PROPOSERS) == kinds.PROPOSERS
    tree = Tree()
    tree.add(Node(0, None, "x", status="ok", dev_score=0.5))
    for rule in kinds.RULES:
        assert tree.select(rule).id == 0
    for dtype in kinds.DTYPES:
        _torch_dtype(dtype, "cpu")


def test_a_bound_holds_on_every_path(tmp_path: Path) -> None:
    assert check_setting("evolve.rounds", MAX_ROUNDS) is None
    assert check_setting("evolve.rounds", MAX_ROUNDS + 1) is not None and check_setting("evolve.rounds", -1)
    config = load_config(tmp_path)
    with pytest.raises(LSEError, match="evolve.rounds must be from 0 to 10000"):
        config.with_evolve(rounds=-3)  # a CLI flag or a resumed run's count: checked as lse.toml's key is
    assert config.with_evolve(rounds=7).rounds == 7


def test_the_extension_offers_exactly_the_kinds_and_bounds() -> None:
    manifest = json.loads((ROOT / "vscode-client" / "package.json").read_text(encoding="utf-8"))
    sections = manifest["contributes"]["configuration"]
    props = {k: v for c in (sections if isinstance(sections, list) else [sections]) for k, v in c["properties"].items()}
    assert tuple(e for e in props["lse.model.backend"]["enum"] if e) == kinds.BACKEND_CHOICES
    assert tuple(e for e in props["lse.evolver.backend"]["enum"] if e) == kinds.BACKEND_CHOICES
    assert tuple(e for e in props["lse.evolve.rule"]["enum"] if e) == kinds.RULES
    bounds = {"lse.evolve.rounds": "evolve.rounds", "lse.evolve.batchSize": "evolve.batch_size",
              "lse.evolve.devSize": "evolve.dev_size", "lse.evolve.maxModelCalls": "evolve.max_model_calls",
              "lse.evolve.c": "evolve.c", "lse.sql.rowCap": "sql.row_cap"}
    for prop, key in bounds.items():
        low, high = props[prop].get("minimum"), props[prop].get("maximum")
        assert low is not None and check_setting(key, low) is None and check_setting(key, low - 1) is not None, prop
        if high is not None:
            assert check_setting(key, high) is None and check_setting(key, high + 1) is not None, prop
