"""`lse`: the engine from the command line. One module per subcommand; `common` holds what they share."""

from __future__ import annotations

import argparse
import sqlite3
import sys

from rich.markup import escape

from lse_engine import __version__
from lse_engine.cli import bench, demo, evolve, imports, models, runs, train
from lse_engine.cli import eval as eval_
from lse_engine.cli.common import console, err_console
from lse_engine.errors import LSEError, environment_failure

__all__ = ["build_parser", "console", "main"]
SUBCOMMANDS = (eval_, evolve, runs, imports, demo, train, bench, models)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lse", description="Prompts that improve themselves from their own failures.")
    ap.add_argument("--version", action="version", version=f"lse {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except LSEError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 2
    except (sqlite3.Error, OSError) as exc:  # a full disk or a read-only folder, mid-run: one line, not a traceback
        message = environment_failure(exc)
        if message is None:
            raise
        err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("[red]aborted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
