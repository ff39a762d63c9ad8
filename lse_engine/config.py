"""Settings with a default for every key, read from `lse.toml` or `[tool.lse]` in `pyproject.toml`.

The default models live here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lse_engine.errors import FileFormatError, LSEError
from lse_engine.files.text import MAX_SETTINGS_BYTES, read_user_text
from lse_engine.kinds import (
    ADVANTAGES,
    BACKEND_CHOICES,
    DTYPES,
    FACTS_MODES,
    HOLDOUT_BY,
    LOSS_AGGREGATIONS,
    NOOP_REWARDS,
    REQUESTS,
    REWARD_ON,
    REWARDS,
    RULES,
    TASK_MODEL_MODES,
    TRAIN_METHODS,
    WINNER_TESTS,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# One place for default models (DESIGN §3): a small instruct coder model on CPU, the paper's size on GPU.
DEFAULT_CPU_MODEL = "qwen2.5-coder-0.5b"  # the catalog's GGUF: `lse models pull qwen2.5-coder-0.5b`
DEFAULT_GPU_MODEL = "Qwen/Qwen3-4B-Instruct-2507"
CONFIG_FILE = "lse.toml"
# The keys that pick the weights: an evolver naming any of them is a model of its own, and
# `models.resolve.model_identity` (what "the same model" means to the pool and the outcome cache) is built on them.
MODEL_IDENTITY = ("backend", "model", "gguf_file", "base_url", "api_key_env")


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
    threads: int = 0  # CPU threads of an in-process model: 0 = $LSE_THREADS, else tuned while decoding
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
    # reference: the paper's request (agent prompt, every problem, full responses); compact: a short list of
    # mistakes (question, the model's answer, the right one) for small evolvers that copy long requests back;
    # facts: one question per mistake ("what fact does the right answer know?"), the facts appended as bullets
    request: str = "reference"
    # facts request, text-to-sql: each wrong answer of the feedback batch also becomes a worked example in the facts
    # block (its question and gold query); per question the task model is shown the two whose questions are closest
    examples: bool = False
    heldout_size: int = 0  # > 0: also score parent and child on a held-out train batch (a cheap reward signal)
    # the winner must beat the seed on the same dev problems beyond noise: "sign" (McNemar's exact test, one-sided,
    # Bonferroni over the edits scored) at `winner_alpha`; "none": the best dev score wins (the paper's report)
    winner_test: str = "sign"
    winner_alpha: float = 0.05
    # racing: a child behind its parent beyond noise part-way through dev (sign test at `race_alpha`) stops being
    # scored and is not expanded (the `chain` rule always scores its edits whole)
    race: bool = True
    race_alpha: float = 0.05


@dataclass
class SQLConfig:
    timeout_s: float = 5.0  # each predicted query
    gold_timeout_s: float = 30.0  # each gold query, in scoring and in the editor's checks (BIRD's harness: 30 s)
    row_cap: int = 100_000
    example_values: int = 3


@dataclass
class TaskConfig:
    # The template's closing line: the reference's "show your work" before the answer, or (false) the answer only.
    # The answer format is fixed either way; small models (0.5B) answer better without reasoning first.
    show_work: bool = True
    # Where the facts block of the instructions (`request = "facts"`) goes: "per-question" shows each fact only
    # with the questions that share a word with the tables, columns and values it names, in the user turn (the
    # system prompt stays the same for every question); "always" keeps it in the instructions for every question.
    facts: str = "per-question"


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
    max_wall_s: float = 0.0  # > 0: stop after the step that spends this much wall time (a checkpoint, then the best)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    evolver: ModelConfig = field(
        default_factory=lambda: ModelConfig(sampling=SamplingConfig(max_tokens=1024, temperature=0.7))
    )
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    sql: SQLConfig = field(default_factory=SQLConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    models: dict[str, Any] = field(default_factory=dict)  # [models.NAME] tables, checked by lse_engine.models
    root: Path = field(default_factory=Path.cwd)
    source: Path | None = None  # the file the settings came from
    preset: str = ""  # the preset the file named (`preset = "paper"`)
    # keys the file sets over the preset's own values, as "[evolve] request = 'facts' (paper: 'reference')"
    over_preset: list[str] = field(default_factory=list)

    @property
    def store_path(self) -> Path:
        return self.root / ".lse" / "lse.db"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["root"] = str(self.root)
        d["source"] = str(self.source) if self.source else None
        return d

    def preset_notes(self) -> list[str]:
        """What a run should say about its preset when it starts: the keys the file sets over it."""
        if not self.over_preset:
            return []
        return [f"lse.toml sets {len(self.over_preset)} key(s) over preset = {self.preset!r}: "
                + "; ".join(self.over_preset)]

    def with_evolve(self, base: EvolveConfig | None = None, **changes: Any) -> EvolveConfig:
        """`[evolve]` (or `base`) with `changes`, each checked as a key in lse.toml would be (CLI flags, the
        editor's settings, a resumed run's round count): one bound per setting, on every path."""
        for key, value in changes.items():
            problem = check_setting(f"evolve.{key}", value)
            if problem:
                raise LSEError(f"evolve.{key} {problem}")
        return dataclasses.replace(base or self.evolve, **changes)


# -- validation: every key's type, range or choices, reported at its real file and line --------------------
def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"


def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if _finite(v) and v >= low else f"must be at least {low:g}; got {v!r}"


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if _finite(v) and low <= v <= high else f"must be from {low:g} to {high:g}; got {v!r}"


def _above(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if _finite(v) and v > low else f"must be a finite number above {low:g}; got {v!r}"


def _fraction(high_inclusive: bool = False) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = _finite(v) and v >= 0 and (v <= 1 if high_inclusive else v < 1)
        return None if ok else f"must be a fraction in [0, 1{']' if high_inclusive else ')'}; got {v!r}"

    return check


def _matches(pattern: str, what: str) -> Callable[[Any], str | None]:
    return lambda v: None if re.fullmatch(pattern, v) else f"must be {what}; got {v!r}"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


MAX_ROUNDS = 10_000  # a run's rounds, from lse.toml, a CLI flag or the editor alike


def _rules() -> dict[str, Callable[[Any], str | None]]:
    """Checks by dotted key (`[evolver]` shares `[model]`'s): the one place a setting's bounds live. Floats
    without a rule must be finite; other keys without one accept any value of their type. Choices come from
    `lse_engine.kinds`."""
    train_name = _matches(r"[A-Za-z0-9][A-Za-z0-9._-]*", "letters, digits, '.', '_' or '-'")
    return {
        "model.backend": _one_of(*BACKEND_CHOICES),
        "model.dtype": _one_of(*DTYPES),
        "model.batch_size": _at_least(1), "model.max_concurrency": _at_least(1), "model.timeout_s": _above(0),
        "model.threads": _at_least(0),
        "model.max_retries": _at_least(0),
        "model.base_url": lambda v: None if not v or re.match(r"https?://", v) else
        f"must start with http:// or https://; got {v!r}",
        "model.sampling.max_tokens": _at_least(1), "model.sampling.temperature": _at_least(0),
        "model.sampling.top_p": lambda v: None if _finite(v) and 0 < v <= 1 else f"must be in (0, 1]; got {v!r}",
        "model.sampling.samples": _at_least(1),
        "evolve.rule": _one_of(*RULES), "evolve.c": _at_least(0), "evolve.rounds": _between(0, MAX_ROUNDS),
        "evolve.batch_size": _at_least(1), "evolve.dev_size": _at_least(1), "evolve.max_model_calls": _at_least(0),
        "evolve.max_tokens": _at_least(0), "evolve.max_wall_s": _at_least(0), "evolve.evolver_retries": _at_least(0),
        "evolve.candidates": _at_least(1), "evolve.max_prompt_chars": _at_least(1),
        "evolve.feedback_chars": _at_least(0), "evolve.heldout_size": _at_least(0),
        "evolve.request": _one_of(*REQUESTS), "evolve.winner_test": _one_of(*WINNER_TESTS),
        "evolve.winner_alpha": _fraction(), "evolve.race_alpha": _fraction(),
        "sql.timeout_s": _above(0), "sql.gold_timeout_s": _above(0), "sql.row_cap": _at_least(1),
        "sql.example_values": _at_least(0), "task.facts": _one_of(*FACTS_MODES),
        "train.name": train_name, "train.method": _one_of(*TRAIN_METHODS),
        "train.reward_on": _one_of(*REWARD_ON), "train.advantage": _one_of(*ADVANTAGES),
        "train.reward": _one_of(*REWARDS), "train.noop_reward": _one_of(*NOOP_REWARDS),
        "train.states": _at_least(1), "train.samples": _at_least(1), "train.data_epochs": _at_least(1),
        "train.ppo_epochs": _at_least(1), "train.loss_agg": _one_of(*LOSS_AGGREGATIONS),
        "train.rollout_temperature": _above(0), "train.rollout_max_tokens": _at_least(1),
        "train.learning_rate": _above(0), "train.clip": _above(0), "train.lora_r": _at_least(1),
        "train.lora_alpha": _above(0), "train.lora_dropout": _fraction(), "train.min_failures": _at_least(0),
        "train.eval_fraction": _fraction(), "train.holdout_by": _one_of(*HOLDOUT_BY),
        "train.eval_states": _at_least(0), "train.checkpoint_every": _at_least(0),
        "train.task_model": _one_of(*TASK_MODEL_MODES), "train.steps": _at_least(0),
        "train.micro_batch": _at_least(1), "train.max_grad_norm": _at_least(0), "train.keep_checkpoints": _at_least(0),
        "train.max_wall_s": _at_least(0),
    }


_RULES: dict[str, Callable[[Any], str | None]] = {}


def check_setting(dotted: str, value: Any) -> str | None:
    """What is wrong with `value` for the key `dotted` (e.g. "sql.timeout_s"), or None."""
    if not _RULES:
        _RULES.update(_rules())
    rule = _RULES.get(re.sub(r"^evolver\.", "model.", dotted))
    if rule is not None:
        return rule(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number; got {value!r}"
    return None


class _Source:
    """Where settings come from: a file's text (for lines) under a table prefix, or overrides (no lines)."""

    def __init__(self, path: Path | None, text: str = "", base: tuple[str, ...] = ()) -> None:
        self.path = path
        self.text = text
        self.base = base
        self._keys: list[tuple[tuple[str, ...], int, int]] | None = None

    def name(self, keys: tuple[str, ...]) -> str:
        """`[sql] timeout_s` (`[tool.lse.sql] timeout_s` in pyproject.toml)."""
        table = ".".join((*self.base, *keys[:-1]))
        return f"[{table}] {keys[-1]}" if table else keys[-1]

    def error(self, keys: tuple[str, ...], message: str, code: str, named: bool = True) -> FileFormatError:
        """An error at the key; `message` follows the key's name unless `named` is False."""
        line, col = self.position((*self.base, *keys))
        where = str(self.path) if self.path else "<settings>"
        return FileFormatError(where, f"{self.name(keys)} {message}" if named else message, line, col, code=code)

    def position(self, keys: tuple[str, ...]) -> tuple[int, int]:
        """The 1-based line and column of the key (or of the nearest enclosing key written in the file)."""
        if self._keys is None:
            self._keys = _key_positions(self.text)
        best = (0, 1, 1)
        for found, line, col in self._keys:
            if found == keys[: len(found)] and len(found) > best[0]:
                best = (len(found), line, col)
        return best[1], best[2]


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_PART = r"(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
_ASSIGN = re.compile(rf"^(\s*)({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", text))


