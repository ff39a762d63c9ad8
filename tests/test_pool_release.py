"""Releasing a model's weights through the pool (`ModelPool.release`, `max_loaded`) and loading them again."""

from __future__ import annotations

from pathlib import Path

from lse_engine.config import ModelConfig
from lse_engine.llm.base import Sampling
from lse_engine.llm.pool import LazyLLM, ModelPool
from lse_engine.llm.tiny_gguf import build_tiny_gguf
from lse_engine.llm.transformers_backend import TransformersLLM
from tests.scripted import ScriptedLLM
from tests.test_llm_transformers import SHARED_CHATS

CHAT = [{"role": "user", "content": "hi"}]


def test_release_closes_a_backend_without_release_and_builds_it_again(tmp_path: Path) -> None:
    built: list[ScriptedLLM] = []

    def factory(mc: ModelConfig) -> ScriptedLLM:
        built.append(ScriptedLLM(lambda chat: "ok", mc.model))
        return built[-1]

    pool = ModelPool(tmp_path, factory)
    task, evolver = ModelConfig(backend="openai", model="a"), ModelConfig(backend="openai", model="b")
    assert pool.release(task) is False  # never loaded
    pool.get(task).generate([CHAT], Sampling())
    assert pool.loaded() and pool.release(task) and pool.loaded() == [] and pool.releases == 1
    pool.get(task).generate([CHAT], Sampling())
    assert len(built) == 2  # built again on its next generate
    pool.get(evolver).generate([CHAT], Sampling())
    assert len(pool.loaded()) == 2  # no limit by default
    pool.close()


def test_max_loaded_releases_the_least_recently_used(tmp_path: Path) -> None:
    pool = ModelPool(tmp_path, lambda mc: ScriptedLLM(lambda chat: "ok", mc.model), max_loaded=1)
    a, b = ModelConfig(backend="openai", model="a"), ModelConfig(backend="openai", model="b")
    llm_a, llm_b = pool.get(a), pool.get(b)
    assert isinstance(llm_a, LazyLLM) and isinstance(llm_b, LazyLLM)
    llm_a.generate([CHAT], Sampling())
    llm_a.generate([CHAT], Sampling())  # already loaded: nothing released
    assert pool.releases == 0 and llm_a.loaded
    llm_b.generate([CHAT], Sampling())
    assert llm_b.loaded and not llm_a.loaded and pool.releases == 1
    llm_a.generate([CHAT], Sampling())
    assert llm_a.loaded and not llm_b.loaded and pool.releases == 2
    pool.close()


def test_a_released_transformers_model_keeps_its_tokenizer_and_answers_the_same(tmp_path: Path) -> None:
    path = build_tiny_gguf(tmp_path / "gguf", seed=4)
    pool = ModelPool(tmp_path, max_loaded=1)
    task = ModelConfig(backend="transformers", model=path, dtype="int8", batch_size=8)
    other = ModelConfig(backend="transformers", model=path, dtype="float32", batch_size=8)
    greedy = Sampling(max_tokens=8)
    assert pool.get(task).tokens_per_s is None  # type: ignore[attr-defined]
    first = pool.get(task).generate(SHARED_CHATS, greedy)
    assert pool.get(task).tokens_per_s > 0  # type: ignore[attr-defined]  # what the demo reports
    inner = pool.get(task).get()  # type: ignore[attr-defined]
    assert isinstance(inner, TransformersLLM) and inner.loaded
    pool.get(other).generate(SHARED_CHATS[:1], greedy)  # the float32 profile loads: the int8 one is released
    assert not inner.loaded and pool.releases == 1
    assert pool.get(task).generate(SHARED_CHATS, greedy) == first
    assert pool.get(task).get() is inner and inner.loaded and inner.stats["loads"] == 2  # the same object, reloaded
    pool.close()
