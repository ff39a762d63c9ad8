"""The transformers backend on a tiny random model (real weights, real batching) and, marked slow, SmolLM2."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lse_engine.errors import LSEError, ModelNotFoundError
from lse_engine.llm import make_llm
from lse_engine.llm.base import LLM, Sampling
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


@pytest.fixture(scope="module")
def llm(tiny_model_dir: str) -> Iterator[TransformersLLM]:
    model = TransformersLLM(tiny_model_dir, batch_size=3, dtype="float32")
    yield model
    model.close()


def test_batched_generate_returns_one_completion_per_chat_in_order(llm: TransformersLLM) -> None:
    assert isinstance(llm, LLM) and llm.model is not None and llm.tokenizer is not None
    out = llm.generate(CHATS, Sampling(max_tokens=12))
    assert len(out) == len(CHATS)
    for c, chat in zip(out, CHATS):
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
    for f, c in zip(full, cut):
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
