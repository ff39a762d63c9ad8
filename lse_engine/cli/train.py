"""`lse train`: train an evolver (a LoRA adapter or a full fine-tune) on the states of your evolve runs,
with a live view; the checkpoint that does best on held-out runs is saved."""

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
from lse_engine.kinds import ADVANTAGES, HOLDOUT_BY, REWARD_ON, REWARDS, TASK_MODEL_MODES, TRAIN_METHODS
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressEvent

TRAIN_KEYS = ("name", "steps", "data_epochs", "ppo_epochs", "states", "samples", "advantage", "reward",
              "reward_on", "method", "holdout_by", "task_model")
TINY_ROLLOUT_TOKENS = 32  # --tiny: short rollouts (the tiny random model writes to the limit)


class TrainView:
    """Rich live view: step and data epoch, mean reward and delta, KL vs the base evolver, loss, dev rewards."""

    def __init__(self) -> None:
        self.last: ProgressEvent | None = None
        self.metrics: dict[str, Any] = {}
        self.dev: dict[int, float] = {}  # step → mean reward on the dev states (0: the base evolver)
        self.lines: list[str] = []
        self.started = time.monotonic()

    def __call__(self, ev: ProgressEvent) -> None:
        self.last = ev
        if ev.extra.get("phase") in ("step", "resume") and "mean_reward" in ev.extra:
            self.metrics = ev.extra
        if ev.extra.get("phase") == "eval" and "eval_step" in ev.extra:
            self.dev[int(ev.extra["eval_step"])] = float(ev.extra["mean_reward"])
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
            t.add_row(f"[bold]epoch[/] {int(m.get('epoch', 1))}  [bold]mean reward[/] {m['mean_reward']:+.3f}  "
                      f"[bold]mean delta[/] {m['mean_delta']:+.3f}  [bold]valid[/] {m['valid']:.0%}  "
                      f"[bold]KL vs base[/] {m['kl']:.4f}  [bold]loss[/] {m['loss']:+.4f}  "
                      f"[dim]{m['seconds']:.1f}s/step[/]")
        if self.dev:
            by_step = "  ".join(f"{k}: {v:+.3f}" for k, v in sorted(self.dev.items()))
            t.add_row(f"[bold]dev mean reward[/] {by_step}")
        for line in self.lines:
            t.add_row(f"[dim]{line}[/]")
        return t


def _evaluation_table(evaluation: dict[str, Any], data: dict[str, Any]) -> Table:
    n = evaluation.get("states", 0)
    if evaluation.get("on", "eval") == "eval":
        suites = len(data.get("eval_suites") or [])
        title = (f"dev set: {n} states of {data.get('eval_runs', 0)} held-out runs ({suites} suite(s)), "
                 "never trained on")
    else:
        title = f"evaluation on {n} training states (no held-out runs to choose a checkpoint on: add runs)"
    table = Table(title=title)
    for col in ("evolver", "step", "mean reward", "mean delta (valid edits)", "valid edits", "no-op edits"):
        table.add_column(col)
    for label, step in (("base", "0"), ("trained", str(evaluation.get("step", "")))):
        e = evaluation[label]
        table.add_row(label, step, f"{e['mean_reward']:+.3f}", f"{e['mean_delta']:+.3f}", f"{e['valid']:.0%}",
                      f"{e.get('noop', 0.0):.0%}")
    return table


