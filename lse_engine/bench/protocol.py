"""The bench protocol: per database, evolve the root prompt with every rule, seed and evolver, then test.

Each (suite, evolver, rule, seed) is one evolve run in `<out>/.lse/lse.db` with a deterministic id
(`bench-<suite>-<evolver>-<rule>-s<seed>-<digest of the settings>`), so re-running the same bench finds its
runs: finished ones are read back, unfinished ones resume (the search continues from the store). All runs get
the same model-call budget (`evolve.max_model_calls`), charged as if each ran alone (see `runs`).
The root and each run's winner are then scored on the suite's test split (cached outcomes cost nothing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lse_engine.bench import peak
from lse_engine.bench.curves import Curve, run_curve
from lse_engine.bench.runs import SuiteRuns, model_label
from lse_engine.bench.suites import (
    PreparedSuites,
    SplitSpec,
    prepare,
    root_instructions,
    suite_name,
    write_prompt,
)
from lse_engine.config import Config, ModelConfig
from lse_engine.errors import LSEError
from lse_engine.evolve.recorder import load_tree, per_problem
from lse_engine.evolve.significance import paired_interval
from lse_engine.evolve.tree import RULES, Tree
from lse_engine.llm.base import CancelToken
from lse_engine.llm.pool import LLMFactory, ModelPool
from lse_engine.models.resolve import model_identity
from lse_engine.progress import ProgressEvent
from lse_engine.runner import RunPlan, resume_run, run_search, score_tests, start_run
from lse_engine.store import Store
from lse_engine.tasks.base import Problem

DEFAULT_RULES = ("ucb", "chain", "best", "pareto")
DEFAULT_BUDGET = 1000  # model calls per run when neither the command nor lse.toml sets one
DEFAULT_ROUNDS = 1000  # a cap only: the call budget is what ends bench runs


@dataclass
class BenchSpec:
    """What to bench: a benchmark's data, which databases, rules, seeds and evolvers; where to write."""

    benchmark: str
    data: Path
    out: Path
    names: list[str] | None = None  # databases (bird, spider) or subjects (mmlu-redux); None = all
    rules: list[str] = field(default_factory=lambda: list(DEFAULT_RULES))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    evolvers: list[str] = field(default_factory=list)  # trained evolvers, each compared with the base
    split: SplitSpec = field(default_factory=SplitSpec)
    instructions: str | None = None  # root instructions (default: one per task kind)
    source_split: str = "dev"
    protocol: str = "ours"  # ours | paper (recorded in the report)
    score_test: bool = True  # False: nothing is scored on test (choosing settings on train and dev only)


@dataclass
class RunResult:
    suite: str
    evolver: str
    rule: str
    seed: int
    run_id: str
    status: str  # done | budget | cancelled
    rounds: int
    calls: int
    root_dev: float | None
    winner: int
    winner_dev: float | None
    winner_test: float | None  # accuracy on the test split (the mean over samples), None when not scored
    test_n: int
    curve: Curve = field(default_factory=list)
    resumed: bool = False
    best_dev: float | None = None  # the best dev score any node reached (the paper's report), winner or not
    # winner − root on test, per problem: the mean and its 95 % paired bootstrap interval (None when not scored)
    test_gain: tuple[float, float, float] | None = None
    # the same for the node with the best dev score, winner or not (what `winner_test = "none"` would apply: it says
    # on test what the noise gate kept out or let in); equal to the winner's when the best node won
    best_test: float | None = None
    best_gain: tuple[float, float, float] | None = None
    winner_reason: str = ""
    raced: int = 0  # children stopped part-way through dev
    dev_skipped: int = 0  # dev problems racing did not score
    # wall time and peak memory of the process that ran it to the end, recorded with the run (a run read back
    # finished shows what was recorded: 0 and None for runs finished before they were)
    wall_s: float = 0.0
    peak_rss_mb: float | None = None
    no_answer: float | None = None  # the highest share of dev replies with no answer of any node of the run
    replies: int = 0  # evolver replies
    accepted: int = 0  # replies that gave an edit the search kept (new instructions, nothing false)
    # per scored child: its dev score minus its parent's (on the same problems)
    deltas: list[float] = field(default_factory=list)


