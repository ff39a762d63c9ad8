"""GGUF files loaded straight into int8, tensor by tensor (`gguf_load`), against transformers' float32 loader followed
by `quantize_int8` (the path before): on tiny random Qwen2 GGUFs written here with the `gguf` package (quantised
blocks, a separate and a tied output head). Also the memory check before loading, and releasing/reloading weights."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lse_engine.errors import LSEError
from lse_engine.llm import gguf_file, gguf_load, memory
from lse_engine.llm.base import Sampling
from lse_engine.llm.tiny_gguf import build_tiny_gguf
from lse_engine.llm.transformers_backend import TransformersLLM
from lse_engine.models import on_disk
from tests.test_llm_transformers import CHATS, SHARED_CHATS


@pytest.fixture(scope="module", params=[False, True], ids=["own-head", "tied-head"])
def gguf_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_gguf(tmp_path_factory.mktemp("gguf"), seed=3, tied=request.param)


def old_path(path: str, monkeypatch: pytest.MonkeyPatch) -> TransformersLLM:
    """The backend as it loaded an int8 GGUF before: transformers' float32 model, then `quantize_int8`."""
    with monkeypatch.context() as m:
        m.setattr(gguf_load, "_processor", lambda *a: (_ for _ in ()).throw(gguf_load.Unsupported("test")))
        return TransformersLLM(path, dtype="int8", batch_size=4)


def tensors(model: object) -> dict:
    return {**dict(model.named_buffers()), **dict(model.named_parameters())}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def both(gguf_path: str) -> Iterator[tuple[TransformersLLM, TransformersLLM]]:
    mp = pytest.MonkeyPatch()
    old = old_path(gguf_path, mp)
    new = TransformersLLM(gguf_path, dtype="int8", batch_size=4)
    yield old, new
    old.close()
    new.close()


def test_int8_weights_are_those_of_the_float_model_quantised(both: tuple[TransformersLLM, TransformersLLM]) -> None:
    import torch

    old, new = both
    assert type(old.model.model.embed_tokens).__name__ == "Embedding"  # really the old path
    assert type(new.model.model.embed_tokens).__name__ == "GGUFEmbedding"  # really the new one
    a, b = tensors(old.model), tensors(new.model)
    assert set(a) - {"model.embed_tokens.weight"} == set(b) - {"model.embed_tokens.blocks"}
    assert a["lm_head.weight"].dtype == torch.int8 and "lm_head.weight_t" not in b  # one layout
    different = [k for k in set(a) & set(b) if not torch.equal(a[k], b[k])]
    assert different == []
    ids = torch.arange(old.model.config.vocab_size)[None]  # every row of the table, de-quantised as it is looked up
    assert torch.equal(old.model.model.embed_tokens(ids), new.model.model.embed_tokens(ids))
    assert new.model.generation_config.eos_token_id == old.model.generation_config.eos_token_id
    assert new.fast and old.fast


def test_the_same_replies_greedy_and_sampled(both: tuple[TransformersLLM, TransformersLLM]) -> None:
    old, new = both
    for sampling in (Sampling(max_tokens=12), Sampling(max_tokens=12, temperature=0.8, seed=5)):
        replies = new.generate(SHARED_CHATS + CHATS, sampling)
        assert replies == old.generate(SHARED_CHATS + CHATS, sampling)
        assert len({c.text for c in replies}) > 3  # replies depend on the prompt: the comparison means something


