"""Workspaces for bench runs: one settings object, one run store, shared models, fair call accounting.

Every run of a bench shares the outcome cache, so a run would otherwise get for free what an earlier run
(of another rule or seed) already generated, and budgets would depend on the order runs happen in. The
bench charges each run what it would have cost alone: every (instructions, problem) outcome the run
scores for the first time counts as one model call, cached or not. Evolver calls count as they happen.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from lse_engine.config import Config, ModelConfig
from lse_engine.llm.base import LLM, CancelToken
from lse_engine.scoring import Scorer
from lse_engine.store import Store
from lse_engine.tasks.base import Outcome, Problem
from lse_engine.workspace import Workspace, build_llm, resolve_backend, same_weights, sampling_of

UsageFn = Callable[[int, int], None]
LLMFactory = Callable[[ModelConfig], LLM]


class RunCostScorer(Scorer):
    """A scorer that charges outcomes new to this run (`seen` holds the keys the run already scored)."""

    def __init__(self, *args, seen: set[str], charge: UsageFn | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen = seen
        self.charge = charge

    def score(self, instructions: str, problems: Sequence[Problem]) -> tuple[list[str], list[Outcome]]:
        keys, outs = super().score(instructions, problems)
        new = {k: o for k, o in zip(keys, outs) if k not in self.seen}
        self.seen.update(new)
        if new and self.charge:
            self.charge(len(new), sum(o.prompt_tokens + o.completion_tokens for o in new.values()))
        return keys, outs


def model_identity(mc: ModelConfig, sampling: bool = True) -> str:
    """What makes two model profiles the same model (the weights; with `sampling`, the decoding too)."""
    backend, model = resolve_backend(mc)
    ident: list = [backend, model, mc.gguf_file, mc.base_url, mc.adapter, mc.device, mc.dtype]
    if sampling:
        ident.append(dataclasses.asdict(mc.sampling))
    return json.dumps(ident)


def model_label(mc: ModelConfig) -> str:
    """A model profile for people: backend, model, adapter, server."""
    backend, model = resolve_backend(mc)
    extra = [f"gguf {mc.gguf_file}"] * bool(mc.gguf_file) + [f"adapter {mc.adapter}"] * bool(mc.adapter)
    extra += [f"at {mc.base_url}"] * bool(mc.base_url and backend == "openai")
    return f"{model} ({', '.join([backend, *extra])})"


class LLMPool:
    """Builds each model once for the whole bench (task models and evolvers alike)."""

    def __init__(self, root: Path, factory: LLMFactory | None = None) -> None:
        self.factory: LLMFactory = factory or (lambda mc: build_llm(mc, root))
        self._llms: dict[str, LLM] = {}

    def get(self, mc: ModelConfig) -> LLM:
        key = model_identity(mc, sampling=False)
        if key not in self._llms:
            self._llms[key] = self.factory(mc)
        return self._llms[key]

    def evolver_for(self, model: ModelConfig, evolver: ModelConfig) -> LLM:
        return self.get(model) if same_weights(evolver, model) else self.get(evolver)

    def close(self) -> None:
        for llm in {id(v): v for v in self._llms.values()}.values():
            llm.close()
        self._llms.clear()


class BenchWorkspace(Workspace):
    """A suite's workspace under the bench's settings and store; `use` switches evolver, rule and seed."""

    def __init__(self, prompt_path: str | Path, config: Config, store: Store, task_llm: LLM) -> None:
        super().__init__(prompt_path, None, llms={"model": task_llm})
        self.config = copy.deepcopy(config)
        self.store = store  # type: ignore[misc]  # the bench's store, not the workspace's own
        self.run_id: str | None = None
        self._evolver: LLM | None = None

    def use(self, evolver_cfg: ModelConfig, evolver: LLM, rule: str, seed: int, run_id: str) -> None:
        """Set up the next run: its evolver, selection rule, seed and id (for the call accounting)."""
        self.config.evolver = evolver_cfg
        self._evolver = evolver
        self.config.evolve = dataclasses.replace(self.config.evolve, rule=rule, seed=seed)
        self.run_id = run_id

    def evolver_llm(self) -> LLM:
        return self._evolver if self._evolver is not None else super().evolver_llm()

    def scorer(self, cancel: CancelToken | None = None, on_usage: UsageFn | None = None) -> Scorer:
        if self.run_id is None or on_usage is None:
            return super().scorer(cancel, on_usage)
        seen = {k for b in self.store.get_batches(self.run_id) for k in b["keys"]}
        return RunCostScorer(self.task, self.task_llm(), self.store, sampling_of(self.config.model), cancel=cancel,
                             chunk_size=max(1, self.config.model.batch_size), seen=seen, charge=on_usage)

    def plain_scorer(self) -> Scorer:
        """A scorer that charges nothing (test-split scoring, outside every run's budget)."""
        return super().scorer()

    def close(self) -> None:
        """Close the suite's task only: the store and models belong to the bench."""
        if "task" in self.__dict__:
            self.task.close()
