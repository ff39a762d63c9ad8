"""A transformers KV cache for batched decoding that never concatenates: each layer's keys and values live in a
buffer grown in chunks, so a decode step writes one slot (DynamicLayer copies the whole cache every step, which
on a long cache costs as much as the matrix products); rows of different lengths each write their token at their
own slot (`slots`), and rows leave the batch by index.

Needs transformers' layered caches (`transformers.cache_utils.DynamicLayer`, 4.56 and later); `supported()`
says whether they are there.
"""

from __future__ import annotations

from typing import Any

try:  # layered caches: transformers >= 4.56
    from transformers.cache_utils import DynamicCache, DynamicLayer
except ImportError:  # pragma: no cover - older transformers: the backend falls back to `generate()`
    DynamicCache = DynamicLayer = None  # type: ignore[assignment,misc]

GROW_TOKENS = 256  # the least a buffer grows by


def supported() -> bool:
    return DynamicLayer is not None


class GrowingLayer(DynamicLayer if DynamicLayer is not None else object):  # type: ignore[misc]
    """One layer's keys and values, [batch, heads, length, head_dim] views of a larger buffer."""

    def __init__(self, capacity: int = 0, dtype: Any = None) -> None:
        super().__init__()
        self.capacity_hint = capacity
        self.dtype = dtype  # what the buffer holds (None: the model's); new keys/values are converted on write
        self.slots: Any = None  # one slot per row to write a single new token at (None: append after the last)
        self.slot_need = 0  # with `slots`: the length the buffer needs (the largest slot + 1)
        self.slot_rows: Any = None  # with `slots`: the rows' indices
        self.length = 0
        self._k: Any = None
        self._v: Any = None

    def load(self, keys: Any, values: Any, batch: int) -> None:
        """Start from a prefix's keys and values ([1, heads, n, dim]), copied into each of `batch` rows."""
        self.lazy_initialization(keys, values)
        self._reserve(keys.expand(batch, -1, -1, -1), keys.shape[-2])
        n = keys.shape[-2]
        self._k[:, :, :n] = keys
        self._v[:, :, :n] = values
        self._set_length(n)

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.slots is not None:  # rows of different lengths: each writes its token after its own last
            need, rows = self.slot_need, self.slot_rows
            self._reserve(key_states, need)
            self._k[rows, :, self.slots] = key_states[:, :, 0].to(self._k.dtype)
            self._v[rows, :, self.slots] = value_states[:, :, 0].to(self._v.dtype)
            self._set_length(max(self.length, need))
            return self.keys, self.values
        n, s = self.length, key_states.shape[-2]
        self._reserve(key_states, n + s)
        self._k[:, :, n: n + s] = key_states
        self._v[:, :, n: n + s] = value_states
        self._set_length(n + s)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: Any) -> None:
        if self._k is not None:
            self._k, self._v = self._k[indices], self._v[indices]
            self._set_length(self.length)
        if self.slots is not None:
            set_slots([self], self.slots[indices])

    def _set_length(self, n: int) -> None:
        self.length = n
        self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]

    def _reserve(self, like: Any, need: int) -> None:
        cap = 0 if self._k is None else self._k.shape[-2]
        if need <= cap:
            return
        size = max(need, self.capacity_hint, cap + max(GROW_TOKENS, cap // 2))
        b, h, _, d = like.shape
        dtype = self.dtype or like.dtype
        # zeros, not garbage: a slot a row has not written yet may sit inside another row's length, where attention
        # weighs it by exactly 0 (0 x NaN would not be 0)
        k, v = like.new_zeros((b, h, size, d), dtype=dtype), like.new_zeros((b, h, size, d), dtype=dtype)
        if self.length:
            k[:, :, : self.length] = self._k[:, :, : self.length]
            v[:, :, : self.length] = self._v[:, :, : self.length]
        self._k, self._v = k, v


def set_slots(layers: Any, slots: Any) -> None:
    """Each row's next token goes to its slot in `slots` (a tensor, one per row), in every one of `layers`
    (worked out once for all layers: the largest slot is one read back from the tensor)."""
    import torch

    need = int(slots.max()) + 1
    rows = torch.arange(slots.shape[0], device=slots.device)
    for layer in layers:
        layer.slots, layer.slot_need, layer.slot_rows = slots, need, rows


def growing_cache(layers: int, capacity: int, dtype: Any = None) -> Any:
    """A DynamicCache of `layers` GrowingLayers (empty; `load` or the first forward pass fills them)."""
    cache = DynamicCache()
    cache.layers = [GrowingLayer(capacity, dtype) for _ in range(layers)]
    return cache
