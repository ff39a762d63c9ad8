"""Scale-out training through TRL's GRPOTrainer: many GPUs with `accelerate launch`, generation on a
`trl vllm-serve` server. Same states, same rewards (`rewards.reward_edit` through `Scorer.score`), same
adapter layout as `lse train`. See docs/training.md.

    trl vllm-serve --model BASE --port 8000                          # GPU 0
    CUDA_VISIBLE_DEVICES=1,2,3,4 accelerate launch \\
        --config_file lse_engine/train/accelerate_multi_gpu.yaml \\
        -m lse_engine.train.trl_scale --workspace DIR --name NAME --vllm-server http://localhost:8000

Mapping: states → prompts (each row carries its `state_id`, which TRL hands to the reward function; the
prompt is the chat the search sent, prefill included), samples → `num_generations`, data_epochs →
`num_train_epochs`, ppo_epochs → `num_iterations` (PPO passes per generation batch), clip → `epsilon`,
rollout_temperature → `temperature`, rollout_max_tokens → `max_completion_length`, no KL → `beta = 0`,
loss_agg `token-mean` → `loss_type = "dapo"` (token sum / the batch's tokens), `seq-mean` → `"grpo"`,
method `full` → no `peft_config`. `advantage = grpo` is TRL's own group normalisation
(`scale_rewards = "group"`). `advantage = delta` is not expressible in TRL's config (it always subtracts
the group mean), so `LSEGRPOTrainer` overwrites TRL's advantages with the raw rewards the reward
function computed for this process's completions. The task model is the workspace's `[model]` backend
(`task_model = "model"`; e.g. an OpenAI-compatible vLLM server with the base weights), because the
policy's own weights are busy training in every process.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lse_engine.config import TrainConfig
from lse_engine.errors import LSEError
from lse_engine.evolve.replies import reply_text
from lse_engine.llm.base import continues_reply
from lse_engine.train.env import TrainEnv
from lse_engine.train.rewards import batch_score, reward_edit
from lse_engine.train.rollout import state_chat
from lse_engine.train.states import State, harvest, split_by_run
from lse_engine.train.trainer import check_config, evolver_dir
from lse_engine.workspace import Workspace


class StateReward:
    """A TRL reward function: the LSE reward of each completion for the state its prompt came from."""

    __name__ = "lse_reward"

    def __init__(self, env: TrainEnv, states: Sequence[State], cfg: TrainConfig) -> None:
        self.env, self.cfg = env, cfg
        self.states = {s.id: s for s in states}
        self.parents: dict[str, float] = {}
        self.last: list[float] = []  # raw rewards of the latest call, in TRL's local order

    def _parent(self, state: State) -> float:
        if state.id not in self.parents:
            problems = self.env.target(state, self.cfg.reward_on) or []
            self.parents[state.id] = batch_score(self.env.scorer(state), state.instructions, problems)
        return self.parents[state.id]

    def __call__(self, prompts: list[Any], completions: list[Any], state_id: list[str], **_: Any) -> list[float]:
        out = []
        for completion, sid in zip(completions, state_id, strict=True):
            state = self.states[sid]
            chat = state_chat(state, self.env.task_kind(state))
            raw = completion[-1]["content"] if isinstance(completion, list) else str(completion)
            r = reward_edit(self.env.scorer(state), reply_text(chat, raw),
                            self.env.target(state, self.cfg.reward_on) or [], self._parent(state),
                            parent=state.instructions, prefilled=continues_reply(chat), reward=self.cfg.reward,
                            invalid_reward=self.cfg.invalid_reward, noop_reward=self.cfg.noop_reward,
                            max_chars=self.env.config.evolve.max_prompt_chars)
            out.append(r.reward)
        self.last = out
        return out


def _trainer_class() -> type:
    from trl import GRPOTrainer

    class LSEGRPOTrainer(GRPOTrainer):
        """GRPOTrainer whose advantages are the raw rewards when `advantage = delta` (the paper's method)."""

        lse_reward: StateReward
        lse_advantage: str = "delta"

        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            out = super()._generate_and_score_completions(inputs)
            if self.lse_advantage == "delta":
                adv = out["advantages"]
                out["advantages"] = torch.tensor(self.lse_reward.last, dtype=adv.dtype, device=adv.device)
            return out

    return LSEGRPOTrainer


def grpo_config(cfg: TrainConfig, output_dir: Path, processes: int = 1, vllm_server: str | None = None,
                **extra: Any) -> Any:
    """The GRPOConfig equivalent to a TrainConfig (one state per device per micro-step)."""
    from trl import GRPOConfig

    accumulation = max(1, math.ceil(cfg.states / max(1, processes)))
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), learning_rate=cfg.learning_rate, seed=cfg.seed, beta=0.0, epsilon=cfg.clip,
        loss_type="dapo" if cfg.loss_agg == "token-mean" else "grpo",
        scale_rewards="group" if cfg.advantage == "grpo" else "none",
        num_generations=cfg.samples, per_device_train_batch_size=cfg.samples,
        gradient_accumulation_steps=accumulation, num_iterations=cfg.ppo_epochs,
        num_train_epochs=cfg.data_epochs, max_completion_length=cfg.rollout_max_tokens,
        temperature=cfg.rollout_temperature, top_p=1.0, max_grad_norm=cfg.max_grad_norm or None,
        save_steps=max(1, cfg.checkpoint_every), save_total_limit=cfg.keep_checkpoints, logging_steps=1,
        lr_scheduler_type="constant", report_to="none", disable_dropout=False,
    )
    if cfg.steps:
        kwargs["max_steps"] = cfg.steps
    if vllm_server:
        kwargs.update(use_vllm=True, vllm_mode="server", vllm_server_base_url=vllm_server)
    kwargs.update(extra)
    return GRPOConfig(**kwargs)


