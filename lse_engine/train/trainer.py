"""`train`: the evolver learns from the user's runs. Harvest states, then per step: draw `states` states
(priority to nodes furthest below their tree's best), sample `samples` edits each, reward them on the
state's held-out batch, and run `epochs` PPO-clip passes on a LoRA adapter; checkpoint, evaluate base vs
trained on states of unseen runs, save the adapter with `lse_meta.json`.

Why a torch + peft loop rather than TRL's GRPOTrainer: TRL 1.16 always subtracts the group mean from
rewards before they become advantages (`scale_rewards` only chooses the divisor), so the paper's main
method, the raw delta reward as the advantage, needs a subclass that overwrites TRL's advantages; the
`self` task model (the policy's own base with its adapter off, generating inside the reward) does not fit
TRL's reward functions, and the language server needs per-step progress and cancellation. TRL remains the
scale-out path (multi-GPU, vLLM generation): `lse_engine.train.trl_scale`, sharing states and rewards.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lse_engine.config import TrainConfig
from lse_engine.errors import Cancelled, LSEError
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressCallback, ProgressEvent, ignore_progress
from lse_engine.train.checkpoints import (
    checkpoints_dir,
    latest_checkpoint,
    load_trainer_state,
    save_checkpoint,
    set_rng_state,
)
from lse_engine.train.env import TrainEnv
from lse_engine.train.evaluation import evaluate
from lse_engine.train.policy import Policy, lora_model
from lse_engine.train.rewards import ADVANTAGES, REWARDS
from lse_engine.train.rollout import collect, score_logps
from lse_engine.train.states import State, harvest, sample_states, save_states, split_by_run
from lse_engine.train.update import ppo_update, rollout_metrics
from lse_engine.workspace import Workspace, sampling_of

META_FILE = "lse_meta.json"


@dataclass
class TrainResult:
    name: str
    status: str  # done | cancelled | no-states
    out_dir: Path
    adapter: Path | None  # the saved adapter (None unless done)
    step: int  # the last completed step
    steps: int
    data: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (for the language server's worker)."""
        d = dataclasses.asdict(self)
        d.update(out_dir=str(self.out_dir), adapter=str(self.adapter) if self.adapter else None)
        return d