def test_large_tensors_go_in_blocks_of_rows_with_the_same_result(gguf_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    directory, file = os.path.split(gguf_path)
    whole = tensors(gguf_load.load_int8(directory, file))
    monkeypatch.setattr(gguf_load, "CHUNK_FLOATS", 3 * 64 + 5)  # 3 rows of 64 at a time: uneven last block
    blocks = tensors(gguf_load.load_int8(directory, file))
    assert set(whole) == set(blocks) and all(torch.equal(whole[k], blocks[k]) for k in whole)


def test_an_architecture_it_does_not_handle_loads_the_old_way(gguf_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    llm = old_path(gguf_path, monkeypatch)
    assert type(llm.model.model.layers[0].mlp.fused_gate_proj).__name__ == "Int8Fused" and llm._gguf_config is None
    llm.close()


def test_header_reader_agrees_with_the_gguf_package(gguf_path: str, tmp_path: Path) -> None:
    import numpy as np
    from gguf import GGUFReader

    ours = gguf_file.read(gguf_path)
    theirs = GGUFReader(gguf_path)
    assert ours.architecture == "qwen2" and ours.metadata["qwen2.block_count"] == 2
    assert ours.metadata["tokenizer.ggml.tokens"] == len(theirs.fields["tokenizer.ggml.tokens"].data)  # walked over
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for a, b in zip(ours.tensors, theirs.tensors, strict=True):
        assert a.shape == tuple(reversed(b.shape.tolist())) and a.ggml_type == int(b.tensor_type)
        assert np.array_equal(a.read().reshape(-1), np.asarray(b.data).view(np.uint8).reshape(-1))
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(Path(gguf_path).read_bytes()[:-100])  # a download cut short
    with pytest.raises(gguf_file.BadGGUF, match="truncated"):
        gguf_file.read(str(cut))
    with pytest.raises(LSEError, match=r"'.*cut\.gguf' cannot be loaded: .*runs past the end of the file"):
        TransformersLLM(str(cut), dtype="int8")
    cut.write_bytes(b"GGUF" + bytes(10))
    with pytest.raises(gguf_file.BadGGUF):
        gguf_file.read(str(cut))


def test_not_enough_memory_is_a_message_naming_the_model(gguf_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    need = memory.gguf_weights_bytes(gguf_path, int8=True)
    floats = memory.gguf_weights_bytes(gguf_path, int8=False)
    assert 0 < need < floats / 4  # int8 and quantised blocks, against float32 twice over
    monkeypatch.setattr(memory, "available_bytes", lambda meminfo=memory.MEMINFO: memory.WORKING_BYTES)
    loads = []
    monkeypatch.setattr(gguf_load, "load_int8", lambda *a, **k: loads.append(a))
    with pytest.raises(memory.NotEnoughMemory) as e:
        TransformersLLM(gguf_path, dtype="int8")
    message = str(e.value)
    assert f"model {gguf_path!r}" in message and "needs about 0.5 GB" in message and "available" in message
    assert loads == []  # checked before anything was read
    monkeypatch.setattr(memory, "available_bytes", lambda meminfo=memory.MEMINFO: None)  # no /proc: not checked
    monkeypatch.undo()
    TransformersLLM(gguf_path, dtype="int8").close()


def test_meminfo_is_read(tmp_path: Path) -> None:
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   12345678 kB\n")
    assert memory.available_bytes(str(info)) == 12345678 * 1024
    info.write_text("MemTotal: 1 kB\n")
    assert memory.available_bytes(str(info)) is None
    assert memory.available_bytes(str(tmp_path / "none")) is None


def test_released_weights_load_again_on_the_next_generate(gguf_path: str) -> None:
    llm = TransformersLLM(gguf_path, dtype="int8", batch_size=4)
    assert llm.tokens_per_s is None
    greedy = Sampling(max_tokens=10)
    first = llm.generate(SHARED_CHATS, greedy)
    assert llm.tokens_per_s is not None and llm.tokens_per_s > 0
    assert llm.recent[-1].generated_tokens == sum(c.completion_tokens for c in first)
    tokenizer = llm.tokenizer
    llm.release()
    assert not llm.loaded and llm.model is None and len(llm.prefix_cache) == 0
    assert llm.generate(SHARED_CHATS, greedy) == first
    assert llm.loaded and llm.stats["loads"] == 2 and llm.tokenizer is tokenizer  # weights only
    llm.close()


@pytest.mark.slow
@pytest.mark.skipif(not on_disk("qwen2.5-coder-0.5b"), reason="lse models pull qwen2.5-coder-0.5b")
def test_the_demo_task_model_loads_to_the_same_int8_model_and_replies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real 0.5B (Q4_K_M: Q5_0, Q8_0, Q4_K and Q6_K blocks, an output head of its own): every int8 weight and
    scale as transformers' float32 model quantised, and the same greedy replies."""
    import torch

    from lse_engine.llm import resolve_weights

    path = os.path.join(*resolve_weights("qwen2.5-coder-0.5b"))  # type: ignore[arg-type]
    new = TransformersLLM(path, dtype="int8", batch_size=4)
    b = tensors(new.model)
    chats = [[{"role": "user", "content": "Write a SQLite query that counts the rows of table orders."}],
             [{"role": "system", "content": "You answer with one SQLite query."},
              {"role": "user", "content": "Which customers live in OSLO? Table customers(id, name, city)."}]]
    greedy = Sampling(max_tokens=24)
    replies = new.generate(chats, greedy)
    new.close()
    old = old_path(path, monkeypatch)
    a = tensors(old.model)
    assert [k for k in set(a) & set(b) if not torch.equal(a[k], b[k])] == []
    assert old.generate(chats, greedy) == replies and all(r.text.strip() for r in replies)
    old.close()
