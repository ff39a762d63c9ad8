"""What a search ends with: the tree, the winner and why, and the counts a user reads."""

from __future__ import annotations

from dataclasses import dataclass

from lse_engine.evolve.significance import Verdict
from lse_engine.evolve.tree import Node, Tree


@dataclass
class SearchResult:
    run_id: str
    status: str  # done | cancelled | budget
    tree: Tree
    winner: Node
    root_dev: float | None
    message: str = ""
    replies: int = 0  # evolver replies
    noop_replies: int = 0  # replies whose instructions were already in the tree
    invalid_replies: int = 0  # replies without usable instructions
    root_test: float | None = None  # filled by the runner when the suite has a test split
    winner_test: float | None = None
    reason: str = ""  # why the winner is the winner (`winner_reason`)

    @property
    def winner_dev(self) -> float | None:
        return self.winner.dev_score

    @property
    def rounds_done(self) -> int:
        return len(self.tree.selections)

    @property
    def edits(self) -> int:
        """Children with new instructions (scored, or rejected by the gate)."""
        return sum(1 for n in self.tree.nodes.values() if n.id != 0 and n.status in ("ok", "rejected", "raced"))


def winner_reason(tree: Tree, winner: Node, verdict: Verdict | None) -> str:
    """Why the run's answer is what it is, in one sentence."""
    best = tree.best()
    if best.id == 0:
        return "no edit scored above the seed on dev"
    if verdict is None:
        return (f"#{winner.id} has the best dev score" if tree.winner_alpha is None
                else f"#{best.id} was not scored on the seed's dev problems")
    if winner.id == 0:
        return f"#{best.id} (best on dev) does not beat the seed beyond noise: {verdict.words()}"
    return f"#{winner.id} beats the seed beyond noise: {verdict.words()}"