def _key_positions(text: str) -> list[tuple[tuple[str, ...], int, int]]:
    """Every table header and `key = ` line of TOML text as (full key path, line, column), 1-based."""
    out: list[tuple[tuple[str, ...], int, int]] = []
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            table = _dotted(header.group(1))
            out.append((table, number, line.index("[") + 1))
            continue
        assign = _ASSIGN.match(line)
        if assign:
            out.append(((*table, *_dotted(assign.group(2))), number, len(assign.group(1)) + 1))
    return out


def _apply(obj: Any, data: dict[str, Any], source: _Source, keys: tuple[str, ...] = ()) -> None:
    """Set `data` on the dataclass `obj`, checking every key: known, of the right type, in range."""
    names = {f.name: f for f in dataclasses.fields(obj) if f.name not in ("root", "source", "preset", "over_preset")}
    for key, value in data.items():
        here = (*keys, key)
        if key not in names:
            table = ".".join((*source.base, *keys))
            raise source.error(here, f"unknown key {source.name(here)}; valid keys{f' in [{table}]' if table else ''}: "
                                     f"{', '.join(sorted(names))}", "unknown-key", named=False)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise source.error(here, f"must be a table, got {_toml_type(value)}", "type")
            _apply(current, value, source, here)
            continue
        expected = type(current)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise source.error(here, f"must be {_toml_type(current)}, got {_toml_type(value)}", "type")
        problem = check_setting(".".join(here), value)
        if problem:
            raise source.error(here, problem, "value")
        setattr(obj, key, value)


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a table",
             list: "an array"}
    return names.get(type(value), type(value).__name__)


