"""The evaluation summary the evolver reads, in the reference's form (lse/agents/bird_agent.py
`build_evolve_prompt`): every problem of the batch, right and wrong, with the question (and evidence or
choices), the model's answer, the ground truth, whether it was correct, the error, and the model's full
response. For SQL we show the executed result and the expected one on lines of their own (the reference puts
both in its 500-character error line), and
for every wrong answer what the task computes from its data and the gold answer (`Task.findings`: where a
misplaced column really is and how to join to it, a column's values, the shape of the right result), a line
every request kind shows.

With k samples per problem, a problem's accuracy is the mean over its samples and the first sample's
response is shown. `max_chars` (0 = no limit, the paper's behaviour) bounds the summary: full responses are
clipped evenly first, then problems are left out from the end, successes before failures.
"""

from __future__ import annotations

from collections.abc import Sequence

from lse_engine.tasks.base import Finding, Outcome, Problem, Task

SEPARATOR = "\n" + "=" * 50 + "\n"
ERROR_CHARS = 500  # the reference clips error messages at 500 characters


def _clip(text: str | None, limit: int) -> str:
    text = (text or "").strip()
    return text if limit <= 0 or len(text) <= limit else text[: max(0, limit - 15)] + " …[truncated]"


Findings = dict[str, list[Finding]]  # problem id → what the data show about its (first) wrong answer
SHOWS = "What the database and the correct query show: "


def findings_of(task: Task, problems: Sequence[Problem], outcomes: Sequence[Outcome]) -> Findings:
    """Each wrong problem's findings (its first sample's), computed by the task from its data."""
    out: Findings = {}
    for p, outs in group_samples(problems, outcomes):
        if not outs[0].correct and outs[0].answer:
            found = task.findings(p, outs[0])
            if found:
                out[p.id] = found
    return out


def problem_entry(index: int, problem: Problem, outcomes: Sequence[Outcome], task_kind: str,
                  response_chars: int = 0, findings: Sequence[Finding] = ()) -> str:
    """One problem of the summary; `outcomes` are its samples (the first one's response is shown)."""
    first = outcomes[0]
    accuracy = sum(o.correct for o in outcomes) / len(outcomes)
    lines = [f"Problem {index}: accuracy={accuracy:.2f}", f"Question: {problem.question}"]
    if problem.evidence:
        lines.append(f"Evidence: {problem.evidence}")
    if problem.options:
        lines.append("Choices:\n" + "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(problem.options)))
    lines.append(f"Model's response:\n{first.answer or '(no answer)'}\nGround truth: {problem.gold}\n"
                 f"Correct: {first.correct}")
    if not first.correct and first.error:
        lines.append(f"Error: {_clip(f'{first.error_kind}: {first.error}', ERROR_CHARS)}")
    if findings:
        lines.append(SHOWS + "; ".join(f.text for f in findings))
    if task_kind == "text-to-sql":
        if first.result_preview and not first.correct:
            lines.append(f"Result of the model's query: {first.result_preview}")
        if first.expected_preview:
            lines.append(f"Expected result: {first.expected_preview}")
    lines.append("Model's full thinking process:")
    lines.append(_clip(first.completion, response_chars) or "(empty)")
    return "\n".join(lines).strip()


def group_samples(problems: Sequence[Problem], outcomes: Sequence[Outcome]) -> list[tuple[Problem, list[Outcome]]]:
    """Pair each problem with its samples: outcomes come problem-major, k per problem."""
    if not problems:
        return []
    k = max(1, len(outcomes) // len(problems))
    return [(p, list(outcomes[i * k:(i + 1) * k])) for i, p in enumerate(problems)]


def summarize(problems: Sequence[Problem], outcomes: Sequence[Outcome], task_kind: str = "text-to-sql",
              max_chars: int = 0, findings: Findings | None = None) -> str:
    """Every problem, in batch order; within `max_chars` when it is set."""
    groups = group_samples(problems, outcomes)
    found = findings or {}

    def render(response_chars: int, keep: list[int]) -> str:
        parts = [problem_entry(i + 1, p, outs, task_kind, response_chars, found.get(p.id, ()))
                 for i, (p, outs) in enumerate(groups) if i in keep]
        if len(keep) < len(groups):
            parts.append(f"({len(groups) - len(keep)} more problems left out to stay within the feedback budget)")
        return SEPARATOR.join(parts)

    keep = list(range(len(groups)))
    text = render(0, keep)
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    longest = max((len(outs[0].completion or "") for _, outs in groups), default=0)
    overflow = len(text) - max_chars
    text = render(max(200, longest - overflow // max(1, len(groups)) - 20), keep)
    # still too long: leave out successes, then failures, from the end
    order = [i for i, (_, outs) in enumerate(groups) if outs[0].correct][::-1]
    order += [i for i, (_, outs) in enumerate(groups) if not outs[0].correct][::-1]
    for i in order:
        if len(text) <= max_chars or len(keep) == 1:
            break
        keep.remove(i)
        text = render(200, keep)
    return text


def mistakes(problems: Sequence[Problem], outcomes: Sequence[Outcome], task_kind: str = "text-to-sql",
             limit: int = 8, findings: Findings | None = None) -> str:
    """The compact request's list: each wrong problem as question / the model's answer / the right one."""
    entries: list[str] = []
    for p, outs in group_samples(problems, outcomes):
        first = outs[0]
        if first.correct:
            continue
        lines = [f"{len(entries) + 1}. Question: {p.question}"]
        if p.evidence:
            lines.append(f"   Evidence: {p.evidence}")
        if task_kind == "text-to-sql":
            lines.append(f"   Its query: {first.answer or '(none)'}")
            lines.append(f"   Correct query: {p.gold}")
            if first.error_kind and first.error_kind != "wrong_result":
                lines.append(f"   Its query failed: {_clip(first.error, 200)}")
            if (findings or {}).get(p.id):
                lines.append("   " + SHOWS + "; ".join(f.text for f in (findings or {})[p.id]))
        else:
            if p.options:
                lines.append("   Choices: " + "; ".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(p.options)))
            lines.append(f"   Its answer: {first.answer or '(none)'}; correct answer: {p.gold}")
        entries.append("\n".join(lines))
        if len(entries) >= limit:
            break
    return "\n".join(entries) if entries else "(none: every question of this batch was answered right)"
