"""The jobs the CLI and the language server's worker run: evaluate a prompt, evolve it, apply the winner."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lse_engine.errors import Cancelled, LSEError
from lse_engine.evolve.search import Search, SearchContext, SearchResult
from lse_engine.files.prompt_file import PromptFile, load_prompt, write_instructions
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressCallback, ProgressEvent, ignore_progress
from lse_engine.tasks.base import Outcome, Problem
from lse_engine.workspace import Workspace, sampling_of


@dataclass
class EvalReport:
    run_id: str
    accuracy: dict[str, float]
    rows: dict[str, list[tuple[Problem, Outcome]]] = field(default_factory=dict)
    calls: int = 0
    cached: int = 0
    status: str = "done"


def evaluate(ws: Workspace, splits: tuple[str, ...] = ("train", "dev"), cancel: CancelToken | None = None,
             progress: ProgressCallback = ignore_progress, run_id: str | None = None) -> EvalReport:
    """Score the prompt's instructions on the given splits; every outcome lands in the run store."""
    store = ws.store
    run_id = store.create_run("evaluate", str(ws.prompt_path), str(ws.suite.path), run_id=run_id, prompt_sha=ws.prompt.sha,
                              root_instructions=ws.prompt.instructions, model_id=ws.task_llm().model_id,
                              config=ws.config.to_dict())
    store.add_node(run_id, {"id": 0, "parent": None, "instructions": ws.prompt.instructions, "round": 0,
                            "status": "ok"})
    scorer = ws.scorer(cancel, on_usage=lambda n, t: store.add_usage(run_id, task_calls=n, tokens=t))
    parts = ws.splits()
    report = EvalReport(run_id, {})
    try:
        for i, split in enumerate(s for s in splits if parts.get(s)):
            problems = parts[split]
            progress(ProgressEvent(run_id, "evaluate", f"scoring {len(problems)} {split} problems", round=i,
                                   rounds=len(splits)))
            keys, outs = scorer.score(ws.prompt.instructions, problems)
            score = store.add_batch(run_id, 0, split, 0, [p.id for p in problems], keys, outs)
            report.accuracy[split] = score
            report.rows[split] = list(zip(problems, outs))
    except Cancelled:
        store.update_run(run_id, status="cancelled", message="cancelled")
        report.status = "cancelled"
        progress(ProgressEvent(run_id, "evaluate", "cancelled", done=True, error="cancelled"))
        return report
    except BaseException as exc:
        store.update_run(run_id, status="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    report.calls = scorer.usage.calls
    report.cached = sum(len(v) for v in report.rows.values()) - report.calls
    dev = report.accuracy.get("dev")
    store.update_run(run_id, status="done", root_dev=dev, best_dev=dev, winner=0, result=report.accuracy)
    store.update_node(run_id, 0, dev_score=dev, train_score=report.accuracy.get("train"))
    msg = ", ".join(f"{k} {v:.0%}" for k, v in report.accuracy.items())
    progress(ProgressEvent(run_id, "evaluate", msg, root_dev=dev, best_dev=dev, done=True, extra=report.accuracy))
    return report


def start_evolve(ws: Workspace, rounds: int | None = None, run_id: str | None = None) -> str:
    """Create a run record for an evolution of the workspace's prompt; returns its id."""
    settings = ws.config.evolve if rounds is None else dataclasses.replace(ws.config.evolve, rounds=rounds)
    ws.config.evolve = settings
    return ws.store.create_run(
        "evolve", str(ws.prompt_path), str(ws.suite.path), run_id=run_id, rule=settings.rule, seed=settings.seed,
        prompt_sha=ws.prompt.sha, root_instructions=ws.prompt.instructions, model_id=ws.task_llm().model_id,
        evolver_id=ws.evolver_llm().model_id, config=ws.config.to_dict(),
    )


def evolve(ws: Workspace, run_id: str | None = None, rounds: int | None = None, cancel: CancelToken | None = None,
           progress: ProgressCallback = ignore_progress, new_run_id: str | None = None) -> SearchResult:
    """Run (or resume, given `run_id`) tree-guided evolution of the workspace's prompt."""
    store = ws.store
    if run_id is None:
        run_id = start_evolve(ws, rounds, run_id=new_run_id)
        root_instructions = ws.prompt.instructions
    else:
        run = store.get_run(run_id)
        if run is None or run["kind"] != "evolve":
            raise LSEError(f"no evolve run {run_id!r} in {store.path}")
        run_id = run["id"]
        cfg = run.get("config") or {}
        saved = cfg.get("evolve") if isinstance(cfg, dict) else None
        if saved:
            ws.config.evolve = dataclasses.replace(ws.config.evolve, **saved)
        if rounds is not None:
            ws.config.evolve = dataclasses.replace(ws.config.evolve, rounds=rounds)
        root_instructions = run["root_instructions"]
        store.update_run(run_id, status="running", message="resumed")
    cancel = cancel or CancelToken()
    parts = ws.splits()
    settings = ws.config.evolve
    ctx = SearchContext(
        store=store,
        scorer=ws.scorer(cancel, on_usage=lambda n, t: store.add_usage(run_id, task_calls=n, tokens=t)),
        evolver=ws.evolver_llm(),
        evolver_sampling=sampling_of(ws.config.evolver),
        train=parts["train"],
        dev=parts["dev"][: settings.dev_size],
        settings=settings,
        task_kind=ws.suite.task,
        cancel=cancel,
        progress=progress,
    )
    return Search(run_id, ctx).run(root_instructions)


def apply_winner(prompt: PromptFile, run: dict, instructions: str) -> None:
    """Write the winning instructions into the prompt file; refuses when the file changed since the run began."""
    fresh = load_prompt(prompt.path)
    if run.get("prompt_sha") and fresh.sha != run["prompt_sha"]:
        raise LSEError(f"{prompt.path} changed on disk since run {run['id']} started; not overwriting it")
    write_instructions(fresh, instructions)
