"""The evolution tree and its selection rules.

UCB, as in the reference code (lse/core/tree.py): every scored node is a candidate, root included. With N
the number of selections made so far and visits(n) the times n was selected,

    ucb(n) = dev(n) + c * sqrt(ln(max(N, 1)) / max(visits(n), 1))

and the highest value is expanded; ties go to the older node. A node expanded once keeps the bonus of a
fresh child: with `1 + visits` instead, a new child always outranks an expanded node of equal score and
the tree degenerates towards the chain (benchmarks/bench_landscape.py measures both). `best` is greedy on dev
score, `chain` always expands the newest scored node (the linear chain the paper compares against).

`pareto` is GEPA's rule: per dev problem, the nodes with the best outcome on it form that problem's front;
nodes that are on no front once dominated nodes are removed are dropped, and a survivor is sampled with
probability proportional to the number of fronts it is on (an RNG seeded by (seed, round)). It needs each
node's per-problem dev outcomes (`Node.dev_correct`, stored with each node).
`textgrad` is a TextGrad-style loop (our prompts, not TextGrad's own): a chain that reverts: it expands the newest
node whose dev score did not drop below its parent's (so a child that made things worse is abandoned for the best
so far on the chain).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from lse_engine.evolve.significance import Verdict, compare
from lse_engine.kinds import RULES
from lse_engine.records import NodeRow

__all__ = ["RULES", "Node", "Tree"]


@dataclass
class Node:
    id: int
    parent: int | None
    instructions: str
    round: int = 0
    # pending | ok | rejected (the acceptance gate) | raced (stopped part-way through dev: behind its parent beyond
    # noise) | failed (no usable reply) | noop (no new instructions) | false (states what the data contradict)
    status: str = "pending"
    dev_score: float | None = None
    train_score: float | None = None
    heldout_score: float | None = None
    parent_heldout: float | None = None
    evolver_output: str = ""
    feedback: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    error: str | None = None
    evolver_chat: str = ""  # JSON: exactly what the evolver was sent for this child (prefill included)
    selected: int = 0  # times expanded
    # per dev problem, in dev order, the fraction of its samples answered right (pareto, the winner's paired test)
    dev_correct: tuple[float, ...] | None = None
    no_answer: float | None = None  # share of its dev replies with no answer at all

    @property
    def visits(self) -> int:
        return self.selected

    @property
    def selectable(self) -> bool:
        return self.status == "ok" and self.dev_score is not None

    def to_dict(self) -> dict[str, Any]:
        """The node as progress events and `lse tree --json` show it."""
        return {
            "id": self.id, "parent": self.parent, "instructions": self.instructions, "round": self.round,
            "status": self.status, "dev": self.dev_score, "train": self.train_score, "visits": self.visits,
            "heldout": self.heldout_score, "parent_heldout": self.parent_heldout, "error": self.error,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "no_answer": self.no_answer,
        }

    @classmethod
    def from_row(cls, row: NodeRow) -> Node:
        outcomes = row.get("dev_outcomes") or ""
        return cls(
            id=row["id"], parent=row.get("parent"), instructions=row.get("instructions") or "",
            round=row.get("round") or 0, status=row.get("status") or "pending", dev_score=row.get("dev_score"),
            train_score=row.get("train_score"), heldout_score=row.get("heldout_score"),
            parent_heldout=row.get("parent_heldout"), evolver_output=row.get("evolver_output") or "",
            feedback=row.get("feedback") or "", prompt_tokens=row.get("prompt_tokens") or 0,
            completion_tokens=row.get("completion_tokens") or 0, attempts=row.get("attempts") or 0,
            error=row.get("error"), evolver_chat=row.get("evolver_chat") or "",
            dev_correct=tuple(json.loads(outcomes)) if outcomes else None, no_answer=row.get("no_answer"),
        )

    def to_row(self) -> NodeRow:
        return {
            "id": self.id, "parent": self.parent, "instructions": self.instructions, "round": self.round,
            "status": self.status, "dev_score": self.dev_score, "train_score": self.train_score,
            "heldout_score": self.heldout_score, "parent_heldout": self.parent_heldout,
            "evolver_output": self.evolver_output, "feedback": self.feedback, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "attempts": self.attempts, "error": self.error,
            "evolver_chat": self.evolver_chat, "no_answer": self.no_answer,
            "dev_outcomes": json.dumps(list(self.dev_correct)) if self.dev_correct is not None else "",
        }


@dataclass
class Tree:
    nodes: dict[int, Node] = field(default_factory=dict)
    selections: list[int] = field(default_factory=list)  # node id expanded in round 1, 2, ...
    # the level at which the best node must beat the root to be the winner (`decide`); None: the best dev wins
    winner_alpha: float | None = None

    def add(self, node: Node) -> Node:
        self.nodes[node.id] = node
        return node

    def next_id(self) -> int:
        return max(self.nodes, default=-1) + 1

    def record_selection(self, node_id: int) -> None:
        self.selections.append(node_id)
        self.nodes[node_id].selected += 1

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def candidates(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.selectable]

    def ucb_value(self, node: Node, c: float) -> float:
        n_sel = max(len(self.selections), 1)
        return (node.dev_score or 0.0) + c * math.sqrt(math.log(n_sel) / max(node.visits, 1))

    def select(self, rule: str, c: float = 2.0, seed: int = 0) -> Node:
        """The node to expand next; `seed` only matters for `pareto` (with the round it seeds the draw)."""
        cands = self.candidates()
        if not cands:
            raise ValueError("no scored node to expand")
        if rule == "ucb":
            return max(cands, key=lambda n: (self.ucb_value(n, c), -n.id))
        if rule == "best":
            return max(cands, key=lambda n: (n.dev_score or 0.0, -n.id))
        if rule == "chain":
            return max(cands, key=lambda n: n.id)
        if rule == "pareto":
            return self._pareto_draw(seed)
        if rule == "textgrad":
            return max((n for n in cands if self.kept(n)), key=lambda n: n.id)
        raise ValueError(f"unknown selection rule {rule!r}; expected one of {', '.join(RULES)}")

    # -- textgrad -----------------------------------------------------------------------------------
    def kept(self, node: Node) -> bool:
        """On the reverting chain: the root, or a scored node no worse on dev than a kept parent."""
        while node.parent is not None:
            parent = self.nodes.get(node.parent)
            if parent is None or not node.selectable or (node.dev_score or 0.0) < (parent.dev_score or 0.0):
                return False
            node = parent
        return node.selectable

    # -- pareto (GEPA) ------------------------------------------------------------------------------
    def pareto_fronts(self) -> list[set[int]]:
        """Per dev problem, the ids of the nodes with the best outcome on it (all of them when none solve it)."""
        cands = [n for n in self.candidates() if n.dev_correct is not None]
        if not cands:
            return []
        width = min(len(n.dev_correct or ()) for n in cands)
        fronts = []
        for i in range(width):
            best = max((n.dev_correct or ())[i] for n in cands)
            fronts.append({n.id for n in cands if (n.dev_correct or ())[i] == best})
        return fronts

    def pareto_weights(self) -> dict[int, int]:
        """Survivors → number of problem fronts they are on, after GEPA's removal of dominated nodes.

        A node is dominated when every front it is on also holds another remaining node; the weakest
        (lowest dev, then newest) are removed first, one at a time, as in GEPA's `remove_dominated_programs`.
        """
        fronts = self.pareto_fronts()
        on_front = sorted({i for f in fronts for i in f},
                          key=lambda i: (self.nodes[i].dev_score or 0.0, -i))
        alive = set(on_front)
        changed = True
        while changed:
            changed = False
            for nid in on_front:
                if nid in alive and all(len(f & alive) > 1 for f in fronts if nid in f):
                    alive.discard(nid)
                    changed = True
                    break
        weights: dict[int, int] = {}
        for f in fronts:
            for nid in f & alive:
                weights[nid] = weights.get(nid, 0) + 1
        return dict(sorted(weights.items()))

    def pareto_rng(self, seed: int) -> random.Random:
        """The draw for the next selection: seeded by (seed, round) so a resumed run draws the same."""
        return random.Random(f"{seed}:{len(self.selections) + 1}:pareto")

    def _pareto_draw(self, seed: int) -> Node:
        weights = self.pareto_weights()
        if not weights:  # no per-problem outcomes known: fall back to greedy
            return self.select("best")
        ids = list(weights)
        chosen = self.pareto_rng(seed).choices(ids, weights=[weights[i] for i in ids], k=1)[0]
        return self.nodes[chosen]

    def best(self) -> Node:
        """Best dev score; ties go to shorter instructions, then the older node (the root when nothing is scored)."""
        cands = self.candidates()
        if not cands:
            return self.root
        return max(cands, key=lambda n: (n.dev_score or 0.0, -len(n.instructions), -n.id))

    def decide(self) -> tuple[Node, Verdict | None]:
        """The run's answer and the paired test that made it so. With `winner_alpha` set, the best node replaces
        the root only when it beats the root on the same dev problems beyond noise (`significance.compare`,
        Bonferroni over the edits scored on dev); without it, the best dev score wins (the paper's report)."""
        best = self.best()
        if self.winner_alpha is None or best.id == 0 or 0 not in self.nodes:
            return best, None
        root = self.root
        if best.dev_correct is None or root.dev_correct is None or len(best.dev_correct) != len(root.dev_correct):
            return root, None
        edits = sum(1 for n in self.candidates() if n.id != 0)
        verdict = compare(best.dev_correct, root.dev_correct, self.winner_alpha, edits)
        return (best if verdict.beats else root), verdict

    def winner(self) -> Node:
        """The node the run would apply (`decide`)."""
        return self.decide()[0]

    def children(self, node_id: int) -> list[Node]:
        return [n for n in self.nodes.values() if n.parent == node_id]

    def depth(self, node_id: int) -> int:
        d, n = 0, self.nodes[node_id]
        while n.parent is not None:
            d, n = d + 1, self.nodes[n.parent]
        return d
