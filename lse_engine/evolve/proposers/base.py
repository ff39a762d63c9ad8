"""The proposer protocol: given a node, how it did on a feedback batch and the run's context, propose new
instructions. One module per request kind implements it; the search loop asks, gates, scores and records.

A proposer works in three steps, each of which the search (and training, which re-asks what the search
asked) can call on its own:
1. `feedback`: what the evolver is shown about the batch (text, recorded as the child's `feedback`); it may
   itself call the evolver (TextGrad-style critiques) and says what that cost;
2. `request`: the chats to send (`Request`): one chat for the paper's request, one per mistake for facts;
   one reply per chat makes one candidate;
3. `read`: the replies (one per chat, in order) → new instructions, or why there are none.
`identity` says when two instructions are the same edit (a no-op when one is already in the tree).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lse_engine.config import EvolveConfig
from lse_engine.evolve.replies import normalize, parse_edit, reply_text
from lse_engine.evolve.tree import Node
from lse_engine.llm.base import LLM, CancelToken, Chat, Sampling, continues_reply
from lse_engine.tasks.base import ColumnValues, Outcome, Problem, Task

ChargeFn = Callable[[int, int], None]  # (evolver calls, tokens) spent outside the attempts


@dataclass(frozen=True)
class Feedback:
    """What the evolver is shown about a batch, and what making it cost (TextGrad-style critiques)."""

    text: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Request:
    """The chats one candidate is made from (one reply each), how they are decoded, and what reading the
    replies needs (`notes`: one per chat, the proposer's own)."""

    kind: str
    chats: tuple[Chat, ...]
    sampling: Sampling
    greedy_first: bool = False  # the first attempt decodes greedily (later ones sample)
    notes: tuple[Any, ...] = ()
    step: str = "evolver writing edit"  # what the progress line says while the evolver works
    examples: tuple[str, ...] = ()  # facts the engine adds to whatever the replies say (worked examples)


def request_record(request: Request | None) -> str:
    """The request as the run store keeps it (the child's `evolver_chat`): its kind, every chat, the notes reading
    the replies needs, and how it was decoded, so training can ask exactly it again (`request_from_record`)."""
    if request is None:
        return "[]"
    notes = [dataclasses.asdict(n) if dataclasses.is_dataclass(n) and not isinstance(n, type) else n
             for n in request.notes]
    return json.dumps({"kind": request.kind, "chats": list(request.chats), "notes": notes,
                       "stop": list(request.sampling.stop), "max_tokens": request.sampling.max_tokens,
                       "greedy_first": request.greedy_first, "examples": list(request.examples)},
                      ensure_ascii=False)


def request_from_record(text: str, kind: str, sampling: Sampling) -> Request | None:
    """A recorded request, or None when nothing was asked. Older runs recorded one chat (a JSON list): it is read
    as a one-chat request of `kind` (the run's)."""
    data = json.loads(text) if text else None
    if not data:
        return None
    if isinstance(data, list):
        return Request(kind, (data,), sampling)
    notes = tuple(_column_values(n) if isinstance(n, dict) else None for n in data.get("notes") or [])
    decoding = dataclasses.replace(sampling, stop=tuple(data.get("stop") or sampling.stop),
                                   max_tokens=int(data.get("max_tokens") or sampling.max_tokens))
    return Request(data["kind"], tuple(data["chats"]), decoding, bool(data.get("greedy_first")),
                   notes or (None,) * len(data["chats"]), examples=tuple(data.get("examples") or ()))


def _column_values(d: dict[str, Any]) -> ColumnValues:
    return ColumnValues(str(d["where"]), str(d["kind"]), tuple(d.get("values") or ()), tuple(d.get("examples") or ()))


@dataclass(frozen=True)
class Candidate:
    """What one set of replies proposes: new instructions, or why there are none (`error`)."""

    instructions: str | None
    raw: str  # the replies as read (the prefill included), as `lse tree --node` shows them
    error: str | None = None


@dataclass
class ProposerContext:
    """What a proposer may use: the task (its agent prompt, what it knows about a failure), the evolver and
    how it is sampled, the settings, cancellation, and where to charge evolver calls made outside attempts."""

    task: Task
    evolver: LLM
    sampling: Sampling  # [evolver.sampling] with the stop string
    settings: EvolveConfig
    cancel: CancelToken = field(default_factory=CancelToken)
    charge: ChargeFn = lambda calls, tokens: None  # noqa: E731
    questions: Sequence[str] = ()  # the train questions (which values a question names: `facts.named_in`)

    @property
    def task_kind(self) -> str:
        return self.task.kind

    def seed(self, round_: int, attempt: int) -> int:
        """The evolver's seed for an attempt: a function of (run seed, round, attempt), so a resumed run asks
        exactly what the interrupted one did."""
        return (self.settings.seed * 1_000_003 + round_ * 101 + attempt) % 2**31


class Proposer(Protocol):
    """A request kind."""

    kind: str

    def feedback(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                 outcomes: Sequence[Outcome], round_: int) -> Feedback: ...

    def request(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                outcomes: Sequence[Outcome], feedback: Feedback) -> Request | None:
        """The chats to send; None when there is nothing to ask (`nothing_to_ask` says why)."""
        ...

    def read(self, ctx: ProposerContext, request: Request, texts: Sequence[str], hit_limit: Sequence[bool],
             current: str) -> Candidate: ...

    def identity(self, instructions: str) -> str: ...

    nothing_to_ask: str


class InstructionsProposer:
    """Shared by the requests whose reply is new instructions in `<prompt>…</prompt>` (reference, compact,
    TextGrad-style): one chat, parsed by `replies.parse_edit`."""

    kind = "reference"
    nothing_to_ask = "nothing to ask"

    def identity(self, instructions: str) -> str:
        return normalize(instructions)

    def read(self, ctx: ProposerContext, request: Request, texts: Sequence[str], hit_limit: Sequence[bool],
             current: str) -> Candidate:
        chat = request.chats[0]
        raw = reply_text(chat, texts[0], hit_limit=hit_limit[0])
        asked = "\n".join(m["content"] for m in chat if m["role"] != "assistant")
        new, error = parse_edit(raw, continues_reply(chat), ctx.settings.max_prompt_chars, request=asked,
                                current=current, hit_limit=hit_limit[0])
        return Candidate(new, raw, error)
