"""`lse runs` and `lse tree RUN`: what is in a workspace's run store."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from lse_engine.cli.common import console, pct
from lse_engine.errors import LSEError
from lse_engine.store import Store

if TYPE_CHECKING:  # imported lazily where used: keeps `lse --help` fast
    from lse_engine.evolve.tree import Tree


def open_store(path: str | None) -> Store:
    """The run store of the workspace at (or above) `path`; a clear error when there is none yet."""
    from lse_engine.config import load_config

    cfg = load_config(path or Path.cwd())
    if not cfg.store_path.exists():
        raise LSEError(f"no run store at {cfg.store_path} (run `lse eval` or `lse evolve` first)")
    return Store(cfg.store_path)


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store(args.workspace)
    prompt = str(Path(args.prompt).resolve()) if args.prompt else None
    table = Table(title=f"runs in {store.path}", box=box.SIMPLE_HEAD, padding=(0, 1))
    for col in ("run", "kind", "status"):
        table.add_column(col, no_wrap=True)
    table.add_column("prompt", overflow="ellipsis", no_wrap=True, max_width=20)
    for col in ("dev root → winner", "edits", "calls", "started"):
        table.add_column(col, no_wrap=True)
    for r in store.list_runs(prompt, limit=args.limit):
        kind = f"{r['kind']} {r['rule']}" if r.get("rule") and r["kind"] == "evolve" else r["kind"]
        res = r["result"] or {}
        edits = f"{res['edits']} ({res.get('noop_replies', 0)} no-op replies)" if "edits" in res else ""
        table.add_row(r["id"], kind, r["status"], Path(r["prompt"]).name if r["prompt"] else "",
                      f"{pct(r.get('root_dev'))} → {pct(r.get('winner_dev'))}", edits,
                      str((r.get("task_calls") or 0) + (r.get("evolver_calls") or 0)),
                      dt.datetime.fromtimestamp(r["created"]).strftime("%m-%d %H:%M"))
    console.print(table)
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    from lse_engine.evolve.recorder import load_tree
    from lse_engine.report import tree_image, tree_text

    store = open_store(args.workspace)
    run = store.get_run(args.run) if args.run != "latest" else next(iter(store.list_runs(limit=1)), None)
    if run is None:
        raise LSEError(f"no run {args.run!r} in {store.path}")
    tree = load_tree(store, run["id"])
    if args.node is not None:
        return _show_node(store, run["id"], tree, args.node)
    if args.json:
        print(json.dumps({"runId": run["id"], "rule": run.get("rule"), "status": run["status"],
                          "winner": tree.winner().id, "nodes": [n.to_dict() for n in tree.nodes.values()]}, indent=2))
        return 0
    console.print(tree_text(tree, f"run {run['id']} ({run['status']}, rule {run.get('rule') or '-'})"))
    out = Path(args.image or store.path.parent / "trees" / f"{run['id']}.png")
    tree_image(tree, out, f"run {run['id']}")
    console.print(f"image: {out}")
    return 0


def _show_node(store: Store, run_id: str, tree: Tree, node_id: int) -> int:
    """One node: its instructions, scores, and every evolver reply of the round that made it, raw."""
    node = tree.nodes.get(node_id)
    if node is None:
        raise LSEError(f"run {run_id} has no node #{node_id} (it has {', '.join(f'#{i}' for i in tree.nodes)})")
    console.print(f"[bold]#{node.id}[/] ({node.status}) parent {node.parent if node.parent is not None else '—'}, "
                  f"round {node.round}: dev {pct(node.dev_score)}, batch {pct(node.train_score)}")
    console.print(node.instructions or "[dim](no instructions)[/]", markup=False)
    if node.parent is None:
        return 0
    for a in store.get_attempts(run_id, node.round):
        score = f", batch {pct(a['batch_score'])}" if a.get("batch_score") is not None else ""
        console.print(f"\n[bold]attempt {a['attempt'] + 1}[/]: {a['verdict']}"
                      f"{' — ' + a['error'] if a.get('error') else ''}{score}")
        console.print(a["raw"], markup=False, highlight=False)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--node", type=int, help="show one node: its instructions and every evolver reply that made it")
    p.set_defaults(func=cmd_tree)
