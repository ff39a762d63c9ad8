"""int8 weights for CPU inference, with results that depend on nothing but the row itself.

`Int8Linear` replaces `torch.nn.Linear`: weights int8 per output channel; each input row quantised to int8 with its
own scale as it arrives; int8 x int8 products summed exactly in int32 (`torch._int_mm`, VNNI on x86), then scaled
back. A quarter of float32's bytes to stream per token, and integer arithmetic that is exact, so a row's reply does
not depend on which other rows share its batch (torch's `quantize_dynamic` quantises the whole batch with one
scale: a row's tokens then change with its neighbours).

Each weight is held once, as rows of W ([out, in], what `torch._int_mm(x, W.t())` reads). A second, transposed
copy used to serve batches of several rows: measured on this torch (2.13, oneDNN, AVX512-VNNI), W.t() is as fast
as the copy from 4 rows up and faster for one row, so the copy only doubled the memory (benchmarks/README.md).
"""

from __future__ import annotations

import functools
from typing import Any

LEVELS = 127.0  # symmetric int8


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether this torch multiplies int8 matrices on the CPU."""
    try:
        import torch

        a = torch.ones((2, 8), dtype=torch.int8)
        return bool(torch._int_mm(a, a.t().contiguous()).sum().item() == 32)
    except (AttributeError, RuntimeError, ImportError):
        return False


def quantize_rows(weight: Any) -> tuple[Any, Any]:
    """(int8 rows, float32 scale per row) of a float weight [out, in]: row r is q[r] * scale[r]. Rows are
    independent, so a large weight may be quantised a block of rows at a time with the same result."""
    import torch

    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / LEVELS
    return torch.round(w / scale[:, None]).to(torch.int8), scale


@functools.lru_cache(maxsize=1)
def int8_linear_class() -> Any:
    """The `Int8Linear` module class (built on first use, so that importing this module does not import torch)."""
    import torch

    class Int8Linear(torch.nn.Module):
        """y = x Wᵀ + b, W int8 per output channel, x int8 per row (quantised on the fly).

        Built from an `nn.Linear` (`from_linear`), or empty (`weight`, `scale`, `bias` None) to be filled by a
        loader that quantises one tensor at a time."""

        weight: Any
        scale: Any
        bias: Any

        def __init__(self, in_features: int, out_features: int) -> None:
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            self.register_buffer("weight", None)  # int8 [out, in]
            self.register_buffer("scale", None)  # float32 [out]
            self.register_buffer("bias", None)  # float32 [out] or None

        @classmethod
        def from_linear(cls, linear: Any) -> Any:
            layer = cls(linear.in_features, linear.out_features)
            layer.weight, layer.scale = quantize_rows(linear.weight)
            if linear.bias is not None:
                layer.bias = linear.bias.detach().float().clone()
            return layer

        def forward(self, x: Any) -> Any:
            rows = x.reshape(-1, self.in_features).float()
            # max |x| of each row without a full-size |x| (a long prompt's rows are large): max(max x, -min x)
            top = torch.maximum(rows.amax(dim=1, keepdim=True), rows.amin(dim=1, keepdim=True).neg_())
            row_scale = top.clamp_(min=1e-12).div_(LEVELS)
            q = (rows / row_scale).round_().to(torch.int8)
            y = torch._int_mm(q, self.weight.t()).float().mul_(row_scale).mul_(self.scale)
            if self.bias is not None:
                y += self.bias
            return y.view(*x.shape[:-1], self.out_features).to(x.dtype)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, int8"

    return Int8Linear


def quantize_int8(model: Any) -> Any:
    """Replace every `nn.Linear` of `model` (the output head too) by an `Int8Linear`, in place; each float weight
    is released as soon as its layer is quantised (unless something else still holds it, a tied embedding)."""
    import torch

    make = int8_linear_class()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, make.from_linear(child))
                del child
    return model


def is_int8(model: Any) -> bool:
    return any(type(m).__name__ == "Int8Linear" for m in model.modules())
