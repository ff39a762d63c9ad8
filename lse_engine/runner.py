"""The one place a run is assembled: scorers, the search context, create-or-resume of the run record, test
scoring, and the jobs built from them (evaluate a prompt, evolve it, apply the winner). `lse evolve`, `lse bench`,
the language server's worker and training all assemble runs here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lse_engine.config import Config, EvolveConfig, ModelConfig
from lse_engine.errors import Cancelled, LSEError
from lse_engine.evolve.context import SearchContext, TaskScorer
from lse_engine.evolve.proposers import Proposer
from lse_engine.evolve.recorder import RunRecorder, StoreRecorder
from lse_engine.evolve.replies import STOP
from lse_engine.evolve.result import SearchResult
from lse_engine.evolve.search import Search
from lse_engine.files.prompt_file import PromptFile, load_prompt, write_instructions
from lse_engine.llm.base import LLM, CancelToken, Sampling
from lse_engine.llm.pool import sampling_of
from lse_engine.progress import ProgressCallback, ProgressEvent, ignore_progress
from lse_engine.records import RunRow
from lse_engine.scoring import Scorer
from lse_engine.store import RunLock, Store
from lse_engine.tasks.base import Outcome, Problem, Task
from lse_engine.workspace import Workspace

EVOLVER_STOP = (STOP,)
UsageFn = Callable[[int, int], None]  # (model calls, tokens)


# -- parts -----------------------------------------------------------------------------------------------
def make_scorer(task: Task, llm: LLM, store: Store | None, model: ModelConfig, *, cancel: CancelToken | None = None,
                on_usage: UsageFn | None = None, scorer_class: type[Scorer] = Scorer, **extra: Any) -> Scorer:
    """The task model through the outcome cache, decoding as `[model]` says (batch size, samples)."""
    return scorer_class(task, llm, store, sampling_of(model), cancel=cancel, chunk_size=max(1, model.batch_size),
                        on_usage=on_usage, samples=model.sampling.samples, **extra)


def evolver_sampling(evolver: ModelConfig) -> Sampling:
    """How the evolver decodes: `[evolver.sampling]`, stopping at `</prompt>`."""
    return dataclasses.replace(sampling_of(evolver), stop=EVOLVER_STOP)


def search_context(*, recorder: RunRecorder, scorer: TaskScorer, evolver: LLM, evolver_cfg: ModelConfig, task: Task,
                   splits: dict[str, list[Problem]], settings: EvolveConfig, cancel: CancelToken,
                   progress: ProgressCallback = ignore_progress, proposer: Proposer | None = None) -> SearchContext:
    """The search's context: train feeds the feedback batches, the first `dev_size` dev problems are the holdout."""
    return SearchContext(recorder=recorder, scorer=scorer, evolver=evolver,
                         evolver_sampling=evolver_sampling(evolver_cfg),
                         task=task, train=splits["train"], dev=splits["dev"][: settings.dev_size], settings=settings,
                         cancel=cancel, progress=progress, proposer=proposer)


@dataclass
class RunPlan:
    """What a new evolve run records about itself when it starts."""

    prompt: str
    suite: str
    settings: EvolveConfig
    root_instructions: str
    model_id: str
    evolver_id: str
    config: dict[str, Any]  # the full settings as they were (resumes read `evolve` back)
    prompt_sha: str | None = None


def start_run(store: Store, plan: RunPlan, run_id: str | None = None) -> str:
    """Record a new evolve run; its id."""
    config = {**plan.config, "evolve": dataclasses.asdict(plan.settings)}
    return store.create_run("evolve", plan.prompt, plan.suite, run_id=run_id, rule=plan.settings.rule,
                            seed=plan.settings.seed, prompt_sha=plan.prompt_sha,
                            root_instructions=plan.root_instructions, model_id=plan.model_id,
                            evolver_id=plan.evolver_id, config=config)


def resume_run(store: Store, run_id: str, settings: EvolveConfig) -> tuple[RunRow, EvolveConfig]:
    """The evolve run `run_id` (a unique prefix will do), marked running again, with the settings it started
    with (the keys this version knows) over `settings`."""
    run = store.get_run(run_id)
    if run is None or run["kind"] != "evolve":
        raise LSEError(f"no evolve run {run_id!r} in {store.path}")
    saved = (run.get("config") or {}).get("evolve")
    known = {f.name for f in dataclasses.fields(EvolveConfig)}
    if isinstance(saved, dict):
        settings = dataclasses.replace(settings, **{k: v for k, v in saved.items() if k in known})
    store.update_run(run["id"], status="running", message="resumed")
    return run, settings


