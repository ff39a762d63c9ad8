"""The jobs the CLI and the language server's worker run: evaluate a prompt, evolve it, apply the winner."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from lse_engine.config import EvolveConfig
from lse_engine.errors import Cancelled, LSEError
from lse_engine.evolve import evolver as ev
from lse_engine.evolve.context import SearchContext
from lse_engine.evolve.search import Search, SearchResult
from lse_engine.files.prompt_file import PromptFile, load_prompt, write_instructions
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressCallback, ProgressEvent, ignore_progress
from lse_engine.scoring import Scorer
from lse_engine.store import RunLock
from lse_engine.tasks.base import Outcome, Problem
from lse_engine.workspace import Workspace, sampling_of

EVOLVER_STOP = (ev.STOP,)


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
    return ws.scorer(cancel, on_usage=lambda n, t: ws.store.add_usage(run_id, task_calls=n, tokens=t))


def _step_events(scorer: Scorer, progress: ProgressCallback, run_id: str, kind: str, step: str, i: int,
                 n: int) -> None:
    scorer.on_progress = lambda done, total, eta: progress(ProgressEvent(
        run_id, kind, f"{step} {done}/{total}", round=i, rounds=n, step=step, step_done=done, step_total=total,
        eta_s=eta))


def evaluate(ws: Workspace, splits: tuple[str, ...] = ("train", "dev"), cancel: CancelToken | None = None,
             progress: ProgressCallback = ignore_progress, run_id: str | None = None) -> EvalReport:
    """Score the prompt's instructions on the given splits; every outcome lands in the run store.

    The model loads only if some outcome is not cached yet; a cancelled evaluation reports what it scored."""
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
            report.rows[split] = list(zip((p for p in problems for _ in range(scorer.samples)), outs))
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
    store.update_run(run_id, status="done", root_dev=dev, best_dev=dev, winner=0, result=report.accuracy)
    store.update_node(run_id, 0, dev_score=dev, train_score=report.accuracy.get("train"))
    msg = ", ".join(f"{k} {v:.0%}" for k, v in report.accuracy.items())
    progress(ProgressEvent(run_id, "evaluate", msg, root_dev=dev, best_dev=dev, done=True, extra=report.accuracy))
    return report


def search_context(ws: Workspace, run_id: str, settings: EvolveConfig, cancel: CancelToken,
                   progress: ProgressCallback) -> SearchContext:
    """The search's context for a workspace's prompt."""
    parts = ws.splits()
    return SearchContext(
        store=ws.store, scorer=scorer_for(ws, cancel, run_id), evolver=ws.evolver_llm(),
        evolver_sampling=dataclasses.replace(sampling_of(ws.config.evolver), stop=EVOLVER_STOP),
        task=ws.task, train=parts["train"], dev=parts["dev"][: settings.dev_size], settings=settings,
        cancel=cancel, progress=progress,
    )


def evolve(ws: Workspace, run_id: str | None = None, rounds: int | None = None, cancel: CancelToken | None = None,
           progress: ProgressCallback = ignore_progress, new_run_id: str | None = None) -> SearchResult:
    """Run (or resume, given `run_id`) tree-guided evolution of the workspace's prompt.

    The settings are the workspace's (a resumed run: the ones it started with); `rounds` overrides their
    count. When the suite has a test split, the root and the winner are scored on it at the end."""
    store = ws.store
    settings = ws.config.evolve
    doing = "run" if run_id is None else "resumed"
    if run_id is None:
        if rounds is not None:
            settings = dataclasses.replace(settings, rounds=rounds)
        config = {**ws.config.to_dict(), "evolve": dataclasses.asdict(settings)}
        run_id = store.create_run(
            "evolve", str(ws.prompt_path), str(ws.suite.path), run_id=new_run_id, rule=settings.rule,
            seed=settings.seed, prompt_sha=ws.prompt.sha, root_instructions=ws.prompt.instructions,
            model_id=ws.task_llm().model_id, evolver_id=ws.evolver_llm().model_id, config=config)
        root_instructions = ws.prompt.instructions
    else:
        run = store.get_run(run_id)
        if run is None or run["kind"] != "evolve":
            raise LSEError(f"no evolve run {run_id!r} in {store.path}")
        run_id = run["id"]
        saved = (run.get("config") or {}).get("evolve") if isinstance(run.get("config"), dict) else None
        known = {f.name for f in dataclasses.fields(EvolveConfig)}
        if saved:
            settings = dataclasses.replace(settings, **{k: v for k, v in saved.items() if k in known})
        if rounds is not None:
            settings = dataclasses.replace(settings, rounds=rounds)
        root_instructions = run["root_instructions"]
        store.update_run(run_id, status="running", message="resumed")
    lock = RunLock(store.path)  # one process grows a run's tree at a time; a second gets "busy: …"
    lock.acquire(run_id, doing)
    try:
        cancel = cancel or CancelToken()
        ctx = search_context(ws, run_id, settings, cancel, progress)
        result = Search(run_id, ctx).run(root_instructions)
    finally:
        lock.release()
    test = ws.splits().get("test") or []
    if test and result.status != "cancelled":
        result.root_test, result.winner_test = test_scores(ctx.scorer, result, test, progress)
        run = store.get_run(run_id) or {}
        summary = dict(run.get("result") or {}, root_test=result.root_test, winner_test=result.winner_test)
        store.update_run(run_id, result=summary)
    return result


def test_scores(scorer: Scorer, result: SearchResult, test: Sequence[Problem],
                progress: ProgressCallback = ignore_progress) -> tuple[float | None, float | None]:
    """The root's and the winner's accuracy on the test split (problems the search never saw)."""
    scores = []
    for label, node in (("root", result.tree.root), ("winner", result.winner)):
        _step_events(scorer, progress, result.run_id, "evolve", f"scoring the {label} on test", 0, 0)
        try:
            _, outs = scorer.score(node.instructions, test)
        except Cancelled:
            return None, None
        finally:
            scorer.on_progress = None
        scores.append(sum(o.correct for o in outs) / len(outs) if outs else None)
    return scores[0], scores[1]


def apply_winner(prompt: PromptFile, run: dict, instructions: str) -> None:
    """Write the winning instructions into the prompt file; refuses when the file changed since the run began."""
    fresh = load_prompt(prompt.path)
    if run.get("prompt_sha") and fresh.sha != run["prompt_sha"]:
        raise LSEError(f"{prompt.path} changed on disk since run {run['id']} started; not overwriting it")
    write_instructions(fresh, instructions)
