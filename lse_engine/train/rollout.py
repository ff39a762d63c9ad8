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
from lse_engine.evolve.proposers.reference import build_chat
from lse_engine.evolve.proposers.textgrad import build_textgrad_chat
from lse_engine.evolve.replies import STOP, reply_text, with_prefill
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


def stop_at(policy: Policy, ids: list[int], max_tokens: int) -> tuple[list[int], str, bool]:
    """A sampled completion as the search's evolver call returns it: the tokens up to the one that completes
    the stop string (the search generates no further), their text before the stop string, and whether the
    token limit was hit."""
    text = policy.decode(ids)
    if STOP not in text:
        hit_limit = len(ids) >= max_tokens and not (ids and ids[-1] in policy.eos_ids)
        return ids, text, hit_limit
    lo, hi = 1, len(ids)  # the shortest prefix whose text holds the stop string (holding it is monotone)
    while lo < hi:
        mid = (lo + hi) // 2
        if STOP in policy.decode(ids[:mid]):
            hi = mid
        else:
            lo = mid + 1
    return ids[:lo], text.split(STOP, 1)[0], False


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
    cut = [stop_at(policy, c, sampling.max_tokens) for c in completions]
    completions = [ids for ids, _, _ in cut]
    texts = [reply_text(chat, text, hit_limit) for _, text, hit_limit in cut]
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
        empty = [torch.empty(0)] * len(r.completions)
        r.old_logps, r.ref_logps = list(empty), list(empty)
    for start in range(0, len(items), max(1, micro_batch)):
        chunk = items[start : start + max(1, micro_batch)]
        pairs = [(r.prompt_ids, r.completions[i]) for r, i in chunk]
        old, mask = policy.token_logps(pairs)
        with policy.base():
            ref, _ = policy.token_logps(pairs)
        for row, (r, i) in enumerate(chunk):
            n = int(mask[row].sum())
            r.old_logps[i], r.ref_logps[i] = old[row, :n].cpu(), ref[row, :n].cpu()