def run_search(store: Store, ctx: SearchContext, root_instructions: str, doing: str = "run") -> SearchResult:
    """Grow the run's tree while holding its lock: one process at a time (a second gets "busy: …")."""
    lock = RunLock(store.path)
    lock.acquire(ctx.run_id, doing)
    try:
        return Search(ctx).run(root_instructions)
    finally:
        lock.release()


def score_tests(scorer: TaskScorer, prompts: Sequence[tuple[str, str]], test: Sequence[Problem], run_id: str,
                progress: ProgressCallback = ignore_progress) -> list[list[Outcome]] | None:
    """Each (label, instructions) scored on the test split (problems the search never saw); None if cancelled."""
    found = []
    for label, instructions in prompts:
        _step_events(scorer, progress, run_id, "evolve", f"scoring the {label} on test", 0, 0)
        try:
            found.append(scorer.score(instructions, test)[1])
        except Cancelled:
            return None
        finally:
            scorer.on_progress = None
    return found


def start_notes(config: Config, dev: int) -> list[str]:
    """What a run says when it starts about how its settings came to be: keys the file sets over its preset, and a
    holdout smaller than the paper's under `preset = "paper"`."""
    from lse_engine.presets import HOLDOUT

    notes = config.preset_notes()
    if config.preset == "paper" and dev < HOLDOUT:
        notes.append(f"the suite's dev split has {dev} problems: the paper's holdout is {HOLDOUT}, so these dev "
                     "scores are noisier than the paper's (raise split.dev or add problems)")
    return notes


def mean_score(outcomes: Sequence[Outcome]) -> float | None:
    """Accuracy over outcomes (every sample), None when there are none."""
    return sum(o.correct for o in outcomes) / len(outcomes) if outcomes else None


@dataclass
class EvalReport:
    run_id: str
    accuracy: dict[str, float]
    rows: dict[str, list[tuple[Problem, Outcome]]] = field(default_factory=dict)
    calls: int = 0
    cached: int = 0
    status: str = "done"


def scorer_for(ws: Workspace, cancel: CancelToken | None, run_id: str) -> Scorer:
    """The workspace's scorer, charging model calls and tokens to `run_id`."""
    return make_scorer(ws.task, ws.task_llm(), ws.store, ws.config.model, cancel=cancel,
                       on_usage=lambda n, t: ws.store.add_usage(run_id, task_calls=n, tokens=t))


def _step_events(scorer: TaskScorer, progress: ProgressCallback, run_id: str, kind: str, step: str, i: int,
                 n: int) -> None:
    scorer.on_progress = lambda done, total, eta: progress(ProgressEvent(
        run_id, kind, f"{step} {done}/{total}", round=i, rounds=n, step=step, step_done=done, step_total=total,
        eta_s=eta))


