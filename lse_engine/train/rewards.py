"""Rewards for evolver edits, read and gated exactly as the search reads and gates them, and the advantages built
from them.

An edit is the instructions the request kind's own proposer reads from the evolver's replies (`rollout.collect`;
`reward_edit` reads a reply to the paper's request with the search's `parse_edit`). Replies without usable
instructions get `invalid_reward`, and so do instructions stating what the task's data contradict. A no-op edit,
one that is the parent's instructions again (the proposer's identity: whitespace, and for facts their order, do
not count), gets `invalid_reward` too, since the search never scores one (it goes further: an edit that repeats
any node of the tree is a no-op); `noop_reward = "zero"` gives it 0 instead. Otherwise the edit's instructions
are scored through `Scorer.score` (k samples per problem, the outcome cache) on the state's target problems T, and

    reward = score(edit, T) − score(parent, T)   (reward = "delta", the paper's)
    reward = score(edit, T)                      (reward = "post", its ablation)

T is the run's fixed dev holdout (`reward_on = "holdout"`, the paper's) or the round's batch
(`reward_on = "batch"`, cheap). The parent is re-scored through the same scorer (a cache hit when the task
model is the run's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lse_engine.evolve.replies import normalize, parse_edit
from lse_engine.kinds import ADVANTAGES, NOOP_REWARDS, REWARDS
from lse_engine.scoring import Scorer, accuracy
from lse_engine.tasks.base import Problem

GROUP_EPS = 1e-4


def parse_reply(raw: str, prefilled: bool, max_chars: int) -> tuple[str | None, str | None]:
    """The search's parser: (new instructions, None) or (None, why not). `raw` includes the prefill."""
    return parse_edit(raw, prefilled, max_chars)


def is_noop(new: str, parent: str) -> bool:
    """An edit that changes nothing but whitespace (the search's no-op rule)."""
    return normalize(new) == normalize(parent)


@dataclass
class EditReward:
    """The reward of one edit, with what it is made of."""

    reward: float
    valid: bool
    score: float | None = None  # the edit's score on T
    delta: float | None = None  # score(edit) − score(parent) on T, whatever the reward kind
    error: str | None = None
    noop: bool = False


def batch_score(scorer: Scorer, instructions: str, problems: Sequence[Problem]) -> float:
    """Mean outcome of instructions on problems (every sample), through the shared outcome cache."""
    return accuracy(scorer.score(instructions, problems)[1])


def reward_edit(scorer: Scorer, reply: str, problems: Sequence[Problem], parent_score: float, *,
                parent: str | None = None, prefilled: bool = False, reward: str = "delta",
                invalid_reward: float = -1.0, noop_reward: str = "invalid",
                max_chars: int = 8000) -> EditReward:
    """Parse the evolver's reply to the paper's request (prefill included) and reward it on the target problems."""
    new, error = parse_reply(reply, prefilled, max_chars)
    return reward_instructions(scorer, new, problems, parent_score, parent=parent, error=error, reward=reward,
                               invalid_reward=invalid_reward, noop_reward=noop_reward)


def reward_instructions(scorer: Scorer, new: str | None, problems: Sequence[Problem], parent_score: float, *,
                        parent: str | None = None, error: str | None = None,
                        identity: Callable[[str], str] = normalize, reward: str = "delta",
                        invalid_reward: float = -1.0, noop_reward: str = "invalid", false: bool = False) -> EditReward:
    """Reward the instructions a proposer read from the evolver's replies (None: none usable, `error` says why)
    as the search gates and scores them: the same edit as the parent (`identity`, the request kind's own) is a
    no-op; instructions stating what the task's data contradict (`false`) are invalid; the rest are scored on the
    target problems."""
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
    if noop_reward not in NOOP_REWARDS:
        raise ValueError(f"noop_reward must be one of {NOOP_REWARDS}, got {noop_reward!r}")
    if new is None:
        return EditReward(invalid_reward, valid=False, error=error)
    if parent is not None and identity(new) == identity(parent):
        value = invalid_reward if noop_reward == "invalid" else 0.0
        return EditReward(value, valid=False, error="the edit repeats the parent's instructions", noop=True)
    if false:
        return EditReward(invalid_reward, valid=False, error=error)
    score = batch_score(scorer, new, problems)
    delta = score - parent_score
    return EditReward(delta if reward == "delta" else score, valid=True, score=score, delta=delta)


def summarize(rewards: Sequence[EditReward]) -> dict[str, float]:
    """Mean reward, mean delta over the valid edits, the fraction of valid edits and of no-op edits."""
    deltas = [r.delta for r in rewards if r.delta is not None]
    return {
        "mean_reward": sum(r.reward for r in rewards) / max(1, len(rewards)),
        "mean_delta": sum(deltas) / len(deltas) if deltas else 0.0,
        "valid": len(deltas) / max(1, len(rewards)),
        "noop": sum(r.noop for r in rewards) / max(1, len(rewards)),
    }


def advantages(rewards: Sequence[float], mode: str) -> list[float]:
    """Advantages of one group (the G edits of one state).

    `delta`: the reward itself (the paper). `grpo`: (r − mean) / (std + eps) within the group, so a group
    whose rewards are all equal has zero advantage and contributes no gradient.
    """
    if mode == "delta":
        return [float(r) for r in rewards]
    if mode != "grpo":
        raise ValueError(f"advantage must be one of {ADVANTAGES}, got {mode!r}")
    n = len(rewards)
    if n < 2 or max(rewards) == min(rewards):
        return [0.0] * n
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1))
    return [(r - mean) / (std + GROUP_EPS) for r in rewards]
