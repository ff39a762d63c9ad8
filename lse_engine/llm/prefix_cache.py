"""Keys and values of recent prompt prefixes, so that a system prompt shared by a batch is computed once, and not
again when the same prompt recurs in the next batch or round.

An entry is keyed by its token ids; a lookup finds the entry sharing the most leading tokens with the asked-for
prefix (the keys and values of a token depend only on the tokens before it, so any common leading part of an
entry is valid). Entries are evicted least recently used first, within a byte budget. `state` is a fingerprint of
the model the entries were computed with: when it changes (weights trained in place, an adapter switched on or
off), every entry is dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

KV = list[tuple[Any, Any]]  # per layer: keys and values, [1, heads, tokens, head_dim]


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """A small LRU of prefix keys/values, at most `max_bytes` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self._bytes = 0
        self._state: Hashable = None
        self.hits = 0  # tokens served from the cache
        self.misses = 0  # tokens computed

    def check_state(self, state: Hashable) -> None:
        """Drop every entry if the model changed since they were computed."""
        if state != self._state:
            self.clear()
            self._state = state

    def longest(self, ids: Sequence[int]) -> tuple[int, KV | None]:
        """How many leading tokens of `ids` some entry holds, and that entry's keys/values (possibly longer)."""
        best, found = 0, None
        for key, kv in self._entries.items():
            n = common_prefix_len(key, ids)
            if n > best:
                best, found, hit = n, kv, key
        if found is not None:
            self._entries.move_to_end(hit)
        return best, found

    def put(self, ids: Sequence[int], kv: KV) -> None:
        size = kv_bytes(kv)
        key = tuple(ids)
        if size > self.max_bytes // 2 or key in self._entries:
            return
        self._entries[key] = kv
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= kv_bytes(old)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


def kv_bytes(kv: KV) -> int:
    return sum(k.nelement() * k.element_size() + v.nelement() * v.element_size() for k, v in kv)
