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
_OPEN_PROMPT_RE = re.compile(r"<prompt>(?!.*<prompt>)(.*)\Z", re.IGNORECASE | re.DOTALL)  # the last, unclosed
PROMPT_PREFILL = "<prompt>\n"  # with `evolver_prefill`, the evolver's reply starts here

TASK_HINTS = {
    "text-to-sql": "The model writes one SQLite query per question; the schema and question are given to it "
    "separately, so the instructions should be general rules, not answers to these questions.",
    "multiple-choice": "The model answers multiple-choice questions with one letter; the instructions should be "
    "general strategies, not answers to these questions.",
}


def with_prefill(chat: Chat) -> Chat:
    """The chat with the evolver's reply begun at `<prompt>` (for small models that never write the tag)."""
    return [*chat, {"role": "assistant", "content": PROMPT_PREFILL}]


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


def parse_reply(text: str, max_chars: int, allow_unclosed: bool = False) -> tuple[str | None, str | None]:
    """(instructions, None) when the reply holds usable instructions, else (None, why not).

    The last `<prompt>…</prompt>` block wins. With `allow_unclosed` (a reply prefilled with `<prompt>`), a final
    block without its closing tag counts as complete.
    """
    found = _PROMPT_RE.findall(text or "")
    if not found and allow_unclosed:
        found = _OPEN_PROMPT_RE.findall(text or "")
    if not found:
        return None, "no <prompt>…</prompt> block in the evolver's reply"
    new = found[-1].strip()
    if not new:
        return None, "the <prompt> block is empty"
    if len(new) > max_chars:
        return None, f"the new instructions are too long ({len(new)} > {max_chars} characters)"
    return new, None


# -- TextGrad-style baseline: per-failure critiques ("textual gradients"), then one aggregated edit ------------
CRITIC_SYSTEM = (
    "You are part of an optimization system that improves the instructions given to an AI model. You see the "
    "instructions and one problem the model got wrong with them. Criticise the instructions: say briefly what "
    "in them (or missing from them) led to this failure and how they should change. Do not answer the problem "
    "and do not rewrite the instructions."
)
TEXTGRAD_SYSTEM = (
    "You are part of an optimization system that improves the instructions given to an AI model. You receive "
    "critiques of the current instructions, one per failed problem; they may be noisy or contradict each "
    "other. Use what they agree on to write improved instructions."
)
_CRITIQUE_RE = re.compile(r"<critique>(.*?)</critique>", re.IGNORECASE | re.DOTALL)
CRITIQUE_CHARS = 600


def build_critique_chat(instructions: str, failure: str, task_kind: str) -> Chat:
    """Ask for a short critique of the instructions from one failure (TextGrad's per-instance feedback)."""
    user = "\n".join([
        TASK_HINTS.get(task_kind, ""), "", "Current instructions:", "<current>", instructions.strip(), "</current>",
        "", "A problem the model got wrong with these instructions:", failure.strip(), "",
        "In at most three sentences, inside <critique></critique> tags, say how the instructions should change.",
    ])
    return [{"role": "system", "content": CRITIC_SYSTEM}, {"role": "user", "content": user}]


def parse_critique(text: str) -> str:
    """The critique in the reply (its last <critique> block, else the whole reply), clipped."""
    found = _CRITIQUE_RE.findall(text or "")
    critique = " ".join((found[-1] if found else text or "").split())
    return critique if len(critique) <= CRITIQUE_CHARS else critique[: CRITIQUE_CHARS - 2] + " …"


def aggregate_critiques(critiques: list[tuple[str, str]], n_problems: int) -> str:
    """The feedback the TextGrad edit sees: the batch accuracy and every non-empty critique, numbered."""
    failed = len(critiques)
    head = f"Accuracy: {n_problems - failed}/{n_problems} on the feedback batch."
    kept = [(pid, c) for pid, c in critiques if c]
    if not kept:
        return head + "\nNo critiques: keep what works and make the instructions clearer."
    lines = [f"{i}. [{pid}] {c}" for i, (pid, c) in enumerate(kept, start=1)]
    return head + f"\nCritiques of the instructions from the {failed} failures:\n" + "\n".join(lines)


def build_textgrad_chat(instructions: str, critiques: str, task_kind: str) -> Chat:
    """One edit from the aggregated critiques (TextGrad's optimizer step)."""
    user = "\n".join([
        TASK_HINTS.get(task_kind, ""), "", "Current instructions:", "<current>", instructions.strip(), "</current>",
        "", critiques.strip(), "",
        "Write the complete improved instructions inside <prompt></prompt> tags. Keep the required answer format "
        "in them.",
    ])
    return [{"role": "system", "content": TEXTGRAD_SYSTEM}, {"role": "user", "content": user}]
