"""Maintained CPU engines on the same model and chats as the engine, for `bench_generation`'s optional rows:
CTranslate2 (int8) and onnxruntime-genai (int8 by default, `--ort-precision int4` for its 4-bit MatMulNBits).
Neither is a dependency of the package: a row is skipped with the reason when its package is not importable.

Both need Hugging Face weights: the GGUF is read by transformers (de-quantised to float32) and saved with
`save_pretrained`, then converted by each engine's own converter (`ctranslate2`'s TransformersConverter,
onnxruntime-genai's model builder). Conversions are kept under `benchmarks/results/converted/` (git-ignored)
and reused by later runs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CONVERTED = Path(__file__).parent / "results" / "converted"
ENGINES = ("ctranslate2", "onnxruntime-genai")
MODULES = {"ctranslate2": "ctranslate2", "onnxruntime-genai": "onnxruntime_genai"}


def missing(engine: str) -> str | None:
    """Why `engine` cannot run here, or None."""
    module = MODULES[engine]
    if importlib.util.find_spec(module) is None:
        return f"{engine} not installed (pip install {engine})"
    if engine == "onnxruntime-genai" and importlib.util.find_spec("onnx_ir") is None:
        return "the onnxruntime-genai model builder needs onnx-ir (pip install onnx-ir onnx)"
    return None


def hf_export(path: str, gguf: str | None, name: str) -> Path:
    """The model in Hugging Face format (config, safetensors, tokenizer), written once."""
    out = CONVERTED / name / "hf"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf} if gguf else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    # the weights are de-quantised floats by now; transformers still marks a GGUF model as quantised (unsavable)
    model.hf_quantizer = None  # type: ignore[assignment]  # set by transformers, undeclared: nn.Module's setattr
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(path, **kwargs).save_pretrained(out)
    del model
    return out


def converted(engine: str, hf: Path, name: str, precision: str) -> Path:
    """The engine's own conversion of `hf`, made once."""
    out = CONVERTED / name / f"{engine}-{precision}"
    done = out / ("model.bin" if engine == "ctranslate2" else "genai_config.json")
    if done.is_file():
        return out
    if engine == "ctranslate2":
        import ctranslate2

        ctranslate2.converters.TransformersConverter(str(hf)).convert(str(out), quantization=precision, force=True)
    else:
        done_proc = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o",
                                    str(out), "-p", precision, "-e", "cpu", "-c", str(CONVERTED / name / "ort-cache")],
                                   capture_output=True, text=True)
        if done_proc.returncode != 0:
            raise RuntimeError(f"model builder exit {done_proc.returncode}: {done_proc.stderr.strip()[-300:]}")
    return out


class Runner:
    """Generates for token-id prompts with one engine: `batch` (greedy, stop strings, each row ending on its own
    end token) and `one` (one prompt, sampled, exactly `tokens` new tokens)."""

    def __init__(self, engine: str, model_dir: Path, tokenizer: Any, threads: int) -> None:
        self.engine, self.tokenizer = engine, tokenizer
        vocab = tokenizer.get_vocab()
        self.eos = sorted({tokenizer.eos_token_id} - {None} | {vocab[t] for t in ("<|im_end|>", "<|endoftext|>")
                                                             if t in vocab})
        if engine == "ctranslate2":
            import ctranslate2

            self.model = ctranslate2.Generator(str(model_dir), device="cpu", compute_type="int8",
                                               intra_threads=threads, inter_threads=1)
        else:
            import json

            import onnxruntime_genai as og

            config = og.Config(str(model_dir))
            config.clear_providers()
            # the same thread count as the engine's rows (onnxruntime's default is every core)
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads,
                                                                                 "inter_op_num_threads": 1}}}}))
            self.og = og
            self.model = og.Model(config)

    def batch(self, prompts: Sequence[list[int]], max_new: int, stops: Sequence[str]) -> list[list[int]]:
        """Greedy replies, a row stopping at an end token or once its text holds a stop string."""
        if self.engine == "ctranslate2":
            outs: list[list[int]] = [[] for _ in prompts]

            def step(result: Any) -> bool:  # True stops this row (CTranslate2's callback, greedy only)
                outs[result.batch_id].append(result.token_id)
                return any(s in self.tokenizer.decode(outs[result.batch_id][-8:]) for s in stops)

            self.model.generate_batch([self.tokenizer.convert_ids_to_tokens(p) for p in prompts], max_length=max_new,
                                      sampling_topk=1, include_prompt_in_result=False, callback=step,
                                      end_token=self.tokenizer.convert_ids_to_tokens(self.eos))
            return outs
        return self._ort(prompts, max_new, stops, sample=False)

    def one(self, prompt: list[int], tokens: int, temperature: float) -> int:
        """One sampled reply of exactly `tokens` tokens (end token ignored); returns the tokens generated."""
        if self.engine == "ctranslate2":
            r = self.model.generate_batch([self.tokenizer.convert_ids_to_tokens(prompt)], max_length=tokens,
                                          min_length=tokens, sampling_temperature=temperature, sampling_topk=0,
                                          include_prompt_in_result=False)
            return len(r[0].sequences_ids[0])
        return len(self._ort([prompt], tokens, (), sample=True, temperature=temperature, exact=True)[0])

    def _ort(self, prompts: Sequence[list[int]], max_new: int, stops: Sequence[str], sample: bool,
             temperature: float = 1.0, exact: bool = False) -> list[list[int]]:
        import numpy as np

        og = self.og
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos[0]
        ids = np.array([[pad] * (width - len(p)) + list(p) for p in prompts], dtype=np.int32)
        params = og.GeneratorParams(self.model)
        options: dict[str, Any] = {"max_length": width + max_new, "batch_size": len(prompts), "do_sample": sample}
        if sample:
            options.update(temperature=temperature, top_p=1.0, top_k=0)
        if exact:
            options["min_length"] = width + max_new
        params.set_search_options(**options)
        gen = og.Generator(self.model, params)
        gen.append_tokens(ids if len(prompts) > 1 else ids[0])
        outs: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        while not gen.is_done() and not all(done):
            gen.generate_next_token()
            for row, token in enumerate(gen.get_next_tokens().tolist()):
                if done[row]:
                    continue
                outs[row].append(int(token))
                if (not exact and token in self.eos) or any(s in self.tokenizer.decode(outs[row][-8:]) for s in stops):
                    done[row] = True
        return outs


def prepare(engine: str, path: str, gguf: str | None, name: str, precision: str, tokenizer: Any,
            threads: int, log: Callable[[str], None]) -> tuple[Runner | None, str]:
    """A runner for `engine` (converting the model first if needed), or None and why it is skipped."""
    why = missing(engine)
    if why:
        return None, why
    t0 = time.perf_counter()
    try:
        hf = hf_export(path, gguf, name)
        model_dir = converted(engine, hf, name, precision)
    except Exception as e:  # a converter's failure is a skipped row with its reason, not a failed benchmark
        return None, f"conversion failed: {type(e).__name__}: {str(e)[:200]}"
    log(f"{engine}: {model_dir} ready in {time.perf_counter() - t0:.0f} s")
    return Runner(engine, model_dir, tokenizer, threads), ""