def evolver_dir(root: Path, name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise LSEError(f"evolver name {name!r}: use letters, digits, '.', '_' or '-'")
    return root / ".lse" / "evolvers" / name


def check_config(cfg: TrainConfig) -> None:
    if cfg.advantage not in ADVANTAGES:
        raise LSEError(f"train.advantage must be one of {', '.join(ADVANTAGES)}, got {cfg.advantage!r}")
    if cfg.reward not in REWARDS:
        raise LSEError(f"train.reward must be one of {', '.join(REWARDS)}, got {cfg.reward!r}")
    if cfg.samples < 1 or cfg.states < 1 or cfg.epochs < 1:
        raise LSEError("train.samples, train.states and train.epochs must be at least 1")


def _data(env: TrainEnv, cfg: TrainConfig) -> tuple[list[State], list[State], dict[str, int]]:
    found = harvest(env.store, env.prompt, cfg.min_failures)
    usable = [s for s in found if env.problems(s) is not None]
    train_s, eval_s = split_by_run(usable, cfg.eval_fraction, cfg.seed)
    save_states(env.store, train_s, eval_s)
    data = {"runs": len({s.run_id for s in usable}), "train_runs": len({s.run_id for s in train_s}),
            "eval_runs": len({s.run_id for s in eval_s}), "states": len(usable), "train_states": len(train_s),
            "eval_states": len(eval_s), "skipped_states": len(found) - len(usable)}
    return train_s, eval_s, data


class _Job:
    """One training job over a TrainEnv (kept in a class so the steps share their state plainly)."""

    def __init__(self, env: TrainEnv, cfg: TrainConfig, progress: ProgressCallback) -> None:
        self.env, self.cfg, self.progress = env, cfg, progress
        self.out = evolver_dir(env.root, cfg.name)
        self.sampling = sampling_of(env.config.evolver)
        self.run_id = f"train:{cfg.name}"

    def emit(self, message: str, step: int, steps: int, phase: str, *, done: bool = False, error: str | None = None,
             extra: dict[str, Any] | None = None) -> None:
        self.progress(ProgressEvent(self.run_id, "train", message, round=step, rounds=steps, done=done,
                                    error=error, extra={"phase": phase, **(extra or {})}))

    def run(self, resume: bool) -> TrainResult:
        cfg, env = self.cfg, self.env
        self.emit("harvesting states from the run store", 0, 0, "harvest")
        train_s, eval_s, data = _data(env, cfg)
        steps = cfg.steps or math.ceil(len(train_s) / cfg.states)
        if not train_s:
            msg = (f"no training states in {env.store.path}: run `lse evolve` first (states need an expansion "
                   f"with at least {cfg.min_failures} failure(s) in its feedback batch)")
            self.emit(msg, 0, 0, "done", done=True, error="no-states")
            return TrainResult(cfg.name, "no-states", self.out, None, 0, 0, data, message=msg)
        ckpt = latest_checkpoint(self.out) if resume else None
        if not resume:
            shutil.rmtree(checkpoints_dir(self.out), ignore_errors=True)
        base = env.evolver_base()
        if ckpt is None:
            torch.manual_seed(cfg.seed)
        peft_model = lora_model(base.model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, adapter=ckpt)
        try:
            return self._train(peft_model, base, ckpt, train_s, eval_s, data, steps)
        finally:
            peft_model.unload()  # the base model object is left as it came (reusable by the caller)

    def _train(self, peft_model: Any, base: Any, ckpt: Path | None, train_s: list[State], eval_s: list[State],
               data: dict[str, int], steps: int) -> TrainResult:
        cfg, env = self.cfg, self.env
        policy = Policy(peft_model, base.tokenizer, self.sampling.temperature, render=getattr(base, "render", None))
        env.use_task_model(cfg.task_model, peft_model)
        optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=cfg.learning_rate)
        start, history = 0, []
        if ckpt is not None:
            saved = load_trainer_state(ckpt)
            optimizer.load_state_dict(saved["optimizer"])
            set_rng_state(saved["rng"])
            start, history = saved["step"], list(saved.get("history", []))
            self.emit(f"resumed from {ckpt.name} (step {start})", start, steps, "resume",
                      extra=history[-1] if history else None)
        saved_step, step, status = start, start, "done"
        for step in range(start + 1, steps + 1):
            try:
                metrics = self._step(policy, optimizer, train_s, step, steps)
            except Cancelled:
                step, status = step - 1, "cancelled"
                break
            history.append(metrics)
            self.emit(f"step {step}/{steps}: reward {metrics['mean_reward']:+.3f}, delta {metrics['mean_delta']:+.3f}, "
                      f"KL {metrics['kl']:.4f}", step, steps, "step", extra=metrics)
            if step % max(1, cfg.checkpoint_every) == 0 or step == steps:
                self._checkpoint(peft_model, optimizer, step, history)
                saved_step = step
        if status == "cancelled":
            if step > saved_step:
                self._checkpoint(peft_model, optimizer, step, history)
            msg = f"cancelled after step {step}; resume with --resume"
            self.emit(msg, step, steps, "done", done=True, error="cancelled")
            return TrainResult(cfg.name, "cancelled", self.out, None, step, steps, data, history, message=msg)
        try:
            evaluation = self._evaluate(policy, eval_s or train_s, on_train=not eval_s, steps=steps)
        except Cancelled:
            msg = "cancelled during the evaluation; the checkpoints are kept"
            self.emit(msg, step, steps, "done", done=True, error="cancelled")
            return TrainResult(cfg.name, "cancelled", self.out, None, step, steps, data, history, message=msg)
        policy.save(self.out)
        self._write_meta(base.model_id, data, history, evaluation, step)
        b, t = evaluation["base"]["mean_reward"], evaluation["trained"]["mean_reward"]
        msg = f"saved {self.out}: mean delta reward base {b:+.3f} → trained {t:+.3f} on {evaluation['on']} states"
        self.emit(msg, step, steps, "done", done=True, extra={"evaluation": evaluation})
        return TrainResult(cfg.name, "done", self.out, self.out, step, steps, data, history, evaluation, msg)

    def _step(self, policy: Policy, optimizer: torch.optim.Optimizer, train_s: list[State], step: int,
              steps: int) -> dict[str, float]:
        cfg = self.cfg
        t0 = time.monotonic()
        batch = sample_states(train_s, cfg.states, random.Random(f"{cfg.seed}:{step}"))
        rollouts = []
        for i, state in enumerate(batch):
            self.emit(f"step {step}/{steps}: sampling edits for state {i + 1}/{len(batch)}", step - 1, steps,
                      "rollout")
            seed = (cfg.seed * 1_000_003 + step * 1009 + i) % 2**31
            rollouts.append(collect(self.env, policy, state, cfg, self.sampling, seed))
        score_logps(policy, rollouts, cfg.micro_batch)
        metrics = rollout_metrics(rollouts)
        metrics.update(ppo_update(policy, optimizer, rollouts, cfg.epochs, cfg.clip, cfg.micro_batch,
                                  cfg.max_grad_norm))
        metrics.update(step=float(step), states=float(len(batch)), seconds=time.monotonic() - t0)
        return metrics

    def _checkpoint(self, peft_model: Any, optimizer: torch.optim.Optimizer, step: int,
                    history: list[dict[str, float]]) -> None:
        save_checkpoint(self.out, step, peft_model, optimizer,
                        {"history": history, "config": dataclasses.asdict(self.cfg)}, keep=self.cfg.keep_checkpoints)

    def _evaluate(self, policy: Policy, states: list[State], on_train: bool, steps: int) -> dict[str, Any]:
        chosen = states[: self.cfg.states]

        def tell(label: str, i: int, n: int) -> None:
            self.emit(f"evaluating the {label} evolver: state {i + 1}/{n}", steps, steps, "eval")

        result: dict[str, Any] = evaluate(self.env, policy, chosen, self.cfg, self.sampling, tell)
        result.update(on="train" if on_train else "eval", states=len(chosen))
        return result

    def _write_meta(self, base_model: str, data: dict[str, int], history: list[dict[str, float]],
                    evaluation: dict[str, Any], step: int) -> None:
        meta = {
            "name": self.cfg.name, "base_model": base_model, "created": time.time(),
            "evolver": dataclasses.asdict(self.env.config.evolver),
            "task_model": self.env.task_llm.model_id if self.env.task_llm else None,
            "train": dataclasses.asdict(self.cfg), "data": data,
            "metrics": {"steps": step, "last": history[-1] if history else {}, "evaluation": evaluation},
        }
        (self.out / META_FILE).write_text(json.dumps(meta, indent=2, default=str))


