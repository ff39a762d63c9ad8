"""A tiny random-weight chat model (Llama architecture, byte-level BPE) built in seconds, for tests and demos.

Its replies are noise; it exists so that every code path that needs real weights (batching, LoRA training,
`lse demo --tiny`) runs without downloading anything.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

from lse_engine.llm.transformers_backend import quiet_progress_bars

if TYPE_CHECKING:  # imported lazily where used: transformers is slow to import
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<s>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
INIT_STD = 0.2  # large enough that greedy replies depend on the prompt (the default 0.02 repeats one token)
REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors")

_CORPUS = """
SELECT name, COUNT(*) FROM customers WHERE city = 'Oslo' GROUP BY name ORDER BY 2 DESC LIMIT 10;
SELECT DISTINCT o.id, c.name FROM orders AS o JOIN customers AS c ON o.customer = c.id WHERE o.total > 100;
SELECT AVG(price), MAX(price), MIN(price), SUM(quantity) FROM items HAVING COUNT(*) > 1;
INSERT INTO nums VALUES (1, 'one'); UPDATE nums SET label = 'two' WHERE n = 2; DELETE FROM nums WHERE n < 0;
SELECT n FROM nums WHERE n IN (SELECT n FROM nums WHERE label LIKE 'n%') AND n BETWEEN 1 AND 99;
<answer>SELECT n FROM nums WHERE n = 7</answer> <prompt>Write one SQLite query.</prompt>
You are a SQL assistant. Write one SQLite query that answers the question. Put it in answer tags.
You improve the instructions of a model from its failures. Keep what works and fix what fails.
Question: How many customers live in Oslo? Evidence: city names are capitalised. Instructions:
The quick brown fox jumps over the lazy dog. A model rewrites its own instructions from feedback.
Which option is correct? Answer with the letter A, B, C or D. The answer is (B) because it is true.
system user assistant: hello, thank you, please be careful and check the schema, tables and columns.
0 1 2 3 4 5 6 7 8 9 10 42 100 1000 3.14 -1 , . ; : ( ) [ ] { } < > = != <= >= + - * / % ' " ` _ \n
"""


def _is_built(path: Path) -> bool:
    return all((path / f).is_file() for f in REQUIRED_FILES)


def _train_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the built-in corpus, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS.strip().splitlines() * 4, trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers: untyped __init__(*args, **kwargs)
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="<|im_end|>", chat_template=CHAT_TEMPLATE)


def _build(out: Path, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tokenizer()
    ids = {t: cast(int, tokenizer.convert_tokens_to_ids(t)) for t in SPECIAL_TOKENS}  # one token: one id
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=True,
        initializer_range=INIT_STD,
        pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"], eos_token_id=ids["<|im_end|>"],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)  # type: ignore[arg-type]  # transformers' stub
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]  # transformers: untyped __init__
        pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id)
    with quiet_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_tiny_model(dir: str | Path, seed: int = 0) -> str:
    """Build (or reuse, if already there) a tiny random chat model in `dir`; returns the directory."""
    target = Path(dir).expanduser().resolve()
    if _is_built(target):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _build(tmp, seed)
        target.mkdir(exist_ok=True)
        # move file by file, weights last, so a concurrent reader never sees a half-built model as complete
        names = sorted(p.name for p in tmp.iterdir())
        for name in [n for n in names if n != "model.safetensors"] + ["model.safetensors"]:
            os.replace(tmp / name, target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