def cmd_train(args: argparse.Namespace) -> int:
    from lse_engine.train.trainer import train
    from lse_engine.workspace import Workspace

    if bool(args.prompt) == bool(args.workspace):
        raise LSEError("give a prompt file (its runs) or --workspace DIR (all runs in its store), not both")
    if args.epochs is not None:
        from lse_engine.train.trainer import EPOCHS_GONE

        raise LSEError(EPOCHS_GONE.replace("train.", "--").replace("_", "-"))
    if args.config and args.prompt:
        raise LSEError("--config goes with --workspace (a prompt file uses the lse.toml above it)")
    overrides = overrides_from(args)
    changes = {k: getattr(args, k) for k in TRAIN_KEYS if getattr(args, k, None) is not None}
    if args.tiny:
        changes.setdefault("rollout_max_tokens", TINY_ROLLOUT_TOKENS)
        err_console.print("[yellow]--tiny: a tiny random evolver; it shows the pipeline working, its rewards "
                          "mean nothing.[/]")
    if changes:
        overrides["train"] = changes
    target: Workspace | Path = Workspace(args.prompt, overrides) if args.prompt else Path(args.workspace)
    cancel = CancelToken()
    install_sigint(cancel)
    view = TrainView()
    try:
        with Live(view, console=console, refresh_per_second=4, transient=False):
            result = train(target, resume=args.resume, progress=view, cancel=cancel,
                           overrides=None if isinstance(target, Workspace) else overrides, config=args.config)
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
    models = d.get("task_models") or {}
    if len(models) > 1:
        made = ", ".join(f"{m} ({n} runs)" for m, n in models.items())
        console.print(f"[yellow]the runs were made with {len(models)} task models[/]: {made}; rewards score every edit "
                      "with the configured task model, so states from the others start from its scores, not theirs")
    if d.get("stale_runs"):
        console.print(f"[yellow]left out[/] {len(d['stale_runs'])} run(s) whose suite changed since they ran")
    for label, key in (("trained on", "train_suites"), ("held out", "eval_suites")):
        if d.get(key):
            console.print(f"  [dim]{label}: {', '.join(Path(p).name for p in d[key])}[/]")
    if result.status == "cancelled":
        console.print(f"[yellow]{result.message}[/]")
        return 130
    ev = result.evaluation
    console.print(_evaluation_table(ev, d))
    if ev.get("by_step"):
        steps = "  ".join(f"{k}: {v:+.3f}" for k, v in ev["by_step"].items())
        console.print(f"[bold]dev mean reward by step[/] {steps}  →  [bold]chosen: step {result.chosen_step}[/]")
    console.print(f"[green]saved[/] {result.adapter}  ·  use it with: "
                  f"lse evolve PROMPT --evolver {result.adapter}")
    return 0


def register(sub: Any) -> None:
    """Add `lse train` to the main parser's subcommands."""
    p = sub.add_parser("train", help="train an evolver (LoRA adapter or full fine-tune) on the states of your "
                                     "evolve runs")
    p.add_argument("prompt", nargs="?", help="a prompt file: learn from its runs")
    p.add_argument("--workspace", help="a directory: learn from every run in its store (DIR/.lse/lse.db), e.g. "
                                       "an `lse bench --out` directory")
    p.add_argument("--config", help="with --workspace: the lse.toml to read (default: the nearest at or above "
                                    "DIR)")
    p.add_argument("--name", help="the evolver's name (saved under DIR/.lse/evolvers/NAME)")
    p.add_argument("--steps", type=int, help="rollout batches (default: data-epochs passes over the states)")
    p.add_argument("--data-epochs", type=int, dest="data_epochs", help="passes over the training states (paper: 4)")
    p.add_argument("--ppo-epochs", type=int, dest="ppo_epochs", help="PPO passes per rollout batch (1: on-policy)")
    p.add_argument("--epochs", type=int, help=argparse.SUPPRESS)  # gone: a clear error says what replaced it
    p.add_argument("--states", type=int, help="states per batch")
    p.add_argument("--samples", type=int, help="edits sampled per state")
    p.add_argument("--method", choices=TRAIN_METHODS, help="lora: a LoRA adapter (default); full: every weight")
    p.add_argument("--reward-on", choices=REWARD_ON, dest="reward_on",
                   help="holdout: the run's fixed dev holdout, k samples (paper, default); batch: the round's "
                        "batch")
    p.add_argument("--holdout-by", choices=HOLDOUT_BY, dest="holdout_by",
                   help="the dev set that picks the checkpoint: whole runs (default) or whole suites "
                        "(databases)")
    p.add_argument("--advantage", choices=ADVANTAGES, help="delta: the reward itself (paper); grpo: group-normalised")
    p.add_argument("--reward", choices=REWARDS, help="delta: score(edit) − score(parent); post: score(edit)")
    p.add_argument("--task-model", choices=TASK_MODEL_MODES, dest="task_model",
                   help="self: the evolver's base with the adapter off; model: the [model] backend")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of NAME")
    p.add_argument("--tiny", action="store_true", help="a tiny random model (pipeline check; rewards mean nothing)")
    p.set_defaults(func=cmd_train, evolver=None)
