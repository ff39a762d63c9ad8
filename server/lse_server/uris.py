"""File URIs <-> paths. Every part of a path may hold `#`, `?`, `;`, `%`, spaces or any Unicode: a URI's path
is split off first (no query or fragment reading), then percent-decoded."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pygls.uris import from_fs_path

from lse_server.errors import RequestFailed


def uri_to_path(uri: object) -> Path:
    """The local path of a `file:` URI; RequestFailed for anything else."""
    if not isinstance(uri, str) or not uri:
        raise RequestFailed(f"not a file URI: {uri!r}")
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        raise RequestFailed(f"not a file URI: {uri[:200]}")
    try:
        path = unquote(parts.path, errors="strict")
    except UnicodeDecodeError:
        raise RequestFailed(f"not a UTF-8 file path: {uri[:200]}") from None
    if parts.netloc and parts.netloc.lower() != "localhost":
        path = f"//{parts.netloc}{path}"  # a UNC share
    if os.name == "nt" and len(path) > 2 and path[0] == "/" and path[2] == ":":
        path = path[1:]
    if not path or "\x00" in path:
        raise RequestFailed(f"not a usable file path: {uri[:200]}")
    return Path(path)


def path_to_uri(path: str | os.PathLike[str]) -> str:
    """The `file:` URI of a path, every special character percent-encoded."""
    return from_fs_path(str(path)) or Path(path).resolve().as_uri()
