"""Attention for a batch whose rows share a prompt prefix, with the prefix's keys and values held once.

Each layer's keys/values are in two parts: the shared prefix `[1, kv_heads, P, dim]`, and every row's own tokens
(its question, then its reply) in the model's cache `[rows, kv_heads, L, dim]`. The prefix part is one matrix
product for all rows and query heads of a key/value group, so the prefix is read once per step instead of once
per row (on a 1,500-token schema and 16 rows, that is most of what a decode step reads besides the weights),
and it is never copied into the rows. The two parts' scores share one softmax.

Registered with transformers' `AttentionInterface` under `NAME`; the decoder switches a model to it only for its
own forward passes, which carry a `SharedKV` as the `lse_shared` keyword. A call without it (any other use of the
model) is plain SDPA.
"""

from __future__ import annotations

from typing import Any

NAME = "lse_shared_prefix"
CHUNK_SCORES = 1 << 24  # scores (floats) computed at once while prefilling: rows are taken a few at a time
# at most this many (row, key/value head) pairs: their products over the cache's views are taken one pair at a time
SPLIT_PAIRS = 4

_registered = False


def register() -> bool:
    """Make `NAME` a valid attention implementation (once); False where transformers has no AttentionInterface."""
    global _registered
    if _registered:
        return True
    try:
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    except ImportError:  # pragma: no cover - transformers < 4.48
        return False
    ALL_ATTENTION_FUNCTIONS.register(NAME, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # calls without `lse_shared` get SDPA's masks
    _registered = True
    return True


class SharedKV:
    """What every layer's attention needs besides the model's cache: the shared prefix and which cache slots
    hold real tokens (`valid[row, slot]`; padding between a row's prefix and its question is not)."""

    def __init__(self, prefix: list[tuple[Any, Any]] | None, valid: Any) -> None:
        self.prefix = prefix
        self.valid = valid
        self.calls = 0  # attention calls served (the decoder checks every layer came through here)
        self._mask_key: tuple[int, int] | None = None
        self._mask: Any = None

    def select(self, index: Any) -> None:
        """Keep only these rows."""
        self.valid = self.valid[index]
        self._mask_key = None

    def new_pass(self) -> None:
        """A forward pass begins (`valid` may have changed since the last)."""
        self._mask_key = None

    def mask(self, q_len: int, length: int) -> Any:
        """[rows, 1, 1, q_len, length] bool: which of a row's own slots each query may attend. One query per row
        (decoding): the row's valid slots. Several (a prefill, written at slots length-q_len...length-1): causal
        as well, and always itself, so that a padding query attends something."""
        import torch

        if self._mask_key != (q_len, length):
            if q_len == 1:
                self._mask = self.valid[:, None, None, None, :length]
            else:
                device = self.valid.device
                slots = torch.arange(length, device=device)
                queries = torch.arange(length - q_len, length, device=device)[:, None]
                allowed = (self.valid[:, None, :length] & (slots <= queries)) | (slots == queries)
                self._mask = allowed[:, None, None]
            self._mask_key = (q_len, length)
        return self._mask


def attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None,
              dropout: float = 0.0, lse_shared: SharedKV | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention signature: query [rows, heads, q, dim], key/value [rows, kv_heads, L, dim] (the
    rows' own part); returns [rows, q, heads, dim]."""
    if lse_shared is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    import torch

    lse_shared.calls += 1
    rows, heads, q_len, dim = query.shape
    scale = scaling if scaling is not None else dim ** -0.5
    prefix = lse_shared.prefix[module.layer_idx] if lse_shared.prefix else None
    allowed = lse_shared.mask(q_len, key.shape[2])
    # scores are computed a block of rows and queries at a time, so that a long prefill stays within CHUNK_SCORES
    keys = key.shape[2] + (prefix[0].shape[2] if prefix is not None else 0)
    per_query = heads * keys
    queries = max(1, min(q_len, CHUNK_SCORES // per_query))
    per_row = max(1, CHUNK_SCORES // (per_query * queries))
    if queries >= q_len and per_row >= rows:
        return _attend(query * scale, key, value, allowed, prefix).to(query.dtype), None
    out = torch.empty((rows, q_len, heads, dim), dtype=query.dtype, device=query.device)
    for i in range(0, rows, per_row):
        r = slice(i, min(rows, i + per_row))
        for j in range(0, q_len, queries):
            t = slice(j, min(q_len, j + queries))
            out[r, t] = _attend(query[r, :, t] * scale, key[r], value[r], allowed[r, :, :, t], prefix)
    return out, None


def _attend(query: Any, key: Any, value: Any, allowed: Any, prefix: tuple[Any, Any] | None) -> Any:
    """Softmax attention of (scaled) queries over the prefix and the rows' own slots; products in the keys'
    dtype, softmax in float32 (its sums in float64). Each part is kept in the layout its matrix product gives
    (contiguous), and the two are joined through their row maxima and sums."""
    import torch

    rows, heads, q_len, dim = query.shape
    groups = key.shape[1]
    width = heads // groups * q_len  # query rows per key/value head: head g*rep + r reads key/value head g
    q = query.to(key.dtype).reshape(rows, groups, width, dim)
    own = _product(q, key.transpose(-1, -2)).float()  # [rows, groups, width, L]
    own.view(rows, groups, -1, q_len, own.shape[-1]).masked_fill_(~allowed, float("-inf"))
    top = own.amax(dim=-1)
    if prefix is not None:
        pk, pv = prefix  # [1, groups, P, dim]
        flat = q.transpose(0, 1).reshape(groups, rows * width, dim)
        shared = torch.bmm(flat, pk[0].transpose(1, 2)).float()  # [groups, rows*width, P]
        top = torch.maximum(top, shared.amax(dim=-1).view(groups, rows, width).transpose(0, 1))
        shared.sub_(top.transpose(0, 1).reshape(groups, rows * width, 1)).exp_()
    own.sub_(top[..., None]).exp_()
    # summed in float64: a float32 sum's rounding depends on how many (zero) padding slots follow a row's own
    # slots, and with it the row's reply; in float64 the sum of these few thousand terms rounds to the same float32
    total = own.sum(dim=-1, dtype=torch.float64)
    result = _product(own.to(value.dtype), value).float()  # [rows, groups, width, dim]
    if prefix is not None:
        total += shared.sum(dim=-1, dtype=torch.float64).view(groups, rows, width).transpose(0, 1)
        result += torch.bmm(shared.to(pv.dtype), pv[0]).float().view(groups, rows, width, dim).transpose(0, 1)
    result /= total.float()[..., None]
    return result.view(rows, heads, q_len, dim).transpose(1, 2)


def _product(a: Any, b: Any) -> Any:
    """a @ b for [rows, groups, m, k] @ [rows, groups, k, n], where `b` is a view of the cache's larger buffer.

    A batched product over such a view (its batches lie further apart than their size) is first copied whole by
    torch's CPU bmm in bfloat16: for one long reply that copy was the step's largest cost after the weights, and
    it grew with the reply (a batch of one is copied as well). For a few (row, head) pairs each pair's product is
    taken alone as a plain matrix product on its own slice (no copy); it gives the batched call's numbers (checked
    in bfloat16 at 1 and 2 threads, and in float32 at 1 thread)."""
    import torch

    rows, groups = a.shape[:2]
    if rows * groups > SPLIT_PAIRS:
        return torch.matmul(a, b)
    out = torch.empty((rows, groups, a.shape[2], b.shape[3]), dtype=a.dtype, device=a.device)
    for r in range(rows):
        for g in range(groups):
            torch.mm(a[r, g], b[r, g], out=out[r, g])
    return out
