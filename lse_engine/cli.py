"""`lse`: the engine from the command line (eval, evolve, runs, tree, import, demo, train, bench)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lse_engine import __version__
from lse_engine.errors import LSEError
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressEvent

console = Console(stderr=False)
err_console = Console(stderr=True)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "tiny", False):
        tiny = {"backend": "transformers", "model": "tiny", "sampling": {"max_tokens": 48}}
        out["model"] = tiny
        out["evolver"] = {**tiny, "sampling": {"max_tokens": 96, "temperature": 0.7}}
    if getattr(args, "model", None):
        out.setdefault("model", {})["model"] = args.model
    if getattr(args, "backend", None):
        out.setdefault("model", {})["backend"] = args.backend
    if getattr(args, "base_url", None):
        out.setdefault("model", {})["base_url"] = args.base_url
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


def _install_sigint(cancel: CancelToken,
                    message: str = "cancelling after the current model call… (Ctrl-C again to abort)") -> None:
    """First Ctrl-C: cooperative cancellation (committed work is kept); the second aborts."""
    def handler(signum, frame):  # noqa: ARG001
        if cancel.cancelled:
            raise KeyboardInterrupt
        err_console.print(f"[yellow]{message}[/]")
        cancel.cancel()

    signal.signal(signal.SIGINT, handler)


# -- eval ---------------------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace, llms: dict[str, Any] | None = None) -> int:
    from lse_engine.runner import evaluate
    from lse_engine.workspace import Workspace

    ws = Workspace(args.prompt, _overrides(args), llms=llms)
    cancel = CancelToken()
    _install_sigint(cancel)
    with console.status("loading model and scoring…"):
        report = evaluate(ws, tuple(args.splits.split(",")), cancel=cancel)
    for split, rows in report.rows.items():
        table = Table(title=f"{split}: {_pct(report.accuracy[split])} ({sum(o.correct for _, o in rows)}/{len(rows)})")
        table.add_column("id", style="bold")
        table.add_column("ok")
        table.add_column("question", max_width=48)
        table.add_column("answer / error", max_width=60)
        for problem, out in rows:
            detail = out.answer or ""
            if not out.correct and out.error_kind:
                detail = f"[red]{out.error_kind}[/]: {out.error or ''}" + (f"\n{out.answer}" if out.answer else "")
            table.add_row(problem.id, "[green]✓[/]" if out.correct else "[red]✗[/]", problem.question, detail)
        if not args.quiet:
            console.print(table)
    summary = ", ".join(f"{k} {_pct(v)}" for k, v in report.accuracy.items())
    console.print(f"[bold]accuracy[/]: {summary}  ·  model calls {report.calls}, cached {report.cached}  ·  run {report.run_id}")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": report.run_id, "accuracy": report.accuracy,
                                               "calls": report.calls, "cached": report.cached}, indent=2))
    ws.close()
    return 0 if report.status == "done" else 130


# -- evolve -------------------------------------------------------------------------------------------
class EvolveView:
    """Rich live view: round, nodes, best dev so far."""

    def __init__(self) -> None:
        self.last: ProgressEvent | None = None
        self.lines: list[str] = []

    def __call__(self, ev: ProgressEvent) -> None:
        self.last = ev
        self.lines = (self.lines + [ev.message])[-8:]

    def __rich__(self) -> Table:
        t = Table.grid(padding=(0, 1))
        ev = self.last
        if ev is None:
            t.add_row("[dim]loading models…[/]")
            return t
        t.add_row(f"[bold]run[/] {ev.run_id}  [bold]round[/] {ev.round}/{ev.rounds}  "
                  f"[bold]nodes[/] {ev.extra.get('nodes', '?')}  [bold]root dev[/] {_pct(ev.root_dev)}  "
                  f"[bold]best dev[/] {_pct(ev.best_dev)}")
        for line in self.lines:
            t.add_row(f"[dim]{line}[/]")
        return t


def cmd_evolve(args: argparse.Namespace, llms: dict[str, Any] | None = None) -> int:
    from lse_engine.report import tree_text
    from lse_engine.runner import apply_winner, evolve
    from lse_engine.workspace import Workspace

    ws = Workspace(args.prompt, _overrides(args), llms=llms)
    cancel = CancelToken()
    _install_sigint(cancel)
    view = EvolveView()
    with Live(view, console=console, refresh_per_second=4, transient=False):
        result = evolve(ws, run_id=args.resume, rounds=args.rounds, cancel=cancel, progress=view)
    console.print(tree_text(result.tree, f"run {result.run_id}"))
    w = result.winner
    console.print(f"[bold]dev[/]: root {_pct(result.root_dev)} → winner #{w.id} {_pct(w.dev_score)}  ({result.status})")
    if result.status == "cancelled":
        console.print(f"resume with: lse evolve {args.prompt} --resume {result.run_id}")
    if args.apply:
        run = ws.store.get_run(result.run_id) or {}
        if w.id == 0:
            console.print("the root is still the best: nothing to apply")
        else:
            apply_winner(ws.prompt, run, w.instructions)
            console.print(f"[green]applied[/] winner #{w.id} to {ws.prompt_path}")
    elif w.id != 0:
        console.print(f"winning instructions (apply with --apply):\n[cyan]{w.instructions}[/]")
    ws.close()
    return 0 if result.status != "cancelled" else 130


# -- runs / tree ---------------------------------------------------------------------------------------
def _store_for(path: str | None):
    from lse_engine.config import load_config
    from lse_engine.store import Store

    cfg = load_config(path or Path.cwd())
    if not cfg.store_path.exists():
        raise LSEError(f"no run store at {cfg.store_path} (run `lse eval` or `lse evolve` first)")
    return Store(cfg.store_path)


def cmd_runs(args: argparse.Namespace) -> int:
    import datetime as dt

    from rich import box

    store = _store_for(args.workspace)
    prompt = str(Path(args.prompt).resolve()) if args.prompt else None
    table = Table(title=f"runs in {store.path}", box=box.SIMPLE_HEAD, padding=(0, 1))
    for col in ("run", "kind", "status"):
        table.add_column(col, no_wrap=True)
    table.add_column("prompt", overflow="ellipsis", no_wrap=True, max_width=20)
    for col in ("dev root → best", "calls", "started"):
        table.add_column(col, no_wrap=True)
    for r in store.list_runs(prompt, limit=args.limit):
        kind = f"{r['kind']} {r['rule']}" if r.get("rule") and r["kind"] == "evolve" else r["kind"]
        table.add_row(r["id"], kind, r["status"], Path(r["prompt"]).name if r["prompt"] else "",
                      f"{_pct(r.get('root_dev'))} → {_pct(r.get('best_dev'))}",
                      str((r.get("task_calls") or 0) + (r.get("evolver_calls") or 0)),
                      dt.datetime.fromtimestamp(r["created"]).strftime("%m-%d %H:%M"))
    console.print(table)
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    from lse_engine.evolve.search import load_tree
    from lse_engine.report import tree_image, tree_text

    store = _store_for(args.workspace)
    run = store.get_run(args.run) if args.run != "latest" else next(iter(store.list_runs(limit=1)), None)
    if run is None:
        raise LSEError(f"no run {args.run!r} in {store.path}")
    tree = load_tree(store, run["id"])
    if args.json:
        print(json.dumps({"runId": run["id"], "rule": run.get("rule"), "status": run["status"],
                          "winner": tree.winner().id, "nodes": [n.to_dict() for n in tree.nodes.values()]}, indent=2))
        return 0
    console.print(tree_text(tree, f"run {run['id']} ({run['status']}, rule {run.get('rule') or '-'})"))
    out = Path(args.image or store.path.parent / "trees" / f"{run['id']}.png")
    tree_image(tree, out, f"run {run['id']}")
    console.print(f"image: {out}")
    return 0


# -- import -------------------------------------------------------------------------------------------
def cmd_import(args: argparse.Namespace) -> int:
    from lse_engine import importers

    dbs = args.dbs.split(",") if args.dbs else None
    if args.source == "bird":
        res = importers.import_bird(args.data, args.out, split=args.split, dbs=dbs)
    elif args.source == "spider":
        res = importers.import_spider(args.data, args.out, dbs=dbs)
    else:
        res = importers.import_mmlu_redux(args.data, args.out, subjects=dbs)
    console.print(f"wrote {len(res.suites)} suites with {res.problems} problems to {args.out}")
    for name, why in res.skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {why}")
    return 0


# -- demo ---------------------------------------------------------------------------------------------
def demo_workspace(target: str | None) -> Path:
    """The demo workspace: the packaged `examples/shop` when writable, else a copy in `target` or ./lse-demo."""
    import shutil

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


def cmd_demo(args: argparse.Namespace) -> int:
    dest = demo_workspace(args.dir)
    prompt = str(dest / "shop.prompt.md")
    console.print(f"[bold]demo workspace[/]: {dest}")
    if args.tiny:
        console.print("[yellow]--tiny: a tiny random model built on the fly; its scores mean nothing, it only "
                      "shows the pipeline working.[/]")
    else:
        console.print(
            "[yellow]The demo runs SmolLM2-135M-Instruct on the CPU: a real model, but a tiny one that is weak at "
            "SQL, so expect scores near zero and small or no gains. It shows the method end to end: execution "
            "scoring, feedback from failures, a tree of prompt versions, the winner picked on dev.[/]\n"
            f"For real gains set [bold]\\[model][/] in {dest / 'lse.toml'} to a local model directory "
            '([cyan]model = "/path/to/model"[/]) or an OpenAI-compatible server ([cyan]backend = "openai"[/], '
            '[cyan]base_url = "http://127.0.0.1:8000/v1"[/]: vLLM, llama.cpp, Ollama).')
    ns = argparse.Namespace(prompt=prompt, splits="train,dev", quiet=args.quiet, json=None, tiny=args.tiny,
                            model=None, backend=None, base_url=None, evolver=None)
    from lse_engine.config import load_config
    from lse_engine.workspace import build_llm

    cfg = load_config(prompt, _overrides(ns))
    with console.status("loading the model…"):
        shared = {"model": build_llm(cfg.model, cfg.root)}  # loaded once for eval and evolve
    try:
        rc = cmd_eval(ns, shared)
        if rc or args.eval_only:
            return rc
        ns = argparse.Namespace(**vars(ns), resume=None, rounds=args.rounds, apply=False, rule=None, seed=None,
                                batch_size=None, dev_size=None, max_model_calls=None, gate=False)
        return cmd_evolve(ns, shared)
    finally:
        shared["model"].close()


# -- parser -------------------------------------------------------------------------------------------
def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="task model (HF id, local path, 'smollm2' or 'tiny'); overrides lse.toml")
    p.add_argument("--backend", choices=["auto", "transformers", "openai", "vllm"])
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (with --backend openai)")
    p.add_argument("--tiny", action="store_true", help="use a tiny random model (pipeline check; scores mean nothing)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lse", description="Prompts that improve themselves from their own failures.")
    ap.add_argument("--version", action="version", version=f"lse {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="score a prompt on its suite's train and dev problems")
    p.add_argument("prompt")
    p.add_argument("--splits", default="train,dev")
    p.add_argument("--quiet", action="store_true", help="summary only, no per-problem table")
    p.add_argument("--json", help="also write the summary as JSON to this file")
    _model_args(p)
    p.set_defaults(func=cmd_eval, evolver=None)

    p = sub.add_parser("evolve", help="evolve a prompt with tree-guided search")
    p.add_argument("prompt")
    p.add_argument("--rounds", type=int)
    p.add_argument("--rule", choices=["ucb", "best", "chain", "pareto", "textgrad"])
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--dev-size", type=int)
    p.add_argument("--max-model-calls", type=int)
    p.add_argument("--gate", action="store_true", help="acceptance gate: skip dev for children no better on the batch")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    p.add_argument("--apply", action="store_true", help="write the winner into the prompt file")
    p.add_argument("--evolver", help="a trained evolver (name under .lse/evolvers/) or adapter path")
    _model_args(p)
    p.set_defaults(func=cmd_evolve)

    p = sub.add_parser("runs", help="list runs")
    p.add_argument("prompt", nargs="?")
    p.add_argument("--workspace")
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("tree", help="print a run's tree and write an image")
    p.add_argument("run", nargs="?", default="latest")
    p.add_argument("--workspace")
    p.add_argument("--image", help="image path (.png or .svg)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tree)

    p = sub.add_parser("import", help="import BIRD, Spider or MMLU-Redux as suites")
    p.add_argument("source", choices=["bird", "spider", "mmlu-redux"])
    p.add_argument("data", help="dataset directory (or file for mmlu-redux)")
    p.add_argument("--out", default="suites")
    p.add_argument("--split", default="dev", choices=["dev", "train"])
    p.add_argument("--dbs", help="comma-separated databases (or subjects)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("demo", help="evaluate and evolve the bundled demo prompt")
    p.add_argument("--tiny", action="store_true", help="a tiny random model instead of SmolLM2 (fast; meaningless scores)")
    p.add_argument("--dir", help="where to put the demo workspace")
    p.add_argument("--rounds", type=int)
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    from lse_engine import cli_bench, cli_train  # they import this module's helpers

    cli_train.register(sub)
    cli_bench.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except LSEError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        err_console.print("[red]aborted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
