"""BIRD (Li et al., 2023): `dev.json` + `dev_databases/<db_id>/<db_id>.sqlite` -> one suite per database."""

from __future__ import annotations

import os
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


def import_bird(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], split: str = "dev",
                dbs: list[str] | None = None) -> ImportResult:
    """Write `<db_id>.suite.yaml` + `<db_id>.prompt.md` per database of BIRD's `split` (dev or train).

    Questions keep BIRD's `evidence` and `difficulty`; ids are `bird-<question_id>`. Databases are
    referenced by a path relative to the suite, never copied. `data_dir` may also be the JSON file.
    """
    if split not in ("dev", "train"):
        raise ValueError(f"BIRD split must be dev or train, not {split!r}")
    questions = find_file(data_dir, [f"{split}.json"], f"BIRD {split}")
    db_root = find_dir(questions.parent, [f"{split}_databases", "databases", "database"])
    by_db: dict[str, list[dict[str, Any]]] = {}
    for index, row in enumerate(load_json_list(questions)):
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
    return write_sql_suites(by_db, db_root, out_dir, dbs, f"BIRD {split} ({questions.name})")
