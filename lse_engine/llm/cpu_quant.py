"""int8 weights for CPU inference, with results that depend on nothing but the row itself.

`Int8Linear` replaces `torch.nn.Linear`: weights int8 per output channel; each input row quantised to int8 with its
own scale as it arrives; int8 x int8 products summed exactly in int32 (`torch._int_mm`, VNNI on x86), then scaled
back. A quarter of float32's bytes to stream per token (each weight is kept in two layouts: one for a single row,
one for several), and integer arithmetic that is exact, so a row's reply does not depend on which other rows share
its batch (torch's `quantize_dynamic` quantises the whole batch with one
scale: a row's tokens then change with its neighbours).
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


def _int8_linear_class() -> Any:
    import torch

    class Int8Linear(torch.nn.Module):
        """y = x Wᵀ + b, W int8 per output channel, x int8 per row (quantised on the fly)."""

        def __init__(self, linear: Any) -> None:
            super().__init__()
            w = linear.weight.detach().float()
            scale = w.abs().amax(dim=1).clamp(min=1e-12) / LEVELS
            self.in_features, self.out_features = linear.in_features, linear.out_features
            q = torch.round(w / scale[:, None]).to(torch.int8)
            # two layouts of the same integers (results are exact either way): rows of W for one input row (a
            # matrix-vector product streams W once, ~2x faster), columns for several rows (a matrix product)
            self.register_buffer("weight", q)
            self.register_buffer("weight_t", q.t().contiguous())
            self.register_buffer("scale", scale)
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

        weight: Any
        weight_t: Any
        scale: Any
        bias: Any

        def forward(self, x: Any) -> Any:
            rows = x.reshape(-1, self.in_features).float()
            row_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / LEVELS
            q = torch.round(rows / row_scale).to(torch.int8)
            w = self.weight.t() if q.shape[0] == 1 else self.weight_t
            y = torch._int_mm(q, w).float().mul_(row_scale).mul_(self.scale)
            if self.bias is not None:
                y += self.bias
            return y.view(*x.shape[:-1], self.out_features).to(x.dtype)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, int8"

    return Int8Linear


def quantize_int8(model: Any) -> Any:
    """Replace every `nn.Linear` of `model` (the output head too) by an `Int8Linear`, in place."""
    import torch

    make = _int8_linear_class()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, make(child))
    return model


def is_int8(model: Any) -> bool:
    return any(type(m).__name__ == "Int8Linear" for m in model.modules())
