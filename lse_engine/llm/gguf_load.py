"""Load a GGUF model straight into int8 weights, one tensor at a time, with no full-precision copy of the model.

transformers' own GGUF path de-quantises every tensor to float32 into a state dict, loads it into a float32 model,
and only then can `cpu_quant.quantize_int8` replace the linear layers: the 1.5B demo evolver peaked at 10.4 GB to end
with 3.8 GB of weights. Here the model is built with its parameters on the meta device (no memory), every
`nn.Linear` is replaced by an empty `Int8Linear`, and the file (memory-mapped by the `gguf` package) is read one
tensor at a time: a block of rows de-quantised to float32, quantised to int8, freed. Norms and biases stay float32.
A quantised embedding table keeps its GGUF blocks (`GGUFEmbedding`: the rows a batch looks up are de-quantised as
they are needed), a fifth to a third of float32's bytes for the same values.

The result is the model `quantize_int8` makes of transformers' float32 model: the same int8 weights and scales (each
row is quantised alone, so blocks of rows give the same integers as the whole tensor), the same float norms, biases
and embedding rows; the tests compare them. Architectures whose tensors transformers reshapes in ways other than
Llama's q/k permutation raise `Unsupported`, and the caller loads them the old way.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

from lse_engine.llm import gguf_file, memory
from lse_engine.llm.cpu_quant import int8_linear_class, quantize_rows
from lse_engine.llm.gguf_file import Tensor

CHUNK_FLOATS = 1 << 23  # floats de-quantised at once (32 MB): the 151,936-row embedding goes a block of rows at a time
TRIM_EVERY = 256 << 20  # float32 bytes de-quantised between two trims of the C heap (a trim per tensor: +40 % time)


class Unsupported(ValueError):
    """This GGUF cannot be loaded tensor by tensor (the caller falls back to transformers' loader)."""


@contextlib.contextmanager
def weights_on_meta() -> Iterator[None]:
    """Parameters created inside are moved to the meta device as they are registered (no memory, no initialisation
    work); buffers such as rotary frequencies stay real, computed as usual."""
    import torch

    register = torch.nn.Module.register_parameter

    def on_meta(module: Any, name: str, param: Any) -> None:
        register(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=False)

    torch.nn.Module.register_parameter = on_meta  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


@functools.lru_cache(maxsize=1)
def gguf_embedding_class() -> Any:
    import numpy as np
    import torch

    class GGUFEmbedding(torch.nn.Module):
        """An embedding table kept as the GGUF's quantised blocks ([rows, bytes per row] uint8); a lookup de-quantises
        only the rows it reads, with the `gguf` package's own de-quantiser (the values transformers' loader gives)."""

        blocks: Any

        def __init__(self, blocks: Any, ggml_type: int, embedding_dim: int) -> None:
            super().__init__()
            self.register_buffer("blocks", blocks)
            self.ggml_type = ggml_type
            self.num_embeddings, self.embedding_dim = blocks.shape[0], embedding_dim

        def forward(self, input_ids: Any) -> Any:
            from gguf import GGMLQuantizationType, dequantize

            flat = input_ids.reshape(-1).to(device=self.blocks.device, dtype=torch.long)
            rows = self.blocks.index_select(0, flat).numpy()
            values = dequantize(rows, GGMLQuantizationType(self.ggml_type))
            out = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
            return out.view(*input_ids.shape, self.embedding_dim)

        def rows(self, start: int, stop: int) -> Any:
            """Rows start..stop-1 as float32 (to quantise a tied output head from them)."""
            return self(torch.arange(start, stop))

        def extra_repr(self) -> str:
            return f"{self.num_embeddings}, {self.embedding_dim}, ggml_type={self.ggml_type}"

    return GGUFEmbedding


def _processor(architecture: str, config: Any) -> Any:
    """transformers' tensor processor for this architecture: only the identity and Llama's q/k permutation are
    supported here (the others reshape or regroup tensors across names: MoE experts, fused qkv, transposes)."""
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        LlamaTensorProcessor,
        TensorProcessor,
    )

    cls = TENSOR_PROCESSORS.get(architecture, TensorProcessor)
    if cls not in (TensorProcessor, LlamaTensorProcessor):
        raise Unsupported(f"GGUF architecture {architecture!r} needs {cls.__name__}")
    return cls(config=config.to_dict())  # type: ignore[no-untyped-call]  # transformers: untyped __init__


def _whole(processor: Any, name: str) -> bool:
    """Whether the processor needs the whole tensor at once (Llama permutes q/k rows across heads)."""
    return type(processor).__name__ == "LlamaTensorProcessor" and (".attn_q." in name or ".attn_k." in name)


def _dequantized(tensor: Tensor, start: int = 0, stop: int | None = None) -> Any:
    """Rows start..stop of a GGUF tensor as a float32 numpy array [rows, columns] (1-D tensors: the whole)."""
    import numpy as np
    from gguf import GGMLQuantizationType, dequantize

    values = dequantize(tensor.read(start, stop), GGMLQuantizationType(tensor.ggml_type))
    return np.array(values if len(tensor.shape) > 1 else values.reshape(-1), dtype=np.float32)  # a copy


