"""Base vs trained evolver on held-out states: the same states, the same sampling seeds, delta rewards."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lse_engine.config import TrainConfig
from lse_engine.llm.base import Sampling
from lse_engine.train.env import TrainEnv
from lse_engine.train.policy import Policy
from lse_engine.train.rewards import summarize
from lse_engine.train.rollout import collect
from lse_engine.train.states import State


def evaluate(env: TrainEnv, policy: Policy, states: Sequence[State], cfg: TrainConfig, sampling: Sampling,
             on_state: Callable[[str, int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """Mean delta reward (invalid edits at `invalid_reward`) of the base and the trained evolver."""
    out: dict[str, dict[str, float]] = {}
    for label, adapter in (("base", False), ("trained", True)):
        rewards = []
        for i, state in enumerate(states):
            if on_state:
                on_state(label, i, len(states))
            seed = (cfg.seed * 7919 + i) % 2**31
            rewards.extend(collect(env, policy, state, cfg, sampling, seed, adapter=adapter, reward="delta").rewards)
        out[label] = {**summarize(rewards), "edits": float(len(rewards))}
    return out