def build_trainer(env: TrainEnv, cfg: TrainConfig, states: Sequence[State], vllm_server: str | None = None,
                  processes: int = 1, **extra: Any) -> Any:
    """A ready-to-train LSEGRPOTrainer over `states` (task model: the workspace's [model] backend)."""
    from datasets import Dataset
    from peft import LoraConfig

    check_config(cfg)
    base = env.evolver_base()
    env.use_task_model("model", None)
    one_chat = [s for s in states if s.kind != "facts"]  # TRL samples one completion per prompt
    if not one_chat:
        raise LSEError("TRL's scale-out trains on one-chat requests (reference, compact, TextGrad-style); these "
                       "states come from facts runs (one chat per mistake): train them with `lse train`")
    rows = [{"prompt": state_chat(s, env.task_kind(s)), "state_id": s.id} for s in one_chat]
    out = evolver_dir(env.home, cfg.name) / "checkpoints-trl"
    args = grpo_config(cfg, out, processes, vllm_server, **extra)
    reward = StateReward(env, states, cfg)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM") if cfg.method == "lora" else None
    trainer = _trainer_class()(model=base.model, reward_funcs=[reward], args=args,
                               train_dataset=Dataset.from_list(rows), processing_class=base.tokenizer,
                               peft_config=lora)
    trainer.lse_reward, trainer.lse_advantage = reward, cfg.advantage
    return trainer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lse_engine.train.trl_scale", description=__doc__.split("\n")[0])
    ap.add_argument("prompt", nargs="?", help="a prompt file (its runs); else --workspace")
    ap.add_argument("--workspace", help="a workspace directory: states from all its runs")
    ap.add_argument("--name")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--data-epochs", type=int, dest="data_epochs")
    ap.add_argument("--ppo-epochs", type=int, dest="ppo_epochs")
    ap.add_argument("--method", choices=["lora", "full"])
    ap.add_argument("--reward-on", choices=["holdout", "batch"], dest="reward_on")
    ap.add_argument("--samples", type=int)
    ap.add_argument("--states", type=int)
    ap.add_argument("--advantage", choices=["delta", "grpo"])
    ap.add_argument("--reward", choices=["delta", "post"])
    ap.add_argument("--vllm-server", help="base URL of `trl vllm-serve` (generation); omit to generate in-process")
    ap.add_argument("--resume", action="store_true", help="continue from the latest TRL checkpoint")
    args = ap.parse_args(argv)
    from accelerate import PartialState

    target: Workspace | str = Workspace(args.prompt) if args.prompt else (args.workspace or ".")
    env = TrainEnv(target)
    try:
        keys = ("name", "steps", "data_epochs", "ppo_epochs", "samples", "states", "advantage", "reward",
                "method", "reward_on")
        changes = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
        cfg = dataclasses.replace(env.config.train, **changes)
        check_config(cfg)
        found = harvest(env.store, env.prompt, cfg.min_failures)
        train_s, _ = split_by_run(found, cfg.eval_fraction, cfg.seed, cfg.holdout_by)
        train_s = [s for s in train_s if env.target(s, cfg.reward_on) is not None]
        trainer = build_trainer(env, cfg, train_s, args.vllm_server, PartialState().num_processes)
        trainer.train(resume_from_checkpoint=True if args.resume else None)
        trainer.save_model(str(evolver_dir(env.home, cfg.name)))
    finally:
        env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
