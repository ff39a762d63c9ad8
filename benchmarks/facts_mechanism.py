"""How often a child's facts break answers the seed got right (benchmarks/README.md, "Facts shown only with the
questions they name"). Read-only on `lse bench` output directories:

    python benchmarks/facts_mechanism.py bench-protocol-spider bench-protocol-bird [--rule ucb]

Over every child node of every run and the dev problems both it and the seed were scored on: answers that went
right → wrong and wrong → right, and how many of the right → wrong answers use a table or column that a fact of the
child names and that neither the seed's answer nor the gold query used."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
from pathlib import Path

import yaml

from lse_engine.tasks.sql_facts import split_facts
from lse_engine.tasks.sql_schema import Schema
from lse_engine.tasks.sqlite_exec import ReadOnlyDatabase

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def names_of(db: Path) -> set[str]:
    """Every table and column name of the database, lower-cased (read-only)."""
    return Schema.read(ReadOnlyDatabase(db)).names()


def used(sql: str | None, names: set[str]) -> set[str]:
    """The database's names a query uses (bare or quoted), lower-cased."""
    if not sql:
        return set()
    words = {w.lower() for w in _WORD.findall(sql)} | {q.lower() for q in re.findall(r'["`\[]([^"`\]]+)["`\]]', sql)}
    return words & names


def named_by_facts(instructions: str, names: set[str]) -> set[str]:
    text = "\n".join(split_facts(instructions)[1]).lower()
    return {n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text)}


def count(out_dir: Path, rule: str | None) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{out_dir}/.lse/lse.db?mode=ro", uri=True)
    outcomes = {key: json.loads(data) for key, data in conn.execute("SELECT key, data FROM outcomes")}
    tally = dict(children=0, pairs=0, right_to_wrong=0, of_them_fact_named=0, wrong_to_right=0)
    runs = conn.execute("SELECT id, suite FROM runs" + (" WHERE rule = ?" if rule else ""),
                        (rule,) if rule else ()).fetchall()
    for run_id, suite_path in runs:
        suite_file = Path(suite_path)
        suite = yaml.safe_load(suite_file.read_text())
        names = names_of((suite_file.parent / suite["database"]).resolve())
        gold = {p["id"]: p["gold"] for p in suite["problems"]}

        def dev(node: int, run_id: str = run_id) -> dict[str, dict]:
            row = conn.execute("SELECT problem_ids, keys FROM batches WHERE run_id = ? AND node_id = ? "
                               "AND split = 'dev'", (run_id, node)).fetchone()
            if not row:
                return {}
            pairs = zip(json.loads(row[0]), json.loads(row[1]), strict=True)
            return {p: outcomes[k] for p, k in pairs if k in outcomes}

        seed = dev(0)
        for node, instructions in conn.execute("SELECT id, instructions FROM nodes WHERE run_id = ? AND id > 0 "
                                               "AND dev_score IS NOT NULL", (run_id,)).fetchall():
            tally["children"] += 1
            facts = named_by_facts(instructions, names)
            for pid, child in dev(node).items():
                before = seed.get(pid)
                if before is None:
                    continue
                tally["pairs"] += 1
                if before["correct"] and not child["correct"]:
                    tally["right_to_wrong"] += 1
                    extra = used(child.get("answer"), names) & facts
                    extra -= used(before.get("answer"), names) | used(gold[pid], names)
                    tally["of_them_fact_named"] += bool(extra)
                elif child["correct"] and not before["correct"]:
                    tally["wrong_to_right"] += 1
    conn.close()
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dirs", nargs="+", type=Path)
    parser.add_argument("--rule", help="only runs of this rule")
    args = parser.parse_args()
    for out_dir in args.out_dirs:
        print(out_dir, count(out_dir, args.rule))


if __name__ == "__main__":
    main()
