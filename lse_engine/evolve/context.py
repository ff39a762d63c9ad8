"""Everything one search needs, in one object. The runner builds it from a workspace; bench builds its own
(its store, its pool of models, its call accounting) and calls the search directly."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from lse_engine.config import EvolveConfig
from lse_engine.llm.base import LLM, CancelToken, Sampling
from lse_engine.progress import ProgressCallback, ignore_progress
from lse_engine.scoring import Scorer
from lse_engine.store import Store
from lse_engine.tasks.base import Problem, Task


@dataclass
class SearchContext:
    store: Store
    scorer: Scorer  # the task model through the outcome cache
    evolver: LLM
    evolver_sampling: Sampling
    task: Task  # renders the agent prompt the evolver is shown
    train: Sequence[Problem]  # feedback batches are drawn from here
    dev: Sequence[Problem]  # the fixed holdout that scores every node and picks the winner
    settings: EvolveConfig
    cancel: CancelToken = dataclasses.field(default_factory=CancelToken)
    progress: ProgressCallback = ignore_progress

    @property
    def task_kind(self) -> str:
        return self.task.kind
