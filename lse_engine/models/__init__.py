"""Models are data: a catalog of known GGUF files with pinned sha256, fetched on purpose, verified, resolved.

`lse models list|pull|verify` is the command line over this package; `ensure_model` is for callers (the demo)
that want a file now and may fetch it after telling the user; `resolve_model` turns a `model` setting into
what a backend loads.
"""

from __future__ import annotations

from lse_engine.models.catalog import KNOWN, Catalog, HFFile, ModelSpec, WheelChunk
from lse_engine.models.pull import (
    PullResult,
    VerifyResult,
    ensure_model,
    locate,
    not_downloaded_message,
    on_disk,
    pull,
    require_local,
    verify,
)
from lse_engine.models.resolve import resolve_model, split_gguf
from lse_engine.models.store import cache_path, cache_root, models_dir
from lse_engine.models.view import PullView, RichPullView

__all__ = ["KNOWN", "Catalog", "HFFile", "ModelSpec", "PullResult", "PullView", "RichPullView", "VerifyResult",
           "WheelChunk", "cache_path", "cache_root", "ensure_model", "locate", "models_dir", "not_downloaded_message",
           "on_disk", "pull", "require_local", "resolve_model", "split_gguf", "verify"]
