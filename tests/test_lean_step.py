"""The lean decode step gives transformers' path's logits bit for bit, on every decode step of a batch whose rows
leave at different times, and declines the models it does not reproduce."""

from __future__ import annotations

import copy
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from lse_engine.llm import cpu_quant, decode  # noqa: E402
from lse_engine.llm.lean_step import LeanStep  # noqa: E402


def tiny(kind: str, int8: bool, fused: bool = False) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    sizes = dict(vocab_size=96, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=256)
    model = (Qwen2ForCausalLM(Qwen2Config(**sizes)) if kind == "qwen2"
             else LlamaForCausalLM(LlamaConfig(**sizes, attention_bias=False))).eval()
    if int8:
        cpu_quant.quantize_int8(model)
    return cpu_quant.fuse_siblings(model) if fused else model


def decode_logits(model: Any, lean: bool, prompts: list[list[int]], max_new: int = 12,
                  staggered: bool = True) -> tuple[list, list]:
    """(generated ids, every step's logits) of a sampled batch; rows finish at different steps."""
    assert decode.supports(model)  # registers the shared-prefix attention
    decoder = decode.Decoder(model)
    assert decoder.lean is not None
    if not lean:
        decoder.lean = None
    seen: list[Any] = []
    generator = torch.Generator().manual_seed(3)

    def choose(logits: Any, rows: list[int]) -> Any:
        seen.append(logits.clone())
        return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]

    def finished(row: int, ids: list[int]) -> bool:
        return staggered and len(ids) >= 4 + 3 * row  # rows leave the batch one after another

    with torch.inference_mode():
        out = decoder.generate(prompts, max_new, choose, finished, pad_id=0, split=20)
    return out, seen


@pytest.mark.parametrize(("kind", "int8", "fused"), [("qwen2", True, True), ("qwen2", True, False),
                                                    ("qwen2", False, False), ("llama", False, False)])
def test_lean_decode_steps_equal_the_transformers_path(kind: str, int8: bool, fused: bool) -> None:
    model = tiny(kind, int8, fused)
    assert LeanStep.for_backbone(model, model.model) is not None
    shared = [5 + i % 80 for i in range(24)]  # a shared prefix longer than decode.MIN_SHARED
    prompts = [shared + [7, 8, 9], shared + [11], shared + [40, 41, 42, 43, 44]]
    lean_ids, lean_logits = decode_logits(model, True, prompts)
    plain_ids, plain_logits = decode_logits(model, False, prompts)
    assert lean_ids == plain_ids and [len(r) for r in lean_ids] == [4, 7, 10]
    assert len(lean_logits) == len(plain_logits) == 10
    for a, b in zip(lean_logits, plain_logits, strict=True):
        assert torch.equal(a, b)


def test_one_row_alone_equals_the_transformers_path_over_a_long_reply() -> None:
    model = tiny("qwen2", True, True)
    prompt = [[3 + i % 90 for i in range(40)]]
    lean_ids, lean_logits = decode_logits(model, True, prompt, 30, staggered=False)
    plain_ids, plain_logits = decode_logits(model, False, prompt, 30, staggered=False)
    assert lean_ids == plain_ids and len(lean_ids[0]) == 30
    assert all(torch.equal(a, b) for a, b in zip(lean_logits, plain_logits, strict=True))


def test_models_it_does_not_reproduce_take_the_transformers_path() -> None:
    model = tiny("qwen2", True, True)
    hooked = copy.deepcopy(model)
    hooked.model.layers[1].mlp.register_forward_hook(lambda *args: None)
    assert LeanStep.for_backbone(hooked, hooked.model) is None  # a hook would be skipped
    sliced = copy.deepcopy(model)
    sliced.model.layers[0].self_attn.sliding_window = 16
    assert LeanStep.for_backbone(sliced, sliced.model) is None
    other = copy.deepcopy(model)
    other.model.config.model_type = "qwen3"
    assert LeanStep.for_backbone(other, other.model) is None
    wrapped = copy.deepcopy(model)
    wrapped.model.layers[2].mlp.down_proj = torch.nn.Sequential(wrapped.model.layers[2].mlp.down_proj)
    assert LeanStep.for_backbone(wrapped, wrapped.model) is None  # not a plain linear layer
    assert decode.Decoder(hooked).lean is None and decode.Decoder(model).lean is not None
