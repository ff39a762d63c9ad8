"""The CPU decode path's pieces that trade Python calls or copies for speed must give the same numbers as the plain
ones: fused sibling int8 layers, attention's per-pair products over the cache's views, and the inverse-transform
sampler (the right distribution, seeded draws)."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from lse_engine.llm import cpu_quant, shared_attention  # noqa: E402
from lse_engine.llm.transformers_backend import sample_rows  # noqa: E402


def tiny_qwen2() -> object:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=96, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return cpu_quant.quantize_int8(Qwen2ForCausalLM(config).eval())


def test_fused_siblings_give_the_separate_layers_logits_and_hold_nothing_after() -> None:
    separate = tiny_qwen2()
    fused = cpu_quant.fuse_siblings(copy.deepcopy(separate))
    attention, mlp = fused.model.layers[0].self_attn, fused.model.layers[0].mlp
    assert type(attention.fused_q_proj).__name__ == "Int8Fused" and attention.fused_q_proj.out_features == 64 + 32 + 32
    assert type(mlp.up_proj).__name__ == "Int8Slice" and type(fused.lm_head).__name__ == "Int8Linear"
    # each weight held once: the slices own nothing
    assert sum(b.numel() for b in fused.buffers()) == sum(b.numel() for b in separate.buffers())
    ids = torch.randint(0, 96, (3, 11))
    with torch.inference_mode():
        assert torch.equal(fused(ids).logits, separate(ids).logits)
        assert torch.equal(fused(ids[:1, :1]).logits, separate(ids[:1, :1]).logits)  # one row, one token
    held = [m._memo for m in fused.modules() if type(m).__name__ == "Int8Fused"]
    assert len(held) == 4 and all(memo[0] is None and memo[1] is None for memo in held)


def test_a_slice_asked_for_another_input_recomputes() -> None:
    model = cpu_quant.fuse_siblings(tiny_qwen2())
    attention = model.model.layers[0].self_attn
    a, b = torch.randn(2, 64), torch.randn(2, 64)
    with torch.inference_mode():
        q_a = attention.q_proj(a)
        k_b = attention.k_proj(b)  # not a's: computed for b
        whole_b = attention.fused_q_proj(b)
    assert torch.equal(k_b, whole_b[:, 64:96]) and not torch.equal(q_a, whole_b[:, :64])


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_per_pair_products_over_cache_views_equal_the_batched_product(dtype: str) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        kind = getattr(torch, dtype)
        buffer = torch.randn(2, 2, 300, 16).to(kind)
        keys = buffer[:, :, :217]  # the cache's view: rows further apart than their length
        for rows in (1, 2):
            q = torch.randn(rows, 2, 6, 16).to(kind)
            k = keys[:rows]
            scores = shared_attention._product(q, k.transpose(-1, -2))
            assert torch.equal(scores, torch.matmul(q, k.transpose(-1, -2)))
            weights = torch.randn(rows, 2, 6, 217).to(kind)
            assert torch.equal(shared_attention._product(weights, k), torch.matmul(weights, k))
    finally:
        torch.set_num_threads(before)


def test_sampling_draws_each_token_as_often_as_its_probability_and_never_a_dropped_one() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05, 0.0]])
    logits = torch.log(probs)
    draws = [int(sample_rows(logits, [g], 1.0, 1.0)) for g in [torch.Generator().manual_seed(1)] for _ in range(4000)]
    counts = torch.bincount(torch.tensor(draws), minlength=5).double() / len(draws)
    assert counts[4] == 0 and torch.allclose(counts[:4], probs[0, :4].double(), atol=0.03)
    # top_p 0.6 keeps the two most likely tokens (0.5, then 0.3 reaches it)
    g = torch.Generator().manual_seed(2)
    kept = {int(sample_rows(logits, [g], 1.0, 0.6)) for _ in range(300)}
    assert kept == {0, 1}


def test_sampling_is_reproducible_per_row_whatever_the_other_rows() -> None:
    logits = torch.randn(3, 50)

    def draws(rows: list[int], seed: int) -> list[list[int]]:
        generators = [torch.Generator().manual_seed(seed + r) for r in rows]
        return [sample_rows(logits[rows], generators, 0.7, 1.0).tolist() for _ in range(20)]

    alone = [[step[0] for step in draws([r], 10)] for r in range(3)]
    together = draws([0, 1, 2], 10)
    assert [[step[r] for step in together] for r in range(3)] == alone
