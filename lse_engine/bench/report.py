"""The bench report: a rich table for the terminal, Markdown and JSON files, and a dev-vs-calls plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table

from lse_engine.bench.curves import mean_curve
from lse_engine.bench.protocol import BenchResult
from lse_engine.bench.stats import OVERALL, ROOT, Cell, Comparison, Summary, summarize


def row_label(row: tuple[str, str], result: BenchResult) -> str:
    if row == ROOT:
        return "root prompt"
    evolver, rule = row
    return rule if len(result.evolvers) == 1 else f"{rule} · evolver {evolver}"


def _cell(cell: Cell | None) -> str:
    if cell is None or cell.mean is None:
        return "—"
    if cell.n < 2 or (cell.std or 0.0) == 0.0:
        return f"{cell.mean:.1%}"
    return f"{cell.mean:.1%} ± {100 * (cell.std or 0.0):.1f}"


def _cmp_line(c: Comparison, result: BenchResult) -> str:
    against = "the root prompt" if c.against == ROOT else row_label(c.against, result)
    se = "n/a" if c.stderr is None else f"{100 * c.stderr:.1f}"
    return (f"{row_label(c.row, result)} vs {against}: {100 * c.diff:+.1f} pts (stderr {se}, {c.n} seeds) — "
            f"{c.verdict}")


TITLES = {
    "test": "ours: each winner on the test split the search never saw",
    "dev": "the paper's: the best holdout (dev) score the search reached",
}


def table(result: BenchResult, summary: Summary | None = None, metric: str = "test") -> Table:
    """Accuracy (mean ± std over seeds) per database and the macro-average: on test (ours) or dev (the paper's)."""
    summary = summary or summarize(result, metric)
    t = Table(title=f"lse bench {result.benchmark} — {TITLES[metric]} (mean ± std over {len(result.seeds)} seeds)")
    t.add_column("prompt", style="bold")
    for col in summary.columns:
        t.add_column(col, justify="right", style="bold" if col == OVERALL else None)
    for row in summary.rows:
        t.add_row(row_label(row, result), *(_cell(summary.cells.get((row, c))) for c in summary.columns))
    return t


def comparison_lines(result: BenchResult, summary: Summary | None = None, scope: str = OVERALL) -> list[str]:
    summary = summary or summarize(result)
    return [_cmp_line(c, result) for c in summary.comparisons if c.scope == scope]


def markdown(result: BenchResult, summary: Summary | None = None) -> str:
    summary = summary or summarize(result)
    ev = result.settings.get("evolve", {})
    sp = result.settings.get("split", {})
    lines = [
        f"# lse bench {result.benchmark}", "",
        f"- task model: `{result.task_model}`",
        *(f"- evolver `{k}`: `{v}`" for k, v in result.evolvers.items()),
        f"- protocol: {result.settings.get('protocol', 'ours')}; budget per run: "
        f"{ev.get('max_model_calls') or 'no call limit'} model calls, at most {ev.get('rounds')} rounds; "
        f"feedback batch {ev.get('batch_size')}, dev holdout {ev.get('dev_size')}; "
        f"rules: {', '.join(result.rules)}; seeds: {', '.join(map(str, result.seeds))}",
        f"- split: dev {sp.get('dev')}, test {sp.get('test')}, seed {sp.get('seed')}"
        + (f", {sp.get('limit')} problems per database at most" if sp.get("limit") else ""),
        f"- status: {result.status}", "",
    ]
    for metric, summ in (("test", summary), ("dev", summarize(result, "dev"))):
        lines += [f"## {TITLES[metric][0].upper() + TITLES[metric][1:]} (mean ± std over {len(result.seeds)} seeds; "
                  "overall = macro-average over databases)", "",
                  "| prompt | " + " | ".join(summ.columns) + " |", "|---" * (len(summ.columns) + 1) + "|"]
        for row in summ.rows:
            cells = [_cell(summ.cells.get((row, c))) for c in summ.columns]
            lines.append(f"| {row_label(row, result)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Paired comparisons on test (over seeds; within noise when |Δ| < 2·stderr)", ""]
    for scope in summary.columns[::-1]:
        found = comparison_lines(result, summary, scope)
        if found:
            lines += [f"**{scope}**", "", *(f"- {x}" for x in found), ""]
    lines += gain_lines(result)
    lines += ["## Runs", "", "| database | evolver | rule | seed | run | status | rounds | calls | root dev | "
              "winner | winner dev | winner test | raced | no answer | wall | peak RSS |", "|---" * 16 + "|"]
    for s in result.suites:
        for r in s.runs:
            rss = "—" if r.peak_rss_mb is None else f"{r.peak_rss_mb / 1024:.1f} GB"
            wall = "—" if not r.wall_s else f"{r.wall_s / 60:.1f} min"
            lines.append(f"| {s.name} | {r.evolver} | {r.rule} | {r.seed} | `{r.run_id}` | {r.status} | {r.rounds} | "
                         f"{r.calls} | {_pct(r.root_dev)} | #{r.winner} | {_pct(r.winner_dev)} | "
                         f"{_pct(r.winner_test)} | {r.raced} | {_pct(r.no_answer)} | {wall} | {rss} |")
    if result.skipped:
        lines += ["", "## Skipped", "", *(f"- {k}: {v}" for k, v in result.skipped.items())]
    return "\n".join(lines) + "\n"


def gain_lines(result: BenchResult) -> list[str]:
    """Seed vs winner on test, per run (winner − seed over the test problems, paired, with a 95 % bootstrap
    interval) and per (evolver, rule) over runs; the runs whose winner lost beyond its interval are counted."""
    runs = [(s, r) for s in result.suites for r in s.runs if r.test_gain is not None]
    if not runs:
        return []
    lines = ["## Seed vs winner on test (winner − seed, paired over the test problems; 95 % bootstrap intervals)", "",
             "| database | evolver | rule | seed | seed test | winner test | gain [95 % interval] | why | "
             "best dev edit: test, gain |",
             "|---" * 9 + "|"]
    for s, r in runs:
        same = r.best_test is None or r.best_gain == r.test_gain
        best = ("the winner" if r.winner else "the seed") if same else f"{_pct(r.best_test)}, {_interval(r.best_gain)}"
        lines.append(f"| {s.name} | {r.evolver} | {r.rule} | {r.seed} | {_pct(s.root_test)} | {_pct(r.winner_test)} | "
                     f"{_interval(r.test_gain)} | {r.winner_reason} | {best} |")
    lines.append("")
    for key in sorted({(r.evolver, r.rule) for _, r in runs}):
        gains = [r.test_gain[0] for _, r in runs if (r.evolver, r.rule) == key and r.test_gain]
        worse = sum(1 for _, r in runs if (r.evolver, r.rule) == key and r.test_gain and r.test_gain[2] < 0)
        lines.append(f"- {row_label(key, result)}: mean test gain {_interval(mean_interval(gains), ' pts')} over "
                     f"{len(gains)} runs (95 % bootstrap over runs); winners that lost to their seed beyond the "
                     f"interval: {worse}")
        ungated = [r.best_gain[0] for _, r in runs if (r.evolver, r.rule) == key and r.best_gain]
        if ungated and ungated != gains:
            lines.append(f"  - the best dev edit applied without the noise gate (`winner_test = \"none\"`, the paper's "
                         f"report): {_interval(mean_interval(ungated), ' pts')} over {len(ungated)} runs")
    return [*lines, ""]


def _interval(gain: tuple[float, float, float] | None, unit: str = "") -> str:
    """A gain and its interval, in points: "+2.6 [-10.5, +15.8]" (`unit` after the gain: " pts")."""
    mean, lo, hi = gain or (0.0, 0.0, 0.0)
    return f"{100 * mean:+.1f}{unit} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def mean_interval(values: list[float], resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95 % percentile bootstrap interval of `values` (seeded)."""
    import random

    if not values:
        return 0.0, 0.0, 0.0
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(resamples))
    return sum(values) / len(values), means[int(0.025 * resamples)], means[min(resamples - 1, int(0.975 * resamples))]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def to_json(result: BenchResult, summary: Summary | None = None) -> dict[str, Any]:
    summary = summary or summarize(result)
    data = result.to_dict()
    data["summary"] = {
        "columns": summary.columns,
        "rows": [
            {"prompt": row_label(row, result), "evolver": row[0] or None, "rule": row[1],
             "cells": {c: {"mean": cell.mean, "std": cell.std, "n": cell.n, "per_seed": cell.values}
                       for c in summary.columns if (cell := summary.cells.get((row, c))) is not None}}
            for row in summary.rows
        ],
        "comparisons": [
            {"scope": c.scope, "prompt": row_label(c.row, result), "against": row_label(c.against, result),
             "diff": c.diff, "stderr": c.stderr, "n": c.n, "verdict": c.verdict}
            for c in summary.comparisons
        ],
    }
    return data


