"""Shared helpers for importers: the result type, text clean-up, and writing suites and prompt files."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lse_engine.errors import FileFormatError
from lse_engine.files.prompt_file import write_new_prompt
from lse_engine.files.suite_file import write_suite

SQL_INSTRUCTIONS = (
    "Write one SQLite query that answers the question, using only the tables and columns in the schema.\n"
    "Put the query inside <answer></answer> tags."
)
MC_INSTRUCTIONS = (
    "Think about the question, then choose the single best option.\n"
    "Put the letter of your answer inside <answer></answer> tags, e.g. <answer>B</answer>."
)
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class ImportResult:
    """What an import wrote: suite paths, what it skipped and why, and how many problems it wrote."""

    suites: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    problems: int = 0
    rows_skipped: int = 0  # single rows left out (e.g. an answer that cannot be read)


def _tidy(s: str) -> str:
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    if " \n" in s or "\t\n" in s:
        s = "\n".join(line.rstrip() for line in s.split("\n"))
    return s.strip()


def clean_text(text: Any) -> str:
    """Normalise newlines, drop trailing spaces on lines and blank edges (so YAML can use literal blocks).

    Also drops stray byte-order marks and turns U+0085 (a Windows-1252 ellipsis decoded as Latin-1) into "…".
    """
    return _tidy(str(text).replace("\ufeff", "").replace("\x85", "…"))


def clean_sql(sql: Any) -> str:
    """Normalise newlines and line ends, turn leading tabs into spaces, drop one trailing semicolon."""
    s = _tidy(str(sql))
    if "\t" in s:
        s = _LEADING_TABS.sub(lambda m: "    " * len(m.group(0)), s)
    if s.endswith(";"):
        s = s[:-1].rstrip()
    return s


def safe_name(name: str) -> str:
    """A file-name-safe version of a database id or subject."""
    return _SAFE_NAME.sub("_", name).strip("._") or "suite"


def relative_path(target: Path, start_dir: Path) -> str:
    """`target` relative to `start_dir` with forward slashes; absolute when no relative path exists."""
    try:
        return Path(os.path.relpath(target.resolve(), start_dir.resolve())).as_posix()
    except ValueError:  # different drives on Windows
        return target.resolve().as_posix()


def write_prompt(path: Path, suite_file: Path, instructions: str) -> bool:
    """Write a starting prompt file for `suite_file`; never overwrite one (it may hold evolved work)."""
    return write_new_prompt(path, suite_file, instructions)


def find_sqlite(db_root: Path, db_id: str) -> Path | None:
    """`<db_root>/<db_id>/<db_id>.sqlite` (the BIRD and Spider layout), else the only `*.sqlite` there."""
    folder = db_root / db_id
    exact = folder / f"{db_id}.sqlite"
    if exact.is_file():
        return exact
    found = sorted(folder.glob("*.sqlite")) if folder.is_dir() else []
    return found[0] if len(found) == 1 else None


def write_sql_suites(by_db: dict[str, list[dict[str, Any]]], db_root: Path, out_dir: str | os.PathLike[str],
                     dbs: list[str] | None, source: str) -> ImportResult:
    """One text-to-sql suite (and a starting prompt) per database; skip databases whose file is missing."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ImportResult()
    wanted = list(dict.fromkeys(dbs)) if dbs else sorted(by_db)
    for db_id in wanted:
        problems = by_db.get(db_id)
        if not problems:
            result.skipped[db_id] = f"no questions for this database in {source}"
            continue
        sqlite = find_sqlite(db_root, db_id)
        if sqlite is None:
            result.skipped[db_id] = (f"database file not found: {db_root / db_id / (db_id + '.sqlite')} "
                                     f"({len(problems)} questions skipped)")
            continue
        name = safe_name(db_id)
        suite_path = out / f"{name}.suite.yaml"
        comment = f"Imported from {source}: database {db_id}, {len(problems)} questions."
        write_suite(suite_path, "text-to-sql", problems, relative_path(sqlite, out), comment=comment)
        write_prompt(out / f"{name}.prompt.md", suite_path, SQL_INSTRUCTIONS)
        result.suites.append(suite_path)
        result.problems += len(problems)
    return result


def load_json_list(path: Path) -> list[dict[str, Any]]:
    """A JSON file holding a list of objects (as BIRD and Spider ship their questions)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise FileFormatError(str(path), f"invalid JSON: {exc.msg}", exc.lineno, exc.colno, code="json") from exc
    if not isinstance(data, list):
        raise FileFormatError(str(path), "expected a JSON list of questions", code="type")
    return [d for d in data if isinstance(d, dict)]
