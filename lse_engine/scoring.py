"""Score instructions on problems with the task model, through the outcome cache.

Everything that scores a prompt (eval, the tree, training rewards, bench) goes through `Scorer.score`, so
prompts are placed and limited identically everywhere, and an outcome already stored is never recomputed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lse_engine.errors import Cancelled
from lse_engine.llm.base import LLM, CancelToken, Sampling
from lse_engine.store import Store
from lse_engine.tasks.base import Outcome, Problem, Task


@dataclass
class Usage:
    """Model calls and tokens spent (cache hits cost nothing)."""

    calls: int = 0
    tokens: int = 0
    sql_executions: int = 0


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
    ) -> None:
        self.task = task
        self.llm = llm
        self.store = store
        self.sampling = sampling
        self.cancel = cancel or CancelToken()
        self.chunk_size = max(1, chunk_size)
        self.on_usage = on_usage
        self.usage = Usage()
        self._memo: dict[str, Outcome] = {}
        self._env = task.fingerprint()

    def key(self, instructions: str, problem: Problem) -> str:
        chat = self.task.render(instructions, problem)
        payload = json.dumps(
            [self.llm.model_id, self.sampling.key(), self._env, chat, problem.gold, problem.options],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def score(self, instructions: str, problems: Sequence[Problem]) -> tuple[list[str], list[Outcome]]:
        """Outcome keys and outcomes for `problems`, generating only what is not cached.

        Generation runs in chunks; each chunk's outcomes are committed before the next starts, and
        cancellation is checked between chunks (so it stops within one model call).
        """
        keys = [self.key(instructions, p) for p in problems]
        found = {k: self._memo[k] for k in keys if k in self._memo}
        missing_keys = [k for k in dict.fromkeys(keys) if k not in found]
        if missing_keys and self.store is not None:
            found.update(self.store.get_outcomes(missing_keys))
        todo = [(k, p) for k, p in zip(keys, problems) if k not in found]
        todo = list({k: (k, p) for k, p in todo}.values())  # a problem listed twice is generated once
        for i in range(0, len(todo), self.chunk_size):
            if self.cancel.cancelled:
                raise Cancelled("cancelled")
            chunk = todo[i : i + self.chunk_size]
            chats = [self.task.render(instructions, p) for _, p in chunk]
            completions = self.llm.generate(chats, self.sampling)
            outcomes = self.task.score([p for _, p in chunk], [c.text for c in completions])
            tokens = 0
            for out, comp in zip(outcomes, completions):
                out.prompt_tokens, out.completion_tokens = comp.prompt_tokens, comp.completion_tokens
                tokens += comp.prompt_tokens + comp.completion_tokens
            pairs = [(k, o) for (k, _), o in zip(chunk, outcomes)]
            if self.store is not None:
                self.store.put_outcomes(pairs)
            self._memo.update(pairs)
            found.update(pairs)
            self.usage.calls += len(chunk)
            self.usage.tokens += tokens
            self.usage.sql_executions += len(chunk)
            if self.on_usage:
                self.on_usage(len(chunk), tokens)
        return keys, [found[k] for k in keys]


def accuracy(outcomes: Sequence[Outcome]) -> float:
    return sum(o.correct for o in outcomes) / len(outcomes) if outcomes else 0.0
