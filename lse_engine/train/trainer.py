"""`train`: the evolver learns from runs, on the reference's schedule. Harvest states and hold out whole
runs (or suites) as the dev set. Then, on-policy over `data_epochs` passes through the training states:
take the next `states` states (each epoch ordered with priority to nodes furthest below their tree's best),
sample `samples` edits each at the rollout temperature, reward them (post − pre on the run's holdout, or
on the round's batch), and take `ppo_epochs` PPO-clip passes (1: on-policy) with a token-mean loss, on a
LoRA adapter or on every weight. Every `checkpoint_every` steps, save a checkpoint and evaluate it on the
dev states; the best one on dev becomes the saved evolver, with `lse_meta.json` saying which step won.

Why a torch + peft loop rather than TRL's GRPOTrainer: TRL 1.16 always subtracts the group mean from
rewards before they become advantages (`scale_rewards` only chooses the divisor), so the paper's main
method, the raw delta reward as the advantage, needs a subclass that overwrites TRL's advantages; the
`self` task model (the policy's own base generating inside the reward) does not fit TRL's reward
functions, and the language server needs per-step progress and cancellation. TRL remains the scale-out
path (multi-GPU, vLLM generation): `lse_engine.train.trl_scale`, sharing states and rewards.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lse_engine.config import TrainConfig
from lse_engine.errors import Cancelled, LSEError
from lse_engine.kinds import ADVANTAGES, HOLDOUT_BY, NOOP_REWARDS, REWARD_ON, REWARDS
from lse_engine.llm.base import CancelToken, Sampling
from lse_engine.llm.pool import sampling_of
from lse_engine.progress import ProgressCallback, ProgressEvent, ignore_progress
from lse_engine.train.checkpoints import (
    STATE_FILE,
    checkpoint_path,
    checkpoints_dir,
    export_weights,
    latest_checkpoint,
    load_trainer_state,
    save_checkpoint,
    set_rng_state,
    update_checkpoint,
)
from lse_engine.train.env import TrainEnv
from lse_engine.train.evaluation import evaluate, pick_states
from lse_engine.train.policy import LOSS_AGG, METHODS, Policy, full_model, lora_model
from lse_engine.train.rollout import collect, score_logps
from lse_engine.train.states import (
    State,
    batch_at,
    batches_per_epoch,
    evolve_runs,
    harvest,
    save_states,
    split_by_run,
    suite_changed,
)
from lse_engine.train.update import ppo_update, rollout_metrics
from lse_engine.workspace import Workspace

META_FILE = "lse_meta.json"
EPOCHS_GONE = ("train.epochs is gone: it meant PPO passes per rollout batch, which the reference keeps at 1 "
               "(on-policy). Set train.ppo_epochs for PPO passes per batch and train.data_epochs for passes "
               "over the training states (the paper's 4 epochs).")


@dataclass
class TrainResult:
    name: str
    status: str  # done | cancelled | no-states
    out_dir: Path
    adapter: Path | None  # the saved evolver (None unless done)
    step: int  # the last completed step
    steps: int
    data: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    chosen_step: int | None = None  # the checkpoint saved as the evolver (best on the dev states)

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
    """One clear error for a setting training cannot use."""
    if cfg.epochs:
        raise LSEError(EPOCHS_GONE)
    choices = {"advantage": ADVANTAGES, "reward": REWARDS, "reward_on": REWARD_ON,
               "noop_reward": NOOP_REWARDS, "method": METHODS, "loss_agg": LOSS_AGG, "holdout_by": HOLDOUT_BY}
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise LSEError(f"train.{key} must be one of {', '.join(allowed)}, got {getattr(cfg, key)!r}")
    for key in ("samples", "states", "data_epochs", "ppo_epochs", "rollout_max_tokens"):
        if getattr(cfg, key) < 1:
            raise LSEError(f"train.{key} must be at least 1, got {getattr(cfg, key)}")
    if cfg.rollout_temperature <= 0:
        raise LSEError(f"train.rollout_temperature must be above 0, got {cfg.rollout_temperature}")


def _data(env: TrainEnv, cfg: TrainConfig) -> tuple[list[State], list[State], dict[str, Any]]:
    runs = evolve_runs(env.store, env.prompt)
    stale = [r["id"] for r in runs if suite_changed(r, env.suite_hash)]
    found = harvest(env.store, env.prompt, cfg.min_failures, current_suite=env.suite_hash)
    usable = [s for s in found if env.target(s, cfg.reward_on) is not None]
    train_s, dev_s = split_by_run(usable, cfg.eval_fraction, cfg.seed, cfg.holdout_by)
    save_states(env.store, train_s, dev_s)
    data: dict[str, Any] = {
        "runs": len({s.run_id for s in usable}), "train_runs": len({s.run_id for s in train_s}),
        "eval_runs": len({s.run_id for s in dev_s}), "states": len(usable), "train_states": len(train_s),
        "eval_states": len(dev_s), "skipped_states": len(found) - len(usable),
        "train_suites": sorted({s.suite for s in train_s}), "eval_suites": sorted({s.suite for s in dev_s}),
        "evolve_runs": len(runs), "stale_runs": stale,
        "task_models": dict(Counter(str(r.get("model_id") or "?") for r in runs if r["id"] not in stale)),
    }
    return train_s, dev_s, data


def no_states_message(env: TrainEnv, cfg: TrainConfig, data: dict[str, Any]) -> str:
    """Why there is nothing to learn from, counted."""
    where = f"no training states in {env.store.path}"
    if not data["evolve_runs"]:
        return f"{where}: no evolve runs yet; run `lse evolve` first"
    parts = [f"{data['evolve_runs']} evolve run(s)"]
    if data["stale_runs"]:
        parts.append(f"{len(data['stale_runs'])} left out because their suite changed since (nothing trains on "
                     "stale data: run them again)")
    if data["skipped_states"]:
        parts.append(f"{data['skipped_states']} state(s) whose suite or problems are gone")
    parts.append(f"no expansion with at least {cfg.min_failures} failure(s) in its feedback batch (train.min_failures)"
                 if not data["states"] else "every state held out to choose the checkpoint (train.eval_fraction)")
    return f"{where}: " + "; ".join(parts)


class _Job:
    """One training job over a TrainEnv (kept in a class so the steps share their state plainly)."""

    def __init__(self, env: TrainEnv, cfg: TrainConfig, progress: ProgressCallback) -> None:
        self.env, self.cfg, self.progress = env, cfg, progress
        self.out = evolver_dir(env.home, cfg.name)
        self.eval_sampling = sampling_of(env.config.evolver)  # how `lse evolve` samples the evolver
        self.rollout_sampling = Sampling(max_tokens=cfg.rollout_max_tokens,
                                         temperature=cfg.rollout_temperature)
        self.run_id = f"train:{cfg.name}"
        self.started = time.monotonic()

    def emit(self, message: str, step: int, steps: int, phase: str, *, done: bool = False,
             error: str | None = None, extra: dict[str, Any] | None = None) -> None:
        self.progress(ProgressEvent(self.run_id, "train", message, round=step, rounds=steps, done=done,
                                    error=error, extra={"phase": phase, **(extra or {})}))

    def run(self, resume: bool) -> TrainResult:
        cfg, env = self.cfg, self.env
        self.emit("harvesting states from the run store", 0, 0, "harvest")
        train_s, dev_s, data = _data(env, cfg)
        steps = cfg.steps or cfg.data_epochs * batches_per_epoch(len(train_s), cfg.states)
        if not train_s:
            msg = no_states_message(env, cfg, data)
            self.emit(msg, 0, 0, "done", done=True, error="no-states")
            return TrainResult(cfg.name, "no-states", self.out, None, 0, 0, data, message=msg)
        ckpt = latest_checkpoint(self.out) if resume else None
        if not resume:
            shutil.rmtree(checkpoints_dir(self.out), ignore_errors=True)
        base = env.evolver_base()
        if ckpt is None:
            torch.manual_seed(cfg.seed)
        if cfg.method == "lora":
            model = lora_model(base.model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, adapter=ckpt)
            ref = None
        else:
            model, ref = full_model(base.model, ckpt), base.model.eval()
        try:
            policy = Policy(model, base.tokenizer, cfg.rollout_temperature,
                            render=getattr(base, "render", None), ref_model=ref)
            return self._train(policy, ckpt, train_s, dev_s, data, steps)
        finally:
            if cfg.method == "lora":
                model.unload()  # the base model object is left as it came (reusable by the caller)

    def _train(self, policy: Policy, ckpt: Path | None, train_s: list[State], dev_s: list[State],
               data: dict[str, Any], steps: int) -> TrainResult:
        cfg, env = self.cfg, self.env
        env.use_task_model(cfg.task_model, None if policy.full else policy.model)
        optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=cfg.learning_rate)
        dev = pick_states(dev_s, cfg.eval_states, cfg.seed)
        start, history, evals = 0, [], {}
        if ckpt is not None:
            saved = load_trainer_state(ckpt)
            optimizer.load_state_dict(saved["optimizer"])
            set_rng_state(saved["rng"])
            start = saved["step"]
            history, evals = list(saved.get("history", [])), dict(saved.get("evals", {}))
            self.emit(f"resumed from {ckpt.name} (step {start})", start, steps, "resume",
                      extra=history[-1] if history else None)
        step, status = start, "done"  # `step`: the last completed step
        try:
            if dev and 0 not in evals:
                evals[0] = self._evaluate(policy, dev, 0, steps, base=True)
            for next_step in range(start + 1, steps + 1):
                metrics = self._step(policy, optimizer, train_s, next_step, steps)
                step = next_step
                history.append(metrics)
                m = metrics
                self.emit(f"step {step}/{steps} (epoch {int(m['epoch'])}): reward {m['mean_reward']:+.3f}, "
                          f"delta {m['mean_delta']:+.3f}, KL {m['kl']:.4f}", step, steps, "step", extra=m)
                out_of_time = bool(cfg.max_wall_s) and time.monotonic() - self.started >= cfg.max_wall_s
                if step % max(1, cfg.checkpoint_every) == 0 or step == steps or out_of_time:
                    # saved before its evaluation (kept if that is cut), which is added to it after
                    path = self._checkpoint(policy, optimizer, step, history, evals)
                    if dev:
                        evals[step] = self._evaluate(policy, dev, step, steps)
                        update_checkpoint(path, evals=evals)
                if out_of_time:  # the wall-time budget: the last step is a checkpoint, and the best one is kept
                    self.emit(f"wall-time budget spent ({cfg.max_wall_s:g} s) after step {step}", step, steps, "step")
                    break
            if dev and step not in evals:  # resumed after a cut during the last evaluation
                evals[step] = self._evaluate(policy, dev, step, steps)
                update_checkpoint(checkpoint_path(self.out, step), evals=evals)
        except Cancelled:
            status = "cancelled"
            if step > start and not (checkpoint_path(self.out, step) / STATE_FILE).is_file():
                self._checkpoint(policy, optimizer, step, history, evals)
        if status == "cancelled":
            msg = f"cancelled after step {step}; resume with --resume"
            self.emit(msg, step, steps, "done", done=True, error="cancelled")
            return TrainResult(cfg.name, "cancelled", self.out, None, step, steps, data, history, message=msg)
        evaluation, chosen = self._choose(policy, dev, evals, train_s, step)
        self._write_meta(data, history, evaluation, step, chosen)
        b, t = evaluation["base"]["mean_reward"], evaluation["trained"]["mean_reward"]
        where = f"{evaluation['states']} {'dev' if evaluation['on'] == 'eval' else 'training'} states"
        msg = (f"trained evolver {cfg.name!r} saved in {self.out} (step {chosen}): mean reward base {b:+.3f} → "
               f"trained {t:+.3f} on {where}. Use it: `lse evolve PROMPT --evolver {cfg.name}`, `[evolver] adapter = "
               f"\"{cfg.name}\"` in lse.toml, or in the editor the code action “Evolve prompt with trained evolver "
               f"{cfg.name}”")
        self.emit(msg, step, steps, "done", done=True,
                  extra={"evaluation": evaluation, "chosen_step": chosen})
        return TrainResult(cfg.name, "done", self.out, self.out, step, steps, data, history, evaluation, msg,
                           chosen)

    def _step(self, policy: Policy, optimizer: torch.optim.Optimizer, train_s: list[State], step: int,
              steps: int) -> dict[str, float]:
        cfg = self.cfg
        t0 = time.monotonic()
        epoch, batch = batch_at(train_s, cfg.states, cfg.seed, step)
        rollouts = []
        for i, state in enumerate(batch):
            self.emit(f"step {step}/{steps}: sampling edits for state {i + 1}/{len(batch)}", step - 1, steps,
                      "rollout")
            seed = (cfg.seed * 1_000_003 + step * 1009 + i) % 2**31
            rollouts.append(collect(self.env, policy, state, cfg, self.rollout_sampling, seed))
        score_logps(policy, rollouts, cfg.micro_batch)
        metrics = rollout_metrics(rollouts)
        metrics.update(ppo_update(policy, optimizer, rollouts, cfg.ppo_epochs, cfg.clip, cfg.micro_batch,
                                  cfg.max_grad_norm, cfg.loss_agg))
        metrics.update(step=float(step), epoch=float(epoch), states=float(len(batch)),
                       seconds=time.monotonic() - t0)
        return metrics

    def _evaluate(self, policy: Policy, states: list[State], step: int, steps: int,
                  base: bool = False) -> dict[str, float]:
        label = "the base evolver" if base else f"step {step}"

        def tell(i: int, n: int) -> None:
            self.emit(f"evaluating {label} on the dev states: {i + 1}/{n}", step, steps, "eval")

        result = evaluate(self.env, policy, states, self.cfg, self.eval_sampling, base=base, on_state=tell)
        self.emit(f"dev: {label} mean reward {result['mean_reward']:+.3f}", step, steps, "eval",
                  extra={"eval_step": step, **result})
        return result

    def _checkpoint(self, policy: Policy, optimizer: torch.optim.Optimizer, step: int,
                    history: list[dict[str, float]], evals: dict[int, dict[str, float]]) -> Path:
        return save_checkpoint(self.out, step, policy.save, optimizer,
                        {"history": history, "evals": evals, "config": dataclasses.asdict(self.cfg)},
                        keep=self.cfg.keep_checkpoints, protect=_best(evals))

    def _choose(self, policy: Policy, dev: list[State], evals: dict[int, dict[str, float]],
                train_s: list[State], last: int) -> tuple[dict[str, Any], int]:
        """Save the best checkpoint on dev as the evolver (the last one when there is no dev set)."""
        best = _best(evals)
        if best is not None:
            export_weights(checkpoint_path(self.out, best), self.out)
            evaluation = {"on": "eval", "states": len(dev), "base": evals[0], "trained": evals[best],
                          "step": best, "by_step": {str(k): v["mean_reward"] for k, v in sorted(evals.items())}}
            return evaluation, best
        # no held-out runs: the last step, compared with the base on training states
        export_weights(checkpoint_path(self.out, last), self.out)
        chosen = pick_states(train_s, self.cfg.eval_states, self.cfg.seed)
        base = self._evaluate(policy, chosen, last, last, base=True)
        trained = self._evaluate(policy, chosen, last, last)
        return {"on": "train", "states": len(chosen), "base": base, "trained": trained, "step": last,
                "by_step": {}}, last

    def _write_meta(self, data: dict[str, Any], history: list[dict[str, float]], evaluation: dict[str, Any],
                    step: int, chosen: int) -> None:
        base = self.env.evolver_base()
        meta = {
            "name": self.cfg.name, "method": self.cfg.method, "base_model": base.model_id,
            "created": time.time(),
            "evolver": dataclasses.asdict(self.env.config.evolver),
            "task_model": self.env.task_llm.model_id if self.env.task_llm else None,
            "train": dataclasses.asdict(self.cfg), "data": data,
            "metrics": {"steps": step, "chosen_step": chosen, "last": history[-1] if history else {},
                        "evaluation": evaluation},
        }
        (self.out / META_FILE).write_text(json.dumps(meta, indent=2, default=str))


def _best(evals: dict[int, dict[str, float]]) -> int | None:
    """The trained step with the highest dev mean reward (the earliest on a tie); None before any."""
    trained = [(v["mean_reward"], -k) for k, v in evals.items() if k > 0]
    return -max(trained)[1] if trained else None


def train(target: Workspace | str | Path, cfg: TrainConfig | None = None, *, resume: bool = False,
          progress: ProgressCallback = ignore_progress, cancel: CancelToken | None = None,
          overrides: dict[str, Any] | None = None, llms: dict[str, Any] | None = None,
          config: str | Path | None = None) -> TrainResult:
    """Train an evolver from the runs of a prompt (a `Workspace`) or of a directory's run store.

    `cfg` defaults to the workspace's `[train]` settings; `config` names the `lse.toml` for a directory
    target (default: the nearest at or above it); `llms` may supply the task model ("model") or the evolver
    backend ("evolver", with `.model` and `.tokenizer`). Progress events have kind "train".
    """
    env = TrainEnv(target, overrides, llms, cancel, config)
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
