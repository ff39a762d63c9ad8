"""Multiple-choice questions (MMLU-Redux style): question, lettered options, one answer letter."""

from __future__ import annotations

import re
from collections.abc import Sequence

from lse_engine.llm.base import Chat
from lse_engine.tasks.base import Outcome, Problem

LETTERS = "ABCDEFGHIJ"
SYSTEM_PROMPT = "You are an expert who answers multiple-choice questions."
_ANSWER_RE = re.compile(r"<answer>\s*\(?([A-J])\)?[^<]*</answer>", re.IGNORECASE)
_FALLBACK_RE = re.compile(r"(?:answer\s*(?:is|:)\s*\(?)([A-J])\b", re.IGNORECASE)


def extract_letter(text: str, n_options: int) -> str | None:
    """The letter in the last `<answer>` tag, else the last "answer is X"; None when absent or out of range."""
    found = _ANSWER_RE.findall(text or "") or _FALLBACK_RE.findall(text or "")
    if not found:
        return None
    letter = found[-1].upper()
    return letter if letter in LETTERS[:n_options] else None


class MultipleChoiceTask:
    """Scores a completion correct when its answer letter equals the gold letter."""

    kind = "multiple-choice"

    def fingerprint(self) -> str:
        return "multiple-choice"

    def render(self, instructions: str, problem: Problem) -> Chat:
        options = problem.options or []
        lines = [f"Question: {problem.question}", ""]
        lines += [f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options)]
        lines += ["", "Instructions:", instructions.strip()]
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "\n".join(lines)},
        ]

    def score(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Outcome]:
        outs = []
        for problem, completion in zip(problems, completions, strict=True):
            n = len(problem.options or [])
            letter = extract_letter(completion, n)
            gold = problem.gold.strip().upper()
            out = Outcome(problem.id, correct=letter == gold, completion=completion, answer=letter)
            out.expected_preview = gold
            out.result_preview = letter or ""
            if letter is None:
                out.error_kind, out.error = "no_answer", f"no answer letter A-{LETTERS[n - 1] if n else 'A'} found"
            elif letter != gold:
                out.error_kind, out.error = "wrong_result", f"answered {letter}, expected {gold}"
            outs.append(out)
        return outs

    def close(self) -> None:
        pass
