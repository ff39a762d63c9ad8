"""Every closed set of names a setting, a CLI flag or an editor setting can take, in one module that imports
nothing. The modules that act on a name import its set from here; `tests/test_kinds.py` holds the VS Code
extension's `package.json` enums and the CLI's choices equal to these."""

from __future__ import annotations

# -- the search -------------------------------------------------------------------------------------------
RULES = ("ucb", "best", "chain", "pareto", "textgrad")  # node selection (evolve/tree.py)
REQUESTS = ("reference", "compact", "facts")  # what the evolver is asked (evolve/proposers/)
PROPOSERS = (*REQUESTS, "textgrad")  # the `textgrad` rule brings its own proposer (critiques, then one edit)
WINNER_TESTS = ("sign", "none")  # how a winner must beat the seed on dev (evolve/significance.py)

# -- models -----------------------------------------------------------------------------------------------
BACKENDS = ("transformers", "openai", "vllm")
BACKEND_CHOICES = ("auto", *BACKENDS)
DTYPES = ("auto", "int8", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "half")

# -- tasks and suites -------------------------------------------------------------------------------------
TASK_KINDS = ("text-to-sql", "multiple-choice")
SPLITS = ("train", "dev", "test")
FACTS_MODES = ("per-question", "always")  # where a prompt's facts block goes (tasks/sql_facts.py)

# -- training ---------------------------------------------------------------------------------------------
TRAIN_METHODS = ("lora", "full")
LOSS_AGGREGATIONS = ("token-mean", "seq-mean")
ADVANTAGES = ("delta", "grpo")
REWARDS = ("delta", "post")
REWARD_ON = ("holdout", "batch")
NOOP_REWARDS = ("invalid", "zero")
HOLDOUT_BY = ("run", "suite")
TASK_MODEL_MODES = ("self", "model")

# -- benchmarks and importers -----------------------------------------------------------------------------
BENCHMARKS = ("bird", "spider", "mmlu-redux")
BENCH_PROTOCOLS = ("ours", "paper")
SOURCE_SPLITS = ("dev", "train", "test", "mini-dev")  # question files the importers read
PRESETS = ("paper",)
