"""Progress events streamed by long jobs (evaluate, evolve, train) to the CLI, the worker and the server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ProgressEvent:
    run_id: str
    kind: str  # evaluate | evolve | train
    message: str
    round: int = 0
    rounds: int = 0
    winner_dev: float | None = None  # the node the run would apply (the root while none beats it)
    root_dev: float | None = None
    node: dict[str, Any] | None = None
    # the step under way and how far it is: "scoring dev" 12/40 problems, seconds left (None: unknown yet)
    step: str = ""
    step_done: int = 0
    step_total: int = 0
    eta_s: float | None = None
    done: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[ProgressEvent], None]


def ignore_progress(event: ProgressEvent) -> None:
    """A progress callback that does nothing."""
