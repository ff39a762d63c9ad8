"""How many threads torch uses for CPU inference (placeholder; settled by measurement)."""

from __future__ import annotations

import os

ENV = "LSE_THREADS"


def choose(setting: int = 0) -> int:
    """An explicit setting (> 0) wins, then $LSE_THREADS, then every core."""
    if setting > 0:
        return setting
    env = os.environ.get(ENV, "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return auto()


def auto() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def apply(setting: int = 0) -> int:
    import torch

    n = choose(setting)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
