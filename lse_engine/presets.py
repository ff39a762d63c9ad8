"""Named bundles of settings. `paper` is the protocol of arXiv 2603.18620 and its reference code; see
docs/fidelity.md for what each key changes and why the everyday defaults differ."""

from __future__ import annotations

from typing import Any

PAPER: dict[str, Any] = {
    "model": {"sampling": {"temperature": 0.7, "top_p": 0.8, "max_tokens": 4096, "samples": 8}},
    "evolver": {"sampling": {"temperature": 0.7, "top_p": 0.8, "max_tokens": 4096}},
    # the paper's request (`reference`), every child scored on the whole holdout (no racing), the best node on the
    # holdout is the answer (no paired test), none of our optional additions (prefill, candidates, gate, held-out
    # batch); what every request always adds (the `<current>` block, findings) is listed in docs/fidelity.md
    "evolve": {"rule": "ucb", "c": 2.0, "rounds": 25, "batch_size": 10, "dev_size": 50, "request": "reference",
               "evolver_prefill": False, "candidates": 1, "acceptance_gate": False, "heldout_size": 0,
               "feedback_chars": 0, "show_schema": True, "race": False, "winner_test": "none"},
    "task": {"show_work": True},  # the reference's template: reasoning, then the answer
    "sql": {"timeout_s": 30.0, "gold_timeout_s": 30.0},
    # the reference fully fine-tunes at lr 1e-6, on-policy, the delta reward on the holdout as the advantage
    "train": {"method": "full", "learning_rate": 1e-6, "reward_on": "holdout", "advantage": "delta", "reward": "delta",
              "rollout_temperature": 1.0, "rollout_max_tokens": 16384, "ppo_epochs": 1, "loss_agg": "token-mean"},
}
HOLDOUT = 50  # the paper's dev holdout
PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER}


def with_preset(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settings overrides: the preset's, then `overrides` on top (tables merged key by key)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")

    def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in top.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    return merge(PRESETS[name], overrides or {})
