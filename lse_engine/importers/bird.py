"""BIRD (Li et al., 2023) -> one suite per database.

Splits: `dev` (`dev.json` + `dev_databases/`), `train` (`train.json` + `train_databases/`) and `mini-dev`
(BIRD Mini-Dev: `mini_dev_sqlite.json` + `dev_databases/`). The files may sit in the given folder or below it
as the archives unpack (`dev_20240627/`, `train/`, `minidev/MINIDEV/`); `dev` falls back to Mini-Dev when a
folder has only that.
"""

from __future__ import annotations

import os
from typing import Any

from lse_engine.errors import LSEError
from lse_engine.importers.layout import find_split_layout
from lse_engine.importers.write import ImportResult, clean_sql, clean_text, load_json_list, write_sql_suites

SPLITS = ("dev", "train", "mini-dev")
_FILES = {"dev": ["dev.json", "mini_dev_sqlite.json"], "train": ["train.json"], "mini-dev": ["mini_dev_sqlite.json"]}
_DB_DIRS = {"dev": ["dev_databases", "databases", "database"], "train": ["train_databases", "databases", "database"],
            "mini-dev": ["dev_databases", "databases", "database"]}


def import_bird(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], split: str = "dev",
                dbs: list[str] | None = None) -> ImportResult:
    """Write `<db_id>.suite.yaml` + `<db_id>.prompt.md` per database of BIRD's `split` (dev, train, mini-dev).

    Questions keep BIRD's `evidence` and `difficulty`; ids are `bird-<question_id>`. Databases are
    referenced by a path relative to the suite, never copied. `data_dir` may also be the JSON file.
    """
    if split not in SPLITS:
        raise LSEError(f"BIRD split must be one of {', '.join(SPLITS)}, not {split!r}")
    layout = find_split_layout(data_dir, split, _FILES, _DB_DIRS, "BIRD")
    by_db: dict[str, list[dict[str, Any]]] = {}
    for index, row in enumerate(load_json_list(layout.questions)):
        db_id, question, gold = row.get("db_id"), row.get("question"), row.get("SQL") or row.get("query")
        if not db_id or not question or not gold:
            continue
        qid = row.get("question_id", index)
        problem: dict[str, Any] = {
            "id": f"bird-{qid}",
            "question": clean_text(question),
            "evidence": clean_text(row.get("evidence") or ""),
            "gold": clean_sql(gold),
        }
        if row.get("difficulty"):
            problem["difficulty"] = str(row["difficulty"])
        by_db.setdefault(str(db_id), []).append(problem)
    name = "BIRD mini-dev" if layout.questions.name.startswith("mini_dev") else f"BIRD {split}"
    return write_sql_suites(by_db, layout.db_root, out_dir, dbs, f"{name} ({layout.questions.name})")
