"""Spider (Yu et al., 2018): `dev.json` + `database/<db_id>/<db_id>.sqlite` -> one suite per database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lse_engine.importers.write import (
    ImportResult,
    clean_sql,
    clean_text,
    find_dir,
    find_file,
    load_json_list,
    write_sql_suites,
)

_FILES = {"dev": ["dev.json"], "train": ["train_spider.json", "train_others.json"], "test": ["test.json"]}


def import_spider(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], dbs: list[str] | None = None,
                  split: str = "dev") -> ImportResult:
    """Write `<db_id>.suite.yaml` + `<db_id>.prompt.md` per database of Spider's `split`.

    Ids are `spider-<index>` (position in the question file(s)). Databases whose SQLite file is
    missing are skipped and reported in `ImportResult.skipped`. `data_dir` may also be the JSON file.
    """
    if split not in _FILES:
        raise ValueError(f"Spider split must be one of {', '.join(_FILES)}, not {split!r}")
    first = find_file(data_dir, _FILES[split], f"Spider {split}")
    files = [first] if Path(data_dir).is_file() else [first.parent / n for n in _FILES[split]
                                                         if (first.parent / n).is_file()]
    db_root = find_dir(first.parent, ["test_database", "database"] if split == "test" else ["database"])
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
    return write_sql_suites(by_db, db_root, out_dir, dbs, source)
