"""Test accuracy over seeds (mean ± std) and paired comparisons that say what is within noise.

A comparison pairs two prompts seed by seed (same split, same budget, same seed): the differences d_s give
mean Δ and stderr = std(d) / sqrt(n). |Δ| < 2·stderr is "within noise"; one seed gives no noise estimate.
Overall is the per-database macro-average per seed (the paper's). Cells hold the test accuracy of each winner
(ours: a split the search never saw) or, with `metric="dev"`, the best holdout score the search reached (the
paper's report).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lse_engine.bench.protocol import BenchResult, RunResult, SuiteResult

OVERALL = "overall"
ROOT = ("", "root")


@dataclass
class Cell:
    """Test accuracy of one prompt (root, or a rule's winner) on one database or overall, per seed."""

    values: dict[int, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values.values()) / self.n if self.values else None

    @property
    def std(self) -> float | None:
        return sample_std(list(self.values.values())) if self.values else None


@dataclass
class Comparison:
    scope: str  # a database or "overall"
    row: tuple[str, str]  # (evolver, rule)
    against: tuple[str, str]  # (evolver, rule) or ROOT
    diff: float
    stderr: float | None
    n: int
    verdict: str


@dataclass
class Summary:
    rows: list[tuple[str, str]]  # ROOT first, then (evolver, rule)
    columns: list[str]  # databases, then "overall"
    cells: dict[tuple[tuple[str, str], str], Cell]
    comparisons: list[Comparison]


def sample_std(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def verdict(diff: float, stderr: float | None, n: int) -> str:
    if n < 2 or stderr is None:
        return "one seed: no noise estimate"
    if diff == 0:
        return "no difference"
    if abs(diff) < 2 * stderr:
        return "within noise"
    return "better, beyond noise" if diff > 0 else "worse, beyond noise"


def paired(a: Cell, b: Cell) -> tuple[float, float | None, int] | None:
    """Mean and stderr of a − b over the seeds both have; None when they share none."""
    seeds = sorted(set(a.values) & set(b.values))
    if not seeds:
        return None
    d = [a.values[s] - b.values[s] for s in seeds]
    se = sample_std(d) / math.sqrt(len(d)) if len(d) > 1 else None
    return sum(d) / len(d), se, len(d)


def _value(run: RunResult, metric: str) -> float | None:
    return run.winner_test if metric == "test" else run.best_dev


def _overall(runs: Sequence[RunResult], databases: int, metric: str) -> dict[int, float]:
    """Per seed, the macro-average over databases (the paper's): only seeds with every database scored."""
    by_seed: dict[int, list[float]] = {}
    for r in runs:
        value = _value(r, metric)
        if value is not None:
            by_seed.setdefault(r.seed, []).append(value)
    return {seed: sum(v) / len(v) for seed, v in by_seed.items() if len(v) == databases}


def summarize(result: BenchResult, metric: str = "test") -> Summary:
    """Cells for every (prompt, database) and overall, and the comparisons the report states; `metric` is
    "test" (each winner on the test split) or "dev" (the best holdout score reached: the paper's report)."""
    variants = list(result.evolvers)
    rows: list[tuple[str, str]] = [ROOT] + [(v, r) for v in variants for r in result.rules]
    columns = [s.name for s in result.suites] + [OVERALL]
    cells: dict[tuple[tuple[str, str], str], Cell] = {}
    seeds = list(result.seeds)
    roots = []
    root_of: Callable[[SuiteResult], float | None] = \
        (lambda s: s.root_test) if metric == "test" else (lambda s: s.root_dev)
    for s in result.suites:
        root = root_of(s)
        if root is not None:
            cells[(ROOT, s.name)] = Cell({seed: root for seed in seeds})
            roots.append(root)
        for row in rows[1:]:
            runs = [r for r in s.runs if (r.evolver, r.rule) == row and _value(r, metric) is not None]
            cells[(row, s.name)] = Cell({r.seed: v for r in runs if (v := _value(r, metric)) is not None})
    scored = [s for s in result.suites if root_of(s) is not None]
    if roots and len(roots) == len(result.suites):
        cells[(ROOT, OVERALL)] = Cell({seed: sum(roots) / len(roots) for seed in seeds})
    for row in rows[1:]:
        runs = [r for s in scored for r in s.runs if (r.evolver, r.rule) == row]
        cells[(row, OVERALL)] = Cell(_overall(runs, len(scored), metric))
    return Summary(rows, columns, cells, _comparisons(rows, columns, cells, result))


def _comparisons(rows: list[tuple[str, str]], columns: list[str], cells: dict[tuple[tuple[str, str], str], Cell],
                 result: BenchResult) -> list[Comparison]:
    pairs: list[tuple[tuple[str, str], tuple[str, str]]] = []
    for row in rows[1:]:
        pairs.append((row, ROOT))
        evolver, rule = row
        if rule != "ucb" and "ucb" in result.rules:
            pairs.append((row, (evolver, "ucb")))
        base = next(iter(result.evolvers))
        if evolver != base:
            pairs.append((row, (base, rule)))
    out = []
    for scope in columns:
        for row, against in pairs:
            a, b = cells.get((row, scope)), cells.get((against, scope))
            got = paired(a, b) if a and b else None
            if got is None:
                continue
            diff, se, n = got  # against the root (constant over seeds) the noise is the winners' own
            out.append(Comparison(scope, row, against, diff, se, n, verdict(diff, se, n)))
    return out
