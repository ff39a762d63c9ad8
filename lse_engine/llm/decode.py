"""Batched greedy or sampled decoding of a causal LM on CPU or GPU, built for batches of prompts that share a long
prefix (a system prompt with a database schema, then a short question).

1. The prompts' common prefix, cut where the caller says (the end of the system turn, so that a prompt is split
   the same way in any batch), is computed once (or found in the `PrefixCache`); its keys/values are held once
   for the whole batch and read by `shared_attention` (never copied into each row).
2. The rows' own suffixes (the question) are prefilled together in one forward pass. Each row's own tokens
   start at slot 0 of its part of the cache (padding after them, masked out), and each row writes its next token
   right after its own last one, so a row's keys lie exactly where they would lie were it alone: every sum in
   attention then runs over the same numbers in the same order in any batch, and a reply does not depend on its
   batch (int8 layers are exact; the tests check it).
3. Tokens are decoded one step at a time into a growing KV cache (no per-step concatenation); a row leaves the
   batch as soon as it ends (an end token, a stop string, its token budget), so the batch never computes for
   rows that are done. For a Qwen2- or Llama-shaped model a decode step is `lean_step.LeanStep` (the same
   operations without transformers' module machinery, the same logits bit for bit).

Greedy decoding here matches transformers' `generate()` token for token (in float32); the tests check it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from lse_engine.errors import Cancelled
from lse_engine.llm import cpu_quant, kv_cache, shared_attention
from lse_engine.llm.base import CancelToken
from lse_engine.llm.cpu_threads import ThreadTuner
from lse_engine.llm.lean_step import LeanStep
from lse_engine.llm.prefix_cache import KV, PrefixCache, common_prefix_len
from lse_engine.llm.shared_attention import SharedKV


class Unsupported(RuntimeError):
    """The model's attention does not go through transformers' attention interface (use `generate()`)."""


MIN_SHARED = 16  # a shorter common prefix is not worth a separate forward pass
PREFILL_TOKENS = 512  # tokens (rows x columns) one prefill pass runs at most: bounds a long prompt's activations

# picks the next token of each active row: (last-position logits [rows, vocab], the rows' indices in the batch)
Chooser = Callable[[Any, list[int]], Any]
# whether a row is finished after its newest token: (row index in the batch, its generated ids so far)
Finished = Callable[[int, list[int]], bool]


def supports(model: Any) -> bool:
    """Whether `model` can take this path: layered caches, a backbone and a linear head, no sliding window."""
    if not kv_cache.supported() or _forward_params(model) is None or not shared_attention.register():
        return False
    config = _text_config(model)
    layer_types = getattr(config, "layer_types", None) or []
    sliding = any("sliding" in str(t) for t in layer_types) or bool(getattr(config, "use_sliding_window", False)
                                                                     and getattr(config, "sliding_window", None))
    return not sliding and not getattr(config, "is_encoder_decoder", False)


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): then bf16 products run ~4x float32's."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def attention_dtype(model: Any) -> Any:
    """The dtype of attention's products: bfloat16 on a CPU with native bf16 when the model is already not exact
    float32 (int8 weights, bf16 weights); else None (the model's own: a float32 model stays exact)."""
    import torch

    params = next(model.parameters(), None)
    if params is None or params.device.type != "cpu" or not cpu_has_fast_bf16():
        return None
    approximate = params.dtype == torch.bfloat16 or cpu_quant.is_int8(model)
    return torch.bfloat16 if approximate else None


def _text_config(model: Any) -> Any:
    config = model.config
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def _forward_params(model: Any) -> tuple[Any, Any, str] | None:
    """(backbone, output head, the backbone's name for the cache), or None when the model is not a decoder
    with a plain linear head (logits softcapped or scaled: those heads are not reproduced here)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper injects in place
    config = _text_config(base)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None) not in (None, 1, 1.0):
        return None
    backbone = base.get_decoder() if hasattr(base, "get_decoder") else None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if backbone is None or head is None or backbone is base:
        return None
    params = inspect.signature(type(backbone).forward).parameters
    cache = "cache" if "cache" in params else "past_key_values" if "past_key_values" in params else None
    return (backbone, head, cache) if cache else None


class Decoder:
    """Runs batches through one model; `prefix_cache` keeps shared prefixes between calls."""

    def __init__(self, model: Any, prefix_cache: PrefixCache | None = None, tuner: ThreadTuner | None = None) -> None:
        params = _forward_params(model)
        if params is None:
            raise ValueError("this model does not support prefix-shared decoding")
        self.model = model
        self.backbone, self.head, self.cache_kwarg = params
        self.layers = _text_config(model).num_hidden_layers
        self.prefix_cache = prefix_cache
        self.tuner = tuner  # times decode steps to pick the CPU thread count (None: leave it as it is)
        self.device = next(model.parameters()).device
        self.attention_dtype = attention_dtype(model)
        self.lean = LeanStep.for_backbone(model, self.backbone)  # decode steps without module machinery (or None)
        self.prefilled = 0  # tokens run through the model before decoding (shared prefix misses and suffixes)

    # -- one forward pass --------------------------------------------------------------------------------------
    def _forward(self, ids: Any, cache: Any, positions: Any, state: SharedKV, last: Any = None) -> Any:
        """Logits at each row's position `last` (default: the last column), with `shared_attention` (the model
        is switched to it for this pass only): the rows' own slots in `cache`, the shared prefix in `state`.

        A long input goes through in blocks of columns of at most `PREFILL_TOKENS` tokens in all, each block
        appended to the cache before the next: a 3,000-token prompt's activations are then a sixth of what one
        pass holds (each row's keys and values, and its last position's logits, are those one pass gives)."""
        import torch

        rows, width = ids.shape
        step = max(1, PREFILL_TOKENS // rows)
        if width <= step:
            hidden = self._hidden(ids, cache, positions, state)
            picked = hidden[:, -1] if last is None else hidden[torch.arange(rows, device=hidden.device), last]
            return self.head(picked)
        pick = last if last is not None else torch.full((rows,), width - 1, device=ids.device)
        picked = None
        for start in range(0, width, step):
            stop = min(width, start + step)
            hidden = self._hidden(ids[:, start:stop], cache, positions[:, start:stop], state)
            if picked is None:
                picked = hidden.new_empty((rows, hidden.shape[-1]))
            inside = ((pick >= start) & (pick < stop)).nonzero().flatten()
            if len(inside):
                picked[inside] = hidden[inside, pick[inside] - start]
            del hidden
        return self.head(picked)

    def _hidden(self, ids: Any, cache: Any, positions: Any, state: SharedKV) -> Any:
        """The backbone's last hidden states for `ids` (one pass, appended to `cache`)."""
        if self.lean is not None and ids.shape[1] == 1:
            state.new_pass()
            hidden = self.lean.hidden(ids, cache, positions, state)
            self._check_layers(state)
            return hidden
        config = self.model.config
        before = config._attn_implementation
        config._attn_implementation = shared_attention.NAME
        state.new_pass()
        try:
            hidden = self.backbone(input_ids=ids, position_ids=positions, use_cache=True, lse_shared=state,
                                   **{self.cache_kwarg: cache}).last_hidden_state
        finally:
            config._attn_implementation = before
        self._check_layers(state)
        return hidden

    def _check_layers(self, state: SharedKV) -> None:
        if state.calls != self.layers:
            raise Unsupported(f"{state.calls} of {self.layers} attention layers took the shared prefix")
        state.calls = 0

    # -- the shared prefix ---------------------------------------------------------------------------------------
    def prefix_kv(self, ids: Sequence[int]) -> KV:
        """Keys/values of `ids` (batch of one), reusing the longest cached leading part."""
        import torch

        have, cached = self.prefix_cache.longest(ids) if self.prefix_cache is not None else (0, None)
        have = min(have, len(ids))
        cache = kv_cache.growing_cache(self.layers, len(ids), self.attention_dtype)
        if cached is not None and have:
            for layer, (k, v) in zip(cache.layers, cached, strict=True):
                layer.load(k[:, :, :have], v[:, :, :have], 1)
        if have < len(ids):
            rest = torch.tensor([list(ids[have:])], device=self.device)
            positions = torch.arange(have, len(ids), device=self.device)[None]
            valid = torch.ones((1, len(ids)), dtype=torch.bool, device=self.device)
            # the same attention as the rows get, so a token's keys do not depend on where a batch split the prompt
            self._forward(rest, cache, positions, SharedKV(None, valid))
        self.prefilled += len(ids) - have
        kv = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
        if self.prefix_cache is not None:
            self.prefix_cache.hits += have
            self.prefix_cache.misses += len(ids) - have
            if have < len(ids):
                self.prefix_cache.put(ids, kv)
        return kv

    # -- a batch -------------------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], max_new: int, choose: Chooser, finished: Finished,
                 pad_id: int, cancel: CancelToken | None = None, split: int | None = None) -> list[list[int]]:
        """Generated ids of every prompt (at most `max_new` each, ending with the token that finished the row).

        The shared prefix is the prompts' common prefix, cut at `split` when given (a fixed place, such as the
        end of the system turn: then a prompt is split the same way in any batch that shares it)."""
        import torch

        rows = len(prompts)
        out: list[list[int]] = [[] for _ in range(rows)]
        if rows == 0 or max_new <= 0:
            return out
        shared = min(common_prefix_len(prompts[0], p) for p in prompts)
        if split is not None:
            shared = min(shared, split)
        shared = min(shared, min(len(p) for p in prompts) - 1)  # every row keeps one token to prefill
        if shared < MIN_SHARED:
            shared = 0
        prefix = self.prefix_kv(prompts[0][:shared]) if shared else None
        suffixes = [list(p[shared:]) for p in prompts]
        width = max(len(s) for s in suffixes)
        total = width + max_new  # slots in the rows' own cache: [suffix][reply] from slot 0, padding after
        dev = self.device
        valid = torch.zeros((rows, total), dtype=torch.bool, device=dev)
        ids = torch.full((rows, width), pad_id, dtype=torch.long, device=dev)
        for i, s in enumerate(suffixes):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            valid[i, : len(s)] = True
        positions = (shared + torch.arange(width, device=dev)).expand(rows, width)
        state = SharedKV(prefix, valid)
        cache = kv_cache.growing_cache(self.layers, min(total, width + 512), self.attention_dtype)
        slot = torch.tensor([len(s) for s in suffixes], device=dev)  # where each row writes its next token
        logits = self._forward(ids, cache, positions, state, last=slot - 1)
        self.prefilled += sum(len(s) for s in suffixes)
        active = list(range(rows))
        for step in range(max_new):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled")
            tokens = choose(logits.float(), active)
            keep: list[int] = []
            for j, (row, t) in enumerate(zip(active, tokens.tolist(), strict=True)):
                out[row].append(t)
                if not (step + 1 >= max_new or finished(row, out[row])):
                    keep.append(j)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=dev)
                cache.batch_select_indices(index)
                state.select(index)
                slot, tokens = slot[index], tokens[index]
                active = [active[j] for j in keep]
            state.valid[torch.arange(len(active), device=dev), slot] = True
            kv_cache.set_slots(cache.layers, slot)
            if self.tuner is not None:
                self.tuner.start(len(active))
            logits = self._forward(tokens[:, None], cache, (shared + slot)[:, None], state)
            if self.tuner is not None:
                self.tuner.done()
            slot = slot + 1
        return out
