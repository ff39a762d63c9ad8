"""`lse demo [--tiny]`: evaluate and evolve the bundled demo prompt."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from lse_engine.cli.common import TINY_NOTE, console, overrides_from
from lse_engine.cli.eval import run_eval
from lse_engine.cli.evolve import run_evolve
from lse_engine.workspace import Workspace


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


def cmd_demo(args: argparse.Namespace) -> int:
    dest = demo_workspace(args.dir)
    prompt = dest / "shop.prompt.md"
    console.print(f"[bold]demo workspace[/]: {dest}")
    if args.tiny:
        console.print(f"[yellow]--tiny: {TINY_NOTE}.[/]")
    ws = Workspace(prompt, overrides_from(args))
    try:
        rc = run_eval(ws, quiet=args.quiet)
        if rc or args.eval_only:
            return rc
        return run_evolve(ws, rounds=args.rounds)
    finally:
        ws.close()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="evaluate and evolve the bundled demo prompt")
    p.add_argument("--tiny", action="store_true", help=f"use {TINY_NOTE}")
    p.add_argument("--dir", help="where to put the demo workspace")
    p.add_argument("--rounds", type=int)
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
