"""`lse bench bird|spider|mmlu-redux`: the paper's protocol on a benchmark, with rich progress and a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lse_engine.cli.common import (
    TINY_NOTE,
    PlainProgress,
    add_model_args,
    console,
    duration,
    install_sigint,
    model_overrides,
)
from lse_engine.kinds import BENCH_PROTOCOLS, BENCHMARKS, SOURCE_SPLITS
from lse_engine.llm.base import CancelToken


class RichBenchProgress:
    """Two bars: runs done, and the current run's model calls against its budget."""

    def __init__(self, progress: Progress) -> None:
        self.p = progress
        self.runs = progress.add_task("runs", total=0)
        self.calls = progress.add_task("", total=1, visible=False)

    def start(self, total_runs: int) -> None:
        self.p.update(self.runs, total=total_runs)

    def run(self, label: str, budget: int) -> None:
        self.p.update(self.calls, description=label, total=max(budget, 1), completed=0, visible=True)

    def advance(self, calls: int, message: str) -> None:
        self.p.update(self.calls, completed=calls)

    def finish_run(self, label: str, summary: str) -> None:
        self.p.advance(self.runs)
        self.p.console.print(f"[green]✓[/] {label}: {summary}")


class PlainBenchProgress:
    """The same as plain lines, for a log or a file: each run's start and end at once, what it is doing at most
    every `every_s` seconds (flushed)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.plain = PlainProgress(every_s=every_s)
        self.every_s = every_s
        self.last = 0.0
        self.total = 0
        self.done = 0

    def start(self, total_runs: int) -> None:
        self.total = total_runs

    def run(self, label: str, budget: int) -> None:
        self._say(f"run {self.done + 1}/{self.total}: {label}")

    def advance(self, calls: int, message: str) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            self._say(f"  {calls} calls · {message}")

    def finish_run(self, label: str, summary: str) -> None:
        self.done += 1
        self._say(f"✓ {label}: {summary}")

    def _say(self, text: str) -> None:
        print(f"[{duration(time.monotonic() - self.plain.started)}] {text}", flush=True)


def _seeds(text: str) -> list[int]:
    """`3` means seeds 0, 1, 2; `0,5,7` lists them."""
    parts = [int(x) for x in text.split(",") if x.strip()]
    return list(range(parts[0])) if len(parts) == 1 else parts


def _csv(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _instructions(path: str | None) -> str | None:
    if not path:
        return None
    from lse_engine.files import parse_prompt

    text = Path(path).read_text(encoding="utf-8")
    return parse_prompt(text, path)[0].instructions if text.startswith("---") else text.strip()


def cmd_bench(args: argparse.Namespace) -> int:
    from lse_engine.bench import report
    from lse_engine.bench.protocol import Bench, BenchSpec, bench_config
    from lse_engine.bench.stats import summarize
    from lse_engine.bench.suites import SplitSpec
    from lse_engine.config import load_config
    from lse_engine.presets import with_preset

    overrides = model_overrides(args)
    if args.protocol == "paper":
        overrides = with_preset("paper", overrides)
    config = bench_config(
        load_config(args.config or Path.cwd(), overrides), max_model_calls=args.max_model_calls,
        rounds=args.rounds, task_model=args.task_model, batch_size=args.batch_size, dev_size=args.dev_size,
        protocol=args.protocol,
    )
    out = Path(args.out or f"bench-{args.benchmark}").resolve()
    spec = BenchSpec(
        benchmark=args.benchmark, data=Path(args.data).expanduser().resolve(), out=out, names=_csv(args.dbs),
        rules=_csv(args.rules) or ["ucb", "chain", "best", "pareto"], seeds=_seeds(args.seeds),
        evolvers=_csv(args.evolver) or [], instructions=_instructions(args.prompt), source_split=args.source_split,
        split=SplitSpec(dev=args.dev, test=args.test, seed=args.split_seed, limit=args.limit), protocol=args.protocol,
        score_test=not args.no_test,
    )
    if args.tiny:
        console.print(f"[yellow]--tiny: {TINY_NOTE}.[/]")
    for note in config.preset_notes():
        console.print(f"[yellow]{note}[/]")
    cancel = CancelToken()
    install_sigint(cancel, "stopping after the current model call… re-run the same command to resume")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    if console.is_terminal or args.quiet:
        with Progress(*columns, console=console, disable=args.quiet) as bar:
            result = Bench(spec, config, progress=RichBenchProgress(bar), cancel=cancel).run()
    else:  # a log or a file: plain lines as work happens
        result = Bench(spec, config, progress=PlainBenchProgress(), cancel=cancel).run()
    summary = summarize(result)
    console.print(report.table(result, summary))
    console.print(report.table(result, metric="dev"))
    for line in report.comparison_lines(result, summary):
        console.print(f"  {line}")
    for name, why in result.skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {why}")
    paths = report.write(result, out)
    console.print(f"report: {paths['markdown']}, {paths['json']}, {paths['plot']}  ·  "
                  f"runs in {out / '.lse' / 'lse.db'}")
    if result.status == "cancelled":
        console.print("[yellow]cancelled[/]: re-run the same command to continue the unfinished runs")
        return 130
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `lse bench` to the CLI."""
    p = sub.add_parser("bench", help="benchmark evolution rules and evolvers on BIRD, Spider or MMLU-Redux",
                       description="Per database: import its problems as a suite split train/dev/test, evolve the "
                       "root prompt with each rule, seed and evolver under one model-call budget, and report test "
                       "accuracy of the root and of each winner. Re-running the same command resumes.")
    p.add_argument("benchmark", choices=BENCHMARKS)
    p.add_argument("--data", required=True, help="the benchmark's directory (BIRD/Spider dev set, MMLU-Redux CSVs "
                                                 "or JSON/JSONL/parquet/arrow files)")
    p.add_argument("--dbs", help="comma-separated databases (subjects for mmlu-redux); default: all")
    p.add_argument("--rules", help="comma-separated selection rules (ucb, chain, best, pareto: GEPA's rule, "
                                   "textgrad: TextGrad-style); "
                                   "default ucb,chain,best,pareto")
    p.add_argument("--seeds", default="3", help="N (seeds 0..N-1) or a comma-separated list; default 3")
    p.add_argument("--out", help="output directory: suites, run store, report (default ./bench-BENCHMARK)")
    p.add_argument("--evolver", help="trained evolver(s) (names under .lse/evolvers/ or adapter paths), comma-"
                                     "separated; each gets rows beside its base")
    p.add_argument("--task-model", help="a different task model (the transfer experiment); the evolver is unchanged")
    p.add_argument("--protocol", choices=BENCH_PROTOCOLS, default="ours",
                   help="ours: one model-call budget per run; paper: the paper's settings (25 rounds, feedback batch "
                        "10, holdout 50 scored with 8 samples at temperature 0.7, 4096-token replies, 30 s SQL "
                        "limits) with rounds binding; both report test and the paper's best-on-holdout side by side")
    p.add_argument("--max-model-calls", type=int, help="budget per run (default: lse.toml's, else 1000)")
    p.add_argument("--rounds", type=int, help="cap on rounds per run (default: the call budget decides)")
    p.add_argument("--batch-size", type=int, help="feedback batch size (paper: 10)")
    p.add_argument("--dev-size", type=int, help="dev problems used for selection (paper: 50)")
    p.add_argument("--dev", type=float, default=0.3, help="dev fraction of each database (default 0.3)")
    p.add_argument("--test", type=float, default=0.4, help="test fraction of each database (default 0.4)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--no-test", action="store_true", help="score nothing on test: for choosing settings on train "
                                                          "and dev only (the test split stays unseen)")
    p.add_argument("--limit", type=int, default=0, help="at most this many problems per database (seeded subset)")
    p.add_argument("--prompt", help="root instructions: a *.prompt.md or text file (default: one per task kind)")
    p.add_argument("--source-split", default="dev", choices=SOURCE_SPLITS,
                   help="which question file of BIRD or Spider to read (default dev)")
    p.add_argument("--config", help="lse.toml (or a directory) with model settings; default: the current one")
    add_model_args(p, "task and evolver model")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench)
