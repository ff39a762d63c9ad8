"""How much memory there is, and how much a model will take: checked before loading, so that a model that cannot fit
ends in a message naming it and its needs, not in the kernel's out-of-memory kill."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

from lse_engine.errors import LSEError

MEMINFO = "/proc/meminfo"


class NotEnoughMemory(LSEError):
    """A model would not fit in the memory this machine has available."""


def available_bytes(meminfo: str = MEMINFO) -> int | None:
    """MemAvailable (what the kernel can hand out without swapping), or None where it is not reported."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def resident_bytes() -> int | None:
    """This process's resident memory now (VmRSS), or None where /proc is not there."""
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check(model: str, need: int, what: str = "") -> None:
    """Raise NotEnoughMemory when `need` bytes are more than the machine has available now."""
    have = available_bytes()
    if have is None or need <= have:
        return
    raise NotEnoughMemory(
        f"not enough memory to load model {model!r}: it needs about {gb(need)}{f' ({what})' if what else ''}, "
        f"and {gb(have)} is available (MemAvailable in {MEMINFO}). Close other programs, use a smaller model "
        "(`lse models list`), or serve it from another machine with `backend = \"openai\"`.")


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def give_back_free_heap() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim): after a load, the temporaries of
    de-quantisation otherwise stay in this process's resident memory though nothing uses them."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:
        trim(0)


WORKING_BYTES = 512 << 20  # beyond the weights: a long prompt's activations, KV caches, the tokenizer


def gguf_weights_bytes(path: str, int8: bool) -> int:
    """Memory the weights of the GGUF at `path` take once loaded: int8 (`gguf_load`: int8 matrices with a float32
    scale per row, a quantised embedding kept as its blocks, float32 vectors), or float32 through transformers'
    loader (its state dict and the model: twice the float32 weights at the peak)."""
    from lse_engine.llm import gguf_file

    total = 0
    for t in gguf_file.read(path).tensors:
        values = t.rows * t.shape[-1]
        if not int8:
            total += 2 * 4 * values
        elif len(t.shape) == 1:
            total += 4 * values
        elif t.name == "token_embd.weight" and t.ggml_type not in (0, 1, 30):  # F32, F16, BF16 are loaded as floats
            total += t.rows * t.row_bytes
        else:
            total += values + 4 * t.rows
    return total


def safetensors_values(directory: str) -> int:
    """How many values the `*.safetensors` files in `directory` hold (read from their headers)."""
    import json
    import struct

    total = 0
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".safetensors"):
            continue
        try:
            with open(os.path.join(directory, name), "rb") as f:
                header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        except (OSError, ValueError, struct.error):
            continue
        for key, entry in header.items():
            if key != "__metadata__" and isinstance(entry, dict):
                n = 1
                for d in entry.get("shape", []):
                    n *= int(d)
                total += n
    return total
