"""`lse train`: train an evolver (a LoRA adapter) on the states of your evolve runs, with a live view."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from lse_engine.cli.common import console, err_console, install_sigint, overrides_from
from lse_engine.errors import LSEError
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressEvent

TRAIN_KEYS = ("name", "steps", "epochs", "states", "samples", "advantage", "reward", "task_model")


class TrainView:
    """Rich live view: step, mean reward, mean delta, KL vs the base evolver, loss."""

    def __init__(self) -> None:
        self.last: ProgressEvent | None = None
        self.metrics: dict[str, Any] = {}
        self.lines: list[str] = []
        self.started = time.monotonic()

    def __call__(self, ev: ProgressEvent) -> None:
        self.last = ev
        if ev.extra.get("phase") in ("step", "resume") and "mean_reward" in ev.extra:
            self.metrics = ev.extra
        self.lines = (self.lines + [ev.message])[-4:]

    def __rich__(self) -> Table:
        t = Table.grid(padding=(0, 1))
        ev = self.last
        if ev is None:
            t.add_row("[dim]loading the evolver…[/]")
            return t
        head = Table.grid(padding=(0, 1))
        head.add_row(ProgressBar(total=max(1, ev.rounds), completed=min(ev.round, max(1, ev.rounds)), width=30),
                     f"[bold]step[/] {ev.round}/{ev.rounds}  {time.monotonic() - self.started:.0f}s")
        t.add_row(head)
        m = self.metrics
        if m:
            t.add_row(f"[bold]mean reward[/] {m['mean_reward']:+.3f}  [bold]mean delta[/] {m['mean_delta']:+.3f}  "
                      f"[bold]valid[/] {m['valid']:.0%}  [bold]KL vs base[/] {m['kl']:.4f}  "
                      f"[bold]loss[/] {m['loss']:+.4f}  [dim]{m['seconds']:.1f}s/step[/]")
        for line in self.lines:
            t.add_row(f"[dim]{line}[/]")
        return t


def _evaluation_table(evaluation: dict[str, Any]) -> Table:
    on = evaluation.get("on", "eval")
    title = (f"evaluation on {evaluation.get('states', 0)} held-out states (runs not trained on)" if on == "eval"
             else f"evaluation on {evaluation.get('states', 0)} training states (no held-out runs: add more runs)")
    table = Table(title=title)
    for col in ("evolver", "mean delta reward", "mean delta (valid edits)", "valid edits"):
        table.add_column(col)
    for label in ("base", "trained"):
        e = evaluation[label]
        table.add_row(label, f"{e['mean_reward']:+.3f}", f"{e['mean_delta']:+.3f}", f"{e['valid']:.0%}")
    return table


def cmd_train(args: argparse.Namespace) -> int:
    from lse_engine.train.trainer import train
    from lse_engine.workspace import Workspace

    if bool(args.prompt) == bool(args.workspace):
        raise LSEError("give a prompt file (its runs) or --workspace DIR (all runs in its store), not both")
    overrides = overrides_from(args)
    changes = {k: getattr(args, k) for k in TRAIN_KEYS if getattr(args, k, None) is not None}
    if changes:
        overrides["train"] = changes
    if args.tiny:
        err_console.print("[yellow]--tiny: a tiny random evolver; it shows the pipeline working, its rewards "
                          "mean nothing.[/]")
    target: Workspace | Path = Workspace(args.prompt, overrides) if args.prompt else Path(args.workspace)
    cancel = CancelToken()
    install_sigint(cancel)
    view = TrainView()
    try:
        with Live(view, console=console, refresh_per_second=4, transient=False):
            result = train(target, resume=args.resume, progress=view, cancel=cancel,
                           overrides=None if isinstance(target, Workspace) else overrides)
    finally:
        if isinstance(target, Workspace):
            target.close()
    if result.status == "no-states":
        err_console.print(f"[red]error:[/] {result.message}")
        return 2
    d = result.data
    console.print(f"[bold]data[/]: {d.get('runs', 0)} runs, {d.get('train_states', 0)} training states "
                  f"({d.get('train_runs', 0)} runs), {d.get('eval_states', 0)} held-out states "
                  f"({d.get('eval_runs', 0)} runs)")
    if result.status == "cancelled":
        console.print(f"[yellow]{result.message}[/]")
        return 130
    console.print(_evaluation_table(result.evaluation))
    console.print(f"[green]saved[/] {result.adapter}  ·  use it with: lse evolve PROMPT --evolver {result.name}")
    return 0


def register(sub: Any) -> None:
    """Add `lse train` to the main parser's subcommands."""
    p = sub.add_parser("train", help="train an evolver (LoRA adapter) on the states of your evolve runs")
    p.add_argument("prompt", nargs="?", help="a prompt file: learn from its runs")
    p.add_argument("--workspace", help="a workspace directory: learn from every run in its store")
    p.add_argument("--name", help="the evolver's name (saved under .lse/evolvers/NAME)")
    p.add_argument("--steps", type=int, help="rollout batches (default: one pass over the training states)")
    p.add_argument("--epochs", type=int, help="PPO passes over each batch")
    p.add_argument("--states", type=int, help="states per batch")
    p.add_argument("--samples", type=int, help="edits sampled per state")
    p.add_argument("--advantage", choices=["delta", "grpo"], help="delta: the reward itself (paper); grpo: group-normalised")
    p.add_argument("--reward", choices=["delta", "post"], help="delta: score(edit) − score(parent); post: score(edit)")
    p.add_argument("--task-model", choices=["self", "model"], dest="task_model",
                   help="self: the evolver's base with the adapter off; model: the [model] backend")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of NAME")
    p.add_argument("--tiny", action="store_true", help="a tiny random model (pipeline check; rewards mean nothing)")
    p.set_defaults(func=cmd_train, evolver=None)
