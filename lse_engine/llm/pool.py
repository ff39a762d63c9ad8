"""One owner for loaded models. A model profile (`[model]`, `[evolver]`) names weights; the pool loads each
set of weights once, lazily (on the first generation: a run whose outcomes are all cached loads nothing),
whatever roles use them, and closes what it loaded. `model_identity` is the one definition of "the same
model": it keys the pool and the outcome cache alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lse_engine.config import ModelConfig
from lse_engine.llm.base import LLM, Chat, Completion, Sampling
from lse_engine.models.resolve import model_identity, model_ref, resolve_adapter, resolve_backend

LLMFactory = Callable[[ModelConfig], LLM]


def build_llm(mc: ModelConfig, root: Path) -> LLM:
    """Instantiate (load) the backend a model profile names."""
    from lse_engine.llm import make_llm

    backend, model = resolve_backend(mc)
    kwargs: dict[str, Any] = {}
    if backend == "openai":
        kwargs.update(base_url=mc.base_url, api_key_env=mc.api_key_env, max_concurrency=mc.max_concurrency,
                      timeout_s=mc.timeout_s, max_retries=mc.max_retries)
    else:
        kwargs.update(device=mc.device, dtype=mc.dtype, batch_size=mc.batch_size,
                      adapter=resolve_adapter(mc.adapter, root), root=root)  # root: lse.toml's [models.NAME]
        if mc.gguf_file:
            kwargs["gguf_file"] = mc.gguf_file
        if backend == "transformers":
            kwargs["threads"] = mc.threads
    return make_llm(backend, model_ref(backend, model, root), **kwargs)


class LazyLLM:
    """An `LLM` that loads its weights on the first `generate`; its `model_id` is known without loading.

    `release()` frees the weights until the next `generate` loads them again. `before_load` (set by the pool) is
    called before weights are loaded, `used` after every generate."""

    def __init__(self, model_id: str, load: Callable[[], LLM], before_load: Callable[[LazyLLM], None] | None = None,
                 used: Callable[[LazyLLM], None] | None = None) -> None:
        self._model_id = model_id
        self._load = load
        self._llm: LLM | None = None
        self._lock = threading.Lock()
        self._before_load = before_load
        self._used = used

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory now."""
        return self._llm is not None and bool(getattr(self._llm, "loaded", True))

    @property
    def tokens_per_s(self) -> float | None:
        """The backend's generated tokens a second over its last calls (`TransformersLLM.tokens_per_s`), None when
        it has not generated yet or does not measure it."""
        value = getattr(self._llm, "tokens_per_s", None)
        return float(value) if isinstance(value, (int, float)) else None

    def get(self) -> LLM:
        """The loaded model (loading it now if needed)."""
        if not self.loaded and self._before_load is not None:
            self._before_load(self)  # outside this model's lock: it takes the locks of the models it releases
        with self._lock:
            if self._llm is None:
                self._llm = self._load()
            return self._llm

    def generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[Completion]:
        out = self.get().generate(chats, sampling)
        if self._used is not None:
            self._used(self)
        return out

    def release(self) -> bool:
        """Free the weights now (the next `generate` loads them again); True if they were loaded. A backend with
        a `release()` of its own (transformers) keeps its tokenizer; any other is closed and built again."""
        with self._lock:
            if not self.loaded:
                return False
            assert self._llm is not None
            release = getattr(self._llm, "release", None)
            if callable(release):
                release()
            else:
                self._llm.close()
                self._llm = None
            return True

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None


class ModelPool:
    """Loads each model once for everything that shares the pool (eval and evolve, task model and evolver,
    every run of a bench); `close()` releases what it loaded (models given with `adopt` stay the caller's).

    Memory: `release(mc)` frees one model's weights until its next generate (the evolver while the task model
    scores, say); `max_loaded=N` does it by itself: before a model loads, the least recently used loaded ones are
    released until fewer than N are held (1: one model in memory at a time, each switch costs a load)."""

    def __init__(self, root: Path, factory: LLMFactory | None = None, max_loaded: int | None = None) -> None:
        self.root = root
        self.factory: LLMFactory = factory or (lambda mc: build_llm(mc, self.root))
        self.max_loaded = max_loaded
        self._llms: dict[str, LLM] = {}
        self._adopted: set[str] = set()
        self._last_use: dict[str, int] = {}
        self._uses = 0
        self.releases = 0  # models released to make room (by `max_loaded` or `release`)

    def get(self, mc: ModelConfig) -> LLM:
        """The model a profile names (not loaded until it generates)."""
        key = model_identity(mc, self.root)
        if key not in self._llms:
            self._llms[key] = LazyLLM(f"pool:{key}", lambda: self.factory(mc), self._make_room, self._note_use)
        return self._llms[key]

    def adopt(self, mc: ModelConfig, llm: LLM) -> LLM:
        """Serve `llm` (already built by the caller, who closes it) for profiles with `mc`'s identity."""
        key = model_identity(mc, self.root)
        self._llms[key] = llm
        self._adopted.add(key)
        return llm

    def adopted(self, mc: ModelConfig) -> bool:
        """Whether the model `mc` names was handed in by the caller (`adopt`)."""
        return model_identity(mc, self.root) in self._adopted

    def same(self, a: ModelConfig, b: ModelConfig) -> bool:
        return model_identity(a, self.root) == model_identity(b, self.root)

    def loaded(self) -> list[str]:
        """Identities of the pool's models whose weights are in memory now."""
        return [k for k, llm in self._llms.items() if isinstance(llm, LazyLLM) and llm.loaded]

    def release(self, mc: ModelConfig) -> bool:
        """Free the weights of the model `mc` names (kept: its tokenizer); its next generate loads them again.
        True if they were loaded. Models given with `adopt` are the caller's and are not released."""
        llm = self._llms.get(model_identity(mc, self.root))
        if isinstance(llm, LazyLLM) and llm.release():
            self.releases += 1
            return True
        return False

    def _make_room(self, loading: LazyLLM) -> None:
        if self.max_loaded is None:
            return
        held = sorted((self._last_use.get(k, 0), k) for k, llm in self._llms.items()
                      if isinstance(llm, LazyLLM) and llm is not loading and llm.loaded)
        while held and len(held) >= self.max_loaded:
            _, key = held.pop(0)
            llm = self._llms[key]
            if isinstance(llm, LazyLLM) and llm.release():
                self.releases += 1

    def _note_use(self, llm: LazyLLM) -> None:
        self._uses += 1
        for key, held in self._llms.items():
            if held is llm:
                self._last_use[key] = self._uses

    def close(self) -> None:
        for key, llm in self._llms.items():
            if key not in self._adopted:
                llm.close()
        self._llms.clear()
        self._adopted.clear()


def sampling_of(mc: ModelConfig) -> Sampling:
    """The decoding settings a profile names."""
    s = mc.sampling
    return Sampling(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p)
