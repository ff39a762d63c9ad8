"""Rollouts: for one state, sample G edits from the evolver, reward each on the state's held-out batch,
and keep what the PPO update needs (token ids, advantages, old and base log-probs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from lse_engine.config import TrainConfig
from lse_engine.errors import Cancelled
from lse_engine.evolve.evolver import build_chat, build_textgrad_chat
from lse_engine.llm.base import Chat, Sampling
from lse_engine.train.env import TrainEnv
from lse_engine.train.policy import Policy
from lse_engine.train.rewards import EditReward, advantages, batch_score, reward_edit
from lse_engine.train.states import State


def state_chat(state: State, task_kind: str) -> Chat:
    """The chat the evolver saw for this state in its run."""
    build = build_textgrad_chat if state.rule == "textgrad" else build_chat
    return build(state.instructions, state.feedback, task_kind)


@dataclass
class Rollout:
    """G edits of one state with their rewards; log-probs are filled by `score_logps`."""

    state: State
    prompt_ids: list[int]
    completions: list[list[int]]
    texts: list[str]
    parent_score: float
    rewards: list[EditReward]
    advantages: list[float]
    old_logps: list[torch.Tensor] = field(default_factory=list)  # per edit, one value per token
    ref_logps: list[torch.Tensor] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(len(c) for c in self.completions)


def collect(env: TrainEnv, policy: Policy, state: State, cfg: TrainConfig, sampling: Sampling, seed: int,
            adapter: bool = True, reward: str | None = None) -> Rollout:
    """Sample `cfg.samples` edits for a state (with the adapter on, or off for the base evolver) and reward them."""
    if env.cancel.cancelled:
        raise Cancelled("cancelled")
    problems = env.problems(state)
    if problems is None:
        raise ValueError(f"state {state.id}: its suite or problems are gone")
    prompt_ids = policy.chat_ids(state_chat(state, env.task_kind(state)))
    if adapter:
        completions = policy.sample(prompt_ids, cfg.samples, sampling, seed)
    else:
        with policy.base():
            completions = policy.sample(prompt_ids, cfg.samples, sampling, seed)
    texts = [policy.decode(c) for c in completions]
    scorer = env.scorer(state)
    parent = batch_score(scorer, state.instructions, problems)
    max_chars = env.config.evolve.max_prompt_chars
    rewards = [reward_edit(scorer, t, problems, parent, reward=reward or cfg.reward, invalid_reward=cfg.invalid_reward,
                           max_chars=max_chars) for t in texts]
    return Rollout(state, prompt_ids, completions, texts, parent, rewards,
                   advantages([r.reward for r in rewards], cfg.advantage))


@torch.no_grad()
def score_logps(policy: Policy, rollouts: Sequence[Rollout], micro_batch: int) -> None:
    """Fill each rollout's old (adapter on) and base (adapter off) per-token log-probs."""
    policy.model.eval()
    items = [(r, i) for r in rollouts for i in range(len(r.completions))]
    for r in rollouts:
        r.old_logps, r.ref_logps = [torch.empty(0)] * len(r.completions), [torch.empty(0)] * len(r.completions)
    for start in range(0, len(items), max(1, micro_batch)):
        chunk = items[start : start + max(1, micro_batch)]
        pairs = [(r.prompt_ids, r.completions[i]) for r, i in chunk]
        old, mask = policy.token_logps(pairs)
        with policy.base():
            ref, _ = policy.token_logps(pairs)
        for row, (r, i) in enumerate(chunk):
            n = int(mask[row].sum())
            r.old_logps[i], r.ref_logps[i] = old[row, :n].cpu(), ref[row, :n].cpu()
