"""`lse import bird|spider|mmlu-redux DATA`: benchmark data turned into suites and starting prompt files."""

from __future__ import annotations

import argparse

from lse_engine.cli.common import console
from lse_engine.kinds import BENCHMARKS, SOURCE_SPLITS


def cmd_import(args: argparse.Namespace) -> int:
    from lse_engine import importers

    dbs = args.dbs.split(",") if args.dbs else None
    if args.source == "bird":
        res = importers.import_bird(args.data, args.out, split=args.split, dbs=dbs)
    elif args.source == "spider":
        res = importers.import_spider(args.data, args.out, dbs=dbs, split=args.split)
    else:
        res = importers.import_mmlu_redux(args.data, args.out, subjects=dbs)
    console.print(f"wrote {len(res.suites)} suites with {res.problems} problems to {args.out}")
    for name, why in res.skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {why}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import", help="import BIRD, Spider or MMLU-Redux as suites")
    p.add_argument("source", choices=BENCHMARKS)
    p.add_argument("data", help="dataset directory (or file for mmlu-redux)")
    p.add_argument("--out", default="suites")
    p.add_argument("--split", default="dev", choices=SOURCE_SPLITS,
                   help="bird: dev, train or mini-dev; spider: dev, train or test (default: dev)")
    p.add_argument("--dbs", help="comma-separated databases (or subjects)")
    p.set_defaults(func=cmd_import)
