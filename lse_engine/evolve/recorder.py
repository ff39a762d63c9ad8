"""Where a search writes what it does: the `RunRecorder` seam. `StoreRecorder` commits every step to the run
store as it happens (a run survives interruption and resumes from it); `MemoryRecorder` keeps a run in memory
(benchmarks and simulations that need the real loop without a store)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lse_engine.evolve.tree import Node, Tree
from lse_engine.records import AttemptRow, BatchRow, NodeRow
from lse_engine.store import Store
from lse_engine.tasks.base import Outcome


@dataclass(frozen=True)
class Spent:
    """What a run has spent so far."""

    task_calls: int = 0
    evolver_calls: int = 0
    tokens: int = 0

    @property
    def calls(self) -> int:
        return self.task_calls + self.evolver_calls


class RunRecorder(Protocol):
    """Everything the search reads back or writes about one run."""

    run_id: str

    def load_tree(self) -> Tree:
        """The run's tree so far (nodes with their per-problem dev outcomes, and the selections)."""
        ...

    def node(self, node: Node) -> None: ...

    def selection(self, round_: int, node_id: int) -> None: ...

    def batch(self, node_id: int, split: str, round_: int, problem_ids: Sequence[str], keys: Sequence[str],
              outcomes: Sequence[Outcome]) -> float:
        """Record a node scored on problems; returns the score (mean outcome)."""
        ...

    def batch_scores(self, node_id: int) -> list[tuple[str, float]]:
        """(split, score) of every batch recorded for a node."""
        ...

    def attempt(self, row: AttemptRow) -> None:
        """Record one evolver reply (recording the same round and attempt again replaces it)."""
        ...

    def attempts(self) -> list[AttemptRow]: ...

    def charge(self, task_calls: int = 0, evolver_calls: int = 0, tokens: int = 0) -> None: ...

    def spent(self) -> Spent: ...

    def update(self, **fields: Any) -> None:
        """Update the run's own record (status, winner, scores, message, result)."""
        ...


