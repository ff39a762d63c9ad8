"""int8 weights for CPU inference: torch's dynamic quantisation of every Linear layer (weights int8 per output
channel, activations quantised on the fly), four times less memory to stream per token than float32."""

from __future__ import annotations

import warnings
from typing import Any


def available() -> bool:
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:  # a torch without the eager quantisation API
        return False
    return True


def quantize_int8(model: Any) -> Any:
    """The model with its Linear layers replaced in place by dynamically quantised int8 ones."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                inplace=True)