def find_config_file(start: Path) -> Path | None:
    """`start` itself when it is a settings file (any `*.toml`: `--config other.toml`), else the nearest
    `lse.toml`, or `pyproject.toml` with a `[tool.lse]` table, at or above `start`."""
    if start.suffix == ".toml" and start.is_file():
        return start
    start = start if start.is_dir() else start.parent
    for d in [start, *start.parents]:
        if (d / CONFIG_FILE).is_file():
            return d / CONFIG_FILE
        pp = d / "pyproject.toml"
        if pp.is_file() and _mentions_lse(pp):
            return pp
    return None


def _mentions_lse(pyproject: Path) -> bool:
    try:
        with open(pyproject, "rb") as fh:
            head = fh.read(MAX_SETTINGS_BYTES)
    except OSError:
        return False
    if re.search(rb"^\s*\[\s*tool\s*\.\s*[\"']?lse\b", head, re.MULTILINE):
        return True  # [tool.lse] or [tool.lse.section]
    return bool(re.search(rb"^\s*\[\s*tool\s*\]", head, re.MULTILINE)
                and re.search(rb"^\s*[\"']?lse[\"']?\s*[=.]", head, re.MULTILINE))  # [tool] with lse = …


def _settings_data(source: Path) -> tuple[dict[str, Any], _Source]:
    """The settings table of `source` (all of `lse.toml`, or `[tool.lse]` of a pyproject.toml) and its origin."""
    try:
        text = read_user_text(source, "settings file", MAX_SETTINGS_BYTES)
    except FileNotFoundError as exc:
        raise FileFormatError(str(source), "settings file not found", code="missing") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+), column (\d+)", str(exc))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
        raise FileFormatError(str(source), f"invalid TOML: {exc}", line, col, code="toml") from exc
    except (RecursionError, ValueError) as exc:  # arrays nested thousands deep, …
        raise FileFormatError(str(source), f"invalid TOML: {type(exc).__name__}", code="toml") from exc
    if source.name != "pyproject.toml":
        return data, _Source(source, text)
    origin = _Source(source, text, ("tool", "lse"))
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise FileFormatError(str(source), f"[tool] must be a table, got {_toml_type(tool)}",
                              *_Source(source, text).position(("tool",)), code="type")
    lse = tool.get("lse", {})
    if not isinstance(lse, dict):
        raise FileFormatError(str(source), f"[tool.lse] must be a table of settings, got {_toml_type(lse)}",
                              *_Source(source, text).position(("tool", "lse")), code="type")
    return lse, origin


