"""Turn a benchmark's public files into bench suites: import, then fix the split (train/dev/test) and size.

The importers write one suite per database (or subject) under `<out>/imported/`; the bench writes its own
copy under `<out>/suites/` with `split: {dev, test, seed}` from the bench settings (per-problem splits are
dropped so every database is split the same way) and, with a limit, a seeded subset of the problems. A
prompt file per suite (`<out>/prompts/<name>.prompt.md`) holds the root instructions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lse_engine.errors import LSEError
from lse_engine.files.prompt_file import write_new_prompt
from lse_engine.kinds import BENCHMARKS

DEFAULT_INSTRUCTIONS = {
    "text-to-sql": "Write one SQLite query that answers the question. Use only tables and columns from the "
    "schema. Return only the SQL inside <answer>...</answer>.",
    "multiple-choice": "Think step by step, then give the letter of the correct option inside "
    "<answer>...</answer>.",
}


@dataclass
class SplitSpec:
    """How every bench suite is split, and how many of its problems are kept (0 = all)."""

    dev: float = 0.3
    test: float = 0.4
    seed: int = 0
    limit: int = 0


@dataclass
class PreparedSuites:
    suites: list[Path]
    skipped: dict[str, str] = field(default_factory=dict)


def _suite_paths(found: Any) -> list[Path]:
    values: Iterable[Any] = found.values() if isinstance(found, dict) else found
    return [Path(v) for v in values]


def run_importer(benchmark: str, data: Path, dest: Path, names: Sequence[str] | None,
                 source_split: str = "dev") -> tuple[list[Path], dict[str, str]]:
    """Run the benchmark's importer into `dest`; returns the suite files and what it skipped (name → why)."""
    from lse_engine import importers

    names = list(names) if names else None
    try:
        if benchmark == "bird":
            res = importers.import_bird(data, dest, split=source_split, dbs=names)
        elif benchmark == "spider":
            res = importers.import_spider(data, dest, dbs=names, split=source_split)
        elif benchmark == "mmlu-redux":
            res = importers.import_mmlu_redux(data, dest, subjects=names)
        else:
            raise LSEError(f"unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    except ValueError as exc:
        raise LSEError(str(exc)) from exc
    return sorted(_suite_paths(res.suites)), dict(res.skipped or {})


def root_instructions(imported: Path, kind: str) -> str:
    """The importer's starting prompt for a suite (`<name>.prompt.md` beside it), else a default per task kind."""
    from lse_engine.files import parse_prompt

    prompt = imported.parent / f"{suite_name(imported)}.prompt.md"
    if prompt.is_file():
        found = parse_prompt(prompt.read_text(encoding="utf-8"), prompt)[0].instructions.strip()
        if found:
            return found
    return DEFAULT_INSTRUCTIONS[kind]


def suite_name(path: Path) -> str:
    name = path.name
    for suffix in (".suite.yaml", ".suite.yml", ".suite.json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(data, dict):
        raise LSEError(f"{path}: not a suite mapping")
    return data


def _rank(seed: int, pid: Any) -> str:
    return hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest()


def rewrite_suite(src: Path, dest: Path, split: SplitSpec) -> Path:
    """Write `src` as `dest` with the bench split, a relocated database path and an optional seeded subset."""
    data = _read(src)
    problems = [dict(p) for p in data.get("problems") or [] if isinstance(p, dict)]
    for p in problems:
        p.pop("split", None)
    if split.limit and len(problems) > split.limit:
        keep = {id(p) for p in sorted(problems, key=lambda p: _rank(split.seed, p.get("id")))[: split.limit]}
        problems = [p for p in problems if id(p) in keep]
    data["problems"] = problems
    data["split"] = {"dev": split.dev, "test": split.test, "seed": split.seed}
    if data.get("database"):
        db = (src.parent / os.path.expanduser(str(data["database"]))).resolve()
        data["database"] = os.path.relpath(db, dest.parent)
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)
    if not dest.exists() or dest.read_text(encoding="utf-8") != text:  # keep mtime (and the cache) when unchanged
        dest.write_text(text, encoding="utf-8")
    return dest


def write_prompt(prompts_dir: Path, suite: Path, instructions: str) -> Path:
    """A prompt file pointing at `suite` with the root instructions; rewritten only when it changes."""
    path = prompts_dir / f"{suite_name(suite)}.prompt.md"
    write_new_prompt(path, suite, instructions, overwrite=True)
    return path


def prepare(benchmark: str, data: Path, out: Path, names: Sequence[str] | None, split: SplitSpec,
            source_split: str = "dev") -> PreparedSuites:
    """Import the benchmark and write the bench suites; the result lists them in name order."""
    if not data.exists():
        raise LSEError(f"no {benchmark} data at {data}")
    imported, skipped = run_importer(benchmark, data, out / "imported", names, source_split)
    if not imported:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no problems found"
        raise LSEError(f"nothing to bench: the {benchmark} importer found no usable suite in {data} ({why})")
    suites = [rewrite_suite(p, out / "suites" / f"{suite_name(p)}.suite.yaml", split) for p in imported]
    return PreparedSuites(suites, skipped)
