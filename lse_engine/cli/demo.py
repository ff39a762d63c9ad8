"""`lse demo [--tiny]`: evolve the bundled shop prompt with a real model and show what changed on questions the
search never saw.

The demo workspace (`examples/shop`) is a database with conventions the model cannot guess (money in cents,
status and country codes, days as integers …). The seed prompt is the reference's one-liner. The search
scores it on dev, evolves it for a few rounds, and the root and the winner are then scored on the test split.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from rich.table import Table

from lse_engine.cli.common import TINY_NOTE, console, duration, err_console, overrides_from, pct
from lse_engine.cli.eval import run_eval
from lse_engine.cli.evolve import run_evolve_quietly
from lse_engine.evolve.result import SearchResult
from lse_engine.models.resolve import model_identity, resolve_backend
from lse_engine.workspace import Workspace

DEMO_MODEL = "qwen2.5-coder-0.5b"


def demo_workspace(target: str | None) -> Path:
    """The demo workspace: the packaged `examples/shop` when writable, else a copy in `target` or ./lse-demo."""
    import lse_examples.shop as shop

    src = Path(shop.__file__).parent
    if target is None and os.access(src, os.W_OK):
        dest = src
    else:
        dest = Path(target or "lse-demo").resolve()
        if not (dest / "shop.prompt.md").exists():
            shutil.copytree(src, dest, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.sqlite", ".lse"))
    from lse_examples.shop.build_db import build

    if not (dest / "shop.sqlite").exists():
        build(dest / "shop.sqlite")
    return dest


def _fetch_notice(message: str) -> None:
    """Consent by telling: what will be fetched, how big, from where (no prompt, so CI runs unattended)."""
    err_console.print(f"[yellow]{message}[/]")


def _models_line(ws: Workspace) -> str:
    cfg = ws.config
    task = resolve_backend(cfg.model)[1]
    same = model_identity(cfg.model, cfg.root) == model_identity(cfg.evolver, cfg.root)
    evolver = "the same model" if same else resolve_backend(cfg.evolver)[1]
    return (f"task model: {task} ({resolve_backend(cfg.model)[0]}, greedy, up to {cfg.model.sampling.max_tokens} "
            f"tokens) answers the questions; evolver: {evolver} (temperature {cfg.evolver.sampling.temperature}) "
            "rewrites the instructions from the failures it is shown")


def result_table(ws: Workspace, result: SearchResult) -> Table:
    """Seed prompt vs winner: test (never seen by the search) and dev (which picked the winner)."""
    parts = ws.splits()
    n_test, n_dev = len(parts["test"]), min(len(parts["dev"]), ws.config.evolve.dev_size)
    table = Table(title="seed prompt vs the evolved winner")
    for col in ("prompt", f"test ({n_test} questions the search never saw)", f"dev ({n_dev}, picked the winner)"):
        table.add_column(col)

    def count(score: float | None, n: int) -> str:
        return "—" if score is None else f"{round(score * n)}/{n} ({pct(score)})"

    w = result.winner
    table.add_row("seed prompt (#0)", count(result.root_test, n_test), count(result.root_dev, n_dev))
    table.add_row(f"winner (#{w.id})" if w.id else "winner: the seed itself", count(result.winner_test, n_test),
                  count(w.dev_score, n_dev))
    return table


def verdict(result: SearchResult) -> str:
    """One plain sentence on whether the evolved prompt is better where it counts: on unseen questions."""
    w = result.winner
    if w.id == 0:
        why = f" ({result.reason})" if result.reason else ""
        return (f"No edit beat the seed prompt on dev beyond noise{why}, so the seed prompt stays: this run did not "
                "improve it.")
    if result.root_test is None or result.winner_test is None:
        return "The suite has no test split, so the gain on unseen questions is not measured."
    diff = result.winner_test - result.root_test
    if diff > 0:
        return f"The evolved prompt is better on questions the search never saw: {diff * 100:+.0f} points on test."
    if diff == 0:
        return ("The evolved prompt scores the same as the seed on the test split: better on dev, not on unseen "
                "questions.")
    return f"The evolved prompt is worse on the test split ({diff * 100:+.0f} points): its dev gain did not carry over."


def speed_line(ws: Workspace) -> str:
    """How fast the models generated over their last calls: "task model 74 tokens/s · evolver 21 tokens/s"."""
    parts = []
    for role, llm in (("task model", ws.task_llm()), ("evolver", ws.evolver_llm())):
        rate = getattr(llm, "tokens_per_s", None)
        if isinstance(rate, (int, float)):
            parts.append(f"{role} {rate:.0f} tokens/s")
    return " · ".join(dict.fromkeys(parts)) + " (generation, over each model's last calls)" if parts else ""


STRONGER = (
    "What a stronger evolver would change: small untrained evolvers are weak (the paper's premise), and what a run "
    "gains comes from the few edits that write down the database's conventions (prices in cents, status codes, "
    "dates as numbers). A larger model states more of them correctly per round and can rewrite the instructions "
    "instead of appending facts (`request = \"reference\"`, the paper's request): point [evolver] at an "
    "OpenAI-compatible endpoint (`backend = \"openai\"`, `base_url = ...`) or vLLM on a GPU, or train this one on "
    "your own runs with `lse train` and pass it with `--evolver NAME`."
)


def cmd_demo(args: argparse.Namespace) -> int:
    dest = demo_workspace(args.dir)
    prompt = dest / "shop.prompt.md"
    console.print(f"[bold]demo workspace[/]: {dest}")
    overrides = overrides_from(args)
    if args.tiny:
        console.print(f"[yellow]--tiny: {TINY_NOTE}.[/]")
        # a random model writes no SQL, so the facts request would find no mistake to ask about; the reference
        # request calls the evolver every round, which is what a pipeline check needs
        overrides.setdefault("evolve", {}).setdefault("request", "reference")
    else:
        overrides.setdefault("model", {}).update(backend="transformers", model=args.model or DEMO_MODEL)
        if args.evolver_model:
            overrides.setdefault("evolver", {}).update(backend="transformers", model=args.evolver_model)
    ws = Workspace(prompt, overrides)
    try:
        if not args.tiny:  # every model the run needs, fetched (saying what and how big) before any is called
            from lse_engine.models import needed

            needed.fetch(ws.config, _fetch_notice, ("model",) if args.eval_only else ("model", "evolver"))
        if args.eval_only:
            return run_eval(ws, ("dev", "test"), quiet=args.quiet)
        console.print(_models_line(ws))
        parts = ws.splits()
        s = ws.config.evolve
        console.print(f"{len(parts['train'])} train questions (feedback batches of {s.batch_size}), "
                      f"{min(len(parts['dev']), s.dev_size)} dev (selects the winner), {len(parts['test'])} test "
                      f"(scored at the end only); {args.rounds or s.rounds} rounds of {s.rule} tree search.")
        started = time.monotonic()
        result, rc = run_evolve_quietly(ws, rounds=args.rounds)
        wall = time.monotonic() - started
        task_calls, evolver_calls = ws.store.model_calls(result.run_id)
        console.print(result_table(ws, result))
        console.print(f"{result.rounds_done} rounds · {result.replies} evolver replies, {result.edits} real edits "
                      f"({result.noop_replies} repeated instructions already in the tree, {result.invalid_replies} "
                      f"without usable instructions) · model calls: {task_calls} task, "
                      f"{evolver_calls} evolver · {duration(wall)} wall time")
        speeds = speed_line(ws)
        if speeds:
            console.print(speeds)
        console.print(f"[bold]{verdict(result)}[/]")
        if result.winner.id:
            console.print("[bold]the winning instructions[/]:")
            console.print(result.winner.instructions, markup=False, highlight=False)
        if not args.tiny:
            console.print(STRONGER, style="dim", markup=False)
        console.print(f"see every node and reply: lse tree {result.run_id} --workspace {dest}  ·  "
                      f"apply: lse evolve {prompt} --resume {result.run_id} --apply")
        return rc
    finally:
        ws.close()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="evolve the bundled demo prompt with a real model and test the winner")
    p.add_argument("--tiny", action="store_true", help=f"use {TINY_NOTE}")
    p.add_argument("--model", help=f"the task model (a name from `lse models list`; default {DEMO_MODEL})")
    p.add_argument("--evolver-model", help="a different evolver model (default: the task model)")
    p.add_argument("--dir", help="where to put the demo workspace")
    p.add_argument("--rounds", type=int)
    p.add_argument("--seed", type=int, help="the search's seed (the evolver's sampling and the feedback batches)")
    p.add_argument("--eval-only", action="store_true", help="score the seed prompt on dev and test, no evolution")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
