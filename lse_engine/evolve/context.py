"""Everything one search needs, in one object, built by the run assembler (`lse_engine.runner`) for the CLI,
the bench, the language server's worker and training alike, or by hand (benchmarks, tests)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from lse_engine.config import EvolveConfig
from lse_engine.evolve.proposers import Proposer, ProposerContext, proposer_for
from lse_engine.evolve.recorder import RunRecorder
from lse_engine.llm.base import LLM, CancelToken, Sampling
from lse_engine.progress import ProgressCallback, ignore_progress
from lse_engine.tasks.base import Outcome, Problem, Task

ProgressFn = Callable[[int, int, float | None], None]  # (generated, to generate, seconds left or None)


class TaskScorer(Protocol):
    """What the search needs of a scorer (`lse_engine.scoring.Scorer` is the real one): outcomes for
    instructions on problems, problem-major, `samples` per problem, with an optional progress callback."""

    samples: int
    on_progress: ProgressFn | None

    def score(self, instructions: str, problems: Sequence[Problem]) -> tuple[list[str], list[Outcome]]: ...

    def with_samples(self, samples: int) -> TaskScorer:
        """The same scorer taking `samples` completions per problem."""
        ...


@dataclass
class SearchContext:
    recorder: RunRecorder  # where the run's steps are committed (the run store, or memory)
    scorer: TaskScorer  # the task model through the outcome cache
    evolver: LLM
    evolver_sampling: Sampling  # [evolver.sampling] with the stop string
    task: Task  # renders the agent prompt the evolver is shown; what its data tell about a failure
    train: Sequence[Problem]  # feedback batches are drawn from here
    dev: Sequence[Problem]  # the fixed holdout that scores every node and picks the winner
    settings: EvolveConfig
    cancel: CancelToken = dataclasses.field(default_factory=CancelToken)
    progress: ProgressCallback = ignore_progress
    proposer: Proposer | None = None  # None: the one the settings name (`proposers.proposer_for`)

    def __post_init__(self) -> None:
        if self.proposer is None:
            self.proposer = proposer_for(self.settings)

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

    @property
    def task_kind(self) -> str:
        return self.task.kind

    def proposer_context(self) -> ProposerContext:
        return ProposerContext(task=self.task, evolver=self.evolver, sampling=self.evolver_sampling,
                               settings=self.settings, cancel=self.cancel,
                               charge=lambda calls, tokens: self.recorder.charge(evolver_calls=calls, tokens=tokens),
                               questions=[p.question for p in self.train])
