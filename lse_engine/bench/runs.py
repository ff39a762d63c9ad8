"""The bench's runs: one suite at a time, one search context per (evolver, rule, seed), fair call accounting.

Bench assembles its runs with the run assembler (`lse_engine.runner`): its own store, one `ModelPool` for every
run, settings derived per run without touching the user's config.

Every run of a bench shares the outcome cache, so a run would otherwise get for free what an earlier run
(of another rule or seed) already generated, and budgets would depend on the order runs happen in. The
bench charges each run what it would have cost alone: every (instructions, problem) outcome the run
scores for the first time counts as one model call, cached or not. Evolver calls count as they happen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from lse_engine.config import Config, EvolveConfig, ModelConfig
from lse_engine.evolve.context import SearchContext
from lse_engine.evolve.recorder import StoreRecorder
from lse_engine.files import Suite, load_suite
from lse_engine.llm.base import CancelToken
from lse_engine.llm.pool import ModelPool
from lse_engine.models.resolve import resolve_backend
from lse_engine.progress import ProgressCallback
from lse_engine.runner import make_scorer, search_context
from lse_engine.scoring import Scorer
from lse_engine.store import Store
from lse_engine.tasks import Task
from lse_engine.tasks.base import Outcome, Problem
from lse_engine.workspace import task_for

UsageFn = Callable[[int, int], None]


class RunCostScorer(Scorer):
    """A scorer that charges outcomes new to this run (`seen` holds the keys the run already scored)."""

    def __init__(self, *args: Any, seen: set[str], charge: UsageFn | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen = seen
        self.charge = charge

    def score(self, instructions: str, problems: Sequence[Problem]) -> tuple[list[str], list[Outcome]]:
        keys, outs = super().score(instructions, problems)
        new = {k: o for k, o in zip(keys, outs, strict=True) if k not in self.seen}
        self.seen.update(new)
        if new and self.charge:
            self.charge(len(new), sum(o.prompt_tokens + o.completion_tokens for o in new.values()))
        return keys, outs


def model_label(mc: ModelConfig) -> str:
    """A model profile for people: backend, model, adapter, server."""
    backend, model = resolve_backend(mc)
    extra = [f"gguf {mc.gguf_file}"] * bool(mc.gguf_file) + [f"adapter {mc.adapter}"] * bool(mc.adapter)
    extra += [f"at {mc.base_url}"] * bool(mc.base_url and backend == "openai")
    return f"{model} ({', '.join([backend, *extra])})"


class SuiteRuns:
    """One bench suite: its problems and task under the bench's settings, store and models."""

    def __init__(self, suite_path: Path, config: Config, store: Store, models: ModelPool) -> None:
        self.suite: Suite = load_suite(suite_path)
        self.config = config
        self.store = store
        self.models = models

    @cached_property
    def task(self) -> Task:
        return task_for(self.suite, self.config)

    def splits(self) -> dict[str, list[Problem]]:
        return self.suite.split()

    def settings(self, rule: str, seed: int) -> EvolveConfig:
        """The bench's settings with this run's rule and seed."""
        return self.config.with_evolve(rule=rule, seed=seed)

    def scorer(self) -> Scorer:
        """A scorer that charges nothing (test-split scoring, outside every run's budget)."""
        return make_scorer(self.task, self.models.get(self.config.model), self.store, self.config.model)

    def context(self, run_id: str, evolver: ModelConfig, settings: EvolveConfig, cancel: CancelToken,
                progress: ProgressCallback) -> SearchContext:
        """The search context of one run: the bench's settings with this run's rule, seed and evolver; each
        outcome new to the run is charged to it (`RunCostScorer`)."""
        seen = {k for b in self.store.get_batches(run_id) for k in b["keys"]}
        scorer = make_scorer(self.task, self.models.get(self.config.model), self.store, self.config.model,
                             cancel=cancel, scorer_class=RunCostScorer, seen=seen,
                             charge=lambda n, t: self.store.add_usage(run_id, task_calls=n, tokens=t))
        return search_context(recorder=StoreRecorder(self.store, run_id), scorer=scorer,
                              evolver=self.models.get(evolver), evolver_cfg=evolver, task=self.task,
                              splits=self.splits(), settings=settings, cancel=cancel, progress=progress)

    def close(self) -> None:
        if "task" in self.__dict__:
            self.task.close()
