"""Scoring nodes: on the batches of a round and on the dev holdout, where a child is raced against its parent
(chunk by chunk, it stops once it is behind beyond noise: `significance.behind`); and the round's batches."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from lse_engine.config import EvolveConfig
from lse_engine.evolve.context import TaskScorer
from lse_engine.evolve.recorder import RunRecorder, per_problem
from lse_engine.evolve.significance import behind
from lse_engine.evolve.tree import Node
from lse_engine.tasks.base import Outcome, Problem

RACE_CHUNK = 8  # dev problems scored between two looks at a raced child (one model batch)
StepFn = Callable[[str, int, int, "float | None"], None]  # (step, done, total, seconds left)


def draw_batches(train: Sequence[Problem], seed: int, round_: int, size: int,
                 heldout: int = 0) -> tuple[list[Problem], list[Problem]]:
    """A round's feedback batch F and held-out batch H (empty unless `heldout`); disjoint when train allows."""
    k = min(size, len(train))
    feedback = random.Random(f"{seed}:{round_}:feedback").sample(list(train), k)
    if heldout <= 0:
        return feedback, []
    rest = [p for p in train if p not in feedback]
    pool = rest if len(rest) >= min(heldout, len(train)) else list(train)
    return feedback, random.Random(f"{seed}:{round_}:heldout").sample(pool, min(heldout, len(pool)))


class NodeScoring:
    """Scores nodes through the scorer and records every scored batch; `step` reports progress."""

    def __init__(self, scorer: TaskScorer, recorder: RunRecorder, dev: Sequence[Problem], settings: EvolveConfig,
                 step: StepFn) -> None:
        self.scorer = scorer
        self.once = scorer.with_samples(1)  # feedback and held-out batches: one sample (the reference's)
        self.recorder = recorder
        self.holdout = list(dev)
        self.s = settings
        self.step = step

    def batch(self, node: Node, problems: Sequence[Problem], split: str, round_: int,
              step: str) -> tuple[float, list[Outcome]]:
        """Score `node` on `problems` (one sample each) and record the batch; (its score, the outcomes)."""
        keys, outs = self._scored(node, problems, step, 0, len(problems), self.once)
        ids = [p.id for p in problems for _ in range(len(keys) // max(1, len(problems)))]
        return self.recorder.batch(node.id, split, round_, ids, keys, outs), outs

    def dev(self, node: Node, step: str, parent: Node | None = None) -> str | None:
        """Score a node on dev (its per-problem results and share of replies without an answer included). A child
        is raced against its `parent` chunk by chunk (`significance.behind`); returns why it stopped early, or None
        when it was scored on every dev problem."""
        dev = self.holdout
        racing = parent is not None and self._races() and parent.dev_correct is not None
        chunk = RACE_CHUNK if racing else len(dev)
        done: list[Problem] = []
        keys: list[str] = []
        outs: list[Outcome] = []
        why = None
        for start in range(0, len(dev), chunk):
            part = dev[start:start + chunk]
            keys_part, outs_part = self._scored(node, part, step, len(done), len(dev))
            done += part
            keys += keys_part
            outs += outs_part
            node.dev_correct = per_problem(outs, len(done))
            if racing and parent is not None and len(done) < len(dev):
                why = behind(node.dev_correct, parent.dev_correct or (), len(dev) - len(done), self.s.race_alpha)
                if why:
                    break
        ids = [p.id for p in done for _ in range(len(keys) // max(1, len(done)))]
        node.dev_score = self.recorder.batch(node.id, "dev", 0, ids, keys, outs)
        node.no_answer = sum(o.error_kind == "no_answer" for o in outs) / max(1, len(outs))
        return why

    def _races(self) -> bool:
        """Racing applies to every rule but `chain` (the baseline follows each edit whatever it scores)."""
        return self.s.race and self.s.rule != "chain"

    def _scored(self, node: Node, problems: Sequence[Problem], step: str, offset: int,
                total: int, scorer: TaskScorer | None = None) -> tuple[list[str], list[Outcome]]:
        """Outcomes of `problems` (a chunk of a longer step: progress counts from `offset` of `total`)."""
        scorer = scorer or self.scorer
        per = scorer.samples
        scorer.on_progress = lambda done, todo, eta: self.step(step, offset * per + done, total * per, eta)
        try:
            return scorer.score(node.instructions, problems)
        finally:
            scorer.on_progress = None