def _overridden(preset: dict[str, Any], data: dict[str, Any], name: str, keys: tuple[str, ...] = ()) -> list[str]:
    """The keys `data` sets to another value than the preset's, as people read them."""
    out = []
    for key, value in preset.items():
        if key not in data:
            continue
        if isinstance(value, dict) and isinstance(data[key], dict):
            out += _overridden(value, data[key], name, (*keys, key))
        elif data[key] != value:
            table = f"[{'.'.join(keys)}] " if keys else ""
            out.append(f"{table}{key} = {data[key]!r} ({name}: {value!r})")
    return out


def load_config(start: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Settings for the workspace containing `start` (a file or directory), with optional overrides.

    Every key is checked before anything else happens: unknown keys (the valid ones are listed), wrong types,
    values out of range or not among the choices raise FileFormatError at the key's file and line."""
    start_path = Path(start or Path.cwd()).resolve()
    source = find_config_file(start_path)
    root = source.parent if source else (start_path if start_path.is_dir() else start_path.parent)
    evolver_keys: set[str] = set()  # [evolver] keys set explicitly; the others follow [model]
    cfg = Config(root=root, source=source)
    if source is not None:
        data, origin = _settings_data(source)
        preset = data.pop("preset", None) if isinstance(data, dict) else None
        if preset is not None:  # `preset = "paper"`: the preset's settings first, the file's own on top
            from lse_engine.presets import PRESETS

            if preset not in PRESETS:
                raise origin.error(("preset",), f"must be one of {', '.join(map(repr, PRESETS))}, got {preset!r}",
                                   "value")
            _apply(cfg, PRESETS[preset], _Source(None))
            evolver_keys |= set(PRESETS[preset].get("evolver") or {})
            cfg.preset = preset
            cfg.over_preset = _overridden(PRESETS[preset], data, preset)
        _apply(cfg, data, origin)
        evolver_keys |= set(data.get("evolver") or {})
    if overrides:
        _apply(cfg, overrides, _Source(None))
        evolver_keys |= set(overrides.get("evolver") or {})
    # The evolver defaults to the task model's weights, sampled more freely and at more length. Naming any of
    # its own weights (backend, model, ...) makes it a model of its own; runtime keys still follow [model].
    own_weights = bool(evolver_keys & set(MODEL_IDENTITY))
    for f in dataclasses.fields(ModelConfig):
        inherit = f.name not in (*evolver_keys, "sampling", "adapter")
        if inherit and not (own_weights and f.name in MODEL_IDENTITY):
            setattr(cfg.evolver, f.name, getattr(cfg.model, f.name))
    return cfg