def _row_blocks(rows: int, columns: int) -> Iterator[tuple[int, int]]:
    step = max(1, CHUNK_FLOATS // max(1, columns))
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


def _fill_int8(layer: Any, tensor: Any, processor: Any, source_rows: Any = None) -> None:
    """Quantise a weight into `layer` (an empty Int8Linear) a block of rows at a time; `source_rows(start, stop)`
    reads float rows from elsewhere (a tied embedding) instead of `tensor`."""
    import torch

    rows, columns = layer.out_features, layer.in_features
    name = tensor.name if tensor is not None else "the tied output head"
    if source_rows is None and _whole(processor, name):
        weights = processor.process(weights=_dequantized(tensor), name=tensor.name).weights
        layer.weight, layer.scale = quantize_rows(torch.from_numpy(weights))
        return
    q = torch.empty((rows, columns), dtype=torch.int8)
    scale = torch.empty(rows, dtype=torch.float32)
    for start, stop in _row_blocks(rows, columns):
        block = source_rows(start, stop) if source_rows is not None else torch.from_numpy(
            _dequantized(tensor, start, stop))
        if tuple(block.shape) != (stop - start, columns):
            raise Unsupported(f"{name}: rows of {tuple(block.shape)[1:]} values, the layer takes {columns}")
        q[start:stop], scale[start:stop] = quantize_rows(block)
    layer.weight, layer.scale = q, scale


def _set_float(module: Any, kind: str, values: Any) -> None:
    import torch

    old = module._parameters.get(kind)
    if old is not None and tuple(old.shape) != tuple(values.shape):
        raise Unsupported(f"{kind} of {type(module).__name__}: {tuple(values.shape)} in the file, "
                          f"{tuple(old.shape)} in the model")
    module._parameters[kind] = torch.nn.Parameter(values, requires_grad=False)


def load_config(directory: str, file: str) -> Any:
    """The model's transformers config, read from the GGUF's metadata (seconds: transformers parses the vocabulary
    too; keep it to load the weights again)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(directory, gguf_file=file)


def load_int8(directory: str, file: str, config: Any = None) -> Any:
    """The causal LM in `directory/file` (a GGUF) with int8 linear layers (`cpu_quant.Int8Linear`) on the CPU;
    `config`: its transformers config if already read (`load_config`)."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import get_gguf_hf_weights_map

    config = config if config is not None else load_config(directory, file)
    reader = gguf_file.read(os.path.join(directory, file))
    processor = _processor(reader.architecture, config)
    with weights_on_meta():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    names = get_gguf_hf_weights_map(model, processor)
    Int8Linear = int8_linear_class()
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, child_name, Int8Linear(child.in_features, child.out_features))
    modules = dict(model.named_modules())
    since_trim = 0  # float32 bytes de-quantised since the C heap was last trimmed
    embeddings: dict[str, Any] = {}  # GGUF embedding tensors by module name (a tied head is quantised from one)
    for tensor in reader.tensors:
        target = names.get(tensor.name)
        if target is None:
            continue
        module_name, _, kind = target.rpartition(".")
        module = modules.get(module_name)
        quantised = tensor.ggml_type not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16,
                                             GGMLQuantizationType.BF16)
        if isinstance(module, Int8Linear) and kind == "weight":
            _fill_int8(module, tensor, processor)
        elif isinstance(module, Int8Linear) and kind == "bias":
            module.bias = torch.from_numpy(_dequantized(tensor))
        elif isinstance(module, torch.nn.Embedding) and kind == "weight" and quantised:
            if tensor.shape != (module.num_embeddings, module.embedding_dim):
                raise Unsupported(f"{tensor.name}: shape {tensor.shape}, the model's embedding "
                                  f"{(module.num_embeddings, module.embedding_dim)}")
            table = gguf_embedding_class()(torch.from_numpy(tensor.read()), tensor.ggml_type,
                                           module.embedding_dim)
            parent_name, _, attr = module_name.rpartition(".")
            setattr(modules[parent_name] if parent_name else model, attr, table)
            modules[module_name] = table
            embeddings[module_name] = table
        elif module is not None and kind in module._parameters:
            values = processor.process(weights=_dequantized(tensor), name=tensor.name).weights
            _set_float(module, kind, torch.from_numpy(np.ascontiguousarray(values)))
        else:
            raise Unsupported(f"{tensor.name} maps to {target}, which this loader does not know how to fill")
        since_trim += tensor.rows * tensor.shape[-1] * 4
        if since_trim > TRIM_EVERY:  # the temporaries of de-quantisation: else the heap keeps growing by them
            memory.give_back_free_heap()
            since_trim = 0
    _tie_head(model, modules, embeddings)
    missing = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    missing += [n for n, m in model.named_modules() if isinstance(m, Int8Linear) and m.weight is None]
    if missing:
        raise Unsupported(f"weights not in the file: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    memory.give_back_free_heap()
    return model.eval()


def _tie_head(model: Any, modules: dict[str, Any], embeddings: dict[str, Any]) -> None:
    """A GGUF without `output.weight` ties the output head to the embedding: quantise the head from its rows."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or getattr(head, "weight", True) is not None:
        return
    embedding = model.get_input_embeddings()
    name = next((n for n, m in modules.items() if m is embedding), None)
    if name in embeddings:
        _fill_int8(head, None, None, source_rows=embeddings[name].rows)
    elif embedding is not None and not embedding.weight.is_meta:
        _fill_int8(head, None, None, source_rows=lambda a, b: embedding.weight[a:b])
