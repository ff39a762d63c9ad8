"""Training states harvested from the run store, the split by run, and the priority sampler.

A state is one expansion an evolve run recorded: the expanded node's instructions, the feedback summary
the evolver saw (the child's `feedback` column), the held-out batch H the child was scored on (the
`heldout` batch of the parent in that round) and the parent's score on H. States whose feedback batch
showed fewer than `min_failures` failures are dropped (nothing to learn from), and duplicates (same suite,
instructions and batch) are kept once. Evaluation uses states of runs never trained on.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lse_engine.store import Store

PRIORITY_FLOOR = 0.05  # every state keeps some chance of being drawn, even at its tree's best


@dataclass(frozen=True)
class State:
    """One expansion to replay: what the evolver saw and the batch its edit is judged on."""

    id: str
    run_id: str
    node_id: int  # the expanded (parent) node
    child_id: int
    round: int
    suite: str  # the suite file the run used
    instructions: str
    feedback: str
    heldout: tuple[str, ...]  # problem ids of H
    parent_heldout: float  # the parent's score on H as the run recorded it
    failures: int  # failures in the feedback batch the evolver saw
    gap: float  # the run's best dev score minus the parent's (the sampler's priority)
    rule: str = "ucb"  # the run's selection rule; `textgrad` runs showed the evolver critiques, not a summary

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["heldout"] = list(self.heldout)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> State:
        names = cls.__dataclass_fields__
        return cls(**{k: (tuple(v) if k == "heldout" else v) for k, v in d.items() if k in names})


def state_id(suite: str, instructions: str, heldout: Sequence[str]) -> str:
    """The dedup key: same suite, same instructions, same batch (order ignored)."""
    payload = json.dumps([suite, instructions.strip(), sorted(heldout)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def evolve_runs(store: Store, prompt: str | None = None) -> list[dict[str, Any]]:
    """Evolve runs in creation order, optionally only those of one prompt file."""
    if prompt:
        q, args = "SELECT * FROM runs WHERE kind = 'evolve' AND prompt = ? ORDER BY created, id", [prompt]
    else:
        q, args = "SELECT * FROM runs WHERE kind = 'evolve' ORDER BY created, id", []
    return list(store.db.query(q, args))


def run_states(store: Store, run: dict[str, Any]) -> list[State]:
    """Every expansion of one run that has a feedback summary and a scored held-out batch."""
    nodes = {n["id"]: n for n in store.get_nodes(run["id"])}
    batches = {(b["node_id"], b["split"], b["round"]): b for b in store.get_batches(run["id"])}
    devs = [n["dev_score"] for n in nodes.values() if n["dev_score"] is not None]
    best = max(devs, default=0.0)
    out = []
    for child in nodes.values():
        parent = nodes.get(child["parent"]) if child["parent"] is not None else None
        held = batches.get((child["parent"], "heldout", child["round"]))
        if parent is None or held is None or not (child.get("feedback") or "").strip():
            continue
        fb = batches.get((parent["id"], "feedback", child["round"])) or held
        out.append(State(
            id=state_id(run["suite"], parent["instructions"] or "", held["problem_ids"]),
            run_id=run["id"], node_id=parent["id"], child_id=child["id"], round=child["round"],
            suite=run["suite"], instructions=parent["instructions"] or "", feedback=child["feedback"],
            heldout=tuple(held["problem_ids"]), parent_heldout=float(held["score"]),
            failures=int(fb["n"] - fb["correct"]), gap=max(0.0, best - (parent["dev_score"] or 0.0)),
            rule=run.get("rule") or "ucb",
        ))
    return out


def harvest(store: Store, prompt: str | None = None, min_failures: int = 1) -> list[State]:
    """States of all evolve runs (of `prompt`, when given), filtered and deduplicated."""
    seen: set[str] = set()
    out = []
    for run in evolve_runs(store, prompt):
        for s in run_states(store, run):
            if s.failures < min_failures or s.id in seen:
                continue
            seen.add(s.id)
            out.append(s)
    return out


def split_by_run(states: Sequence[State], eval_fraction: float, seed: int = 0) -> tuple[list[State], list[State]]:
    """(train, eval): whole runs go to eval, so evaluation is on runs the evolver never trained on.

    With a single run there is nothing unseen to evaluate on and every state is for training.
    """
    runs = sorted({s.run_id for s in states}, key=lambda r: hashlib.sha256(f"{seed}:{r}".encode()).hexdigest())
    n_eval = min(len(runs) - 1, max(1 if eval_fraction > 0 else 0, round(len(runs) * eval_fraction)))
    held = set(runs[: max(0, n_eval)])
    return [s for s in states if s.run_id not in held], [s for s in states if s.run_id in held]


def sample_states(states: Sequence[State], k: int, rng: random.Random) -> list[State]:
    """Draw k distinct states, the ones furthest below their tree's best dev score most likely.

    Weighted sampling without replacement (Efraimidis–Spirakis keys u^(1/w)), weight = gap + floor.
    """
    keyed = sorted(states, key=lambda s: rng.random() ** (1.0 / (s.gap + PRIORITY_FLOOR)), reverse=True)
    return keyed[: min(k, len(keyed))]


def save_states(store: Store, train: Sequence[State], eval_: Sequence[State]) -> None:
    """Record harvested states (with their split) in the store's `states` table."""
    now = time.time()
    rows = [{"id": s.id, "run_id": s.run_id, "node_id": s.node_id, "created": now,
             "data": json.dumps({**s.to_dict(), "split": split})}
            for split, group in (("train", train), ("eval", eval_)) for s in group]
    if rows:
        with store.db.conn:
            store.db["states"].upsert_all(rows, pk="id")


def load_states(store: Store) -> tuple[list[State], list[State]]:
    """(train, eval) states saved by `save_states`."""
    train, eval_ = [], []
    for row in store.db.query("SELECT data FROM states ORDER BY created, id"):
        d = json.loads(row["data"])
        (eval_ if d.get("split") == "eval" else train).append(State.from_dict(d))
    return train, eval_