class StoreRecorder:
    """A run recorded in the run store, one commit per step."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def load_tree(self) -> Tree:
        return load_tree(self.store, self.run_id, outcomes=True)

    def node(self, node: Node) -> None:
        self.store.add_node(self.run_id, node.to_row())

    def selection(self, round_: int, node_id: int) -> None:
        self.store.add_selection(self.run_id, round_, node_id)

    def batch(self, node_id: int, split: str, round_: int, problem_ids: Sequence[str], keys: Sequence[str],
              outcomes: Sequence[Outcome]) -> float:
        return self.store.add_batch(self.run_id, node_id, split, round_, problem_ids, keys, outcomes)

    def batch_scores(self, node_id: int) -> list[tuple[str, float]]:
        return [(b["split"], b["score"]) for b in self.store.get_batches(self.run_id, node_id)]

    def attempt(self, row: AttemptRow) -> None:
        fields = {k: v for k, v in row.items() if k not in ("run_id", "round", "attempt", "created")}
        self.store.add_attempt(self.run_id, row["round"], row["attempt"], **fields)

    def attempts(self) -> list[AttemptRow]:
        return self.store.get_attempts(self.run_id)

    def charge(self, task_calls: int = 0, evolver_calls: int = 0, tokens: int = 0) -> None:
        self.store.add_usage(self.run_id, task_calls=task_calls, evolver_calls=evolver_calls, tokens=tokens)

    def spent(self) -> Spent:
        run = self.store.get_run(self.run_id)
        if run is None:
            return Spent()
        return Spent(run["task_calls"] or 0, run["evolver_calls"] or 0, run["tokens"] or 0)

    def update(self, **fields: Any) -> None:
        self.store.update_run(self.run_id, **fields)


class MemoryRecorder:
    """A run kept in memory: the same records, no store (`fields` holds what `update` set)."""

    def __init__(self, run_id: str = "memory", tree_factory: Callable[[], Tree] = Tree) -> None:
        self.run_id = run_id
        self.tree_factory = tree_factory
        self.nodes: dict[int, NodeRow] = {}
        self.selections: dict[int, int] = {}
        self.batches: list[BatchRow] = []
        self.attempt_rows: dict[tuple[int, int], AttemptRow] = {}
        self.used = Spent()
        self.fields: dict[str, Any] = {}

    def load_tree(self) -> Tree:
        tree = self.tree_factory()
        for row in self.nodes.values():
            tree.add(Node.from_row(row))
        for round_ in sorted(self.selections):
            tree.record_selection(self.selections[round_])
        return tree

    def node(self, node: Node) -> None:
        self.nodes[node.id] = node.to_row()

    def selection(self, round_: int, node_id: int) -> None:
        self.selections[round_] = node_id

    def batch(self, node_id: int, split: str, round_: int, problem_ids: Sequence[str], keys: Sequence[str],
              outcomes: Sequence[Outcome]) -> float:
        correct = sum(o.correct for o in outcomes)
        score = correct / len(outcomes) if outcomes else 0.0
        self.batches = [b for b in self.batches if (b["node_id"], b["split"], b["round"]) != (node_id, split, round_)]
        self.batches.append({"run_id": self.run_id, "node_id": node_id, "split": split, "round": round_,
                             "problem_ids": list(problem_ids), "keys": list(keys), "correct": correct,
                             "n": len(outcomes), "score": score, "created": time.time()})
        return score

    def batch_scores(self, node_id: int) -> list[tuple[str, float]]:
        return [(b["split"], b["score"]) for b in self.batches if b["node_id"] == node_id]

    def attempt(self, row: AttemptRow) -> None:
        self.attempt_rows[(row["round"], row["attempt"])] = row

    def attempts(self) -> list[AttemptRow]:
        return [self.attempt_rows[k] for k in sorted(self.attempt_rows)]

    def charge(self, task_calls: int = 0, evolver_calls: int = 0, tokens: int = 0) -> None:
        u = self.used
        self.used = Spent(u.task_calls + task_calls, u.evolver_calls + evolver_calls, u.tokens + tokens)

    def spent(self) -> Spent:
        return self.used

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)


def per_problem(outcomes: Sequence[Outcome], n_problems: int) -> tuple[float, ...]:
    """Each problem's fraction of samples answered right (outcomes are problem-major)."""
    k = max(1, len(outcomes) // max(1, n_problems))
    return tuple(sum(o.correct for o in outcomes[i * k:(i + 1) * k]) / k for i in range(n_problems))


def load_tree(store: Store, run_id: str, outcomes: bool = False) -> Tree:
    """A run's tree from the store. A node's per-problem dev results come with its row; with `outcomes`, nodes
    stored without them (runs made before they were) get them from the outcome cache."""
    tree = Tree(winner_alpha=winner_alpha_of(store, run_id))
    for row in store.get_nodes(run_id):
        tree.add(Node.from_row(row))
    for sel in store.get_selections(run_id):
        if sel["node_id"] in tree.nodes:
            tree.record_selection(sel["node_id"])
    if outcomes and any(n.dev_correct is None and n.dev_score is not None for n in tree.nodes.values()):
        dev = [b for b in store.get_batches(run_id) if b["split"] == "dev" and b["node_id"] in tree.nodes]
        found = store.get_outcomes([k for b in dev for k in b["keys"]])
        for b in dev:
            node = tree.nodes[b["node_id"]]
            if node.dev_correct is None and all(k in found for k in b["keys"]):
                outs = [found[k] for k in b["keys"]]
                node.dev_correct = per_problem(outs, len(dict.fromkeys(b["problem_ids"])))
    return tree


def winner_alpha_of(store: Store, run_id: str) -> float | None:
    """The level a run's winner had to beat its seed at (None: the best dev won, as in runs made before the
    paired test, and with `winner_test = "none"`)."""
    run = store.get_run(run_id)
    config = run["config"] if run else None
    evolve = (config or {}).get("evolve") or {}
    return float(evolve["winner_alpha"]) if evolve.get("winner_test") == "sign" and "winner_alpha" in evolve else None
