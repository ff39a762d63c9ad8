"""The bench report: a rich table for the terminal, Markdown and JSON files, and a dev-vs-calls plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    lines += ["## Runs", "", "| database | evolver | rule | seed | run | status | rounds | calls | root dev | "
              "winner | winner dev | winner test |", "|---" * 12 + "|"]
    pct = lambda x: "—" if x is None else f"{x:.1%}"  # noqa: E731
    for s in result.suites:
        for r in s.runs:
            lines.append(f"| {s.name} | {r.evolver} | {r.rule} | {r.seed} | `{r.run_id}` | {r.status} | {r.rounds} | "
                         f"{r.calls} | {pct(r.root_dev)} | #{r.winner} | {pct(r.winner_dev)} | {pct(r.winner_test)} |")
    if result.skipped:
        lines += ["", "## Skipped", "", *(f"- {k}: {v}" for k, v in result.skipped.items())]
    return "\n".join(lines) + "\n"


def to_json(result: BenchResult, summary: Summary | None = None) -> dict:
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
    for ax, s in zip(axes.flat, suites):
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
