"""`lse evolve PROMPT`: tree-guided evolution with a live view; prints the tree and (with --apply) writes the winner."""

from __future__ import annotations

import argparse
import time

from rich.live import Live
from rich.table import Table

from lse_engine.cli.common import (
    PlainProgress,
    add_model_args,
    console,
    duration,
    install_sigint,
    overrides_from,
    pct,
    step_line,
)
from lse_engine.evolve.result import SearchResult
from lse_engine.kinds import RULES
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressEvent
from lse_engine.workspace import Workspace


class EvolveView:
    """Rich live view: round, nodes, best dev so far, the step under way (counted), the last few messages."""

    def __init__(self) -> None:
        self.last: ProgressEvent | None = None
        self.step = ""
        self.lines: list[str] = []
        self.started = time.monotonic()

    def __call__(self, ev: ProgressEvent) -> None:
        if ev.step:  # a counted step: shown on its own line, not in the log
            self.step = step_line(ev.step, ev.step_done, ev.step_total, ev.eta_s)
            return
        self.last = ev
        self.lines = (self.lines + [ev.message])[-8:]

    def __rich__(self) -> Table:
        t = Table.grid(padding=(0, 1))
        ev = self.last
        if ev is None:
            t.add_row("[dim]loading models…[/]")
            return t
        t.add_row(f"[bold]run[/] {ev.run_id}  [bold]round[/] {ev.round}/{ev.rounds}  "
                  f"[bold]nodes[/] {ev.extra.get('nodes', '?')}  [bold]root dev[/] {pct(ev.root_dev)}  "
                  f"[bold]winner dev[/] {pct(ev.winner_dev)}  [dim]{duration(time.monotonic() - self.started)}[/]")
        for line in self.lines:
            t.add_row(f"[dim]{line}[/]")
        if self.step:
            t.add_row(f"[cyan]{self.step}[/]")
        return t


def outcome_lines(result: SearchResult, calls: tuple[int, int], tokens: int) -> list[str]:
    """What a run did, in words: dev (and test) before and after, the edits, the model calls."""
    w = result.winner
    lines = [f"dev: root {pct(result.root_dev)} → winner #{w.id} {pct(w.dev_score)}"]
    if result.root_test is not None:
        lines[0] += f"  ·  test (never seen by the search): {pct(result.root_test)} → {pct(result.winner_test)}"
    lines.append(f"{result.rounds_done} rounds, {result.replies} evolver replies: {result.edits} real edits, "
                 f"{result.noop_replies} repeated instructions already in the tree, {result.invalid_replies} "
                 "without usable instructions")
    lines.append(f"model calls: {calls[0]} task, {calls[1]} evolver; {tokens:,} tokens")
    if w.id == 0:
        lines.append("the original prompt is still the best on dev: nothing to apply")
    return lines


def run_evolve_quietly(ws: Workspace, resume: str | None = None,
                       rounds: int | None = None) -> tuple[SearchResult, int]:
    """Evolve (or resume) with the live view, then print the tree; (the result, the exit code)."""
    from lse_engine.report import tree_text
    from lse_engine.runner import evolve

    cancel = CancelToken()
    install_sigint(cancel)
    if console.is_terminal:
        view = EvolveView()
        with Live(view, console=console, refresh_per_second=4, transient=False):
            result = evolve(ws, run_id=resume, rounds=rounds, cancel=cancel, progress=view)
    else:  # a log or a file: plain lines as work happens
        result = evolve(ws, run_id=resume, rounds=rounds, cancel=cancel, progress=PlainProgress())
    console.print(tree_text(result.tree, f"run {result.run_id}"))
    return result, 0 if result.status != "cancelled" else 130


def run_evolve(ws: Workspace, resume: str | None = None, rounds: int | None = None, apply: bool = False) -> int:
    """Evolve (or resume) the workspace's prompt, print the tree, what the run did and the winner; the exit code."""
    from lse_engine.runner import apply_winner

    result, rc = run_evolve_quietly(ws, resume, rounds)
    w = result.winner
    run = ws.store.get_run(result.run_id)
    for line in outcome_lines(result, ws.store.model_calls(result.run_id), run["tokens"] if run else 0):
        console.print(line)
    if result.status == "cancelled":
        console.print(f"[yellow]cancelled[/]: every scored node is kept; resume with: "
                      f"lse evolve {ws.prompt_path} --resume {result.run_id}")
    elif result.status == "budget":
        console.print(f"[yellow]stopped[/]: {result.message}")
    if apply and run is not None:
        if w.id != 0:
            apply_winner(ws.prompt, run, w.instructions)
            console.print(f"[green]applied[/] winner #{w.id} to {ws.prompt_path}")
    elif w.id != 0:
        console.print(f"winning instructions (apply with --apply):\n[cyan]{w.instructions}[/]")
    return rc


def cmd_evolve(args: argparse.Namespace) -> int:
    ws = Workspace(args.prompt, overrides_from(args))
    try:
        return run_evolve(ws, args.resume, args.rounds, args.apply)
    finally:
        ws.close()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evolve", help="evolve a prompt with tree-guided search")
    p.add_argument("prompt")
    p.add_argument("--rounds", type=int)
    p.add_argument("--rule", choices=RULES, help="ucb (the paper's tree search), best (greedy), chain (the newest "
                   "node), pareto (GEPA's selection and acceptance rule), textgrad (a TextGrad-style baseline)")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--dev-size", type=int)
    p.add_argument("--max-model-calls", type=int)
    p.add_argument("--gate", action="store_true", help="acceptance gate: skip dev for children no better on the batch")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    p.add_argument("--apply", action="store_true", help="write the winner into the prompt file")
    p.add_argument("--evolver", help="a trained evolver (name under .lse/evolvers/) or adapter path")
    add_model_args(p)
    p.set_defaults(func=cmd_evolve)
