"""`lse eval PROMPT`: accuracy of a prompt on its suite's splits, with a per-problem table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from lse_engine.cli.common import (
    PlainProgress,
    add_model_args,
    console,
    install_sigint,
    overrides_from,
    pct,
    step_line,
)
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressEvent
from lse_engine.workspace import Workspace


def run_eval(ws: Workspace, splits: tuple[str, ...] = ("train", "dev"), quiet: bool = False,
             json_path: str | None = None) -> int:
    """Score the workspace's prompt, print the tables and a summary; the exit code (130 when cancelled)."""
    from lse_engine.runner import evaluate

    cancel = CancelToken()
    install_sigint(cancel)
    if console.is_terminal:
        with console.status("scoring… (the model loads only for outcomes not cached yet)") as status:
            def show(ev: ProgressEvent) -> None:
                status.update(step_line(ev.step or ev.message, ev.step_done, ev.step_total, ev.eta_s))

            report = evaluate(ws, splits, cancel=cancel, progress=show)
    else:  # a log or a file: plain lines as work happens
        report = evaluate(ws, splits, cancel=cancel, progress=PlainProgress())
    for split, rows in report.rows.items():
        table = Table(title=f"{split}: {pct(report.accuracy[split])} ({sum(o.correct for _, o in rows)}/{len(rows)})")
        table.add_column("id", style="bold")
        table.add_column("ok")
        table.add_column("question", max_width=48)
        table.add_column("answer / error", max_width=60)
        for problem, out in rows:
            detail = out.answer or ""
            if not out.correct and out.error_kind:
                detail = f"[red]{out.error_kind}[/]: {out.error or ''}" + (f"\n{out.answer}" if out.answer else "")
            table.add_row(problem.id, "[green]✓[/]" if out.correct else "[red]✗[/]", problem.question, detail)
        if not quiet:
            console.print(table)
    summary = ", ".join(f"{k} {pct(v)}" for k, v in report.accuracy.items())
    console.print(f"[bold]accuracy[/]: {summary or 'nothing scored'}  ·  model calls {report.calls}, "
                  f"cached {report.cached}  ·  run {report.run_id}")
    if report.status == "cancelled":
        console.print(f"[yellow]cancelled[/]: {report.calls} new outcomes were kept in the store; the next "
                      "`lse eval` reuses them")
    if json_path:
        Path(json_path).write_text(json.dumps({"run": report.run_id, "accuracy": report.accuracy,
                                                "calls": report.calls, "cached": report.cached}, indent=2))
    return 0 if report.status == "done" else 130


def cmd_eval(args: argparse.Namespace) -> int:
    ws = Workspace(args.prompt, overrides_from(args))
    try:
        return run_eval(ws, tuple(args.splits.split(",")), args.quiet, args.json)
    finally:
        ws.close()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("eval", help="score a prompt on its suite's train and dev problems")
    p.add_argument("prompt")
    p.add_argument("--splits", default="train,dev")
    p.add_argument("--quiet", action="store_true", help="summary only, no per-problem table")
    p.add_argument("--json", help="also write the summary as JSON to this file")
    add_model_args(p)
    p.set_defaults(func=cmd_eval)
