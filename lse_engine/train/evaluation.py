"""An evolver on the dev states (held-out runs): mean reward of its edits, sampled as `lse evolve` samples
the evolver, with the same seeds for every checkpoint and for the base, so they are compared on equal terms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from lse_engine.config import TrainConfig
from lse_engine.llm.base import Sampling
from lse_engine.train.env import TrainEnv
from lse_engine.train.policy import Policy
from lse_engine.train.rewards import summarize
from lse_engine.train.rollout import collect
from lse_engine.train.states import State


def pick_states(states: Sequence[State], n: int, seed: int) -> list[State]:
    """A fixed subset of n states (0 = all), the same for every checkpoint."""
    ranked = sorted(states, key=lambda s: hashlib.sha256(f"{seed}:{s.id}".encode()).hexdigest())
    return ranked[:n] if n > 0 else ranked


def evaluate(env: TrainEnv, policy: Policy, states: Sequence[State], cfg: TrainConfig, sampling: Sampling,
             base: bool = False, on_state: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """Mean reward (invalid and no-op edits included), mean delta of valid edits, valid fraction."""
    rewards = []
    for i, state in enumerate(states):
        if on_state:
            on_state(i, len(states))
        seed = (cfg.seed * 7919 + i) % 2**31
        rewards.extend(collect(env, policy, state, cfg, sampling, seed, base=base).rewards)
    return {**summarize(rewards), "edits": float(len(rewards))}
