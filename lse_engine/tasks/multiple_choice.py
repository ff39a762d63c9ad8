"""Multiple-choice questions (MMLU-Redux style): question, lettered options, one answer letter.

The template is the reference's (lse/prompts/mmlu/instruction_prompt.py): the system message holds the task
overview and the instructions; the user message holds the question, the choices and the fixed closing line
that asks for the answer letter in `<answer>` tags (`show_work=False`: the letter alone, no reasoning first).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lse_engine.llm.base import Chat
from lse_engine.tags import extract_tag
from lse_engine.tasks.base import Finding, Outcome, Problem, with_answer_start

LETTERS = "ABCDEFGHIJ"
SEED_INSTRUCTIONS = "Return only the letter of the correct choice (A, B, C, or D) in <answer>...</answer>."
AGENT_PROMPT = """Task Overview:
You are an expert taking a test. Below, you are provided with a question and a list of choices. Your task is to select the correct answer from the choices.

**Instructions**
{instructions}"""
PROBLEM_MESSAGE = """Question:
{question}

Choices:
{choices}

{closing}"""
SHOW_WORK = "Follow the instructions and show your work. When you are ready, return the answer letter in tags: <answer> ... </answer>"
ANSWER_ONLY = "Follow the instructions. Return only the answer letter in tags: <answer> ... </answer>"
# A letter alone: "B", "(B)", "B.", "B)", "B: text". A word is not a letter ("Cell membrane", "A cell").
_LETTER = re.compile(r"^\(?([A-J])\)?(?:[.:)]|\s*$)")
# Without tags, "answer is B" / "Answer: (C)": the letter in capitals, not followed by another letter.
_FALLBACK = re.compile(r"[Aa]nswer(?:\s+is|\s*:)\s*\(?([A-J])\)?(?![A-Za-z])")


def extract_letter(text: str, n_options: int) -> str | None:
    """The answer letter: the reply's answer block (`tags.extract_tag`) when it holds exactly a letter, else the
    last "answer is X"; None when absent, not a letter, or out of range."""
    block = extract_tag(text, "answer", unclosed=True)
    if block is not None:
        m = _LETTER.match(block.strip())
        letter = m.group(1) if m else None
    else:
        found = _FALLBACK.findall(text or "")
        letter = found[-1] if found else None
    return letter if letter is not None and letter in LETTERS[:n_options] else None


def format_choices(options: Sequence[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options))


class MultipleChoiceTask:
    """Scores a completion correct when its answer letter equals the gold letter."""

    kind = "multiple-choice"

    def __init__(self, show_work: bool = True) -> None:
        self.show_work = show_work

    def fingerprint(self) -> str:
        return "multiple-choice:v2"

    def agent_prompt(self, instructions: str, show_schema: bool = True) -> str:  # noqa: ARG002 - no schema here
        return AGENT_PROMPT.format(instructions=instructions.strip())

    def render(self, instructions: str, problem: Problem) -> Chat:
        user = PROBLEM_MESSAGE.format(question=problem.question, choices=format_choices(problem.options or []),
                                      closing=SHOW_WORK if self.show_work else ANSWER_ONLY)
        return with_answer_start([{"role": "system", "content": self.agent_prompt(instructions)},
                                  {"role": "user", "content": user}], self.show_work)

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

    def has_answer(self, reply: str) -> bool:
        return extract_tag(reply, "answer", unclosed=True) is not None or bool(_FALLBACK.search(reply or ""))

    def findings(self, problem: Problem, outcome: Outcome) -> list[Finding]:
        """A wrong letter: the letter written and the right one (the facts request asks what rule leads there)."""
        if outcome.correct or not outcome.answer:
            return []
        gold = problem.gold.strip().upper()
        return [Finding("literal", f"answered {outcome.answer}, the correct answer is {gold}",
                        wrote=outcome.answer, should=problem.gold)]

    def names(self) -> set[str]:
        return set()

    def contradictions(self, text: str) -> list[str]:  # noqa: ARG002 - nothing to check a claim against
        return []

    def close(self) -> None:
        pass
