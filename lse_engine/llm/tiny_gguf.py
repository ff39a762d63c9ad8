"""A tiny random Qwen2 written as a GGUF file with quantised tensors, built in a second: the demo models' format
(Q8_0 and Q5_0 blocks, a separate or a tied output head, the tiny tokenizer's vocabulary), so that the GGUF loading
paths can be tested and benchmarked without the real models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lse_engine.llm.tiny import CHAT_TEMPLATE, INIT_STD, _train_tokenizer

FILE = "tiny-qwen2.gguf"


def build_tiny_gguf(dir: str | Path, seed: int = 0, tied: bool = False, hidden: int = 64, layers: int = 2,
                    intermediate: int = 128, heads: int = 4, kv_heads: int = 2) -> str:
    """Write a random Qwen2 GGUF into `dir` (created) and return its path. Linear weights are Q8_0 (the q/k/v of
    layer 0 Q5_0, as mixed as a Q4_K_M file), the embedding Q5_0, norms and biases F32; `tied`: no `output.weight`
    (the head is the embedding). Widths must be multiples of 32 (the quantisation block)."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFWriter, TokenType, quants

    out = Path(dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    path = out / FILE
    tok = _train_tokenizer()
    spec = json.loads(tok.backend_tokenizer.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    special = set(tok.all_special_tokens) | {"<|im_start|>", "<|im_end|>"}
    rng = np.random.default_rng(seed)

    w = GGUFWriter(str(path), "qwen2")
    w.add_name("tiny-qwen2")
    w.add_context_length(2048)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(intermediate)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([int(TokenType.CONTROL if t in special else TokenType.NORMAL) for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<s>"])
    w.add_eos_token_id(vocab["<|im_end|>"])
    w.add_pad_token_id(vocab["<pad>"])
    w.add_chat_template(CHAT_TEMPLATE)

    def add(name: str, shape: tuple[int, ...], kind: Any = Q.Q8_0, scale: float = INIT_STD, mean: float = 0.0) -> None:
        values = rng.normal(mean, scale, size=shape).astype(np.float32)
        if kind == Q.F32:
            w.add_tensor(name, values)
        else:
            w.add_tensor(name, quants.quantize(values, kind), raw_dtype=kind)

    head_dim = hidden // heads
    add("token_embd.weight", (len(tokens), hidden), Q.Q5_0)
    add("output_norm.weight", (hidden,), Q.F32, 0.1, 1.0)
    if not tied:
        add("output.weight", (len(tokens), hidden))
    for i in range(layers):
        qkv = Q.Q5_0 if i == 0 else Q.Q8_0
        add(f"blk.{i}.attn_norm.weight", (hidden,), Q.F32, 0.1, 1.0)
        add(f"blk.{i}.attn_q.weight", (hidden, hidden), qkv)
        add(f"blk.{i}.attn_q.bias", (hidden,), Q.F32)
        add(f"blk.{i}.attn_k.weight", (kv_heads * head_dim, hidden), qkv)
        add(f"blk.{i}.attn_k.bias", (kv_heads * head_dim,), Q.F32)
        add(f"blk.{i}.attn_v.weight", (kv_heads * head_dim, hidden), qkv)
        add(f"blk.{i}.attn_v.bias", (kv_heads * head_dim,), Q.F32)
        add(f"blk.{i}.attn_output.weight", (hidden, hidden))
        add(f"blk.{i}.ffn_norm.weight", (hidden,), Q.F32, 0.1, 1.0)
        add(f"blk.{i}.ffn_gate.weight", (intermediate, hidden))
        add(f"blk.{i}.ffn_up.weight", (intermediate, hidden))
        add(f"blk.{i}.ffn_down.weight", (hidden, intermediate))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)
