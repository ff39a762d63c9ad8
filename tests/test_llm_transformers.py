"""The transformers backend on tiny random models (real weights, real batching; a Llama and a Qwen2 with grouped
key/value heads, as the demo model has) and, marked slow, SmolLM2."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lse_engine.errors import Cancelled, LSEError, ModelNotFoundError
from lse_engine.llm import cpu_threads, make_llm
from lse_engine.llm.base import LLM, CancelToken, Chat, Sampling
from lse_engine.llm.prefix_cache import PrefixCache, common_prefix_len
from lse_engine.llm.tiny import build_tiny_model
from lse_engine.llm.transformers_backend import TransformersLLM, cut_at_stop
from lse_engine.models import on_disk

CHATS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "You are a SQL assistant."},
     {"role": "user", "content": "How many customers live in Oslo? " * 6}],
    [{"role": "user", "content": "SELECT n FROM nums WHERE n = 7"}],
    [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 12}],
    [{"role": "user", "content": "Which option is correct?"}, {"role": "assistant", "content": "(B)"},
     {"role": "user", "content": "why?"}],
]


# the scorer's shape: one long system prompt (schema + instructions) shared by every chat, a short question each
SYSTEM = ("You are a SQL assistant. Write one SQLite query that answers the question. " * 3
          + "CREATE TABLE nums (n INTEGER, label TEXT); SELECT n FROM nums WHERE n = 7; " * 4)
SHARED_CHATS = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}] for q in
                ("How many customers live in Oslo?", "hi", "SELECT n FROM nums WHERE n = 7 " * 3,
                 "Which option is correct? Answer with the letter.", "x", "How many customers live in Bergen?")]


@pytest.fixture(scope="module")
def llm(tiny_model_dir: str) -> Iterator[TransformersLLM]:
    model = TransformersLLM(tiny_model_dir, batch_size=3, dtype="float32")
    yield model
    model.close()


@pytest.fixture(scope="module")
def qwen2_dir(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random Qwen2 (the demo model's architecture: grouped key/value heads, biased q/k/v projections)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny-qwen2")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         initializer_range=0.2, tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(1)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def qwen2(qwen2_dir: str) -> Iterator[TransformersLLM]:
    llm = TransformersLLM(qwen2_dir, batch_size=4, dtype="float32")
    yield llm
    llm.close()


def reference(llm: TransformersLLM, chats: list[Chat], sampling: Sampling) -> list:
    """transformers' own generate(), one chat at a time: no batching, no shared prefix, no cache between calls."""
    fast, size = llm.fast, llm.batch_size
    llm.fast, llm.batch_size = False, 1
    try:
        return llm.generate(chats, sampling)
    finally:
        llm.fast, llm.batch_size = fast, size


def test_batched_generate_returns_one_completion_per_chat_in_order(llm: TransformersLLM) -> None:
    assert isinstance(llm, LLM) and llm.model is not None and llm.tokenizer is not None
    out = llm.generate(CHATS, Sampling(max_tokens=12))
    assert len(out) == len(CHATS)
    for c, chat in zip(out, CHATS, strict=True):
        assert c.prompt_tokens == len(llm.render(chat)) and 0 < c.completion_tokens <= 12
        assert c.finish_reason in ("stop", "length")
    assert len({c.text for c in out}) > 1  # replies depend on the prompt (the test below would be vacuous else)
    assert out == llm.generate(CHATS, Sampling(max_tokens=12))  # greedy is deterministic


def test_batched_equals_one_at_a_time_under_greedy(llm: TransformersLLM) -> None:
    """Left padding plus the attention mask must make a padded row decode exactly as it does alone."""
    sampling = Sampling(max_tokens=16)
    batched = llm.generate(CHATS, sampling)
    single = [llm.generate([c], sampling)[0] for c in CHATS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]


