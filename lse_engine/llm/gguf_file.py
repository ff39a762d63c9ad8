"""A GGUF file's tensor table and scalar metadata, read without its vocabulary.

The `gguf` package's `GGUFReader` builds a numpy view for every string of every metadata array: on a Qwen2.5 file
(151,936 tokens and as many merges) that is ~12 s and a few hundred MB before any tensor is read. The loader only
needs the architecture and where each tensor lies, so this reads the header with `struct` and walks over arrays of
strings. Tensor data is read from the file a block of rows at a time when it is de-quantised (not memory-mapped:
the pages of a mapped file count in the process's resident memory until it is unmapped, the whole file by the end).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

GGUF_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class BadGGUF(ValueError):
    """Not a GGUF file this reader understands (truncated, another version, an unknown metadata type)."""


@dataclass(frozen=True)
class Tensor:
    """One tensor: its GGUF name, shape in torch order ([rows, columns]), ggml type and where its bytes lie."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    path: str
    offset: int  # of its first byte in the file
    row_bytes: int  # bytes of one row (the last dimension) in the file's encoding

    @property
    def rows(self) -> int:
        """Rows of a matrix (every dimension but the last, multiplied); 1 for a vector."""
        n = 1
        for d in self.shape[:-1]:
            n *= d
        return n

    def read(self, start: int = 0, stop: int | None = None) -> Any:
        """Rows start..stop-1 as they are stored: numpy uint8 [rows, row_bytes] (a vector: [1, row_bytes])."""
        import numpy as np

        stop = self.rows if stop is None else min(stop, self.rows)
        count = max(0, stop - start) * self.row_bytes
        data = np.fromfile(self.path, dtype=np.uint8, count=count, offset=self.offset + start * self.row_bytes)
        if data.size != count:
            raise BadGGUF(f"{self.path}: tensor {self.name} ends past the end of the file: a truncated file?")
        return data.reshape(-1, self.row_bytes)


@dataclass(frozen=True)
class GGUFFile:
    path: str
    metadata: dict[str, Any]  # scalars and numeric arrays; a string array is given as its length
    tensors: tuple[Tensor, ...]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))


class _Cursor:
    def __init__(self, blob: Any, path: str) -> None:
        self.blob, self.pos, self.path = blob, 0, path

    def take(self, fmt: str) -> Any:
        try:
            values = struct.unpack_from(fmt, self.blob, self.pos)
        except struct.error as e:
            raise BadGGUF(f"{self.path}: the header ends early (at byte {self.pos}): a truncated file?") from e
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        length = self.take("<Q")
        if self.pos + length > len(self.blob):
            raise BadGGUF(f"{self.path}: a string runs past the end of the file: a truncated file?")
        text = bytes(self.blob[self.pos: self.pos + length]).decode("utf-8", errors="replace")
        self.pos += length
        return text

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise BadGGUF(f"{self.path}: unknown metadata type {kind}")
        item, count = self.take("<I"), self.take("<Q")
        if item in _SCALARS:
            values = self.take(f"<{count}{_SCALARS[item][1]}") if count else ()
            return list(values) if isinstance(values, tuple) else [values]
        if item != _STRING:
            raise BadGGUF(f"{self.path}: arrays of metadata type {item} are not read here")
        for _ in range(count):  # a vocabulary: walked over, not decoded
            self.pos += 8 + self.take("<Q")
        return count


def read(path: str) -> GGUFFile:
    """The header and tensor table of the GGUF at `path` (tensor data memory-mapped, not read)."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    blob = np.memmap(path, mode="r", dtype=np.uint8)
    cur = _Cursor(blob, path)
    if bytes(blob[:4]) != GGUF_MAGIC:
        raise BadGGUF(f"{path} is not a GGUF file (no GGUF magic bytes)")
    cur.pos = 4
    version, n_tensors, n_fields = cur.take("<I"), cur.take("<Q"), cur.take("<Q")
    if version not in (2, 3):
        raise BadGGUF(f"{path} is GGUF version {version}; versions 2 and 3 are read")
    metadata: dict[str, Any] = {}
    for _ in range(n_fields):
        key = cur.string()
        metadata[key] = cur.value(cur.take("<I"))
    table = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = [cur.take("<Q") for _ in range(cur.take("<I"))]
        table.append((name, tuple(reversed(dims)), cur.take("<I"), cur.take("<Q")))
    alignment = int(metadata.get("general.alignment", 32))
    start = (cur.pos + alignment - 1) // alignment * alignment
    size = len(blob)
    del cur, blob  # unmapped: only the header's pages were read
    tensors = []
    for name, shape, kind, offset in table:
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (ValueError, KeyError) as e:
            raise BadGGUF(f"{path}: tensor {name} has the unknown ggml type {kind}") from e
        tensor = Tensor(name, shape, kind, path, start + offset, shape[-1] // block * type_size)
        if tensor.offset + tensor.rows * tensor.row_bytes > size:
            raise BadGGUF(f"{path}: tensor {name} runs past the end of the file: a truncated file?")
        tensors.append(tensor)
    return GGUFFile(path, metadata, tuple(tensors))
