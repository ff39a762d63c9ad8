"""`request = "compact"`, for small evolvers that copy a long request back: the current instructions and a
short list of the batch's mistakes (question, the model's answer, the right one), one concrete ask. With
`evolver_prefill` the reply is begun with the current instructions and a new bullet."""

from __future__ import annotations

from collections.abc import Sequence

from lse_engine.evolve import prompts
from lse_engine.evolve.feedback import findings_of, mistakes
from lse_engine.evolve.proposers.base import Feedback, InstructionsProposer, ProposerContext, Request
from lse_engine.evolve.replies import with_prefill
from lse_engine.evolve.tree import Node
from lse_engine.llm.base import Chat
from lse_engine.tasks.base import Outcome, Problem


class CompactProposer(InstructionsProposer):
    kind = "compact"

    def feedback(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                 outcomes: Sequence[Outcome], round_: int) -> Feedback:
        return Feedback(mistakes(problems, outcomes, ctx.task_kind, findings=findings_of(ctx.task, problems, outcomes)))

    def request(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                outcomes: Sequence[Outcome], feedback: Feedback) -> Request:
        chat = build_compact_chat(node.instructions, feedback.text, ctx.task_kind)
        if ctx.settings.evolver_prefill:
            chat = with_prefill(chat, compact_start(node.instructions))
        return Request(self.kind, (chat,), ctx.sampling)


def compact_start(instructions: str) -> str:
    """The compact request's prefill: the current instructions and a new bullet, so the reply continues a list."""
    return instructions.strip() + "\n- "


def build_compact_chat(instructions: str, mistakes: str, task_kind: str) -> Chat:
    """The short, structured request for small evolvers (`request = "compact"`)."""
    template = prompts.COMPACT.get(task_kind, prompts.COMPACT["text-to-sql"])
    return [{"role": "user", "content": template.format(instructions=instructions.strip(), mistakes=mistakes.strip())}]
