"""The feedback summary the evolver reads: failures first, a balanced sample of successes, bounded size."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from lse_engine.tasks.base import Outcome, Problem

ERROR_LABELS = {
    "no_answer": "no answer",
    "not_a_query": "not a single read query",
    "syntax": "syntax error",
    "no_such_table": "no such table",
    "no_such_column": "no such column",
    "timeout": "timeout",
    "too_many_rows": "too many rows",
    "runtime": "execution error",
    "wrong_result": "wrong result",
}
CHARS_PER_TOKEN = 4  # the budget is in tokens, approximated from characters


def _clip(text: str | None, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 15] + " …[truncated]"


def _entry(problem: Problem, outcome: Outcome, task_kind: str) -> str:
    verdict = "RIGHT" if outcome.correct else f"WRONG ({ERROR_LABELS.get(outcome.error_kind or '', outcome.error_kind)})"
    lines = [f"### {problem.id}: {verdict}", f"Question: {problem.question}"]
    if problem.evidence:
        lines.append(f"Evidence: {problem.evidence}")
    if problem.options:
        lines += [f"  {chr(65 + i)}. {o}" for i, o in enumerate(problem.options)]
    lines.append(f"Model output:\n{_clip(outcome.completion, 700)}")
    if task_kind == "text-to-sql":
        if outcome.answer:
            lines.append(f"Predicted SQL: {_clip(outcome.answer, 400)}")
        if outcome.error and outcome.error_kind != "wrong_result":
            lines.append(f"Execution: {_clip(outcome.error, 200)}")
        elif outcome.result_preview:
            lines.append(f"Result: {_clip(outcome.result_preview, 200)}")
        lines.append(f"Gold SQL: {_clip(problem.gold, 400)}")
        lines.append(f"Expected result: {_clip(outcome.expected_preview, 200)}")
    else:
        lines.append(f"Answered: {outcome.answer or '(none)'}; expected: {problem.gold}")
    return "\n".join(lines)


def summarize(
    problems: Sequence[Problem],
    outcomes: Sequence[Outcome],
    task_kind: str = "text-to-sql",
    max_tokens: int = 1500,
    successes_shown: int = 3,
    seed: int = 0,
) -> str:
    """Aggregate accuracy and error classes, then failures, then up to `successes_shown` successes."""
    n = len(outcomes)
    correct = sum(o.correct for o in outcomes)
    errors = Counter(ERROR_LABELS.get(o.error_kind or "", o.error_kind) for o in outcomes if not o.correct)
    head = [f"Accuracy: {correct}/{n} ({(correct / n if n else 0):.0%})."]
    if errors:
        head.append("Failures by kind: " + ", ".join(f"{k} ×{v}" for k, v in errors.most_common()) + ".")
    budget = max_tokens * CHARS_PER_TOKEN - sum(len(h) for h in head)
    pairs = list(zip(problems, outcomes))
    failures = [(p, o) for p, o in pairs if not o.correct]
    successes = [(p, o) for p, o in pairs if o.correct]
    rng = random.Random(seed)
    shown_successes = rng.sample(successes, min(successes_shown, len(successes)))
    body: list[str] = []
    omitted = 0
    for group in (failures, shown_successes):
        for p, o in group:
            entry = _entry(p, o, task_kind)
            if len(entry) + 2 > budget:
                omitted += 1
                continue
            body.append(entry)
            budget -= len(entry) + 2
    if omitted:
        body.append(f"({omitted} more problems omitted to stay within the feedback budget)")
    return "\n".join(head) + "\n\n" + "\n\n".join(body)
