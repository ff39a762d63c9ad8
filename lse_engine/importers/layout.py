"""Finding a benchmark's question file and database folder in the layouts users have.

A dataset folder may hold the files itself (`DIR/dev.json` + `DIR/dev_databases/`) or one or two levels
down, as the archives unpack (`DIR/dev_20240627/`, `DIR/train/`, `DIR/minidev/MINIDEV/`, `DIR/spider/`).
Database folders unzipped into themselves (`dev_databases/dev_databases/<db_id>/`) are recognised too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lse_engine.errors import LSEError

_DEPTH = 2  # subfolder levels searched below the given folder


@dataclass(frozen=True)
class Layout:
    """A question file and the folder holding `<db_id>/<db_id>.sqlite`."""

    questions: Path
    db_root: Path


def _folders(root: Path) -> list[Path]:
    """`root` and its subfolders down to `_DEPTH` levels, shallow first; database and hidden folders skipped."""
    levels, frontier = [root], [root]
    for _ in range(_DEPTH):
        nxt = []
        for d in frontier:
            try:
                subs = sorted(p for p in d.iterdir() if p.is_dir())
            except OSError:
                continue
            nxt += [p for p in subs if not p.name.startswith((".", "__")) and not _is_db_folder(p)]
        levels += nxt
        frontier = nxt
    return levels


def _is_db_folder(p: Path) -> bool:
    return p.name.endswith("databases") or p.name in ("database", "test_database")


def db_root_near(questions: Path, names: Sequence[str]) -> Path | None:
    """The first of `names` next to the question file (or inside a same-named folder it was unzipped into)."""
    for name in names:
        d = questions.parent / name
        if d.is_dir():
            inner = d / name
            has_dbs = any(p.is_dir() and any(p.glob("*.sqlite")) for p in d.iterdir())
            return inner if inner.is_dir() and not has_dbs else d
    return None


def find_layout(data: str | os.PathLike[str], json_names: Sequence[str], db_names: Sequence[str],
                what: str) -> Layout:
    """The first question file of `json_names` (in `data`, or up to two folders down) with a database folder
    of `db_names` beside it. `data` may be the question file itself. A clear error naming what was looked for
    when nothing fits."""
    root = Path(data).expanduser()
    looked = f"{' or '.join(json_names)} with {' or '.join(n + '/' for n in db_names)} beside it"
    if root.is_file():
        db = db_root_near(root, db_names)
        if db is None:
            raise LSEError(f"{what}: no {' or '.join(n + '/' for n in db_names)} folder next to {root}"
                           + _zip_hint(root.parent, db_names))
        return Layout(root, db)
    if not root.is_dir():
        raise LSEError(f"{what}: {root} is neither a folder nor a file")
    orphans: list[Path] = []
    for folder in _folders(root):
        for name in json_names:
            questions = folder / name
            if questions.is_file():
                db = db_root_near(questions, db_names)
                if db is not None:
                    return Layout(questions, db)
                orphans.append(questions)
    if orphans:
        first = orphans[0]
        raise LSEError(f"{what}: found {first} but no {' or '.join(n + '/' for n in db_names)} folder next to it"
                       + _zip_hint(first.parent, db_names))
    raise LSEError(f"{what}: looked for {looked} in {root} and its subfolders (two levels); found none")


def find_split_layout(data: str | os.PathLike[str], split: str, files: Mapping[str, Sequence[str]],
                      db_dirs: Mapping[str, Sequence[str]], what: str) -> Layout:
    """`find_layout` for one split of a benchmark; when that split is not there but another one is (a folder with
    BIRD's `train.json` imported as dev), the error says which `--split` to use."""
    try:
        return find_layout(data, files[split], db_dirs[split], f"{what} {split}")
    except LSEError as exc:
        for other in files:
            if other == split or set(files[other]) <= set(files[split]):
                continue
            try:
                found = find_layout(data, files[other], db_dirs[other], f"{what} {other}")
            except LSEError:
                continue
            raise LSEError(f"{exc}. It holds {what} {other} instead ({found.questions}): import it with "
                           f"`--split {other}`") from None
        raise


def _zip_hint(folder: Path, db_names: Sequence[str]) -> str:
    zips = [folder / f"{n}.zip" for n in db_names if (folder / f"{n}.zip").is_file()]
    return f" (unzip {zips[0]} there first)" if zips else ""
