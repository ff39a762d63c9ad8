"""Batched vs one-at-a-time generation with the transformers backend on CPU.

Builds a small random Llama (hidden 256, 4 layers, 8 heads; the tiny model's byte-level BPE tokenizer) in a
temp dir, then generates greedy replies to 32 chats of different lengths (32 new tokens each) two ways:

  batched   one `TransformersLLM.generate` call with batch_size 32 (left-padded, length-sorted batches);
  single    one `generate` call per chat (batch_size 1), as a naive loop would.

Prints tokens/s for both and the ratio (target: batched ≥ 3× single), and checks that both produce the same
text (greedy decoding must not depend on padding). Writes `benchmarks/results/bench_generation.json`.

    python benchmarks/bench_generation.py [--quick] [--strict]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lse_engine.llm.base import Chat, Sampling  # noqa: E402
from lse_engine.llm.tiny import build_tiny_model  # noqa: E402
from lse_engine.llm.transformers_backend import TransformersLLM  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TARGET_RATIO = 3.0
TEXT = ("select the number of customers who live in each city and order them by total spent over the last "
        "year excluding cancelled orders")


def build_bench_model(out: Path, seed: int = 0) -> str:
    """A random Llama bigger than the tiny test model (so compute matters), with the tiny model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(out / "tiny", seed))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048,
                         initializer_range=0.2, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(pad_token_id=config.pad_token_id, eos_token_id=config.eos_token_id)
    model.save_pretrained(out / "bench")
    tokenizer.save_pretrained(out / "bench")
    return str(out / "bench")


def make_chats(n: int) -> list[Chat]:
    """n chats whose prompts range from a few words to ~60 (different lengths exercise the padding)."""
    words = TEXT.split()
    return [[{"role": "system", "content": "You are a SQL assistant."},
             {"role": "user", "content": " ".join(words[(i * 7 + j) % len(words)] for j in range(3 + (i * 13) % 57))}]
            for i in range(n)]


def timed(llm: TransformersLLM, chats: list[Chat], sampling: Sampling, batch_size: int) -> dict[str, Any]:
    """Generate every chat with the given batch size (one generate() call per batch); tokens/s and texts."""
    llm.batch_size = batch_size
    t0 = time.perf_counter()
    out = [c for i in range(0, len(chats), batch_size) for c in llm.generate(chats[i: i + batch_size], sampling)]
    secs = time.perf_counter() - t0
    tokens = sum(c.completion_tokens for c in out)
    return {"seconds": secs, "tokens": tokens, "tokens_per_s": tokens / secs, "texts": [c.text for c in out]}


def run(n_chats: int, max_tokens: int) -> dict[str, Any]:
    import torch

    with tempfile.TemporaryDirectory(prefix="lse-bench-gen-") as tmp:
        llm = TransformersLLM(build_bench_model(Path(tmp)), device="cpu", dtype="float32")
    chats, sampling = make_chats(n_chats), Sampling(max_tokens=max_tokens)
    timed(llm, chats[:2], Sampling(max_tokens=4), 2)  # warm-up
    batched = timed(llm, chats, sampling, n_chats)
    single = timed(llm, chats, sampling, 1)
    ratio = batched["tokens_per_s"] / single["tokens_per_s"]
    same = sum(a == b for a, b in zip(batched.pop("texts"), single.pop("texts")))
    llm.close()
    return {"chats": n_chats, "max_tokens": max_tokens, "torch_threads": torch.get_num_threads(),
            "batched": batched, "single": single, "ratio": ratio, "same_text": same,
            "target_ratio": TARGET_RATIO, "pass": ratio >= TARGET_RATIO}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 chats × 16 tokens (smoke test)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = ap.parse_args(argv)
    n, max_tokens = (16, 16) if args.quick else (32, 32)
    res = run(n, max_tokens)
    for name in ("batched", "single"):
        r = res[name]
        print(f"{name:<8} {r['tokens']:5d} tokens in {r['seconds']:6.2f} s  = {r['tokens_per_s']:8.1f} tokens/s")
    print(f"ratio    {res['ratio']:.2f}× (target ≥ {TARGET_RATIO:g}×): {'PASS' if res['pass'] else 'FAIL'}")
    print(f"greedy text identical batched vs single: {res['same_text']}/{res['chats']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_generation.json").write_text(json.dumps(res, indent=2))
    return 1 if args.strict and not res["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
