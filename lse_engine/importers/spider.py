"""Spider (Yu et al., 2018): `dev.json` / `train_spider.json` (+ `train_others.json`) / `test.json` with
`database/<db_id>/<db_id>.sqlite` (`test_database/` for test) -> one suite per database. The files may sit in
the given folder or below it as the archive unpacks (`spider/`, `spider_data/`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lse_engine.errors import LSEError
from lse_engine.importers.layout import find_split_layout
from lse_engine.importers.write import ImportResult, clean_sql, clean_text, load_json_list, write_sql_suites

_FILES = {"dev": ["dev.json"], "train": ["train_spider.json", "train_others.json"], "test": ["test.json"]}
_DB_DIRS = {"dev": ["database"], "train": ["database"], "test": ["test_database", "database"]}


def import_spider(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], dbs: list[str] | None = None,
                  split: str = "dev") -> ImportResult:
    """Write `<db_id>.suite.yaml` + `<db_id>.prompt.md` per database of Spider's `split`.

    Ids are `spider-<index>` (position in the question file(s)). Databases whose SQLite file is
    missing are skipped and reported in `ImportResult.skipped`. `data_dir` may also be the JSON file.
    """
    if split not in _FILES:
        raise LSEError(f"Spider split must be one of {', '.join(_FILES)}, not {split!r}")
    layout = find_split_layout(data_dir, split, _FILES, _DB_DIRS, "Spider")
    first = layout.questions
    files = [first] if Path(data_dir).is_file() else [first.parent / n for n in _FILES[split]
                                                         if (first.parent / n).is_file()]
    by_db: dict[str, list[dict[str, Any]]] = {}
    index = 0
    for path in files:
        for row in load_json_list(path):
            db_id, question, gold = row.get("db_id"), row.get("question"), row.get("query")
            if db_id and question and gold:
                problem = {"id": f"spider-{index}", "question": clean_text(question), "gold": clean_sql(gold)}
                by_db.setdefault(str(db_id), []).append(problem)
            index += 1
    source = f"Spider {split} ({', '.join(p.name for p in files)})"
    return write_sql_suites(by_db, layout.db_root, out_dir, dbs, source)