def test_sampling_is_seeded_and_independent_of_batching(llm: TransformersLLM) -> None:
    s = Sampling(max_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    a = llm.generate(CHATS, s)
    assert a == llm.generate(CHATS, s)
    llm.batch_size = 1
    try:
        assert a == llm.generate(CHATS, s)
    finally:
        llm.batch_size = 3
    other = llm.generate(CHATS, Sampling(max_tokens=12, temperature=1.0, top_p=0.9, seed=8))
    assert [c.text for c in other] != [c.text for c in a]


def test_stop_strings_truncate(llm: TransformersLLM) -> None:
    full = llm.generate(CHATS, Sampling(max_tokens=16))
    stop = next(c.text[2:4] for c in full if len(c.text) >= 6 and "\ufffd" not in c.text[2:4])
    cut = llm.generate(CHATS, Sampling(max_tokens=16, stop=(stop, "<never>")))
    for f, c in zip(full, cut, strict=True):
        expected = f.text.split(stop)[0] if stop in f.text else f.text
        assert c.text == expected
        if stop in f.text:
            assert c.finish_reason == "stop" and c.completion_tokens <= f.completion_tokens
    assert cut_at_stop("a</answer>b;c", ["c", "</answer>"]) == ("a", True)
    assert cut_at_stop("abc", []) == ("abc", False)


def test_prefill_continues_the_assistant_reply(llm: TransformersLLM) -> None:
    chat = [{"role": "user", "content": "Write new instructions."}]
    prefilled = [*chat, {"role": "assistant", "content": "<prompt>\nAlways"}]
    plain_ids, prefill_ids = llm.render(chat), llm.render(prefilled)
    assert prefill_ids[: len(plain_ids)] == plain_ids  # the same chat, then the reply's beginning
    assert llm.tokenizer.decode(prefill_ids[len(plain_ids):]).strip() == "<prompt>\nAlways"
    assert "<|im_end|>" not in llm.tokenizer.decode(prefill_ids[-3:])  # the reply is left open
    out = llm.generate([prefilled], Sampling(max_tokens=6))[0]
    assert out.prompt_tokens == len(prefill_ids) and out.completion_tokens > 0


@pytest.mark.parametrize("name", ["llm", "qwen2"])
def test_shared_prefix_decoding_matches_generate_token_for_token(name: str, request: pytest.FixtureRequest) -> None:
    """Prefix computed once, rows padded between prefix and question, rows leaving as they end: the same tokens
    as transformers' generate() one chat at a time, with and without stop strings, at any batch size."""
    llm: TransformersLLM = request.getfixturevalue(name)
    assert llm.fast
    greedy = Sampling(max_tokens=20)
    expected = reference(llm, SHARED_CHATS, greedy)
    assert len({c.text for c in expected}) > 2  # replies depend on the question
    stop = next(c.text[3:5] for c in expected if len(c.text) >= 8 and "\ufffd" not in c.text[3:5])
    stopping = Sampling(max_tokens=20, stop=(stop, "</answer>"))
    expected_stopped = reference(llm, SHARED_CHATS, stopping)
    assert any(c.finish_reason == "stop" and c.completion_tokens < 20 for c in expected_stopped)
    size = llm.batch_size
    try:
        for llm.batch_size in (1, 4, len(SHARED_CHATS)):
            llm.prefix_cache.clear()
            assert llm.generate(SHARED_CHATS, greedy) == expected
            assert llm.generate(SHARED_CHATS, stopping) == expected_stopped
    finally:
        llm.batch_size = size
    assert [c.prompt_tokens for c in expected] == [len(llm.render(c)) for c in SHARED_CHATS]


def test_prefill_in_row_chunks_gives_the_same_tokens(qwen2: TransformersLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    from lse_engine.llm import shared_attention

    greedy = Sampling(max_tokens=12)
    whole = qwen2.generate(SHARED_CHATS, greedy)
    monkeypatch.setattr(shared_attention, "CHUNK_SCORES", 1)  # one row at a time
    assert qwen2.generate(SHARED_CHATS, greedy) == whole


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_prefill_in_blocks_of_tokens_gives_the_same_tokens(qwen2_dir: str, dtype: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A long prompt is prefilled a block of columns at a time (bounded activations): the same keys, values and
    logits as one pass, so the same replies, for the shared prefix and for the rows' own parts."""
    from lse_engine.llm import decode

    llm = TransformersLLM(qwen2_dir, batch_size=len(SHARED_CHATS), dtype=dtype)
    greedy = Sampling(max_tokens=12)
    monkeypatch.setattr(decode, "PREFILL_TOKENS", 1 << 30)  # one pass
    whole = llm.generate(SHARED_CHATS, greedy)
    assert llm.stats["prefilled_tokens"] > 100
    for tokens in (7, 64):  # blocks of one column (7 // 6 rows), and uneven ones
        monkeypatch.setattr(decode, "PREFILL_TOKENS", tokens)
        llm.prefix_cache.clear()
        assert llm.generate(SHARED_CHATS, greedy) == whole
    llm.close()


def test_prefix_cache_serves_later_batches_and_partial_matches(llm: TransformersLLM) -> None:
    greedy = Sampling(max_tokens=16)
    llm.prefix_cache.clear()
    misses = llm.prefix_cache.misses
    assert llm.generate(SHARED_CHATS[:1], greedy) == reference(llm, SHARED_CHATS[:1], greedy)
    system = llm.stem(SHARED_CHATS[0], llm.render(SHARED_CHATS[0]))  # the system turn: where decoding splits
    assert len(llm.prefix_cache) == 1 and llm.prefix_cache.misses - misses == system
    hits = llm.prefix_cache.hits
    assert llm.generate(SHARED_CHATS, greedy) == reference(llm, SHARED_CHATS, greedy)
    assert llm.prefix_cache.hits - hits == 2 * system  # both batches of 3 took it from the cache
    assert llm.prefix_cache.misses - misses == system
    # another system prompt that begins like the first: the common part comes from the cached entry
    other = [{"role": "system", "content": SYSTEM + " Be brief."}, {"role": "user", "content": "hi"}]
    mixed = [SHARED_CHATS[0], other]
    shared = common_prefix_len(llm.render(mixed[0]), llm.render(mixed[1]))
    assert 0 < shared < system
    hits = llm.prefix_cache.hits
    assert llm.generate(mixed, greedy) == reference(llm, mixed, greedy)
    assert llm.prefix_cache.hits - hits == shared


def test_prefix_cache_is_dropped_when_the_weights_change(llm: TransformersLLM) -> None:
    import torch

    greedy = Sampling(max_tokens=12)
    before = llm.generate(SHARED_CHATS, greedy)
    weight = llm.model.model.layers[0].self_attn.k_proj.weight
    with torch.no_grad():
        weight.mul_(-1)  # in place, as a training step writes it
    try:
        after = llm.generate(SHARED_CHATS, greedy)
        assert after == reference(llm, SHARED_CHATS, greedy) and after != before
    finally:
        with torch.no_grad():
            weight.mul_(-1)
    assert llm.generate(SHARED_CHATS, greedy) == before


def test_cancel_stops_a_batch_between_tokens(llm: TransformersLLM) -> None:
    class CancelAfter(CancelToken):
        """Reports cancelled from the `after`-th look on (the decoder looks once per token)."""

        def __init__(self, after: int) -> None:
            super().__init__()
            self.looks, self.after = 0, after

        @property
        def cancelled(self) -> bool:
            self.looks += 1
            return self.looks > self.after

    llm.cancel = CancelAfter(3)
    try:
        with pytest.raises(Cancelled):
            llm.generate(SHARED_CHATS[:2], Sampling(max_tokens=50))
        assert llm.cancel.looks == 4  # one look before the batch, then one per token: it stopped at the third
    finally:
        llm.cancel = None


@pytest.mark.parametrize("weights", ["tiny_model_dir", "qwen2_dir"])
def test_int8_weights_generate_the_same_alone_or_in_any_batch(weights: str, request: pytest.FixtureRequest) -> None:
    """int8 products are exact integers, each row is quantised with its own scale, and a row's keys sit where they
    would sit alone: a chat's reply, greedy or seeded, does not depend on the other chats in its batch, at a fixed
    thread count (with several threads, bfloat16 attention products may split their sums differently for different
    batch shapes: benchmarks/README.md)."""
    import torch

    before = torch.get_num_threads()
    llm = TransformersLLM(request.getfixturevalue(weights), dtype="int8", batch_size=len(SHARED_CHATS), threads=1)
    assert type(llm.model.model.layers[0].mlp.fused_gate_proj).__name__ == "Int8Fused" and llm.fast
    for sampling in (Sampling(max_tokens=12), Sampling(max_tokens=12, temperature=1.0, seed=3)):
        out = llm.generate(SHARED_CHATS, sampling)
        assert [c.prompt_tokens for c in out] == [len(llm.render(c)) for c in SHARED_CHATS]
        assert all(0 < c.completion_tokens <= 12 for c in out) and len({c.text for c in out}) > 2
        llm.batch_size = 1
        assert llm.generate(SHARED_CHATS, sampling) == out
        llm.batch_size = 4
        assert llm.generate(SHARED_CHATS, sampling) == out
        llm.batch_size = len(SHARED_CHATS)
    llm.close()
    torch.set_num_threads(before)


def test_thread_count_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSE_THREADS", "1")
    assert cpu_threads.fixed(0) == 1 and cpu_threads.fixed(3) == 3  # the setting wins over the environment
    monkeypatch.setenv("LSE_THREADS", "many")
    assert cpu_threads.fixed(0) is None  # not a count: tuned


def test_threads_setting_reaches_the_backend(tiny_model_dir: str, tmp_path: Path) -> None:
    import torch

    from lse_engine.config import ModelConfig
    from lse_engine.llm.pool import build_llm

    before = torch.get_num_threads()
    try:
        llm = build_llm(ModelConfig(backend="transformers", model=tiny_model_dir, dtype="float32", threads=1), tmp_path)
        assert llm.threads == 1 and torch.get_num_threads() == 1
        llm.close()
    finally:
        torch.set_num_threads(before)


def run_tuner(tuner: cpu_threads.ThreadTuner, seconds: dict[int, float], steps: int) -> list[int]:
    """Decode steps that take `seconds[threads]` each on a fake clock; the thread count each step ran with."""
    now = [0.0]
    tuner.clock = lambda: now[0]
    used = []
    for _ in range(steps):
        n = tuner.start(rows=4)
        now[0] += seconds[n]
        tuner.done()
        used.append(n)
    return used


@pytest.mark.parametrize("start,best", [(2, 1), (1, 2)])
def test_thread_tuner_moves_to_the_faster_count(start: int, best: int) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        tuner = cpu_threads.ThreadTuner([1, 2], start)
        used = run_tuner(tuner, {start: 1.0, best: 0.6}, 30)
        assert tuner.current == best and used[-20:] == [best] * 20 and torch.get_num_threads() == best
    finally:
        torch.set_num_threads(before)


def test_thread_tuner_tries_a_much_slower_count_one_step_at_a_time_and_ever_less_often() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        tuner = cpu_threads.ThreadTuner([1, 2], 1)
        used = run_tuner(tuner, {1: 1.0, 2: 5.0}, 400)  # 2 threads on busy cores: far slower
        tries = [i for i, n in enumerate(used) if n == 2]
        assert tuner.current == 1 and 3 <= len(tries) <= 5  # each try lasted one step
        gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
        assert gaps == sorted(gaps) and gaps[-1] >= 4 * gaps[0]  # backing off: twice as long each time
    finally:
        torch.set_num_threads(before)


def test_prefix_cache_keeps_within_its_budget() -> None:
    import torch

    def kv(tokens: int) -> list:
        return [(torch.zeros(1, 1, tokens, 4), torch.zeros(1, 1, tokens, 4))]  # 32 bytes a token

    cache = PrefixCache(max_bytes=32 * 100)
    cache.put([1, 2, 3], kv(40))
    cache.put([1, 2, 4], kv(40))
    cache.put([7], kv(60))  # over half the budget: not kept
    assert len(cache) == 2
    assert cache.longest([8]) == (0, None)
    assert cache.longest([1, 2, 3, 9])[0] == 3  # [1, 2, 3] is now the most recently used
    cache.put([5, 5], kv(40))  # evicts the least recently used: [1, 2, 4]
    assert cache.longest([1, 2, 4])[0] == 2 and cache.longest([5, 5, 5])[0] == 2 and len(cache) == 2
    cache.check_state("trained")
    assert len(cache) == 0


def test_model_id_and_factory_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LSE_CACHE_DIR", str(tmp_path / "cache"))
    llm = make_llm("transformers", "tiny", batch_size=2)
    assert "Writing model shards" not in capfd.readouterr().err  # building it saves quietly
    assert llm.model_id == f"transformers:{tmp_path / 'cache' / 'tiny-model'}::"
    assert len(llm.generate(CHATS[:2], Sampling(max_tokens=3))) == 2
    llm.close()
    t0 = time.monotonic()
    assert build_tiny_model(tmp_path / "cache" / "tiny-model") == str(tmp_path / "cache" / "tiny-model")
    assert time.monotonic() - t0 < 0.5  # cached: reused, not rebuilt


def test_missing_model_dir_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as e:
        TransformersLLM(str(missing))
    msg = str(e.value)
    assert str(missing) in msg and "lse.toml" in msg and "base_url" in msg and "--tiny" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="empty.*no config.json"):
        TransformersLLM(str(tmp_path / "empty"))


def test_missing_hub_model_names_the_cache() -> None:
    with pytest.raises(ModelNotFoundError, match=r"lse-test/no-such-model.*Hugging Face cache .*lse\.toml"):
        TransformersLLM("lse-test/no-such-model")


def test_missing_adapter_and_vllm_are_clear_errors(tiny_model_dir: str, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="adapter_config.json"):
        TransformersLLM(tiny_model_dir, adapter=str(tmp_path))
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(LSEError, match=r"pip install 'lse-prompts\[gpu\]'"):
            make_llm("vllm", tiny_model_dir)


@pytest.mark.slow
@pytest.mark.skipif(not on_disk("smollm2"), reason="SmolLM2 not downloaded: lse models pull smollm2")
def test_smollm2_gguf_answers_a_chat(capfd: pytest.CaptureFixture[str]) -> None:
    llm = make_llm("transformers", "smollm2", batch_size=2)
    assert llm.model_id.endswith(":SmolLM2-135M-Instruct.Q4_1.gguf:")
    chats = [[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
             [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "Say hello."}]]
    out = llm.generate(chats, Sampling(max_tokens=24))
    llm.close()
    assert "GGUF tensors" not in capfd.readouterr().err  # transformers' own de-quantising bar stays quiet
    assert "Paris" in out[0].text
    assert out[1].text.strip() and out[1].completion_tokens > 0 and out[1].prompt_tokens > 10
