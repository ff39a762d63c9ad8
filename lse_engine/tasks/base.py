"""What a task kind provides: render a problem into a chat, and score completions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from lse_engine.llm.base import Chat


@dataclass
class Problem:
    """One question of a suite. `gold` is SQL for text-to-sql, the answer letter for multiple-choice."""

    id: str
    question: str
    gold: str
    evidence: str | None = None
    options: list[str] | None = None
    line: int = 0  # 1-based line in the suite file where this problem starts (0: unknown)
    extra: dict[str, Any] = field(default_factory=dict)


# Error classes an outcome can carry; feedback groups failures by these.
ERROR_KINDS = (
    "no_answer",  # empty or missing answer: always wrong
    "not_a_query",  # several statements, or anything but a read query
    "syntax",  # sqlglot or SQLite could not parse it
    "no_such_table",
    "no_such_column",
    "timeout",
    "too_many_rows",
    "runtime",  # any other execution error
    "wrong_result",
)


@dataclass
class Outcome:
    """The scored result of one completion for one problem."""

    problem_id: str
    correct: bool
    completion: str = ""
    answer: str | None = None
    error_kind: str | None = None
    error: str | None = None
    result_preview: str = ""
    expected_preview: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Outcome:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


class Task(Protocol):
    """A task kind bound to its environment (a database, or nothing)."""

    kind: str

    def fingerprint(self) -> str:
        """Identity of the environment (e.g. database path, size, mtime) for cache keys."""
        ...

    def render(self, instructions: str, problem: Problem) -> Chat:
        """The chat the task model sees: the fixed template around the evolving instructions."""
        ...

    def agent_prompt(self, instructions: str, show_schema: bool = True) -> str:
        """The fixed system prompt around the instructions (schema included unless `show_schema` is off)."""
        ...

    def score(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Outcome]:
        """Score completions (one per problem, same order)."""
        ...

    def close(self) -> None: ...
