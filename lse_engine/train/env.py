"""What training needs from a workspace: settings, the run store, each state's suite and problems, a
scorer per suite (the task model) and the evolver's base weights.

The target is a `Workspace` (a prompt file: states from that prompt's runs) or a workspace directory
(states from every run in its store).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lse_engine.config import Config, load_config
from lse_engine.errors import LSEError
from lse_engine.files import Suite, load_suite
from lse_engine.llm.base import LLM, CancelToken, Chat, Completion, Sampling
from lse_engine.scoring import Scorer
from lse_engine.store import Store
from lse_engine.tasks import Task, make_task
from lse_engine.tasks.base import Problem
from lse_engine.train.states import State
from lse_engine.workspace import Workspace, build_llm, resolve_backend, sampling_of


class SelfTaskLLM:
    """The evolver's own base model as the task model: generation with the training adapter switched off."""

    def __init__(self, inner: LLM, peft_model: Any) -> None:
        self.inner = inner
        self.peft_model = peft_model

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[Completion]:
        self.peft_model.eval()
        with self.peft_model.disable_adapter():
            return self.inner.generate(chats, sampling)

    def close(self) -> None:
        """The inner model is closed by whoever built it."""


class TrainEnv:
    """Settings, store, suites and models for one training job; `close()` releases what it opened."""

    def __init__(self, target: Workspace | str | Path, overrides: dict[str, Any] | None = None,
                 llms: dict[str, Any] | None = None, cancel: CancelToken | None = None) -> None:
        self._llms: dict[str, Any] = dict(llms or {})
        self._built: list[Any] = []  # models this object created (and closes)
        self._owned_store = not isinstance(target, Workspace)
        if isinstance(target, Workspace):
            self.workspace: Workspace | None = target
            self.config: Config = target.config
            self.store: Store = target.store
            self.prompt: str | None = str(target.prompt_path)
        else:
            self.workspace = None
            self.config = load_config(Path(target), overrides)
            if not self.config.store_path.exists():
                raise LSEError(f"no run store at {self.config.store_path}: run `lse evolve` first")
            self.store = Store(self.config.store_path)
            self.prompt = None
        self.root = self.config.root
        self.cancel = cancel or CancelToken()
        self._suites: dict[str, Suite | None] = {}
        self._tasks: dict[str, Task] = {}
        self._scorers: dict[str, Scorer] = {}
        self.task_llm: LLM | None = None

    # -- suites and problems --------------------------------------------------------------------------
    def suite(self, path: str) -> Suite | None:
        if path not in self._suites:
            try:
                self._suites[path] = load_suite(path)
            except (LSEError, OSError):
                self._suites[path] = None
        return self._suites[path]

    def problems(self, state: State) -> list[Problem] | None:
        """The state's held-out batch, or None when its suite or a problem is gone."""
        suite = self.suite(state.suite)
        if suite is None:
            return None
        by_id = suite.by_id()
        found = [by_id.get(pid) for pid in state.heldout]
        return None if any(p is None for p in found) else [p for p in found if p is not None]

    def task_kind(self, state: State) -> str:
        suite = self.suite(state.suite)
        return suite.task if suite else "text-to-sql"

    # -- models ---------------------------------------------------------------------------------------
    def evolver_base(self) -> Any:
        """The evolver's base weights as a transformers backend (`.model`, `.tokenizer`), adapter off."""
        if "evolver" not in self._llms:
            mc = self.config.evolver
            backend, _ = resolve_backend(mc)
            if backend == "openai" or mc.base_url:
                raise LSEError("training needs the evolver's weights on this machine: set [evolver] backend to "
                               "transformers (or auto) and model to a Hugging Face id or a local path")
            self._llms["evolver"] = build_llm(dataclasses.replace(mc, backend="transformers", adapter=""), self.root)
            self._built.append(self._llms["evolver"])
        llm = self._llms["evolver"]
        if not (hasattr(llm, "model") and hasattr(llm, "tokenizer")):
            raise LSEError("the evolver backend exposes no weights to train (needs .model and .tokenizer)")
        return llm

    def use_task_model(self, mode: str, peft_model: Any) -> LLM:
        """Bind the task model rewards are scored with: `self` (base, adapter off) or `model` ([model])."""
        if mode == "self":
            self.task_llm = SelfTaskLLM(self.evolver_base(), peft_model)
        elif mode == "model":
            if "model" in self._llms:
                self.task_llm = self._llms["model"]
            elif self.workspace is not None:
                self.task_llm = self.workspace.task_llm()
            else:
                self.task_llm = self._llms["model"] = build_llm(self.config.model, self.root)
                self._built.append(self.task_llm)
        else:
            raise LSEError(f"train.task_model must be 'self' or 'model', got {mode!r}")
        self._scorers.clear()
        return self.task_llm

    def scorer(self, state: State) -> Scorer:
        """The scorer for a state's suite: its task, the task model and [model] sampling (as the tree)."""
        if self.task_llm is None:
            raise RuntimeError("use_task_model() first")
        if state.suite not in self._scorers:
            suite = self.suite(state.suite)
            assert suite is not None
            if state.suite not in self._tasks:
                sql = self.config.sql
                db = str(suite.database) if suite.database else None
                self._tasks[state.suite] = make_task(suite.task, db, timeout_s=sql.timeout_s, row_cap=sql.row_cap,
                                                     example_values=sql.example_values)
            self._scorers[state.suite] = Scorer(
                self._tasks[state.suite], self.task_llm, self.store, sampling_of(self.config.model),
                cancel=self.cancel, chunk_size=max(1, self.config.model.batch_size))
        return self._scorers[state.suite]

    def close(self) -> None:
        for task in self._tasks.values():
            task.close()
        for llm in self._built:
            llm.close()
        if self._owned_store:
            self.store.close()
