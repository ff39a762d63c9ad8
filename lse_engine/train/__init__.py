"""Training the evolver (`lse train`): harvest states from runs, delta-reward PPO-clip on-policy over data epochs,
on a LoRA adapter or every weight; the checkpoint is chosen on held-out runs.

`train`, `TrainResult` and `run_from_worker` are imported lazily so that importing this package does not
load torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainResult", "run_from_worker", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lse_engine.train import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
