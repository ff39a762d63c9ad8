"""Rewards for evolver edits, scored exactly as the tree scores nodes, and the advantages built from them.

An edit is the evolver's reply for a state. It is parsed as the search parses it (`parse_reply`); a
malformed reply gets `invalid_reward`. Otherwise the edit's instructions are scored through
`Scorer.score` on the state's held-out batch H, and

    reward = score(edit, H) − score(parent, H)   (reward = "delta", the paper's)
    reward = score(edit, H)                      (reward = "post", its ablation)

The parent is re-scored through the same scorer (a cache hit when the task model is the run's), so an
edit identical to its parent gets exactly 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lse_engine.evolve.evolver import parse_reply
from lse_engine.scoring import Scorer, accuracy
from lse_engine.tasks.base import Problem

ADVANTAGES = ("delta", "grpo")
REWARDS = ("delta", "post")
GROUP_EPS = 1e-4


@dataclass
class EditReward:
    """The reward of one edit, with what it is made of."""

    reward: float
    valid: bool
    score: float | None = None  # the edit's score on H
    delta: float | None = None  # score(edit) − score(parent) on H, whatever the reward kind
    error: str | None = None


def batch_score(scorer: Scorer, instructions: str, problems: Sequence[Problem]) -> float:
    """Accuracy of instructions on a batch, through the shared outcome cache."""
    return accuracy(scorer.score(instructions, problems)[1])


def reward_edit(scorer: Scorer, reply: str, problems: Sequence[Problem], parent_score: float, *,
                reward: str = "delta", invalid_reward: float = -1.0, max_chars: int = 6000) -> EditReward:
    """Parse the evolver's reply and reward it on the state's held-out batch."""
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
    new, error = parse_reply(reply, max_chars)
    if new is None:
        return EditReward(invalid_reward, valid=False, error=error)
    score = batch_score(scorer, new, problems)
    delta = score - parent_score
    return EditReward(delta if reward == "delta" else score, valid=True, score=score, delta=delta)


def summarize(rewards: Sequence[EditReward]) -> dict[str, float]:
    """Mean reward, mean delta over the valid edits, and the fraction of valid edits."""
    deltas = [r.delta for r in rewards if r.delta is not None]
    return {
        "mean_reward": sum(r.reward for r in rewards) / max(1, len(rewards)),
        "mean_delta": sum(deltas) / len(deltas) if deltas else 0.0,
        "valid": len(deltas) / max(1, len(rewards)),
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
