"""One decode step of a Llama-shaped decoder (Qwen2, Llama) without transformers' module machinery.

A decode step of one row on the 1.5B evolver spent ~40 ms of its ~127 ms outside arithmetic: per layer, a dozen
module calls with their hook checks, keyword-argument decorators, the checkpointing wrapper, output capture, a
mask built per pass, and a copy of each fused projection's slice (measured on a 28-layer model of tiny widths, where
arithmetic is nothing: 25 ms a step). This step runs the same tensor operations in the same order on the same
modules' weights, so its logits are those of the transformers path bit for bit (the tests check it), and only the
Python around them is gone.

It takes a model only when every part is one it reproduces exactly: a known architecture, no query/key norms, no
sliding window, RMS norms, projections that are plain `Linear`/`Int8Linear` (or fused int8 siblings), and no hooks
on any module (accelerate's device hooks, peft's are not reproduced: such a model takes transformers' path).
"""

from __future__ import annotations

from typing import Any

from lse_engine.llm import shared_attention

ARCHITECTURES = ("qwen2", "llama")  # config.model_type values whose decoder layer this step reproduces


class LeanStep:
    """`hidden(ids, cache, positions, state)` for one new token per row; build with `for_backbone`."""

    def __init__(self, backbone: Any, layers: list[tuple[Any, ...]]) -> None:
        self.backbone = backbone
        self.layers = layers  # per layer: (input norm, attention, qkv, o_proj, post norm, gate_up, down_proj)

    @classmethod
    def for_backbone(cls, model: Any, backbone: Any) -> LeanStep | None:
        """A step for `backbone` (the model's decoder), or None where it is not one this step reproduces."""
        import torch

        config = getattr(backbone, "config", None)
        if config is None or getattr(config, "model_type", None) not in ARCHITECTURES:
            return None
        if getattr(config, "hidden_act", None) not in ("silu", "swish"):
            return None
        if any(getattr(backbone, name, None) is None for name in ("embed_tokens", "layers", "norm", "rotary_emb")):
            return None
        if torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks:
            return None
        for module in model.modules():
            if module._forward_hooks or module._forward_pre_hooks or hasattr(module, "_hf_hook"):
                return None
        if not _is_rms_norm(backbone.norm):
            return None
        layers = []
        for index, layer in enumerate(backbone.layers):
            attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
            norms = getattr(layer, "input_layernorm", None), getattr(layer, "post_attention_layernorm", None)
            if attn is None or mlp is None or not all(_is_rms_norm(n) for n in norms):
                return None
            if getattr(attn, "layer_idx", None) != index or getattr(attn, "sliding_window", None):
                return None
            if getattr(attn, "q_norm", None) is not None or getattr(attn, "k_norm", None) is not None:
                return None
            qkv = _projections(attn, ("q_proj", "k_proj", "v_proj"))
            gate_up = _projections(mlp, ("gate_proj", "up_proj"))
            o_proj, down_proj = _linear(getattr(attn, "o_proj", None)), _linear(getattr(mlp, "down_proj", None))
            if qkv is None or gate_up is None or o_proj is None or down_proj is None:
                return None
            layers.append((norms[0], attn, qkv, o_proj, norms[1], gate_up, down_proj))
        return cls(backbone, layers)

    def hidden(self, ids: Any, cache: Any, positions: Any, state: Any) -> Any:
        """The last hidden states [rows, 1, hidden] of one token per row, written to `cache` (as the backbone's
        forward would), attention by `shared_attention` with `state`."""
        import torch

        silu = torch.nn.functional.silu
        backbone = self.backbone
        h = backbone.embed_tokens.forward(ids)
        cos, sin = backbone.rotary_emb(h, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        rows = h.shape[0]
        for input_norm, attn, qkv, o_proj, post_norm, gate_up, down_proj in self.layers:
            x = _rms_norm(input_norm, h)
            head_dim = attn.head_dim
            fused, parts = qkv
            if fused is not None:  # queries and keys are adjacent columns: rotated together (elementwise: same numbers)
                y = fused(x)
                qk = y[..., : parts[2]].view(rows, 1, -1, head_dim).transpose(1, 2)
                qk = _rotary(qk, cos, sin)
                heads = (parts[1] - parts[0]) // head_dim
                q, k = qk[:, :heads], qk[:, heads:]
                v = y[..., parts[2]:].view(rows, 1, -1, head_dim).transpose(1, 2)
            else:
                q, k, v = (f(x).view(rows, 1, -1, head_dim).transpose(1, 2) for f in parts)
                q, k = _rotary(q, cos, sin), _rotary(k, cos, sin)
            keys, values = cache.layers[attn.layer_idx].update(k, v)
            out, _ = shared_attention.attention(attn, q, keys, values, None, scaling=attn.scaling, lse_shared=state)
            h = h + o_proj(out.reshape(rows, 1, -1).contiguous())
            x = _rms_norm(post_norm, h)
            gate, up = _project(gate_up, x)
            h = h + down_proj(silu(gate) * up)
        return _rms_norm(backbone.norm, h)


def _is_rms_norm(module: Any) -> bool:
    """An RMS norm of the form this step computes (Qwen2RMSNorm, LlamaRMSNorm: weight x normalised, no offset)."""
    return module is not None and type(module).__name__ in ("Qwen2RMSNorm", "LlamaRMSNorm") \
        and hasattr(module, "variance_epsilon") and getattr(module, "weight", None) is not None


def _rms_norm(norm: Any, h: Any) -> Any:
    """transformers' RMS norm, operation for operation."""
    import torch

    dtype = h.dtype
    x = h.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + norm.variance_epsilon)
    return norm.weight * x.to(dtype)


def _rotary(x: Any, cos: Any, sin: Any) -> Any:
    """transformers' `apply_rotary_pos_emb` on one tensor, operation for operation."""
    import torch

    half = x.shape[-1] // 2
    return (x * cos) + (torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin)


def _linear(module: Any) -> Any:
    """The forward of a plain linear layer (`nn.Linear`, `Int8Linear`), called without module machinery; None for
    anything else (a LoRA layer, a slice of a fused layer)."""
    import torch

    if module is None:
        return None
    if type(module) is torch.nn.Linear or type(module).__name__ in ("Int8Linear", "Int8Fused"):
        return module.forward
    return None


def _projections(parent: Any, names: tuple[str, ...]) -> tuple[Any, list[Any]] | None:
    """How to compute sibling projections: (one fused layer's forward, its column boundaries) where `fuse_siblings`
    made them one `Int8Fused`, else (None, [each layer's forward])."""
    parts: list[Any] = [getattr(parent, name, None) for name in names]
    fused = getattr(parent, f"fused_{names[0]}", None)
    if fused is not None and all(type(p).__name__ == "Int8Slice" and p._fused[0] is fused for p in parts):
        bounds = [p.start for p in parts] + [parts[-1].stop]
        return fused.forward, bounds
    forwards = [_linear(p) for p in parts]
    if any(f is None for f in forwards):
        return None
    return None, forwards


def _project(projections: tuple[Any, list[Any]], x: Any) -> list[Any]:
    """Each sibling's output for input `x` (columns of the fused product are views: the values are the same)."""
    fused, rest = projections
    if fused is None:
        return [f(x) for f in rest]
    y = fused(x)
    return [y[..., rest[i]: rest[i + 1]] for i in range(len(rest) - 1)]
