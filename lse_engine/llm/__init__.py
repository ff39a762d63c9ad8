"""Model backends behind one protocol (`LLM`). Importing this package is cheap: torch, transformers, httpx
and vLLM are imported only when `make_llm` builds a backend that needs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lse_engine.errors import LSEError
from lse_engine.llm.base import LLM, CancelToken, Chat, Completion, Message, Sampling

BACKENDS = ("transformers", "openai", "vllm")

__all__ = ["BACKENDS", "LLM", "CancelToken", "Chat", "Completion", "Message", "Sampling", "make_llm",
           "resolve_weights", "tiny_model_dir"]


def tiny_model_dir() -> Path:
    """Where the tiny random model is cached: `<LSE cache>/tiny-model` (`$LSE_CACHE_DIR`, else XDG, else
    ~/.cache/lse)."""
    from lse_engine.models.store import cache_root

    return cache_root() / "tiny-model"


def resolve_weights(model: str, gguf_file: str | None = None, root: str | Path | None = None) -> tuple[str, str | None]:
    """What a local backend loads for a `model` setting: (directory or HF id, GGUF file name or None).

    "tiny" is the tiny random model (built on first use); "smollm2" and every name of `lse models list` (plus
    the `[models.NAME]` tables of the lse.toml at `root`) are verified files in the model cache; a `.gguf` path
    is split into its directory and file; directories and HF ids pass through. Never downloads.
    """
    if model == "tiny":
        from lse_engine.llm.tiny import build_tiny_model

        return build_tiny_model(tiny_model_dir()), None
    from lse_engine.models import Catalog, resolve_model

    catalog = Catalog()
    if root is not None and catalog.get(model) is None:
        from lse_engine.models.catalog import catalog_for

        catalog = catalog_for(Path(root))
    return resolve_model(model, gguf_file, catalog)


def make_llm(backend: str, model: str, **kwargs: Any) -> LLM:
    """Build a backend: "transformers" (in-process), "openai" (any /v1/chat/completions server) or "vllm".

    `root` (optional): the workspace whose lse.toml may define `[models.NAME]`.
    """
    if backend not in BACKENDS:
        raise LSEError(f"unknown model backend {backend!r}: use one of {', '.join(BACKENDS)}")
    root = kwargs.pop("root", None)
    if backend == "openai":
        from lse_engine.llm.openai_backend import OpenAICompatLLM

        return OpenAICompatLLM(model=model, **kwargs)
    model, gguf_file = resolve_weights(model, kwargs.pop("gguf_file", None), root)
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    if backend == "vllm":
        from lse_engine.llm.vllm_backend import VLLMLLM

        return VLLMLLM(model, **kwargs)
    from lse_engine.llm.transformers_backend import TransformersLLM

    return TransformersLLM(model, **kwargs)