@dataclass
class SuiteResult:
    name: str
    suite: str
    n: dict[str, int]
    root_dev: float | None = None
    root_test: float | None = None
    runs: list[RunResult] = field(default_factory=list)
    root_test_correct: list[float] = field(default_factory=list)  # per test problem (pairs with each winner)


@dataclass
class BenchResult:
    benchmark: str
    out: str
    settings: dict[str, Any]
    task_model: str
    evolvers: dict[str, str]  # label → the evolver model
    rules: list[str]
    seeds: list[int]
    suites: list[SuiteResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    status: str = "done"  # done | cancelled

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class BenchProgress(Protocol):
    """What the protocol reports while it works (the CLI draws progress bars from it)."""

    def start(self, total_runs: int) -> None: ...

    def run(self, label: str, budget: int) -> None: ...

    def advance(self, calls: int, message: str) -> None: ...

    def finish_run(self, label: str, summary: str) -> None: ...


class NullProgress:
    def start(self, total_runs: int) -> None:
        pass

    def run(self, label: str, budget: int) -> None:
        pass

    def advance(self, calls: int, message: str) -> None:
        pass

    def finish_run(self, label: str, summary: str) -> None:
        pass


def bench_config(config: Config, max_model_calls: int | None = None, rounds: int | None = None,
                 task_model: str | None = None, protocol: str = "ours", **evolve: Any) -> Config:
    """The settings every bench run shares. Ours: the call budget binds (rounds are only a cap). The paper's
    (`config` loaded with the `paper` preset): its rounds bind, no call budget unless one is given."""
    cfg = dataclasses.replace(config)
    given = {k: v for k, v in evolve.items() if v is not None}
    if protocol == "paper":
        cfg.evolve = config.with_evolve(max_model_calls=max_model_calls or 0, max_wall_s=0.0,
                                        rounds=config.evolve.rounds if rounds is None else rounds, **given)
    else:
        budget = max_model_calls or config.evolve.max_model_calls or DEFAULT_BUDGET
        cfg.evolve = config.with_evolve(max_model_calls=budget, max_wall_s=0.0,
                                        rounds=DEFAULT_ROUNDS if rounds is None else rounds, **given)
    if task_model:  # the transfer experiment: the evolver stays as configured, the task model changes
        cfg.model = dataclasses.replace(config.model, model=task_model)
    return cfg


def evolver_variants(config: Config, evolvers: Sequence[str]) -> list[tuple[str, ModelConfig]]:
    """(label, evolver profile): the configured evolver alone, or its base plus each trained evolver."""
    if not evolvers:
        adapter = config.evolver.adapter
        return [(Path(adapter).name if adapter else "base", config.evolver)]
    base = dataclasses.replace(config.evolver, adapter="")
    return [("base", base)] + [(Path(e).name or e, dataclasses.replace(config.evolver, adapter=e)) for e in evolvers]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "x"


def bench_run_id(runs: SuiteRuns, instructions: str, label: str, evolver: ModelConfig, rule: str, seed: int) -> str:
    """The run's id: readable parts, then a digest of everything that must match for it to be reused."""
    cfg = runs.config
    ev = {k: v for k, v in dataclasses.asdict(cfg.evolve).items() if k not in ("rule", "seed")}
    payload = [runs.suite.content_hash, instructions, model_identity(cfg.model, cfg.root),
               dataclasses.asdict(cfg.model.sampling), model_identity(evolver, cfg.root),
               dataclasses.asdict(evolver.sampling), ev, dataclasses.asdict(cfg.sql)]
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    return f"bench-{_slug(suite_name(runs.suite.path))}-{_slug(label)}-{rule}-s{seed}-{digest}"


def _test_correct(runs: SuiteRuns, instructions: str, test: Sequence[Problem]) -> list[float]:
    """Per test problem, the share of its samples answered right ([] without a test split)."""
    if not test:
        return []
    scored = score_tests(runs.scorer(), [("prompt", instructions)], test, "")
    return list(per_problem(scored[0], len(test))) if scored else []


def child_deltas(tree: Tree) -> list[float]:
    """Each child's dev score minus its parent's on the dev problems both were scored on (a raced child: its
    prefix): the paper's reward, per edit."""
    out = []
    for node in tree.nodes.values():
        parent = tree.nodes.get(node.parent) if node.parent is not None else None
        if parent is None or not node.dev_correct or not parent.dev_correct:
            continue
        n = min(len(node.dev_correct), len(parent.dev_correct))
        out.append((sum(node.dev_correct[:n]) - sum(parent.dev_correct[:n])) / n)
    return out


def mean_of(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


class Bench:
    """Runs (or resumes) a bench; `run()` returns the results for the report."""

    def __init__(self, spec: BenchSpec, config: Config, factory: LLMFactory | None = None,
                 progress: BenchProgress | None = None, cancel: CancelToken | None = None) -> None:
        unknown = [r for r in spec.rules if r not in RULES]
        if unknown:
            raise LSEError(f"unknown rule(s) {', '.join(unknown)}; expected some of {', '.join(RULES)}")
        self.spec = spec
        self.config = config
        self.factory = factory
        self.progress: BenchProgress = progress or NullProgress()
        self.cancel = cancel or CancelToken()
        self.variants = evolver_variants(config, spec.evolvers)

    def run(self, prepared: PreparedSuites | None = None) -> BenchResult:
        """Import (unless `prepared` suites are given), then run or resume every run and score the tests."""
        spec, cfg = self.spec, self.config
        if prepared is None:
            prepared = prepare(spec.benchmark, spec.data, spec.out, spec.names, spec.split, spec.source_split)
        result = BenchResult(
            benchmark=spec.benchmark, out=str(spec.out), settings=self._settings(), rules=list(spec.rules),
            task_model=model_label(cfg.model), seeds=list(spec.seeds),
            evolvers={label: model_label(mc) for label, mc in self.variants}, skipped=dict(prepared.skipped),
        )
        self.progress.start(len(prepared.suites) * len(self.variants) * len(spec.rules) * len(spec.seeds))
        store = Store(spec.out / ".lse" / "lse.db")
        pool = ModelPool(cfg.root, self.factory)
        try:
            for path in prepared.suites:
                if self.cancel.cancelled:
                    break
                self._suite(path, store, pool, result)
        finally:
            pool.close()
            store.close()
        if self.cancel.cancelled:
            result.status = "cancelled"
        return result

    def _settings(self) -> dict[str, Any]:
        s = self.spec
        return {"data": str(s.data), "names": s.names, "split": dataclasses.asdict(s.split),
                "evolve": dataclasses.asdict(self.config.evolve), "source_split": s.source_split,
                "protocol": s.protocol, "samples": self.config.model.sampling.samples}

    def _suite(self, path: Path, store: Store, pool: ModelPool, result: BenchResult) -> None:
        runs = SuiteRuns(path, self.config, store, pool)
        kind = runs.suite.task
        imported = self.spec.out / "imported" / path.name
        instructions = self.spec.instructions or root_instructions(imported, kind)
        write_prompt(self.spec.out / "prompts", path, instructions)  # the root, for people to open and evolve
        name = suite_name(path)
        try:
            parts = runs.splits()
            sr = SuiteResult(name, str(path), {k: len(v) for k, v in parts.items()})
            if not parts["train"] or not parts["dev"]:
                result.skipped[name] = f"too few problems to split ({len(runs.suite.problems)})"
                return
            sr.root_test_correct = _test_correct(runs, instructions, parts["test"]) if self.spec.score_test else []
            sr.root_test = mean_of(sr.root_test_correct)
            result.suites.append(sr)
            for label, evolver_cfg in self.variants:
                for rule in self.spec.rules:
                    for seed in self.spec.seeds:
                        if self.cancel.cancelled:
                            return
                        rid = bench_run_id(runs, instructions, label, evolver_cfg, rule, seed)
                        run = self._run(runs, instructions, rid, name, label, evolver_cfg, rule, seed, parts["test"],
                                        sr.root_test_correct)
                        sr.runs.append(run)
                        sr.root_dev = run.root_dev if sr.root_dev is None else sr.root_dev
        except LSEError as exc:
            result.skipped[name] = str(exc)
        finally:
            runs.close()

    def _run(self, runs: SuiteRuns, instructions: str, rid: str, name: str, label: str, evolver: ModelConfig,
             rule: str, seed: int, test: Sequence[Problem], root_test: list[float]) -> RunResult:
        store = runs.store
        started = time.monotonic()
        peak.reset()
        budget = runs.config.evolve.max_model_calls
        title = f"{name} · {label} · {rule} · seed {seed}"
        self.progress.run(title, budget)
        existing = store.get_run(rid)
        existing = existing if existing and existing["id"] == rid else None

        def on_event(ev: ProgressEvent) -> None:
            self.progress.advance(sum(store.model_calls(rid)), ev.message)

        if existing is not None and existing["status"] == "done":
            tree: Tree = load_tree(store, rid)
            status = "budget" if "budget" in (existing.get("message") or "") else "done"
        else:
            settings = runs.settings(rule, seed)
            if existing is None:
                cfg = runs.config
                plan = RunPlan(str(self.spec.out / "prompts" / f"{name}.prompt.md"), str(runs.suite.path), settings,
                               instructions, runs.models.get(cfg.model).model_id, runs.models.get(evolver).model_id,
                               {**cfg.to_dict(), "evolver": dataclasses.asdict(evolver),
                                "suite_sha": runs.suite.content_hash})
                start_run(store, plan, rid)
            else:
                _, settings = resume_run(store, rid, settings)
            ctx = runs.context(rid, evolver, settings, self.cancel, on_event)
            res = run_search(store, ctx, instructions, "run" if existing is None else "resumed")
            tree, status = res.tree, res.status
        winner = tree.winner()
        calls = sum(store.model_calls(rid))
        scored = status != "cancelled" and self.spec.score_test
        winner_correct = _test_correct(runs, winner.instructions, test) if scored else []
        best = tree.best()
        best_correct = winner_correct if best.id == winner.id or not scored else \
            _test_correct(runs, best.instructions, test)
        row = store.get_run(rid)
        summary = (row["result"] if row else None) or {}
        read_back = existing is not None and existing["status"] == "done"  # finished by an earlier bench
        if read_back:  # its time and memory are the process's that ran it, not this one's
            wall_s, peak_rss_mb = float(summary.get("bench_wall_s") or 0.0), summary.get("bench_peak_rss_mb")
        else:
            wall_s, peak_rss_mb = time.monotonic() - started, peak.peak_mb()
            if row is not None and status != "cancelled":
                store.update_run(rid, result={**summary, "bench_wall_s": wall_s, "bench_peak_rss_mb": peak_rss_mb})
        run = RunResult(
            suite=name, evolver=label, rule=rule, seed=seed, run_id=rid, status=status, rounds=len(tree.selections),
            calls=calls, root_dev=tree.root.dev_score if 0 in tree.nodes else None, winner=winner.id,
            winner_dev=winner.dev_score, winner_test=mean_of(winner_correct), test_n=len(test),
            curve=run_curve(store, rid), resumed=existing is not None and not read_back,
            best_dev=best.dev_score,
            test_gain=paired_interval(winner_correct, root_test) if winner_correct and root_test else None,
            best_test=mean_of(best_correct),
            best_gain=paired_interval(best_correct, root_test) if best_correct and root_test else None,
            winner_reason=str(summary.get("winner_reason") or ""), raced=int(summary.get("raced") or 0),
            dev_skipped=int(summary.get("dev_skipped") or 0),
            wall_s=wall_s, peak_rss_mb=peak_rss_mb, replies=int(summary.get("replies") or 0),
            accepted=sum(a.get("verdict") == "ok" for a in store.get_attempts(rid)), deltas=child_deltas(tree),
            no_answer=max((n.no_answer for n in tree.nodes.values() if n.no_answer is not None), default=None),
        )
        test_txt = "—" if run.winner_test is None else f"{run.winner_test:.1%}"
        self.progress.finish_run(title, f"{status}: winner #{winner.id}, dev {winner.dev_score or 0:.1%}, "
                                        f"test {test_txt}, {calls} calls")
        return run
