"""Turn a `model` setting into what a backend loads: a catalog name, a `.gguf` file, a directory or an HF id."""

from __future__ import annotations

import os

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
