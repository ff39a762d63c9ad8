"""The TextGrad-style baseline (`rule = "textgrad"`; our texts, modelled on TextGrad's critic and optimizer
roles): one short critique per failure of the feedback batch (one batched call: the "textual gradients"),
then one edit from the aggregated critiques."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from lse_engine.errors import Cancelled
from lse_engine.evolve import prompts
from lse_engine.evolve.feedback import findings_of, group_samples, problem_entry
from lse_engine.evolve.proposers.base import Feedback, InstructionsProposer, ProposerContext, Request
from lse_engine.evolve.replies import with_prefill
from lse_engine.evolve.tree import Node
from lse_engine.llm.base import Chat
from lse_engine.tasks.base import Outcome, Problem

CRITIQUE_CHARS = 600
CRITIQUE_ATTEMPT = 50  # the critiques' seed is the round's seed for this attempt number


class TextGradProposer(InstructionsProposer):
    kind = "textgrad"

    def feedback(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                 outcomes: Sequence[Outcome], round_: int) -> Feedback:
        """The backward pass: one critique per failure, aggregated (with what the critiques cost)."""
        groups = group_samples(problems, outcomes)
        failures = [(i, p, outs) for i, (p, outs) in enumerate(groups, start=1) if not outs[0].correct]
        if not failures:
            return Feedback(aggregate_critiques([], len(groups)))
        if ctx.cancel.cancelled:
            raise Cancelled("cancelled")
        found = findings_of(ctx.task, problems, outcomes)
        chats = [build_critique_chat(node.instructions,
                                     problem_entry(i, p, outs, ctx.task_kind, 1200, found.get(p.id, ())))
                 for i, p, outs in failures]
        sampling = dataclasses.replace(ctx.sampling, seed=ctx.seed(round_, CRITIQUE_ATTEMPT))
        comps = ctx.evolver.generate(chats, sampling)
        p_tok, c_tok = sum(c.prompt_tokens for c in comps), sum(c.completion_tokens for c in comps)
        ctx.charge(len(chats), p_tok + c_tok)
        critiques = [(p.id, parse_critique(c.text)) for (_, p, _), c in zip(failures, comps, strict=True)]
        return Feedback(aggregate_critiques(critiques, len(groups)), len(chats), p_tok, c_tok)

    def request(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                outcomes: Sequence[Outcome], feedback: Feedback) -> Request:
        chat = build_textgrad_chat(node.instructions, feedback.text)
        return Request(self.kind, (with_prefill(chat) if ctx.settings.evolver_prefill else chat,), ctx.sampling)


_CRITIQUE_RE = re.compile(r"<critique>(.*?)</critique>", re.IGNORECASE | re.DOTALL)


def build_critique_chat(instructions: str, failure: str) -> Chat:
    """Ask for a short critique of the instructions from one failure (TextGrad's per-instance feedback)."""
    user = prompts.CRITIC_USER.format(instructions=instructions.strip(), failure=failure.strip())
    return [{"role": "system", "content": prompts.CRITIC_SYSTEM}, {"role": "user", "content": user}]


def parse_critique(text: str) -> str:
    """The critique in the reply (its last <critique> block, else the whole reply), clipped."""
    found = _CRITIQUE_RE.findall(text or "")
    critique = " ".join((found[-1] if found else text or "").split())
    return critique if len(critique) <= CRITIQUE_CHARS else critique[: CRITIQUE_CHARS - 2] + " …"


def aggregate_critiques(critiques: list[tuple[str, str]], n_problems: int) -> str:
    """The feedback the TextGrad-style edit sees: the batch accuracy and every non-empty critique, numbered."""
    failed = len(critiques)
    head = f"Accuracy: {n_problems - failed}/{n_problems} on the feedback batch."
    kept = [(pid, c) for pid, c in critiques if c]
    if not kept:
        return head + "\nNo critiques: keep what works and make the instructions clearer."
    lines = [f"{i}. [{pid}] {c}" for i, (pid, c) in enumerate(kept, start=1)]
    return head + f"\nCritiques of the instructions from the {failed} failures:\n" + "\n".join(lines)


def build_textgrad_chat(instructions: str, critiques: str) -> Chat:
    """One edit from the aggregated critiques (TextGrad's optimizer step)."""
    user = prompts.OPTIMIZER_USER.format(instructions=instructions.strip(), critiques=critiques.strip())
    return [{"role": "system", "content": prompts.OPTIMIZER_SYSTEM}, {"role": "user", "content": user}]
