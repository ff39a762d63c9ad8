"""Hostile input held: the adversarial corpus (tests/adversarial/) run through the engine, one table per surface.

SQL: every attack kind as predicted SQL (`SQLiteTask.score`), as gold SQL and through the editor's gold check
(`GoldChecker`), under one deadline. Files: every hostile suite, prompt, settings file and database through the
parse API and the CLI (`lse eval`). Each run happens in a child process of its own; an attack is *held* when it
ends in its expected verdict within the deadline + 0.5 s, peak memory grows by at most 200 MB, and no file
changes or appears. Prints, per family: attacks, held, time p95, time max, max RSS growth.
Target: every attack held.

    python benchmarks/bench_adversarial.py [--quick] [--strict] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.adversarial import file_corpus, harness, sql_corpus  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def table(title: str, results: list[harness.Result], family_of: dict[str, str]) -> list[dict]:
    groups: dict[tuple[str, str], list[harness.Result]] = defaultdict(list)
    for r in results:
        groups[(family_of.get(r.name, "?"), r.path)].append(r)
        groups[("all", r.path)].append(r)
    print(f"\n{title}")
    print(f"  {'family':<10} {'path':<10} {'attacks':>7} {'held':>6} {'p95 s':>7} {'max s':>7} {'max RSS MB':>11}")
    rows = []
    for (family, path), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] == "all", kv[0])):
        seconds = [r.seconds for r in rs]
        row = {"family": family, "path": path, "attacks": len(rs), "held": sum(r.allowed for r in rs),
               "p95_s": p95(seconds), "max_s": max(seconds), "max_rss_mb": max(r.rss_mb for r in rs)}
        rows.append(row)
        print(f"  {family:<10} {path:<10} {row['attacks']:>7} {row['held']:>6} {row['p95_s']:>7.2f} "
              f"{row['max_s']:>7.2f} {row['max_rss_mb']:>11.0f}")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one attack of each kind (a few seconds)")
    ap.add_argument("--strict", action="store_true", help="exit 1 unless every attack is held")
    ap.add_argument("--timeout", type=float, default=1.0, help="the SQL deadline, predicted and gold (s)")
    args = ap.parse_args()
    flags = ["--quick"] if args.quick else []
    out: dict = {"timeout_s": args.timeout}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sql, sql_rc = harness.run_child("sql", Path(tmp) / "sql", "--timeout", str(args.timeout), *flags)
        files, files_rc = harness.run_child("files", Path(tmp) / "files", *flags)
    families = {a.name: a.family for a in [*sql_corpus.CORPUS, *sql_corpus.ANSWERS]}
    print(f"adversarial corpus: {len(set(families))} SQL attack kinds, {len(file_corpus.CORPUS)} file attack kinds; "
          f"SQL deadline {args.timeout:g} s (+{harness.SLACK_S:g} s allowed), "
          f"RSS growth ≤ {harness.RSS_LIMIT_MB:.0f} MB")
    out["sql"] = table(f"SQL (the scoring process {'survived' if sql_rc == 0 else 'DIED'})", sql, families)
    out["files"] = table(f"files (the process {'survived' if files_rc == 0 else 'DIED'})", files,
                         {a.name: a.family for a in file_corpus.CORPUS})
    failed = harness.failures(sql + files)
    for line in failed[:20]:
        print(f"  NOT HELD: {line}")
    held = sum(r.allowed for r in sql + files)
    total = len(sql) + len(files)
    ok = not failed and sql_rc == 0 and files_rc == 0
    print(f"\n{held}/{total} attack runs held in {time.perf_counter() - start:.0f} s "
          f"(target: all): {'PASS' if ok else 'FAIL'}")
    out.update(held=held, total=total, ok=ok)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_adversarial.json").write_text(json.dumps(out, indent=2))
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
