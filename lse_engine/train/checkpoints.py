"""Checkpoints under `.lse/evolvers/NAME/checkpoints/step-NNNNNN/`: the adapter (peft), the optimizer,
the step, the metric history and every RNG state. `trainer_state.pt` is written last, so a directory
without it (a kill mid-save) is never resumed from.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch

from lse_engine.llm.transformers_backend import quiet_progress_bars

STATE_FILE = "trainer_state.pt"


def checkpoints_dir(out: Path) -> Path:
    return out / "checkpoints"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, step: int, model: Any, optimizer: torch.optim.Optimizer,
                    extra: dict[str, Any], keep: int = 2) -> Path:
    """Save the adapter and trainer state after `step`; keep only the newest `keep` checkpoints."""
    path = checkpoints_dir(out) / f"step-{step:06d}"
    path.mkdir(parents=True, exist_ok=True)
    with quiet_progress_bars():
        model.save_pretrained(str(path))
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "rng": rng_state(), **extra},
               path / STATE_FILE)
    for old in all_checkpoints(out)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def all_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoints_dir(out)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())


def latest_checkpoint(out: Path) -> Path | None:
    found = all_checkpoints(out)
    return found[-1] if found else None


def load_trainer_state(path: Path) -> dict[str, Any]:
    """The trainer state saved with a checkpoint (our own file: python objects included)."""
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
