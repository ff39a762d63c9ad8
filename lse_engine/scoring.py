"""Score instructions on problems with the task model, through the outcome cache.

Everything that scores a prompt (eval, the tree, training rewards, bench) goes through `Scorer.score`, so
prompts are placed and limited identically everywhere, and an outcome already stored is never recomputed.
Each problem gets `samples` completions (the paper averages 8 at temperature 0.7 on its holdout); the sample
index is part of each outcome's cache key, beside the model, the decoding settings, the environment, the
rendered chat and the gold answer.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lse_engine.errors import Cancelled
from lse_engine.llm.base import LLM, CancelToken, Chat, Completion, Sampling, continues_reply
from lse_engine.store import Store
from lse_engine.tasks.base import ANSWER_OPEN, Outcome, Problem, Task

ProgressFn = Callable[[int, int, float | None], None]  # (generated, to generate, seconds left or None)


@dataclass
class Usage:
    """Model calls and tokens spent (cache hits cost nothing)."""

    calls: int = 0
    tokens: int = 0


# Part of every outcome's cache key: raise it when the rules that turn a reply into a verdict change (how the answer
# is extracted, how results are compared), so no outcome cached under the old rules is reused. 2: an answer block
# cut inside its closing tag (`...</answer`) no longer keeps the tag's start. 3: a reply begun inside the answer
# keeps its beginning; a reply with no answer gets one continuation asking for it.
SCORING_RULES = 3
ANSWER_TOKENS = 256  # the continuation that asks a reply without an answer for one (an SQL query, a letter)


class Scorer:
    """Binds a task, a task model and its sampling to the store's outcome cache."""

    def __init__(
        self,
        task: Task,
        llm: LLM,
        store: Store | None,
        sampling: Sampling,
        cancel: CancelToken | None = None,
        chunk_size: int = 16,
        on_usage: Callable[[int, int], None] | None = None,
        samples: int = 1,
        stop: Sequence[str] = ("</answer>",),
    ) -> None:
        self.task = task
        self.llm = llm
        self.store = store
        self.sampling = dataclasses.replace(sampling, stop=tuple(stop)) if stop else sampling
        self.cancel = cancel or CancelToken()
        self.chunk_size = max(1, chunk_size)
        self.on_usage = on_usage
        self.on_progress: ProgressFn | None = None
        self.samples = max(1, samples)
        self.usage = Usage()
        self._memo: dict[str, Outcome] = {}
        self._env = task.fingerprint()

    def with_samples(self, samples: int) -> Scorer:
        """The same scorer (cache, usage, cancellation) taking `samples` completions per problem: the feedback
        batch is scored once, as the reference scores it, while the holdout takes `[model.sampling] samples`."""
        view = copy.copy(self)
        view.samples = max(1, samples)
        return view

    def key(self, instructions: str, problem: Problem, sample: int = 0) -> str:
        chat = self.task.render(instructions, problem)
        payload = json.dumps(
            [self.llm.model_id, self.sampling.key(), self._env, chat, problem.gold, problem.options, sample,
             SCORING_RULES],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def keys(self, instructions: str, problems: Sequence[Problem]) -> list[str]:
        """The cache keys `score` would use: problem-major, `samples` per problem."""
        return [self.key(instructions, p, j) for p in problems for j in range(self.samples)]

    def cached(self, instructions: str, problems: Sequence[Problem]) -> bool:
        """True when every outcome is already known (scoring would generate nothing)."""
        keys = [k for k in self.keys(instructions, problems) if k not in self._memo]
        return not keys or (self.store is not None and len(self.store.get_outcomes(keys)) == len(set(keys)))

    def score(self, instructions: str, problems: Sequence[Problem]) -> tuple[list[str], list[Outcome]]:
        """Outcome keys and outcomes (problem-major, `samples` per problem), generating only what is not cached.

        Generation runs in chunks; each chunk's outcomes are committed before the next starts, and
        cancellation is checked between chunks (so it stops within one model call).
        """
        jobs = [(self.key(instructions, p, j), p) for p in problems for j in range(self.samples)]
        keys = [k for k, _ in jobs]
        found = {k: self._memo[k] for k in keys if k in self._memo}
        missing_keys = [k for k in dict.fromkeys(keys) if k not in found]
        if missing_keys and self.store is not None:
            found.update(self.store.get_outcomes(missing_keys))
        todo = list({k: (k, p) for k, p in jobs if k not in found}.values())  # a repeat is generated once
        started = time.monotonic()
        if todo and self.on_progress:
            self.on_progress(0, len(todo), None)
        for i in range(0, len(todo), self.chunk_size):
            if self.cancel.cancelled:
                raise Cancelled("cancelled")
            chunk = todo[i : i + self.chunk_size]
            chats = [self.task.render(instructions, p) for _, p in chunk]
            completions = self._replies(chats, self._sampling_for(chunk[0][0]))
            outcomes = self.task.score([p for _, p in chunk], [c.text for c in completions])
            tokens = 0
            for out, comp in zip(outcomes, completions, strict=True):
                out.prompt_tokens, out.completion_tokens = comp.prompt_tokens, comp.completion_tokens
                tokens += comp.prompt_tokens + comp.completion_tokens
            pairs = [(k, o) for (k, _), o in zip(chunk, outcomes, strict=True)]
            if self.store is not None:
                self.store.put_outcomes(pairs)
            self._memo.update(pairs)
            found.update(pairs)
            self.usage.calls += len(chunk)
            self.usage.tokens += tokens
            if self.on_usage:
                self.on_usage(len(chunk), tokens)
            if self.on_progress:
                done = i + len(chunk)
                rate = (time.monotonic() - started) / done
                self.on_progress(done, len(todo), rate * (len(todo) - done))
        return keys, [found[k] for k in keys]

    def _replies(self, chats: list[Chat], sampling: Sampling) -> list[Completion]:
        """The task model's whole replies: a reply begun inside the answer block (`with_answer_start`) keeps its
        beginning; a reply that reasoned and ended with no answer at all gets one continuation begun at
        `<answer>`, at most `ANSWER_TOKENS` long (its tokens are counted), so no instructions can leave a reply
        without an answer."""
        completions = self.llm.generate(chats, sampling)
        replies = [Completion(_whole(chat, c.text), c.prompt_tokens, c.completion_tokens, c.finish_reason)
                   for chat, c in zip(chats, completions, strict=True)]
        missing = [i for i, (chat, r) in enumerate(zip(chats, replies, strict=True))
                   if not continues_reply(chat) and not self.task.has_answer(r.text)]
        if missing:
            asked = [[*chats[i], {"role": "assistant", "content": replies[i].text.rstrip() + "\n\n" + ANSWER_OPEN}]
                     for i in missing]
            more = self.llm.generate(asked, dataclasses.replace(sampling, max_tokens=ANSWER_TOKENS))
            for i, chat, c in zip(missing, asked, more, strict=True):
                r = replies[i]
                replies[i] = Completion(_whole(chat, c.text), r.prompt_tokens,
                                        r.completion_tokens + c.completion_tokens, c.finish_reason)
        return replies

    def _sampling_for(self, first_key: str) -> Sampling:
        """Sampled decoding gets a seed derived from the chunk's first outcome key: the same call draws the same."""
        if self.sampling.temperature <= 0 or self.sampling.seed is not None:
            return self.sampling
        return dataclasses.replace(self.sampling, seed=int(first_key[:12], 16))


def _whole(chat: Chat, completion: str) -> str:
    """The reply as the task scores it: a prefill (the answer block's start) and its continuation. An endpoint that
    answers a new turn instead of continuing (some OpenAI-compatible servers) may repeat the prefill: kept once."""
    if not continues_reply(chat):
        return completion
    start = chat[-1]["content"]
    return completion if completion.lstrip().lower().startswith(start.strip().lower()) else start + completion


def accuracy(outcomes: Sequence[Outcome]) -> float:
    return sum(o.correct for o in outcomes) / len(outcomes) if outcomes else 0.0
