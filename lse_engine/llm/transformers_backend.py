"""In-process generation with Hugging Face transformers: real left-padded batches, greedy or seeded sampling.

Importing this module is cheap: torch and transformers are imported when a model is built.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lse_engine.errors import Cancelled, LSEError, ModelNotFoundError
from lse_engine.llm import cpu_threads
from lse_engine.llm.base import CancelToken, Chat, Completion, Sampling, continues_reply
from lse_engine.llm.prefix_cache import PrefixCache
from lse_engine.models.resolve import looks_like_path
from lse_engine.models.store import hf_cache_dir

PREFIX_CACHE_MB = 512  # keys/values of recent shared prefixes kept between calls (a 0.5B model: ~25 KB a token)
RECENT_CALLS = 8  # generate() calls `tokens_per_s` is measured over
HOW_TO_CONFIGURE = (
    'To use another model, set `[model] model` in lse.toml to a name from `lse models list`, a .gguf file, '
    'a local directory with the weights or a Hugging Face id, or use `backend = "openai"` with a `base_url` '
    "(vLLM serve, llama.cpp, Ollama), or try `lse demo --tiny`."
)


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No transformers progress bars while loading or saving (GGUF de-quantisation, shards): callers show their own."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
    # the GGUF loader calls tqdm itself, ignoring the switch above: hand it a silent one while we load
    try:
        gguf_utils: Any = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    except ImportError:
        gguf_utils = None
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        if was_on:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated


def smollm2_gguf_path() -> str:
    """The verified SmolLM2-135M-Instruct GGUF (`lse models pull smollm2`); never downloads."""
    from lse_engine.models import Catalog, require_local

    spec = Catalog().get("smollm2")
    assert spec is not None
    return str(require_local(spec))


def missing_model_message(model: str, gguf_file: str | None = None, reason: str = "") -> str:
    """One message: where the weights were looked for and how to configure another model."""
    if looks_like_path(model):
        where = os.path.abspath(os.path.expanduser(os.path.join(model, gguf_file) if gguf_file else model))
        looked = f"model weights not found at {where}{f' ({reason})' if reason else ''}"
    else:
        env = os.environ.get("HF_HOME")
        looked = (f"model weights for {model!r}{f' ({gguf_file})' if gguf_file else ''} not found in the local "
                  f"Hugging Face cache {hf_cache_dir()}{f' (HF_HOME={env})' if env else ''}; nothing is downloaded "
                  f"automatically (fetch it with `hf download {model}`)")
    return f"{looked}. {HOW_TO_CONFIGURE}"


def local_weights_problem(path: str, gguf_file: str | None) -> str:
    """Why a local path (a directory, a `.gguf` file, or a directory + `gguf_file`) holds no loadable model
    ("" if it looks complete)."""
    if gguf_file:
        return "" if os.path.isfile(os.path.join(path, gguf_file)) else "no such file"
    if path.lower().endswith(".gguf") and not os.path.isdir(path):
        return "" if os.path.isfile(path) else "no such file"
    if not os.path.isdir(path):
        return "" if os.path.exists(path) else "no such directory"
    names = set(os.listdir(path))
    if "config.json" not in names:
        ggufs = sorted(n for n in names if n.lower().endswith(".gguf"))
        if len(ggufs) == 1:
            return ""
        return (f"several GGUF files ({', '.join(ggufs)}): set gguf_file" if ggufs
                else "no config.json and no .gguf file in the directory")
    weights = any(n.endswith((".safetensors", ".bin", ".pt", ".pth")) or n.endswith(".safetensors.index.json")
                  for n in names)
    return "" if weights else "no *.safetensors or pytorch_model.bin weights in the directory"


def resolve_dtype(dtype: str, device: str, adapter: str | None) -> str:
    """What "auto" means: bfloat16 on a GPU; on a CPU int8 weights (`cpu_quant`: ~4.5x float32's speed on the demo
    workload, benchmarks/README.md), or float32 under a LoRA adapter or where torch cannot multiply int8."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16"
    from lse_engine.llm import cpu_quant

    return "int8" if device == "cpu" and not adapter and cpu_quant.available() else "float32"


