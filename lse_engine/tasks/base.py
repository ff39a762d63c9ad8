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


# how an outcome's `error` begins when the gold answer itself could not be computed (the problem is broken, not
# the answer)
GOLD_FAILED = "gold query failed"


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
    result_rows: int | None = None  # the shape of the answer's result and of the expected one (SQL)
    result_cols: int | None = None
    expected_rows: int | None = None
    expected_cols: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Outcome:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class ColumnValues:
    """How a column stores its values, read from the data: every distinct value (`listed`: codes, a few words),
    examples of its text (`text`), or the range of its numbers (`numbers`: `values` is (low, high)). Values are
    written as SQL literals; `examples` names, per listed value, one row that has it ("" when none)."""

    where: str  # table.column
    kind: str  # listed | text | numbers
    values: tuple[str, ...]
    examples: tuple[str, ...] = ()

    ONLY_VALUES = "holds only these values: "
    SUCH_VALUES = "holds values such as "

    def describe(self) -> str:
        """The clause the evolver reads: "orders.status holds only these values: 'D' (e.g. 'Order 7'), 'S'"."""
        if self.kind == "listed":
            examples = self.examples or ("",) * len(self.values)
            shown = [v + (f" (e.g. {e})" if e else "") for v, e in zip(self.values, examples, strict=True)]
            return f"{self.where} {self.ONLY_VALUES}" + ", ".join(shown)
        if self.kind == "text":
            return f"{self.where} {self.SUCH_VALUES}" + ", ".join(self.values)
        return f"{self.where} holds numbers from {self.values[0]} to {self.values[1]}"

    def codes(self) -> list[str]:
        """The listed values as written in the data (quotes removed), [] unless the column is listed whole."""
        if self.kind != "listed":
            return []
        return [v[1:-1].replace("''", "'") if v.startswith("'") else v for v in self.values]


@dataclass(frozen=True)
class Finding:
    """What the environment and the gold answer tell about one wrong answer: computed, not guessed.

    `value`: the gold answer compares `column` with `values` the wrong one does not write (`stored`: how that
    column stores its values); `literal`: where the answers differ, the wrong one writes `wrote` and the gold one
    `should` (a value, not style); `column`: a column looked up where it is not (`values` holds the table that
    has it); `table`: a table that does not exist; `quoting`: names that need quoting written bare; `shape`: a
    result of the wrong shape. `text` is one sentence for the evolver."""

    kind: str  # value | literal | column | table | quoting | shape
    text: str
    column: str = ""
    values: tuple[str, ...] = ()
    stored: ColumnValues | None = None
    wrote: str = ""
    should: str = ""


ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"  # every task's answer format (the templates ask for it)


def with_answer_start(chat: Chat, show_work: bool) -> Chat:
    """The chat as the task model gets it: asked for the answer alone, its reply begins inside the answer block
    (a prefill every backend continues), so no instructions can talk it out of the format."""
    return chat if show_work else [*chat, {"role": "assistant", "content": ANSWER_OPEN}]


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

    def has_answer(self, reply: str) -> bool:
        """Whether a reply holds an answer at all (right or wrong)."""
        ...

    def findings(self, problem: Problem, outcome: Outcome) -> list[Finding]:
        """What the environment and the gold answer tell about a wrong outcome ([] when nothing)."""
        ...

    def names(self) -> set[str]:
        """The environment's own names (a database's tables and columns), lower-cased."""
        ...

    def contradictions(self, text: str) -> list[str]:
        """What `text` states that the environment contradicts ([] when nothing, or nothing checkable)."""
        ...

    def close(self) -> None: ...