def evaluate(ws: Workspace, splits: tuple[str, ...] = ("train", "dev"), cancel: CancelToken | None = None,
             progress: ProgressCallback = ignore_progress, run_id: str | None = None) -> EvalReport:
    """Score the prompt's instructions on the given splits; every outcome lands in the run store.

    The model loads only if some outcome is not cached yet; a cancelled evaluation reports what it scored."""
    ws.require_models(("model",))
    store = ws.store
    run_id = store.create_run("evaluate", str(ws.prompt_path), str(ws.suite.path), run_id=run_id,
                              prompt_sha=ws.prompt.sha, root_instructions=ws.prompt.instructions,
                              model_id=ws.task_llm().model_id, config=ws.config.to_dict())
    store.add_node(run_id, {"id": 0, "parent": None, "instructions": ws.prompt.instructions, "round": 0,
                            "status": "ok"})
    scorer = scorer_for(ws, cancel, run_id)
    parts = ws.splits()
    chosen = [s for s in splits if parts.get(s)]
    report = EvalReport(run_id, {})
    try:
        for i, split in enumerate(chosen):
            problems = parts[split]
            step = f"scoring {split}"
            progress(ProgressEvent(run_id, "evaluate", f"{step}: {len(problems)} problems", round=i,
                                   rounds=len(chosen), step=step, step_total=len(problems) * scorer.samples))
            _step_events(scorer, progress, run_id, "evaluate", step, i, len(chosen))
            keys, outs = scorer.score(ws.prompt.instructions, problems)
            ids = [p.id for p in problems for _ in range(scorer.samples)]
            report.accuracy[split] = store.add_batch(run_id, 0, split, 0, ids, keys, outs)
            report.rows[split] = list(zip((p for p in problems for _ in range(scorer.samples)), outs, strict=True))
    except Cancelled:
        report.status = "cancelled"
    except BaseException as exc:
        store.update_run(run_id, status="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        report.calls = scorer.usage.calls
        report.cached = sum(len(v) for v in report.rows.values()) - report.calls
    if report.status == "cancelled":
        msg = f"cancelled after {report.calls} model calls (kept in the store)"
        store.update_run(run_id, status="cancelled", message=msg, result=report.accuracy)
        progress(ProgressEvent(run_id, "evaluate", msg, done=True, error="cancelled", extra=report.accuracy))
        return report
    dev = report.accuracy.get("dev")
    store.update_run(run_id, status="done", root_dev=dev, winner_dev=dev, winner=0, result=report.accuracy)
    store.update_node(run_id, 0, dev_score=dev, train_score=report.accuracy.get("train"))
    msg = ", ".join(f"{k} {v:.0%}" for k, v in report.accuracy.items())
    progress(ProgressEvent(run_id, "evaluate", msg, root_dev=dev, winner_dev=dev, done=True, extra=report.accuracy))
    return report


def evolve(ws: Workspace, run_id: str | None = None, rounds: int | None = None, cancel: CancelToken | None = None,
           progress: ProgressCallback = ignore_progress, new_run_id: str | None = None) -> SearchResult:
    """Run (or resume, given `run_id`) tree-guided evolution of the workspace's prompt.

    The settings are the workspace's (a resumed run: the ones it started with); `rounds` overrides their
    count. When the suite has a test split, the root and the winner are scored on it at the end."""
    ws.require_models()
    store = ws.store
    settings = ws.config.evolve
    if run_id is None:
        if rounds is not None:
            settings = ws.config.with_evolve(rounds=rounds)
        plan = RunPlan(str(ws.prompt_path), str(ws.suite.path), settings, ws.prompt.instructions,
                       ws.task_llm().model_id, ws.evolver_llm().model_id,
                       {**ws.config.to_dict(), "suite_sha": ws.suite.content_hash}, ws.prompt.sha)
        run_id = start_run(store, plan, new_run_id)
        root_instructions, doing = ws.prompt.instructions, "run"
    else:
        run, settings = resume_run(store, run_id, settings)
        if rounds is not None:
            settings = ws.config.with_evolve(settings, rounds=rounds)
        run_id, root_instructions, doing = run["id"], run["root_instructions"] or "", "resumed"
    cancel = cancel or CancelToken()
    for note in start_notes(ws.config, min(len(ws.splits()["dev"]), settings.dev_size)):
        progress(ProgressEvent(run_id, "evolve", note))
    scorer = scorer_for(ws, cancel, run_id)
    ctx = search_context(recorder=StoreRecorder(store, run_id), scorer=scorer, evolver=ws.evolver_llm(),
                         evolver_cfg=ws.config.evolver, task=ws.task, splits=ws.splits(), settings=settings,
                         cancel=cancel, progress=progress)
    result = run_search(store, ctx, root_instructions, doing)
    test = ws.splits().get("test") or []
    if test and result.status != "cancelled":
        scored = score_tests(scorer, [("root", result.tree.root.instructions), ("winner", result.winner.instructions)],
                             test, run_id, progress)
        if scored is not None:
            result.root_test, result.winner_test = mean_score(scored[0]), mean_score(scored[1])
            row = store.get_run(run_id)
            summary = dict(row["result"] or {}) if row else {}
            summary.update(root_test=result.root_test, winner_test=result.winner_test)
            store.update_run(run_id, result=summary)
    return result


def apply_winner(prompt: PromptFile, run: RunRow, instructions: str) -> None:
    """Write the winning instructions into the prompt file; refuses when the file changed since the run began."""
    fresh = load_prompt(prompt.path)
    if run.get("prompt_sha") and fresh.sha != run["prompt_sha"]:
        raise LSEError(f"{prompt.path} changed on disk since run {run['id']} started; not overwriting it")
    write_instructions(fresh, instructions)