def _torch_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    names = {"int8": torch.float32,  # loaded as float32, then its linear layers quantised (cpu_quant)
             "float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}
    if dtype not in names:
        raise LSEError(f"unknown dtype {dtype!r}: use auto, {', '.join(names)}")
    return names[dtype]


def sample_rows(scores: Any, generators: Sequence[Any], temperature: float, top_p: float) -> Any:
    """One token per row, each drawn with its own torch.Generator (so a row's draw does not depend on the others)."""
    import torch

    probs = torch.softmax(scores.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(dim=-1) - sorted_p > top_p  # keep the smallest prefix reaching top_p
        probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    # inverse transform: one uniform draw per row against the row's cumulative probabilities (multinomial draws
    # one exponential per vocabulary entry: ~3 ms a token on a 150k vocabulary, on one long reply 3 s in 1,000)
    cumulative = probs.cpu().double().cumsum(dim=-1)
    picks = []
    for i, g in enumerate(generators):
        u = torch.rand(1, generator=g, dtype=torch.float64) * cumulative[i, -1]
        picks.append(torch.searchsorted(cumulative[i], u, right=True).clamp_(max=cumulative.shape[-1] - 1))
    return torch.cat(picks).to(scores.device)


class _SeededSampler:
    """A logits processor that samples each row with its own torch.Generator and returns a one-hot score,
    so that greedy decoding in `generate()` picks the sampled token (reproducible, independent of batching)."""

    def __init__(self, generators: list[Any], temperature: float, top_p: float) -> None:
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        chosen = sample_rows(scores, self.generators, self.temperature, self.top_p)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, chosen[:, None], 0.0)


class _StopStrings:
    """A stopping criterion: a row is done once its generated text contains one of the stop strings."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_len = prompt_len
        self.window = stop_window(self.stops)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        tails = self.tokenizer.batch_decode(input_ids[:, max(self.prompt_len, input_ids.shape[1] - self.window):])
        return torch.tensor([any(s in t for s in self.stops) for t in tails], device=input_ids.device)

    def seen(self, generated: Sequence[int]) -> bool:
        """Whether the newest tokens of one row's reply complete a stop string (decodes only the last few)."""
        tail = self.tokenizer.decode(generated[-self.window:])
        return any(s in tail for s in self.stops)


def stop_window(stops: Sequence[str]) -> int:
    """Tokens to decode to see any of `stops` whole: a byte-level token holds at least one byte."""
    return 4 * max((len(s) for s in stops), default=0) + 2


def model_state(model: Any) -> tuple[int, ...]:
    """A cheap fingerprint of a model's weights and adapter switches: it changes when a parameter is written in
    place (a training step), added or removed (an adapter loaded), or an adapter is switched on or off."""
    versions = sum(p._version for p in model.parameters())
    switches = tuple(bool(getattr(m, "_disable_adapters", False)) for m in model.modules()
                     if hasattr(m, "_disable_adapters"))
    return (id(model), sum(1 for _ in model.parameters()), versions, hash(switches))


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


@dataclass(frozen=True)
class GenerationRecord:
    """One generate() call: chats, their prompt and generated tokens, and its wall time (loading excluded)."""

    chats: int
    prompt_tokens: int
    generated_tokens: int
    seconds: float


class TransformersLLM:
    """An LLM backed by a transformers causal LM in this process. `.model` and `.tokenizer` are public.

    `dtype`: "float32" (the default here: exact, and what training needs), "auto" (what `[model] dtype` defaults
    to: int8 on a CPU, bfloat16 on a GPU; see `resolve_dtype`), "int8", "bfloat16", "float16". `threads`: CPU
    threads (0: $LSE_THREADS, else tuned while decoding, `cpu_threads`)."""

    def __init__(self, model: str, gguf_file: str | None = None, device: str = "auto", dtype: str = "float32",
                 batch_size: int = 8, adapter: str | None = None, local_files_only: bool = True,
                 cancel: CancelToken | None = None, threads: int = 0,
                 prefix_cache_mb: int = PREFIX_CACHE_MB) -> None:
        import torch

        self.name = model
        self.gguf_file = gguf_file or None
        self.adapter = adapter or None
        self.batch_size = max(1, int(batch_size))
        self.cancel = cancel
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.threads = cpu_threads.apply(threads) if self.device == "cpu" else None  # None: tuned as it decodes
        self.dtype_name = resolve_dtype(dtype, self.device, self.adapter)
        self.int8 = self.dtype_name == "int8"
        if self.int8:
            from lse_engine.llm.cpu_quant import available

            if self.device != "cpu" or not available():
                raise LSEError(f'dtype "int8" needs a CPU and a torch that multiplies int8 matrices (torch._int_mm); '
                               f'this is {self.device} with torch {torch.__version__}: use dtype = "float32"')
        self.dtype = _torch_dtype(self.dtype_name, self.device)
        self._lock = threading.Lock()
        self._local_files_only = local_files_only
        self._gguf_config: Any = None  # the config of a GGUF read the int8 way (kept to load its weights again)
        self.prefix_cache = PrefixCache(prefix_cache_mb << 20)
        self.stats = {"batches": 0, "prompt_tokens": 0, "prefilled_tokens": 0, "generated_tokens": 0, "seconds": 0.0,
                      "loads": 0, "load_seconds": 0.0}
        self.recent: deque[GenerationRecord] = deque(maxlen=RECENT_CALLS)
        self._check_memory()
        with quiet_progress_bars():
            self.tokenizer = self._load_tokenizer(local_files_only)
        self.model: Any = None
        self._load_weights()

    def _load_weights(self) -> None:
        """Load (or load again after `release`) the weights: int8 straight from a GGUF when it can
        (`gguf_load`), else through transformers (and then `cpu_quant` for int8)."""
        from lse_engine.llm import decode, memory

        t0 = time.perf_counter()
        with quiet_progress_bars():
            model = self._load_int8_gguf() if self._gguf_config is not None or self.stats["loads"] == 0 else None
            if model is None:
                model = self._load_model(self._local_files_only)
                if self.adapter:
                    model = self._load_adapter(model, self.adapter)
        model.eval()
        if self.int8:
            from lse_engine.llm.cpu_quant import fuse_siblings, is_int8, quantize_int8

            if not is_int8(model):
                model = quantize_int8(model)
            model = fuse_siblings(model)
            memory.give_back_free_heap()
        self.model = model
        self.fast = decode.supports(self.model)  # prefix-shared batched decoding; else transformers' generate()
        self.stats["loads"] += 1
        self.stats["load_seconds"] += time.perf_counter() - t0

    def _load_int8_gguf(self) -> Any:
        """The model loaded tensor by tensor into int8 (`gguf_load`), or None where that path does not apply (not
        int8, not a GGUF, an adapter, an architecture it does not handle)."""
        if not self.int8 or self.adapter or self.device != "cpu":
            return None
        src, kwargs = self._source()
        file = kwargs.get("gguf_file")
        if not file or not os.path.isfile(os.path.join(src, file)):
            return None
        from lse_engine.llm import gguf_load

        try:
            if self._gguf_config is None:
                self._gguf_config = gguf_load.load_config(src, file)
            return gguf_load.load_int8(src, file, self._gguf_config)
        except gguf_load.Unsupported:
            self._gguf_config = None
            return None

    def _check_memory(self) -> None:
        """Raise `memory.NotEnoughMemory` naming the model when its weights would not fit in what is available."""
        from lse_engine.llm import gguf_file, memory

        if self.device != "cpu" or not looks_like_path(self.name):
            return
        src, kwargs = self._source()
        file = kwargs.get("gguf_file")
        try:
            if file:
                need = memory.gguf_weights_bytes(os.path.join(src, file), self.int8 and not self.adapter)
            elif os.path.isdir(src):
                values = memory.safetensors_values(src)
                need = values * (5 if self.int8 else self.dtype.itemsize)  # int8: float32 first, then int8
            else:
                return
        except gguf_file.BadGGUF as e:
            raise LSEError(f"model {self.name!r} cannot be loaded: {e}") from e
        except OSError:
            return  # the loader says what is wrong with the path
        memory.check(self.name, need + memory.WORKING_BYTES,
                     f"{self.dtype_name} weights {memory.gb(need)} + {memory.gb(memory.WORKING_BYTES)} to run")

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (False after `release`, until the next `generate`)."""
        return self.model is not None

    def release(self) -> None:
        """Free the weights and cached prefixes but keep the tokenizer: the next `generate` loads the weights again
        (after checking there is memory for them). For a GGUF loaded the int8 way that takes ~8 s for the 0.5B demo
        model and ~20 s for the 1.5B on 2 cores (benchmarks/README.md)."""
        with self._lock:
            self._drop_weights()

    def _drop_weights(self) -> None:
        from lse_engine.llm import memory

        self.model = None
        self.prefix_cache.clear()
        gc.collect()
        memory.give_back_free_heap()

    def _ensure_loaded(self) -> None:
        if self.model is None:
            self._check_memory()
            self._load_weights()

    @property
    def tokens_per_s(self) -> float | None:
        """Generated tokens a second over the last `RECENT_CALLS` generate() calls (prompt processing included),
        None before the first: what the demo reports for its evolver."""
        seconds = sum(r.seconds for r in self.recent)
        return sum(r.generated_tokens for r in self.recent) / seconds if seconds > 0 else None

    # -- loading ---------------------------------------------------------------------------------------------
    def _source(self) -> tuple[str, dict[str, Any]]:
        """Where from_pretrained reads (a checked local path or an HF id) and its extra kwargs; a `.gguf` file
        path, or a directory with one GGUF and no config.json, is read as directory + `gguf_file`."""
        if not looks_like_path(self.name):
            return self.name, {"gguf_file": self.gguf_file} if self.gguf_file else {}
        from lse_engine.models.resolve import split_gguf

        path = os.path.expanduser(self.name)
        problem = local_weights_problem(path, self.gguf_file)
        if problem:
            raise ModelNotFoundError(missing_model_message(self.name, self.gguf_file, problem))
        path, gguf_file = split_gguf(path, self.gguf_file)
        return path, {"gguf_file": gguf_file} if gguf_file else {}

    def _load_tokenizer(self, local_files_only: bool) -> Any:
        from transformers import AutoTokenizer

        src, kwargs = self._source()
        try:
            tok = AutoTokenizer.from_pretrained(src, local_files_only=local_files_only, **kwargs)
        except OSError as e:
            raise ModelNotFoundError(missing_model_message(self.name, self.gguf_file)) from e
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok

    def _load_model(self, local_files_only: bool) -> Any:
        from transformers import AutoModelForCausalLM

        src, kwargs = self._source()
        try:
            model = AutoModelForCausalLM.from_pretrained(src, local_files_only=local_files_only, dtype=self.dtype,
                                                         **kwargs)
        except OSError as e:
            raise ModelNotFoundError(missing_model_message(self.name, self.gguf_file)) from e
        return model.to(self.device)  # type: ignore[arg-type]  # transformers' stub wants a model, not a device

    @staticmethod
    def _load_adapter(model: Any, adapter: str) -> Any:
        if not os.path.isfile(os.path.join(adapter, "adapter_config.json")):
            if os.path.isfile(os.path.join(adapter, "config.json")):  # a full fine-tune (`lse train`, method full)
                from transformers import AutoModelForCausalLM

                with quiet_progress_bars():
                    full = AutoModelForCausalLM.from_pretrained(adapter, dtype=model.dtype)
                return full.to(model.device)
            raise ModelNotFoundError(f"LoRA adapter not found: {os.path.abspath(adapter)} has no adapter_config.json. "
                                     "Set [evolver] adapter to a directory written by `lse train`.")
        try:
            from peft import PeftModel
        except ImportError as e:
            raise LSEError("loading a LoRA adapter needs peft: pip install 'lse-prompts[train]'") from e
        return PeftModel.from_pretrained(model, adapter)

    # -- generation ------------------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return f"transformers:{self.name}:{self.gguf_file or ''}:{self.adapter or ''}"

    def render(self, chat: Chat) -> list[int]:
        """Prompt token ids for a chat: the tokenizer's chat template, else a plain `role: content` transcript."""
        prefill = continues_reply(chat)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(list(chat), add_generation_prompt=not prefill,
                                                      continue_final_message=prefill, tokenize=False)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        turns = chat[:-1] if prefill else chat
        text = "".join(f"{m['role']}: {m['content']}\n" for m in turns) + "assistant:"
        if prefill:
            text += " " + chat[-1]["content"]
        return list(self.tokenizer(text)["input_ids"])

    def stem(self, chat: Chat, prompt: Sequence[int]) -> int:
        """How many leading tokens of `prompt` (the chat rendered) are its turns before the last: the part a
        batch of chats with one system prompt shares. Decoding splits there whatever the batch, so that a chat's
        reply does not depend on which other chats it was batched with. 0 when there is no such turn."""
        if len(chat) < 2 or not getattr(self.tokenizer, "chat_template", None):
            return 0
        text = self.tokenizer.apply_chat_template(list(chat[:-1]), add_generation_prompt=False, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return len(ids) if list(prompt[: len(ids)]) == list(ids) else 0

    def _eos_ids(self) -> list[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return sorted(ids)

    def generate(self, chats: Sequence[Chat], sampling: Sampling) -> list[Completion]:
        """One completion per chat, in order. Chats are sorted by their token ids, so chats that share a system
        prompt land in the same batch and share its keys and values."""
        prompts = [self.render(c) for c in chats]
        order = sorted(range(len(prompts)), key=lambda i: prompts[i])
        base_seed = sampling.seed if sampling.seed is not None else int.from_bytes(os.urandom(7), "little")
        results: list[Completion | None] = [None] * len(prompts)
        with self._lock:
            self._ensure_loaded()
            t0 = time.perf_counter()
            for start in range(0, len(order), self.batch_size):
                if self.cancel is not None and self.cancel.cancelled:
                    raise Cancelled("cancelled")
                idx = order[start: start + self.batch_size]
                batch = [prompts[i] for i in idx]
                seeds = [base_seed + i for i in idx]
                if self.fast:
                    outs = self._decode_batch(batch, sampling, seeds, [self.stem(chats[i], prompts[i]) for i in idx])
                else:
                    outs = self._generate_batch(batch, sampling, seeds)
                for i, c in zip(idx, outs, strict=True):
                    results[i] = c
            done = [c for c in results if c is not None]
            if self.device == "cpu":  # the prefill's freed activations: ~0.2-0.4 GB the C heap would keep
                from lse_engine.llm import memory

                memory.give_back_free_heap()
            seconds = time.perf_counter() - t0
            self.stats["seconds"] += seconds
            self.recent.append(GenerationRecord(len(chats), sum(c.prompt_tokens for c in done),
                                                sum(c.completion_tokens for c in done), seconds))
        return done

    def _decode_batch(self, prompts: list[list[int]], sampling: Sampling, seeds: list[int],
                      stems: list[int]) -> list[Completion]:
        """One batch through `decode.Decoder`: shared prefix once, rows leave as they finish."""
        import torch

        from lse_engine.llm import decode

        eos = set(self._eos_ids())
        stops = _StopStrings(self.tokenizer, sampling.stop, 0) if any(sampling.stop) else None
        if sampling.temperature > 0:
            gens = [torch.Generator().manual_seed(s % (2**63)) for s in seeds]

            def choose(logits: Any, rows: list[int]) -> Any:
                return sample_rows(logits, [gens[r] for r in rows], sampling.temperature, sampling.top_p)
        else:
            def choose(logits: Any, rows: list[int]) -> Any:
                return logits.argmax(dim=-1)

        def finished(row: int, gen: list[int]) -> bool:
            return gen[-1] in eos or (stops is not None and stops.seen(gen))

        self.prefix_cache.check_state(model_state(self.model))
        tuner = cpu_threads.tuner() if self.device == "cpu" and self.threads is None else None
        decoder = decode.Decoder(self.model, self.prefix_cache, tuner)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        try:
            with torch.inference_mode():
                gens_ids = decoder.generate(prompts, sampling.max_tokens, choose, finished, pad, self.cancel,
                                            split=min(stems))
        except decode.Unsupported:
            self.fast = False  # this model's attention bypasses transformers' interface: generate() from now on
            return self._generate_batch(prompts, sampling, seeds)
        self.stats["batches"] += 1
        self.stats["prompt_tokens"] += sum(len(p) for p in prompts)
        self.stats["prefilled_tokens"] += decoder.prefilled
        self.stats["generated_tokens"] += sum(len(g) for g in gens_ids)
        return [self._completion(g, len(p), sampling, eos, None) for g, p in zip(gens_ids, prompts, strict=True)]

    def _generate_batch(self, prompts: list[list[int]], sampling: Sampling, seeds: list[int]) -> list[Completion]:
        import torch
        from transformers import GenerationConfig

        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        eos = self._eos_ids()
        config = GenerationConfig(  # type: ignore[no-untyped-call]  # transformers: untyped __init__(**kwargs)
            max_new_tokens=sampling.max_tokens, do_sample=False, num_beams=1, pad_token_id=pad,
            eos_token_id=eos or None, bos_token_id=self.tokenizer.bos_token_id)
        processors = []
        if sampling.temperature > 0:
            gens = [torch.Generator().manual_seed(s % (2**63)) for s in seeds]
            processors.append(_SeededSampler(gens, sampling.temperature, sampling.top_p))
        criteria = [_StopStrings(self.tokenizer, sampling.stop, width)] if any(sampling.stop) else []
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                      logits_processor=processors, stopping_criteria=criteria)
        return [self._completion(row.tolist(), len(p), sampling, set(eos), pad)
                for row, p in zip(out[:, width:], prompts, strict=True)]

    def _completion(self, gen: list[int], prompt_len: int, sampling: Sampling, eos: set[int],
                    pad: int | None) -> Completion:
        """`pad`: the padding id that `generate()` appends to rows that stopped early (None: nothing appended)."""
        hit_eos = next((i for i, t in enumerate(gen) if t in eos), None)
        if hit_eos is not None:
            gen = gen[: hit_eos + 1]
        elif pad is not None:
            while gen and gen[-1] == pad:  # rows that stopped early (stop string) are padded to the batch length
                gen = gen[:-1]
        text, stopped = cut_at_stop(self.tokenizer.decode(gen, skip_special_tokens=True), sampling.stop)
        length = hit_eos is None and not stopped and len(gen) >= sampling.max_tokens
        return Completion(text, prompt_tokens=prompt_len, completion_tokens=len(gen),
                          finish_reason="length" if length else "stop")

    def close(self) -> None:
        """Release the weights (and GPU memory)."""
        self._drop_weights()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

