"""What every `lse` subcommand shares: the consoles, Ctrl-C handling, model flags and settings overrides."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from rich.console import Console

from lse_engine.kinds import BACKEND_CHOICES
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressEvent

console = Console(stderr=False)
err_console = Console(stderr=True)
TINY_NOTE = "a tiny random model built on the fly; its scores mean nothing, it only shows the pipeline working"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def add_model_args(p: argparse.ArgumentParser, what: str = "task model") -> None:
    """--model, --backend, --base-url and --tiny: the flags that pick the model, the same on every subcommand."""
    p.add_argument("--model", help=f"{what}: a name from `lse models list`, an HF id, a local directory or a "
                                   ".gguf file; overrides lse.toml")
    p.add_argument("--backend", choices=BACKEND_CHOICES)
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (with --backend openai)")
    p.add_argument("--tiny", action="store_true", help=f"use {TINY_NOTE}")


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings overrides from the model flags (`add_model_args`); absent flags change nothing."""
    out: dict[str, Any] = {}
    if getattr(args, "tiny", False):
        tiny = {"backend": "transformers", "model": "tiny", "sampling": {"max_tokens": 48}}
        out["model"] = tiny
        out["evolver"] = {**tiny, "sampling": {"max_tokens": 96, "temperature": 0.7}}
    for key in ("model", "backend", "base_url"):
        if getattr(args, key, None):
            out.setdefault("model", {})[key] = getattr(args, key)
    return out


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Settings overrides from the model flags, `--evolver` and the `[evolve]` flags a subcommand has."""
    out = model_overrides(args)
    if getattr(args, "evolver", None):
        out.setdefault("evolver", {})["adapter"] = args.evolver
    ev: dict[str, Any] = {}
    for key in ("rule", "seed", "batch_size", "dev_size", "max_model_calls"):
        val = getattr(args, key, None)
        if val is not None:
            ev[key] = val
    if getattr(args, "gate", False):
        ev["acceptance_gate"] = True
    if ev:
        out["evolve"] = ev
    return out


def install_sigint(cancel: CancelToken,
                   message: str = "cancelling after the current model call… (Ctrl-C again to abort)") -> None:
    """First Ctrl-C: cooperative cancellation (committed work is kept); the second aborts."""
    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        if cancel.cancelled:
            raise KeyboardInterrupt
        err_console.print(f"[yellow]{message}[/]")
        cancel.cancel()

    signal.signal(signal.SIGINT, handler)


def duration(seconds: float | None) -> str:
    """`1:05` (or `1:02:05`); `—` when unknown."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class PlainProgress:
    """Progress as plain lines, for a log or a file (stdout not a terminal): every event that says what happened
    (a round's selection, a scored edit, an evolver reply's verdict) at once; counted steps (`scored 12/40 · about
    1:20 left`) at most one line every `every_s` seconds, and the last of a step. Each line is flushed."""

    def __init__(self, out: Any = None, every_s: float = 5.0) -> None:
        self.out = out if out is not None else sys.stdout
        self.every_s = every_s
        self._last_step = 0.0
        self.started = time.monotonic()

    def __call__(self, ev: ProgressEvent) -> None:
        now = time.monotonic()
        if ev.step:
            finished = ev.step_total and ev.step_done >= ev.step_total
            if now - self._last_step < self.every_s and not finished:
                return
            self._last_step = now
            left = f" · about {duration(ev.eta_s)} left" if ev.eta_s is not None and not finished else ""
            counted = "scored " if "scoring" in ev.step else ""
            text = f"{ev.step}: {counted}{ev.step_done}/{ev.step_total}{left}" if ev.step_total else ev.step
        else:
            text = ev.message
        print(f"[{duration(now - self.started)}] {text}", file=self.out, flush=True)


def step_line(step: str, done: int, total: int, eta_s: float | None) -> str:
    """`scoring dev 12/40 · about 1:20 left`: what a long step is doing, counted."""
    if not total:
        return step
    left = f" · about {duration(eta_s)} left" if eta_s is not None and done < total else ""
    return f"{step} {done}/{total}{left}"
