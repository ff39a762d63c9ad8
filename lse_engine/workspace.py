"""A prompt file with everything around it: its suite, settings, task, models and run store."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from lse_engine.config import Config, load_config
from lse_engine.files import PromptFile, Suite, load_prompt, load_suite
from lse_engine.llm.base import LLM, CancelToken
from lse_engine.llm.pool import ModelPool, build_llm, sampling_of
from lse_engine.models.resolve import resolve_adapter, resolve_backend
from lse_engine.scoring import Scorer
from lse_engine.store import Store
from lse_engine.tasks import Problem, Task, make_task

__all__ = ["Workspace", "build_llm", "resolve_adapter", "resolve_backend", "sampling_of", "task_for"]


def task_for(suite: Suite, config: Config) -> Task:
    """The task a suite describes, bound to its environment under the workspace's SQL limits."""
    sql = config.sql
    return make_task(suite.task, str(suite.database) if suite.database else None,
                     timeout_s=sql.timeout_s, row_cap=sql.row_cap, example_values=sql.example_values,
                     gold_timeout_s=sql.gold_timeout_s, show_work=config.task.show_work, facts=config.task.facts)


class Workspace:
    """Loads lazily: parsing files is cheap; the store, the database and the models open on first use.

    `llms` ({"model": ..., "evolver": ...}) injects models the caller built (and closes); `models` shares a
    pool across workspaces (the caller closes it); otherwise the workspace owns a pool of its own.
    """

    def __init__(self, prompt_path: str | Path, overrides: dict[str, Any] | None = None,
                 llms: dict[str, LLM] | None = None, text: str | None = None,
                 models: ModelPool | None = None) -> None:
        """`text`: the prompt file's content as the user sees it (an editor's unsaved buffer); default: the file."""
        self.prompt_path = Path(prompt_path).resolve()
        self.prompt: PromptFile = load_prompt(self.prompt_path, text)
        assert self.prompt.suite_path is not None
        self.suite: Suite = load_suite(self.prompt.suite_path)
        self.config: Config = load_config(self.prompt_path, overrides)
        self._own_models = models is None
        self.models = models or ModelPool(self.config.root)
        given = llms or {}
        if "model" in given:
            self.models.adopt(self.config.model, given["model"])
        if "evolver" in given:
            self._evolver: LLM | None = given["evolver"]
        else:
            self._evolver = None

    @cached_property
    def store(self) -> Store:
        return Store(self.config.store_path)

    @cached_property
    def task(self) -> Task:
        return task_for(self.suite, self.config)

    def splits(self) -> dict[str, list[Problem]]:
        return self.suite.split()

    def task_llm(self) -> LLM:
        return self.models.get(self.config.model)

    def evolver_llm(self) -> LLM:
        if self._evolver is not None:
            return self._evolver
        return self.models.get(self.config.evolver)

    def require_models(self, roles: tuple[str, ...] = ("model", "evolver")) -> None:
        """Every model the roles need is on disk (models handed in by the caller count as found); else one
        error naming them all and the command that fetches them."""
        from lse_engine.models import needed

        injected = {"model": self.models.adopted(self.config.model),
                    "evolver": self._evolver is not None or self.models.adopted(self.config.evolver)}
        needed.require(self.config, tuple(r for r in roles if not injected[r]))

    def scorer(self, cancel: CancelToken | None = None,
               on_usage: Callable[[int, int], None] | None = None) -> Scorer:
        return Scorer(self.task, self.task_llm(), self.store, sampling_of(self.config.model), cancel=cancel,
                      chunk_size=max(1, self.config.model.batch_size), on_usage=on_usage,
                      samples=self.config.model.sampling.samples)

    def close(self) -> None:
        if "task" in self.__dict__:
            self.task.close()
        if self._own_models:
            self.models.close()
        if "store" in self.__dict__:
            self.store.close()
