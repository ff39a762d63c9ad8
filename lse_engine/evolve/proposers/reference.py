"""The paper's request (`request = "reference"`): the node's rendered agent prompt (schema included), its
instructions again inside `<current>`, the evaluation summary of every problem of the feedback batch (right
and wrong, with full responses), and the ask for new instructions inside `<prompt>…</prompt>`."""

from __future__ import annotations

from collections.abc import Sequence

from lse_engine.evolve import prompts
from lse_engine.evolve.feedback import findings_of, summarize
from lse_engine.evolve.proposers.base import Feedback, InstructionsProposer, ProposerContext, Request
from lse_engine.evolve.replies import with_prefill
from lse_engine.evolve.tree import Node
from lse_engine.llm.base import Chat
from lse_engine.tasks.base import Outcome, Problem


class ReferenceProposer(InstructionsProposer):
    kind = "reference"

    def feedback(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                 outcomes: Sequence[Outcome], round_: int) -> Feedback:
        return Feedback(summarize(problems, outcomes, ctx.task_kind, max_chars=ctx.settings.feedback_chars,
                                  findings=findings_of(ctx.task, problems, outcomes)))

    def request(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                outcomes: Sequence[Outcome], feedback: Feedback) -> Request:
        agent_prompt = ctx.task.agent_prompt(node.instructions, show_schema=ctx.settings.show_schema)
        chat = build_chat(node.instructions, feedback.text, ctx.task_kind, agent_prompt, len(problems))
        return Request(self.kind, (with_prefill(chat) if ctx.settings.evolver_prefill else chat,), ctx.sampling)


def build_chat(instructions: str, feedback: str, task_kind: str, agent_prompt: str | None = None,
               n_problems: int | None = None) -> Chat:
    """The evolver's request. `agent_prompt` is the rendered system prompt the task model saw (with the
    schema); without it, the instructions stand in for it (old runs, tests)."""
    template = prompts.EVOLVE.get(task_kind, prompts.EVOLVE["text-to-sql"])
    n = n_problems if n_problems is not None else feedback.count("\nCorrect: ") + feedback.startswith("Correct: ")
    user = template.format(agent_prompt=(agent_prompt or instructions).strip(), instructions=instructions.strip(),
                           n_problems=n, summary=feedback.strip())
    return [{"role": "user", "content": user}]
