"""A prompt file with everything around it: its suite, settings, task, models and run store."""

from __future__ import annotations

import importlib.util
from functools import cached_property
from pathlib import Path
from typing import Any

from lse_engine.config import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL, Config, ModelConfig, load_config
from lse_engine.files import PromptFile, Suite, load_prompt, load_suite
from lse_engine.llm.base import LLM, CancelToken, Sampling
from lse_engine.scoring import Scorer
from lse_engine.store import Store
from lse_engine.tasks import Task, make_task


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def resolve_backend(mc: ModelConfig) -> tuple[str, str]:
    """Turn `auto` backend/model into concrete ones: vLLM + the paper's size on a GPU, transformers on CPU."""
    backend, model = mc.backend, mc.model
    if backend == "auto":
        on_gpu = _cuda_available() and importlib.util.find_spec("vllm") is not None
        backend = "vllm" if on_gpu else ("openai" if mc.base_url else "transformers")
    if model == "auto":
        model = DEFAULT_GPU_MODEL if backend == "vllm" else DEFAULT_CPU_MODEL
    return backend, model


def resolve_adapter(adapter: str, root: Path) -> str | None:
    """An adapter given as a name under `.lse/evolvers/` or as a path."""
    if not adapter:
        return None
    named = root / ".lse" / "evolvers" / adapter
    if named.is_dir():
        return str(named)
    return str(Path(adapter).expanduser().resolve())


def build_llm(mc: ModelConfig, root: Path) -> LLM:
    """Instantiate the backend a model profile names."""
    from lse_engine.llm import make_llm

    backend, model = resolve_backend(mc)
    kwargs: dict[str, Any] = {}
    if backend == "openai":
        kwargs.update(base_url=mc.base_url, api_key_env=mc.api_key_env, max_concurrency=mc.max_concurrency,
                      timeout_s=mc.timeout_s, max_retries=mc.max_retries)
    else:
        kwargs.update(device=mc.device, dtype=mc.dtype, batch_size=mc.batch_size,
                      adapter=resolve_adapter(mc.adapter, root))
        if mc.gguf_file:
            kwargs["gguf_file"] = mc.gguf_file
    if backend != "openai" and model not in ("smollm2", "tiny") and (root / model).exists():
        model = str((root / model).resolve())
    return make_llm(backend, model, **kwargs)


def sampling_of(mc: ModelConfig) -> Sampling:
    return Sampling(max_tokens=mc.sampling.max_tokens, temperature=mc.sampling.temperature, top_p=mc.sampling.top_p)


def same_weights(a: ModelConfig, b: ModelConfig) -> bool:
    keys = ("backend", "model", "gguf_file", "base_url", "device", "dtype", "adapter")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


class Workspace:
    """Loads lazily: parsing files is cheap, models and databases are opened on first use."""

    def __init__(self, prompt_path: str | Path, overrides: dict[str, Any] | None = None,
                 llms: dict[str, LLM] | None = None, text: str | None = None) -> None:
        """`text`: the prompt file's content as the user sees it (an editor's unsaved buffer); default: the file."""
        self.prompt_path = Path(prompt_path).resolve()
        self.prompt: PromptFile = load_prompt(self.prompt_path, text)
        assert self.prompt.suite_path is not None
        self.suite: Suite = load_suite(self.prompt.suite_path)
        self.config: Config = load_config(self.prompt_path, overrides)
        self._llms: dict[str, LLM] = dict(llms or {})
        self._given = {id(v) for v in self._llms.values()}  # the caller's models: the caller closes them

    @cached_property
    def store(self) -> Store:
        return Store(self.config.store_path)

    @cached_property
    def task(self) -> Task:
        sql = self.config.sql
        return make_task(self.suite.task, str(self.suite.database) if self.suite.database else None,
                         timeout_s=sql.timeout_s, row_cap=sql.row_cap, example_values=sql.example_values)

    def splits(self) -> dict[str, list]:
        return self.suite.split()

    def task_llm(self) -> LLM:
        if "model" not in self._llms:
            self._llms["model"] = build_llm(self.config.model, self.config.root)
        return self._llms["model"]

    def evolver_llm(self) -> LLM:
        if "evolver" not in self._llms:
            if same_weights(self.config.evolver, self.config.model):
                self._llms["evolver"] = self.task_llm()
            else:
                self._llms["evolver"] = build_llm(self.config.evolver, self.config.root)
        return self._llms["evolver"]

    def scorer(self, cancel: CancelToken | None = None, on_usage=None) -> Scorer:
        return Scorer(self.task, self.task_llm(), self.store, sampling_of(self.config.model), cancel=cancel,
                      chunk_size=max(1, self.config.model.batch_size), on_usage=on_usage)

    def close(self) -> None:
        if "task" in self.__dict__:
            self.task.close()
        for key, llm in {id(v): v for v in self._llms.values()}.items():
            if key not in self._given:
                llm.close()
        if "store" in self.__dict__:
            self.store.close()
