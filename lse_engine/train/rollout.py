"""Rollouts: for one state, sample G edits from the evolver with the exact chat the search sent it, reward
each on the state's target problems, and keep what the PPO update needs (token ids, advantages, old and
base log-probs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from lse_engine.config import TrainConfig
from lse_engine.errors import Cancelled
from lse_engine.evolve.evolver import build_chat, build_textgrad_chat, with_prefill
from lse_engine.llm.base import Chat, Sampling, continues_reply
from lse_engine.train.env import TrainEnv
from lse_engine.train.policy import Policy
from lse_engine.train.rewards import EditReward, advantages, batch_score, reward_edit
from lse_engine.train.states import State


def state_chat(state: State, task_kind: str) -> Chat:
    """The chat the evolver was sent for this state: as the run recorded it (prefill included), else rebuilt
    from the state's instructions and feedback (runs older than the `evolver_chat` column)."""
    recorded = state.messages()
    if recorded:
        return recorded
    if state.rule == "textgrad":
        chat = build_textgrad_chat(state.instructions, state.feedback)
    else:
        chat = build_chat(state.instructions, state.feedback, task_kind)
    return with_prefill(chat) if state.prefill else chat


def reply_text(chat: Chat, completion: str) -> str:
    """The whole reply as the search parses it: the prefill (when the chat has one) and the completion."""
    return (chat[-1]["content"] if continues_reply(chat) else "") + completion


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
            base: bool = False, samples: int | None = None) -> Rollout:
    """Sample edits for a state (with the trained evolver, or the base one with `base`) and reward them."""
    if env.cancel.cancelled:
        raise Cancelled("cancelled")
    problems = env.target(state, cfg.reward_on)
    if problems is None:
        raise ValueError(f"state {state.id}: its suite or problems are gone")
    chat = state_chat(state, env.task_kind(state))
    prompt_ids = policy.chat_ids(chat)
    n = samples or cfg.samples
    if base:
        with policy.base():
            completions = policy.sample(prompt_ids, n, sampling, seed)
    else:
        completions = policy.sample(prompt_ids, n, sampling, seed)
    texts = [reply_text(chat, policy.decode(c)) for c in completions]
    scorer = env.scorer(state)
    parent = batch_score(scorer, state.instructions, problems)
    prefilled = continues_reply(chat)
    max_chars = env.config.evolve.max_prompt_chars
    rewards = [reward_edit(scorer, t, problems, parent, parent=state.instructions, prefilled=prefilled,
                           reward=cfg.reward, invalid_reward=cfg.invalid_reward, noop_reward=cfg.noop_reward,
                           max_chars=max_chars) for t in texts]
    return Rollout(state, prompt_ids, completions, texts, parent, rewards,
                   advantages([r.reward for r in rewards], cfg.advantage))


@torch.no_grad()
def score_logps(policy: Policy, rollouts: Sequence[Rollout], micro_batch: int) -> None:
    """Fill each rollout's old (trained) and base per-token log-probs."""
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
