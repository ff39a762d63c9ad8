"""The evolver's prompt, and parsing its reply into new instructions."""

from __future__ import annotations

import re

from lse_engine.llm.base import Chat

SYSTEM = (
    "You improve the instructions given to an AI model. You see the current instructions and how the model "
    "did on a batch of problems with them. Write improved instructions that fix the failures without "
    "breaking what works. Keep what is useful, be specific and concise."
)
_PROMPT_RE = re.compile(r"<prompt>(.*?)</prompt>", re.IGNORECASE | re.DOTALL)

TASK_HINTS = {
    "text-to-sql": "The model writes one SQLite query per question; the schema and question are given to it "
    "separately, so the instructions should be general rules, not answers to these questions.",
    "multiple-choice": "The model answers multiple-choice questions with one letter; the instructions should be "
    "general strategies, not answers to these questions.",
}


def build_chat(instructions: str, feedback: str, task_kind: str) -> Chat:
    user = "\n".join(
        [
            TASK_HINTS.get(task_kind, ""),
            "",
            "Current instructions:",
            "<current>",
            instructions.strip(),
            "</current>",
            "",
            "Results with these instructions:",
            feedback.strip(),
            "",
            "Think briefly about what went wrong, then write the complete new instructions inside "
            "<prompt></prompt> tags. Keep the required answer format in them.",
        ]
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse_reply(text: str, max_chars: int) -> tuple[str | None, str | None]:
    """(instructions, None) when the reply holds usable instructions, else (None, why not)."""
    found = _PROMPT_RE.findall(text or "")
    if not found:
        return None, "no <prompt>…</prompt> block in the evolver's reply"
    new = found[-1].strip()
    if not new:
        return None, "the <prompt> block is empty"
    if len(new) > max_chars:
        return None, f"the new instructions are too long ({len(new)} > {max_chars} characters)"
    return new, None
