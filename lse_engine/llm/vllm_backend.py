"""In-process vLLM (GPU): `LLM.chat` over the whole list of chats (vLLM schedules the batch), LoRA per request.

vLLM is an optional dependency (`pip install 'lse-prompts[gpu]'`), imported only when a VLLMLLM is built.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lse_engine.errors import LSEError, ModelNotFoundError
from lse_engine.llm.base import Chat, Completion, Sampling, continues_reply
from lse_engine.llm.transformers_backend import local_weights_problem, missing_model_message
from lse_engine.models.resolve import looks_like_path

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


def _lora_rank(adapter: str) -> int:
    """The smallest vLLM-supported max_lora_rank that fits the adapter's rank `r`."""
    try:
        r = int(json.loads((Path(adapter) / "adapter_config.json").read_text()).get("r", 16))
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"LoRA adapter not found: {os.path.abspath(adapter)} has no readable "
                                 "adapter_config.json. Set [evolver] adapter to a directory written by `lse train`."
                                 ) from e
    return next((k for k in LORA_RANKS if k >= r), r)


class VLLMLLM:
    """An LLM served by vLLM in this process. `batch_size` and `device` are accepted for interface parity."""

    def __init__(self, model: str, gguf_file: str | None = None, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 8, adapter: str | None = None, local_files_only: bool = True,
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, seed: int = 0,
                 **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise LSEError("the vllm backend needs vLLM: install the gpu extra: pip install 'lse-prompts[gpu]' "
                           '(or set [model] backend = "transformers")') from e
        self.name = model
        self.gguf_file = gguf_file or None
        self.adapter = adapter or None
        self._sampling_params = SamplingParams
        if looks_like_path(model):
            problem = local_weights_problem(os.path.expanduser(model), self.gguf_file)
            if problem:
                raise ModelNotFoundError(missing_model_message(model, self.gguf_file, problem))
        elif local_files_only:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read the local HF cache; never download
        source = os.path.join(os.path.expanduser(model), self.gguf_file) if self.gguf_file else model
        kwargs: dict[str, Any] = {"model": source, "dtype": dtype, "seed": seed,
                                  "gpu_memory_utilization": gpu_memory_utilization, **engine_kwargs}
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self._lora: Any = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            kwargs.update(enable_lora=True, max_lora_rank=_lora_rank(self.adapter))
            self._lora = LoRARequest("lse-adapter", 1, os.path.abspath(self.adapter))
        try:
            self.llm: Any = LLM(**kwargs)
        except OSError as e:
            raise ModelNotFoundError(missing_model_message(model, self.gguf_file)) from e

    @property
    def model_id(self) -> str:
        return f"vllm:{self.name}:{self.gguf_file or ''}:{self.adapter or ''}"

    def generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[Completion]:
        """One completion per chat, in order (vLLM returns outputs in request order)."""
        if not chats:
            return []
        # one seed per chat (the call's seed + index, as the transformers backend draws): k samples of one problem
        # in one call are k different draws
        params = [self._sampling_params(temperature=sampling.temperature, top_p=sampling.top_p,
                                        max_tokens=sampling.max_tokens,
                                        seed=None if sampling.seed is None else sampling.seed + i,
                                        stop=list(sampling.stop) or None) for i in range(len(chats))]
        prefill = [continues_reply(c) for c in chats]
        if any(prefill) and not all(prefill):
            raise ValueError("a vLLM batch must be all prefills or none (continue_final_message is per call)")
        outs = self.llm.chat([list(c) for c in chats], params, use_tqdm=False, lora_request=self._lora,
                             add_generation_prompt=not prefill[0], continue_final_message=prefill[0])
        results = []
        for o in outs:
            best = o.outputs[0]
            results.append(Completion(best.text, prompt_tokens=len(o.prompt_token_ids or []),
                                      completion_tokens=len(best.token_ids),
                                      finish_reason=best.finish_reason or "stop"))
        return results

    def close(self) -> None:
        """Drop the engine and free GPU memory."""
        self.llm = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass
