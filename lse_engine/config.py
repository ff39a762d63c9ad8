"""Settings with a default for every key, read from `lse.toml` or `[tool.lse]` in `pyproject.toml`.

The default models live here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lse_engine.errors import FileFormatError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# One place for default models (DESIGN §3): a small instruct coder model on CPU, the paper's size on GPU.
DEFAULT_CPU_MODEL = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
DEFAULT_GPU_MODEL = "Qwen/Qwen3-4B-Instruct-2507"
CONFIG_FILE = "lse.toml"
MODEL_IDENTITY = ("backend", "model", "gguf_file", "base_url", "api_key_env")  # keys that pick the weights


@dataclass
class SamplingConfig:
    max_tokens: int = 384
    temperature: float = 0.0
    top_p: float = 1.0
    samples: int = 1  # completions per problem when scoring (the paper: 8 at temperature 0.7)


@dataclass
class ModelConfig:
    """A model profile: which backend serves which model."""

    backend: str = "auto"  # auto | transformers | openai | vllm
    model: str = "auto"  # "auto", an HF id, a local path, "smollm2" (bundled GGUF) or "tiny" (random)
    gguf_file: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 8
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 4
    adapter: str = ""  # a LoRA adapter dir or a name under .lse/evolvers/
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass
class EvolveConfig:
    rule: str = "ucb"  # ucb | best | chain | pareto | textgrad
    c: float = 2.0
    rounds: int = 10
    batch_size: int = 10
    dev_size: int = 50
    max_model_calls: int = 0  # 0 = unlimited
    max_tokens: int = 0
    max_wall_s: float = 0.0
    seed: int = 0
    # score a child on the feedback batch first and keep it only if it beats its parent there (GEPA's rule)
    acceptance_gate: bool = False
    evolver_retries: int = 2  # more attempts when a reply has no usable or no new instructions
    candidates: int = 1  # edits proposed per round; with more than one, the best on the feedback batch is kept
    # begin the evolver's reply with <prompt> (small models that never write the tag); the reply is then the new
    # prompt up to </prompt> or the token limit
    evolver_prefill: bool = False
    max_prompt_chars: int = 8000
    feedback_chars: int = 0  # 0 = every problem with its full response (the paper); else a budget in characters
    show_schema: bool = True  # the evolver sees the database schema in the agent prompt (off: it is left out)
    heldout_size: int = 0  # > 0: also score parent and child on a held-out train batch (a cheap reward signal)


@dataclass
class SQLConfig:
    timeout_s: float = 5.0  # each predicted query
    gold_timeout_s: float = 30.0  # each gold query, in scoring and in the editor's checks (BIRD's harness: 30 s)
    row_cap: int = 100_000
    example_values: int = 3


@dataclass
class TrainConfig:
    """`lse train` (docs/training.md): the reference's schedule by default, on-policy over data epochs."""

    name: str = "evolver"
    method: str = "lora"  # lora | full (full fine-tuning, as the reference)
    reward_on: str = "holdout"  # holdout: the run's fixed dev holdout, k samples (paper) | batch: the round's H (cheap)
    advantage: str = "delta"  # delta | grpo
    reward: str = "delta"  # delta | post
    invalid_reward: float = -1.0
    noop_reward: str = "invalid"  # invalid (as the search: a no-op edit is invalid) | zero
    states: int = 32  # states per rollout batch
    samples: int = 4  # edits per state (G)
    data_epochs: int = 4  # passes over the training states
    ppo_epochs: int = 1  # PPO passes per rollout batch (1 = on-policy, the reference)
    epochs: int = 0  # removed: meant PPO passes; see data_epochs / ppo_epochs (a set value is an error)
    loss_agg: str = "token-mean"  # token-mean (the reference) | seq-mean
    rollout_temperature: float = 1.0  # sampling temperature of training rollouts (the reference's 1.0)
    rollout_max_tokens: int = 16384  # longest rollout reply (the reference's response length)
    learning_rate: float = 1e-5
    clip: float = 0.2
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    min_failures: int = 1
    eval_fraction: float = 0.25  # fraction of runs (or suites) held out as the dev set that picks the checkpoint
    holdout_by: str = "run"  # run | suite (dev states from databases never trained on)
    eval_states: int = 32  # dev states each checkpoint is evaluated on (0 = all)
    checkpoint_every: int = 4
    task_model: str = "self"  # self = the evolver's base with the adapter off; "model" = the [model] backend
    seed: int = 0
    steps: int = 0  # rollout batches; 0 = data_epochs passes over the training states
    micro_batch: int = 2  # edits per forward pass (gradients accumulate over the batch)
    max_grad_norm: float = 1.0  # 0 = no clipping
    keep_checkpoints: int = 2  # the newest kept besides the best on dev


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    evolver: ModelConfig = field(
        default_factory=lambda: ModelConfig(sampling=SamplingConfig(max_tokens=1024, temperature=0.7))
    )
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    sql: SQLConfig = field(default_factory=SQLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    models: dict[str, Any] = field(default_factory=dict)  # [models.NAME] tables, checked by lse_engine.models
    root: Path = field(default_factory=Path.cwd)
    source: Path | None = None  # the file the settings came from

    @property
    def store_path(self) -> Path:
        return self.root / ".lse" / "lse.db"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["root"] = str(self.root)
        d["source"] = str(self.source) if self.source else None
        return d


def _line_of_key(text: str, key: str) -> int:
    m = re.search(rf"^\s*{re.escape(key)}\s*=", text, re.MULTILINE)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def _apply(obj: Any, data: dict[str, Any], path: Path | None, text: str, prefix: str) -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in data.items():
        if key not in names or key in ("root", "source"):
            raise FileFormatError(
                str(path or "<settings>"),
                f"unknown key {prefix}{key!r}; valid keys: {', '.join(sorted(k for k in names if k not in ('root', 'source')))}",
                line=_line_of_key(text, key),
                code="unknown-key",
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise FileFormatError(str(path or "<settings>"), f"{prefix}{key} must be a table",
                                      line=_line_of_key(text, key), code="type")
            _apply(current, value, path, text, f"{prefix}{key}.")
            continue
        expected = type(current)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise FileFormatError(
                str(path or "<settings>"),
                f"{prefix}{key} must be {expected.__name__}, got {type(value).__name__}",
                line=_line_of_key(text, key),
                code="type",
            )
        setattr(obj, key, value)


def find_config_file(start: Path) -> Path | None:
    """The nearest `lse.toml`, or `pyproject.toml` with a `[tool.lse]` table, at or above `start`."""
    start = start if start.is_dir() else start.parent
    for d in [start, *start.parents]:
        if (d / CONFIG_FILE).is_file():
            return d / CONFIG_FILE
        pp = d / "pyproject.toml"
        if pp.is_file() and "[tool.lse" in pp.read_text(encoding="utf-8", errors="replace"):
            return pp
    return None


def load_config(start: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Settings for the workspace containing `start` (a file or directory), with optional overrides."""
    start_path = Path(start or Path.cwd()).resolve()
    source = find_config_file(start_path)
    root = source.parent if source else (start_path if start_path.is_dir() else start_path.parent)
    evolver_keys: set[str] = set()  # [evolver] keys set explicitly; the others follow [model]
    cfg = Config(root=root, source=source)
    if source is not None:
        text = source.read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+), column (\d+)", str(exc))
            line, col = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
            raise FileFormatError(str(source), f"invalid TOML: {exc}", line, col, code="toml") from exc
        if source.name == "pyproject.toml":
            data = data.get("tool", {}).get("lse", {})
        _apply(cfg, data, source, text, "")
        evolver_keys |= set(data.get("evolver") or {})
    if overrides:
        _apply(cfg, overrides, None, "", "")
        evolver_keys |= set(overrides.get("evolver") or {})
    # The evolver defaults to the task model's weights, sampled more freely and at more length. Naming any of
    # its own weights (backend, model, ...) makes it a model of its own; runtime keys still follow [model].
    own_weights = bool(evolver_keys & set(MODEL_IDENTITY))
    for f in dataclasses.fields(ModelConfig):
        inherit = f.name not in (*evolver_keys, "sampling", "adapter")
        if inherit and not (own_weights and f.name in MODEL_IDENTITY):
            setattr(cfg.evolver, f.name, getattr(cfg.model, f.name))
    return cfg