def train(target: Workspace | str | Path, cfg: TrainConfig | None = None, *, resume: bool = False,
          progress: ProgressCallback = ignore_progress, cancel: CancelToken | None = None,
          overrides: dict[str, Any] | None = None, llms: dict[str, Any] | None = None) -> TrainResult:
    """Train an evolver adapter from the runs of a prompt (a `Workspace`) or of a workspace directory.

    `cfg` defaults to the workspace's `[train]` settings; `llms` may supply the task model ("model") or the
    evolver backend ("evolver", with `.model` and `.tokenizer`). Progress events have kind "train".
    """
    env = TrainEnv(target, overrides, llms, cancel)
    try:
        cfg = cfg or env.config.train
        check_config(cfg)
        return _Job(env, cfg, progress).run(resume)
    finally:
        env.close()



def run_from_worker(prompt: str | Path, overrides: dict[str, Any] | None = None, *, run_id: str | None = None,
                    cancel: CancelToken | None = None, progress: ProgressCallback = ignore_progress,
                    resume: bool = False) -> dict[str, Any]:
    """`train` for the language server's worker: learn from a prompt's runs; a JSON-able result.

    No states to learn from is an error (the editor shows it), not an empty success.
    """
    ws = Workspace(prompt, overrides)
    try:
        result = train(ws, resume=resume, progress=progress, cancel=cancel)
    finally:
        ws.close()
    if result.status == "no-states":
        raise LSEError(result.message)
    return {**result.to_dict(), "runId": run_id}
