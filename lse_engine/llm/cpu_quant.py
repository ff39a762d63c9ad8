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
FEW_ROWS = 64  # up to this many input rows, |x| is taken whole (fewer operations; a decode step has one row a chat)
# linear layers that read the same input in the models this engine runs (attention's projections, a gated MLP's)
SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


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
            rows = x.reshape(-1, self.in_features)
            if rows.dtype != torch.float32:
                rows = rows.float()
            if rows.shape[0] <= FEW_ROWS:
                top = rows.abs().amax(dim=1, keepdim=True)
            else:  # max |x| of each row without a full-size |x| (a long prompt's rows are large): max(max x, -min x)
                top = torch.maximum(rows.amax(dim=1, keepdim=True), rows.amin(dim=1, keepdim=True).neg_())
            row_scale = top.clamp_(min=1e-12).div_(LEVELS)
            q = (rows / row_scale).round_().to(torch.int8)
            y = torch._int_mm(q, self.weight.t()).float().mul_(row_scale).mul_(self.scale)
            if self.bias is not None:
                y += self.bias
            y = y.view(*x.shape[:-1], self.out_features)
            return y if x.dtype == torch.float32 else y.to(x.dtype)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, int8"

    return Int8Linear


@functools.lru_cache(maxsize=1)
def fused_classes() -> tuple[Any, Any]:
    """(`Int8Fused`, `Int8Slice`): sibling int8 layers that read the same input made one matrix product."""
    import torch

    Int8Linear = int8_linear_class()

    class Int8Fused(Int8Linear):  # type: ignore[misc,valid-type]
        """The rows of several `Int8Linear` stacked into one weight. Its siblings' `Int8Slice`s ask it in turn for
        the same input; the first computes every sibling's output in one product (one quantisation of the input,
        one pass over the weights) and the others take their columns of it. Each output channel is the same exact
        integer sum scaled the same way, so the numbers are those of the separate layers."""

        def __init__(self, parts: list[Any]) -> None:
            super().__init__(parts[0].in_features, sum(p.out_features for p in parts))
            self.weight = torch.cat([p.weight for p in parts])
            self.scale = torch.cat([p.scale for p in parts])
            if any(p.bias is not None for p in parts):
                self.bias = torch.cat([p.bias if p.bias is not None else torch.zeros(p.out_features) for p in parts])
            self.parts = len(parts)
            self._memo: list[Any] = [None, None, 0]  # input, output, parts served (a list: Module's setattr is slow)

        def output_for(self, x: Any) -> Any:
            memo = self._memo
            if x is not memo[0]:
                memo[0], memo[1], memo[2] = x, self(x), 0
            output = memo[1]
            memo[2] += 1
            if memo[2] == self.parts:  # every sibling has its part: hold nothing between passes
                memo[0] = memo[1] = None
            return output

    class Int8Slice(torch.nn.Module):
        """One sibling's columns of an `Int8Fused` (which the parent module holds; this holds no weights)."""

        def __init__(self, fused: Any, start: int, stop: int) -> None:
            super().__init__()
            self.in_features, self.out_features = fused.in_features, stop - start
            self.start, self.stop = start, stop
            self._fused = (fused,)  # a tuple, so that torch does not count the fused layer as this one's child

        def forward(self, x: Any) -> Any:
            return self._fused[0].output_for(x)[..., self.start: self.stop].contiguous()

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, int8, columns " \
                   f"{self.start}:{self.stop} of a fused layer"

    return Int8Fused, Int8Slice


def fuse_siblings(model: Any) -> Any:
    """Replace each group of `SIBLINGS` that are all `Int8Linear` on one input width by one `Int8Fused` (held by
    their parent as `fused_<first>`) and an `Int8Slice` each, in place. For one row a decode step is then 4 matrix
    products a layer instead of 7, and each streams a larger weight in one call."""
    Int8Linear = int8_linear_class()
    Int8Fused, Int8Slice = fused_classes()
    for parent in list(model.modules()):
        for names in SIBLINGS:
            parts: list[Any] = [getattr(parent, n, None) for n in names]
            if not all(type(p) is Int8Linear and p.weight is not None for p in parts):
                continue
            if len({p.in_features for p in parts}) != 1:
                continue
            fused = Int8Fused(parts)
            parent.add_module(f"fused_{names[0]}", fused)
            start = 0
            for name, part in zip(names, parts, strict=True):
                setattr(parent, name, Int8Slice(fused, start, start + part.out_features))
                start += part.out_features
            del parts
    return model


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
    return any(type(m).__name__ in ("Int8Linear", "Int8Fused") for m in model.modules())
