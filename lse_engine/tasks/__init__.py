"""Task kinds: how a problem becomes a chat and how a completion is scored."""

from __future__ import annotations

from lse_engine.tasks.base import Outcome, Problem, Task

__all__ = ["Outcome", "Problem", "Task", "make_task"]


def make_task(kind: str, database: str | None = None, *, timeout_s: float = 5.0, row_cap: int = 100_000,
              example_values: int = 3, gold_timeout_s: float = 30.0, show_work: bool = True,
              facts: str = "per-question") -> Task:
    """Build the task for a suite's kind (`show_work`: the template's closing line asks for reasoning first;
    `facts`: where a text-to-SQL prompt's facts go, `[task] facts`)."""
    if kind == "text-to-sql":
        from lse_engine.tasks.text_to_sql import SQLiteTask

        if database is None:
            raise ValueError("text-to-sql needs a database")
        return SQLiteTask(database, timeout_s=timeout_s, row_cap=row_cap, example_values=example_values,
                          gold_timeout_s=gold_timeout_s, show_work=show_work, facts=facts)
    if kind == "multiple-choice":
        from lse_engine.tasks.multiple_choice import MultipleChoiceTask

        return MultipleChoiceTask(show_work=show_work)
    raise ValueError(f"unknown task kind {kind!r} (expected text-to-sql or multiple-choice)")
