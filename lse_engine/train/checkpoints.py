"""Checkpoints under `.lse/evolvers/NAME/checkpoints/step-NNNNNN/`: the weights (a LoRA adapter, or the
whole model under full fine-tuning), the optimizer, the step, the metric history, the dev evaluations and
every RNG state. `trainer_state.pt` is written last, so a directory without it (a kill mid-save) is never
resumed from. Pruning keeps the newest `keep` checkpoints and the one chosen on dev.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "trainer_state.pt"


def checkpoints_dir(out: Path) -> Path:
    return out / "checkpoints"


def checkpoint_path(out: Path, step: int) -> Path:
    return checkpoints_dir(out) / f"step-{step:06d}"


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


def save_checkpoint(out: Path, step: int, save_weights: Callable[[Path], None],
                    optimizer: torch.optim.Optimizer, extra: dict[str, Any], keep: int = 2,
                    protect: int | None = None) -> Path:
    """Save the weights and trainer state after `step`; keep the newest `keep` checkpoints and `protect`."""
    path = checkpoint_path(out, step)
    path.mkdir(parents=True, exist_ok=True)
    save_weights(path)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "rng": rng_state(), **extra},
               path / STATE_FILE)
    kept = {checkpoint_path(out, protect)} if protect else set()
    for old in all_checkpoints(out)[:-max(1, keep)]:
        if old not in kept:
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
    state: dict[str, Any] = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    return state


def update_checkpoint(path: Path, **fields: Any) -> None:
    """Replace fields of a saved trainer state (e.g. the dev evaluations), atomically."""
    state = load_trainer_state(path)
    state.update(fields)
    tmp = path / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path / STATE_FILE)


def export_weights(checkpoint: Path, out: Path) -> None:
    """Make `out` hold exactly the checkpoint's weights (what `lse evolve --evolver NAME` loads)."""
    for old in out.iterdir():
        if old.is_file() and old.name != "lse_meta.json":
            old.unlink()
    for f in checkpoint.iterdir():
        if f.is_file() and f.name != STATE_FILE:
            shutil.copy2(f, out / f.name)
