"""Turn a `model` setting into what a backend loads: a catalog name, a `.gguf` file, a directory or an HF id."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from lse_engine.config import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL, ModelConfig
from lse_engine.errors import ModelNotFoundError
from lse_engine.models.catalog import Catalog
from lse_engine.models.pull import require_local


def looks_like_path(model: str) -> bool:
    """True for strings that name a filesystem location rather than a Hugging Face id (`org/name`)."""
    return (os.path.exists(os.path.expanduser(model)) or model.startswith(("/", ".", "~"))
            or model.count("/") > 1 or "\\" in model or model.lower().endswith(".gguf"))


def split_gguf(path: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(directory, GGUF file name) for a `.gguf` path, or a directory holding exactly one GGUF and no config.json;
    other paths unchanged. A directory with several GGUFs and no `gguf_file` is an error naming them."""
    full = os.path.expanduser(path)
    if not gguf_file and full.lower().endswith(".gguf") and not os.path.isdir(full):
        return os.path.dirname(full) or ".", os.path.basename(full)
    if not gguf_file and os.path.isdir(full) and not os.path.isfile(os.path.join(full, "config.json")):
        ggufs = sorted(n for n in os.listdir(full) if n.lower().endswith(".gguf"))
        if len(ggufs) == 1:
            return full, ggufs[0]
        if len(ggufs) > 1:
            raise ModelNotFoundError(f"{os.path.abspath(full)} holds several GGUF files ({', '.join(ggufs)}): "
                                     "name one as `model = \"DIR/FILE.gguf\"` or set `gguf_file`")
    return path, gguf_file


def resolve_model(model: str, gguf_file: str | None = None, catalog: Catalog | None = None) -> tuple[str, str | None]:
    """What `from_pretrained` reads for a `model` setting: (a local directory or an HF id, a GGUF file name).

    - a name from `lse models list` (or an lse.toml `[models.NAME]`): its verified file, else an error naming
      `lse models pull NAME` (nothing is downloaded here);
    - a `.gguf` file path: its directory and file name;
    - a directory: as is (a lone GGUF inside is picked when there is no config.json);
    - anything else: a Hugging Face id, read from the local HF cache by the backend.
    """
    catalog = catalog or Catalog()
    spec = None if os.path.exists(os.path.expanduser(model)) else catalog.get(model)
    if spec is not None:
        path = require_local(spec)
        return str(path.parent), path.name
    if looks_like_path(model):
        return split_gguf(model, gguf_file)
    if not gguf_file:  # an HF GGUF repo we know: pick the pinned file
        for s in catalog.specs:
            if any(hf.repo == model for hf in s.hf):
                return model, next(hf.filename for hf in s.hf if hf.repo == model)
    return model, gguf_file


ALIASES = ("smollm2", "tiny")  # names the engine resolves itself (not paths, not HF ids)


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def resolve_backend(mc: ModelConfig) -> tuple[str, str]:
    """Turn `auto` backend/model into concrete ones: vLLM + the paper's size on a GPU, transformers on CPU."""
    backend, model = mc.backend, mc.model
    if backend == "auto":
        on_gpu = cuda_available() and importlib.util.find_spec("vllm") is not None
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


def model_ref(backend: str, model: str, root: Path) -> str:
    """The model as the backend will be given it: a path relative to the workspace becomes absolute."""
    if backend != "openai" and model not in ALIASES and (root / model).exists():
        return str((root / model).resolve())
    return model


def model_identity(mc: ModelConfig, root: Path) -> str:
    """The one rule for "the same model" (it keys the model pool and the outcome cache): the weights
    (`config.MODEL_IDENTITY`'s keys, resolved: `auto` made concrete, a workspace path made absolute, the server
    and its key only for `openai`) and how they are loaded (adapter, device, dtype); never sampling."""
    backend, model = resolve_backend(mc)
    server = mc.base_url if backend == "openai" else ""
    if backend == "openai" and mc.api_key_env != ModelConfig.api_key_env:
        server += f" ({mc.api_key_env})"  # another account may be another deployment
    return json.dumps([backend, model_ref(backend, model, root), mc.gguf_file, server,
                       resolve_adapter(mc.adapter, root) or "", mc.device, mc.dtype])