def plot(result: BenchResult, path: Path) -> Path:
    """Best dev score against model calls, one line per (evolver, rule) averaged over seeds; a panel per database."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = result.suites or []
    n = max(1, len(suites))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, s in zip(axes.flat, suites, strict=False):
        for evolver in result.evolvers:
            for rule in result.rules:
                curves = [r.curve for r in s.runs if r.evolver == evolver and r.rule == rule]
                xs, ys = mean_curve(curves)
                if xs:
                    label = rule if len(result.evolvers) == 1 else f"{rule} ({evolver})"
                    ax.step(xs, ys, where="post", label=label)
        ax.set_title(s.name)
        ax.set_xlabel("model calls")
        ax.set_ylabel("best dev score")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(suites):]:
        ax.axis("off")
    fig.suptitle(f"lse bench {result.benchmark}: dev score vs model calls (mean over {len(result.seeds)} seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(result: BenchResult, out: Path) -> dict[str, Path]:
    """Write `bench.md`, `bench.json` and `bench.png` under `out`; returns their paths."""
    summary = summarize(result)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "bench.md", "json": out / "bench.json", "plot": out / "bench.png"}
    paths["markdown"].write_text(markdown(result, summary), encoding="utf-8")
    paths["json"].write_text(json.dumps(to_json(result, summary), indent=2, default=str), encoding="utf-8")
    plot(result, paths["plot"])
    return paths
