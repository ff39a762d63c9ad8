"""What the user reads about a run: the progress line, the summary at the end, the winner's label."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lse_engine.progress import ProgressEvent


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _eta(seconds: float) -> str:
    if seconds < 90:
        return f"~{max(1, round(seconds))} s left"
    return f"~{round(seconds / 60)} min left"


def progress_line(kind: str, ev: ProgressEvent | None) -> str:
    """"round 2/8 · scoring dev 12/40 · ~30 s left · best dev 55%" (the parts the event has)."""
    if ev is None:
        return "starting (loading models)…"
    parts = []
    if kind == "evolve" and ev.rounds:
        parts.append(f"round {ev.round}/{ev.rounds}")
    step = ev.step or ev.message
    if ev.step_total:
        step = f"{step} {ev.step_done}/{ev.step_total}"
    if step:
        parts.append(step)
    if ev.eta_s is not None and ev.eta_s > 0:
        parts.append(_eta(ev.eta_s))
    if kind == "evolve" and ev.winner_dev is not None:
        parts.append(f"winner dev {pct(ev.winner_dev)}")
    return " · ".join(parts) or kind


def percentage(ev: ProgressEvent) -> int | None:
    """How far the run is, 0–100, from its rounds and the step within the round."""
    if not ev.rounds:
        return None
    within = ev.step_done / ev.step_total if ev.step_total else 0.0
    done = max(0, ev.round - 1) + within if ev.round else within
    return max(0, min(100, int(100 * done / ev.rounds)))


def score_label(root: float | None, winner: float | None) -> str:
    """The winner's edit label: "LSE: dev 40% → 55%"."""
    return f"LSE: dev {pct(root)} → {pct(winner)}"


def summary(kind: str, name: str, result: Mapping[str, Any], rounds_fallback: int | None = None) -> str:
    """The message shown when a run finishes."""
    if kind == "evaluate":
        acc = result.get("accuracy") or {}
        scores = ", ".join(f"{split} {pct(v)}" for split, v in acc.items())
        return f"LSE evaluate of {name}: {scores or 'nothing to score'}"
    if kind == "evolve":
        rounds = result.get("roundsDone")
        rounds = rounds if rounds is not None else rounds_fallback
        rounds_text = f"{rounds} round{'s' if rounds != 1 else ''}" if rounds is not None else ""
        root, best = result.get("rootDev"), result.get("winnerDev")
        root_test, best_test = result.get("rootTest"), result.get("winnerTest")
        edits, replies, noop = result.get("edits"), result.get("replies"), result.get("noopReplies")
        edits_text = ""
        if edits is not None:
            of = f" from {replies} evolver repl{'ies' if replies != 1 else 'y'}" if replies is not None else ""
            edits_text = f"{edits} edit{'s' if edits != 1 else ''}{of} ({noop or 0} repeated instructions)"
        if not result.get("winner"):
            extra = ", ".join(p for p in (f"dev {pct(root)}", rounds_text,
                                          f"test {pct(root_test)}" if root_test is not None else "", edits_text) if p)
            why = f"; {result['winnerReason']}" if result.get("winnerReason") else ""
            return f"LSE evolve of {name}: the original prompt stays ({extra}){why}"
        parts = [f"dev {pct(root)} → {pct(best)}"]
        if rounds_text:
            parts.append(rounds_text)
        if best_test is not None:
            before = f"{pct(root_test)} → " if root_test is not None else ""
            parts.append(f"test {before}{pct(best_test)}")
        if edits_text:
            parts.append(edits_text)
        return f"LSE evolve of {name}: " + ", ".join(parts)
    return f"LSE {kind}: {result.get('message') or 'done'}"


CANCEL_TITLE = "Cancel run"  # the code action that cancels a run (views.py)
APPLY_TITLE = "Apply evolved instructions"  # the code action that puts a winner in later (views.py, runs.py)
CANCEL_HOW = f"To cancel it: the code action “{CANCEL_TITLE}” on the prompt or its suite (command lse.cancel)."


def _problems(n: int) -> str:
    return f"{n} problem{'s' if n != 1 else ''}"


def start_message(kind: str, name: str, run_id: str, plan: Mapping[str, int]) -> str:
    """What a run does, on which splits, and how to cancel it: the message a client without progress or code
    lenses gets when the run starts. `plan`: problems per split (`train`, `dev`, `test`), `rounds`, `devSize`."""
    head = f"LSE {kind} of {name} started (run {run_id})"
    train, dev, test = plan.get("train"), plan.get("dev"), plan.get("test")
    if kind == "evaluate" and train is not None and dev is not None:
        what = f"it scores the prompt on train ({_problems(train)}) and dev ({_problems(dev)})"
    elif kind == "evolve" and train is not None and dev is not None:
        rounds = plan.get("rounds")
        holdout = min(dev, plan.get("devSize") or dev)
        tested = f", then scores the original and the winner on test ({_problems(test)})" if test else ""
        what = (f"{f'{rounds} rounds: ' if rounds else ''}it learns from train ({_problems(train)}), picks the "
                f"winner on dev ({_problems(holdout)}){tested}")
    elif kind == "evaluate":
        what = "it scores the prompt on the train and dev splits"
    elif kind == "evolve":
        what = "it learns from the train split and picks the winner on dev"
    else:
        what = "it trains the evolver on this prompt's runs"
    return f"{head}: {what}. {CANCEL_HOW}"


def cancelled_message(kind: str, name: str, run_id: str, store: Mapping[str, Any] | None,
                      recorded_by_server: bool = False) -> str:
    """The end of a cancelled run, with what the run store kept of it (counted, as the store says)."""
    head = f"LSE {kind} of {name} cancelled (run {run_id})"
    how = ("; its worker did not stop in time, so the language server stopped it and recorded the end"
           if recorded_by_server else "")
    if store is None or kind not in ("evaluate", "evolve"):  # a training run's checkpoints are not counted here
        return f"{head}{how}."
    run = store.get("run")
    if not run:
        return f"{head}{how} before it recorded anything: nothing was kept."
    answers = int(run.get("task_calls") or 0)
    scored = [n for n in store.get("nodes") or [] if n.get("dev_score") is not None]
    parts = []
    if answers:
        parts.append(f"{answers} scored answer{'s' if answers != 1 else ''}")
    if kind == "evolve" and scored:
        best = max(n["dev_score"] for n in scored)
        parts.append(f"{len(scored)} prompt version{'s' if len(scored) != 1 else ''} scored on dev "
                     f"(best dev {pct(best)})")
    if not parts:
        return f"{head}{how} before it scored anything: nothing was kept."
    then = ("; an Evaluate of the same instructions reuses them" if kind == "evaluate"
            else f"; `lse evolve {name} --resume {run_id}` continues it")
    return f"{head}{how}. Kept in the run store: {' and '.join(parts)}{then}."
