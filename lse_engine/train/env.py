"""What training needs from a workspace: settings, the run store, each state's suite and problems, a
scorer per suite (the task model, scoring as the tree scores) and the evolver's base weights.

The target is a `Workspace` (a prompt file: states from that prompt's runs) or a directory (states from
every run in its store, `DIR/.lse/lse.db`, e.g. an `lse bench` output; settings from the nearest `lse.toml`
at or above it, or from `config`). Models are built in one place, `TrainEnv._build`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lse_engine.config import Config, ModelConfig, load_config
from lse_engine.errors import LSEError
from lse_engine.evolve.proposers import ProposerContext
from lse_engine.files import Suite, load_suite
from lse_engine.llm.base import LLM, CancelToken, Chat, Completion, Sampling
from lse_engine.llm.pool import ModelPool, build_llm
from lse_engine.models.resolve import cuda_available, model_identity, resolve_backend
from lse_engine.runner import make_scorer
from lse_engine.scoring import Scorer
from lse_engine.store import Store
from lse_engine.tasks import Task
from lse_engine.tasks.base import Problem
from lse_engine.train.states import State
from lse_engine.workspace import Workspace, task_for


class _NoEvolver:
    """Reading replies needs no evolver: a proposer that tried to call one here would be a bug."""

    model_id = "none"

    def generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[Completion]:
        raise RuntimeError("reading replies calls no evolver")

    def close(self) -> None:
        pass


_NO_EVOLVER = _NoEvolver()


class SelfTaskLLM:
    """The evolver's own base model as the task model: generation with the trained weights out of the way
    (the adapter switched off; under full fine-tuning the base weights are not the ones being trained).

    Its `model_id` is the pool's for the base profile, so outcomes the runs cached with the same weights as
    their task model are found again (the parent's score costs nothing)."""

    def __init__(self, inner: LLM, peft_model: Any, model_id: str) -> None:
        self.inner = inner
        self.peft_model = peft_model  # None: nothing to switch off (full fine-tuning trains a copy)
        self._model_id = model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    def generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[Completion]:
        if self.peft_model is None:
            return self.inner.generate(chats, sampling)
        self.peft_model.eval()
        with self.peft_model.disable_adapter():
            return self.inner.generate(chats, sampling)

    def close(self) -> None:
        """The inner model is closed by whoever built it."""


class TrainEnv:
    """Settings, store, suites and models for one training job; `close()` releases what it opened."""

    def __init__(self, target: Workspace | str | Path, overrides: dict[str, Any] | None = None,
                 llms: dict[str, Any] | None = None, cancel: CancelToken | None = None,
                 config: str | Path | None = None) -> None:
        self._llms: dict[str, Any] = dict(llms or {})
        self._built: list[Any] = []  # models this object created (and closes)
        self._pool: ModelPool | None = None
        self._owned_store = not isinstance(target, Workspace)
        if isinstance(target, Workspace):
            self.workspace: Workspace | None = target
            self.config: Config = target.config
            self.store: Store = target.store
            self.prompt: str | None = str(target.prompt_path)
            self.home = self.config.root
        else:
            self.workspace = None
            self.home = Path(target).resolve()
            self.config = load_config(Path(config) if config else self.home, overrides)
            own = self.home / ".lse" / "lse.db"
            path = own if own.exists() else self.config.store_path
            if not path.exists():
                raise LSEError(f"no run store at {own}: run `lse evolve` or `lse bench` there first")
            self.store = Store(path)
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

    def _problems(self, state: State, ids: Sequence[str]) -> list[Problem] | None:
        suite = self.suite(state.suite)
        if suite is None or not ids:
            return None
        by_id = suite.by_id()
        found = [by_id.get(pid) for pid in ids]
        return None if any(p is None for p in found) else [p for p in found if p is not None]

    def problems(self, state: State) -> list[Problem] | None:
        """The state's round batch, or None when its suite or a problem is gone."""
        return self._problems(state, state.heldout)

    def target(self, state: State, reward_on: str) -> list[Problem] | None:
        """The problems an edit of this state is rewarded on: the run's dev holdout or the round's batch."""
        if reward_on == "holdout":
            return self._problems(state, state.dev)
        if reward_on == "batch":
            return self._problems(state, state.heldout)
        raise LSEError(f"train.reward_on must be 'holdout' or 'batch', got {reward_on!r}")

    def suite_hash(self, path: str) -> str | None:
        """A suite's content hash now (None when it cannot be read)."""
        suite = self.suite(path)
        return suite.content_hash if suite else None

    def task(self, state: State) -> Task:
        """The task of a state's suite (its database opened read-only, once)."""
        if state.suite not in self._tasks:
            suite = self.suite(state.suite)
            assert suite is not None
            self._tasks[state.suite] = task_for(suite, self.config)
        return self._tasks[state.suite]

    def proposer_context(self, state: State) -> ProposerContext:
        """What a proposer reads replies with, as the search gave it: the state's task, the run settings, the
        suite's train questions."""
        suite = self.suite(state.suite)
        train = suite.split()["train"] if suite else []
        return ProposerContext(task=self.task(state), evolver=_NO_EVOLVER, sampling=Sampling(),
                               settings=self.config.evolve, cancel=self.cancel, questions=[p.question for p in train])

    def task_kind(self, state: State) -> str:
        suite = self.suite(state.suite)
        return suite.task if suite else "text-to-sql"

    # -- models ---------------------------------------------------------------------------------------
    def _build(self, mc: ModelConfig, shared: bool) -> LLM:
        """The one place training builds a model: from the shared pool (the task model, so its identity and
        cache keys are the runs') or as a private copy (the evolver's weights, which training modifies)."""
        if shared:
            if self._pool is None:
                self._pool = ModelPool(self.root)
            return self._pool.get(mc)
        llm = build_llm(mc, self.root)
        self._built.append(llm)
        return llm

    def evolver_profile(self) -> ModelConfig:
        """The evolver's base weights as a profile (no adapter)."""
        return dataclasses.replace(self.config.evolver, adapter="")

    def evolver_base(self) -> Any:
        """The evolver's base weights as a transformers backend (`.model`, `.tokenizer`), a private copy."""
        if "evolver" not in self._llms:
            mc = self.config.evolver
            backend, _ = resolve_backend(mc)
            if backend == "openai" or mc.base_url:
                raise LSEError("training needs the evolver's weights on this machine: set [evolver] backend "
                               "to transformers (or auto) and model to a Hugging Face id or a local path")
            profile = dataclasses.replace(self.evolver_profile(), backend="transformers")
            from lse_engine.llm.transformers_backend import resolve_dtype

            device = profile.device if profile.device != "auto" else ("cuda" if cuda_available() else "cpu")
            if resolve_dtype(profile.dtype, device, None) == "int8":
                profile = dataclasses.replace(profile, dtype="float32")  # trained weights are floats
            self._llms["evolver"] = self._build(profile, shared=False)
        llm = self._llms["evolver"]
        if not (hasattr(llm, "model") and hasattr(llm, "tokenizer")):
            raise LSEError("the evolver backend exposes no weights to train (needs .model and .tokenizer)")
        return llm

    def use_task_model(self, mode: str, peft_model: Any) -> LLM:
        """Bind the task model that scores rewards: `self` (the evolver's base weights) or `model`."""
        if mode == "self":
            ident = "pool:" + model_identity(self.evolver_profile(), self.root)
            self.task_llm = SelfTaskLLM(self.evolver_base(), peft_model, ident)
        elif mode == "model":
            if "model" in self._llms:
                self.task_llm = self._llms["model"]
            elif self.workspace is not None:
                self.task_llm = self.workspace.task_llm()
            else:
                self.task_llm = self._llms["model"] = self._build(self.config.model, shared=True)
        else:
            raise LSEError(f"train.task_model must be 'self' or 'model', got {mode!r}")
        self._scorers.clear()
        return self.task_llm

    def scorer(self, state: State) -> Scorer:
        """The scorer for a state's suite: its task, the task model, [model] sampling and samples."""
        if self.task_llm is None:
            raise RuntimeError("use_task_model() first")
        if state.suite not in self._scorers:
            self._scorers[state.suite] = make_scorer(self.task(state), self.task_llm, self.store, self.config.model,
                                                     cancel=self.cancel)
        return self._scorers[state.suite]

    def close(self) -> None:
        for task in self._tasks.values():
            task.close()
        for llm in self._built:
            llm.close()
        if self._pool is not None:
            self._pool.close()
        if self._owned_store:
            self.store.close()
