"""Training states harvested from the run store, the split into training and dev states, and the sampler.

A state is one expansion an evolve run recorded: the expanded node's instructions, the exact chat the
evolver was sent (the child's `evolver_chat` column, prefill included; rebuilt from the feedback for runs
older than that column), the run's fixed dev holdout with the parent's score on it (the paper's reward,
`reward_on = "holdout"`) and the round's batch with the parent's score on it (`reward_on = "batch"`: the
held-out batch H when the run scored one, else the feedback batch F). States whose feedback batch showed
fewer than `min_failures` failures are dropped (nothing to learn from), and duplicates (same suite,
instructions and batch) are kept once. The dev set that picks the checkpoint holds whole runs (or whole
suites) never trained on.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lse_engine.kinds import HOLDOUT_BY
from lse_engine.llm.base import continues_reply
from lse_engine.records import BatchRow
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
    heldout: tuple[str, ...]  # problem ids of the round's batch: H, or F when the run scored no H
    parent_heldout: float  # the parent's score on that batch as the run recorded it
    failures: int  # failures in the feedback batch the evolver saw
    gap: float  # the run's best dev score minus the parent's (the sampler's priority)
    rule: str = "ucb"  # the run's selection rule; `textgrad` runs showed the evolver critiques, not a summary
    dev: tuple[str, ...] = ()  # problem ids of the run's fixed dev holdout
    parent_dev: float | None = None  # the parent's dev score as the run recorded it
    chat: str = ""  # the recorded request (`proposers.request_record`; "" for runs older than `evolver_chat`)
    prefill: bool = False  # the run began the evolver's reply at <prompt> (`evolver_prefill`)
    kind: str = "reference"  # the request kind the run asked (`proposers.proposer_kind` of its settings)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["heldout"], d["dev"] = list(self.heldout), list(self.dev)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> State:
        names = cls.__dataclass_fields__
        fields: dict[str, Any] = {k: (tuple(v) if k in ("heldout", "dev") else v) for k, v in d.items() if k in names}
        return cls(**fields)



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


def _run_evolve(run: dict[str, Any]) -> dict[str, Any]:
    cfg = run.get("config")
    cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
    evolve = (cfg or {}).get("evolve") if isinstance(cfg, dict) else None
    return evolve if isinstance(evolve, dict) else {}


def _run_kind(run: dict[str, Any]) -> str:
    """The request kind a run asked (`textgrad` for that rule, else its `request`)."""
    evolve = _run_evolve(run)
    return "textgrad" if (run.get("rule") or evolve.get("rule")) == "textgrad" else str(evolve.get("request") or
                                                                                       "reference")


def _prefilled(chat: str) -> bool | None:
    """Whether a recorded request began the evolver's reply (None: nothing recorded)."""
    data = json.loads(chat) if chat else None
    if not data:
        return None
    chats = data["chats"] if isinstance(data, dict) else [data]
    return any(continues_reply(c) for c in chats)


def _ids(batch: BatchRow) -> tuple[str, ...]:
    """A batch's problems, each once (a batch scored with k samples lists every problem k times)."""
    return tuple(dict.fromkeys(batch["problem_ids"]))


def run_states(store: Store, run: dict[str, Any]) -> list[State]:
    """Every expansion of one run that has a feedback summary and a scored batch of its round."""
    nodes = {n["id"]: n for n in store.get_nodes(run["id"])}
    batches = {(b["node_id"], b["split"], b["round"]): b for b in store.get_batches(run["id"])}
    devs = [n["dev_score"] for n in nodes.values() if n["dev_score"] is not None]
    best = max(devs, default=0.0)
    root_dev = batches.get((0, "dev", 0))
    prefill = bool(_run_evolve(run).get("evolver_prefill"))
    kind = _run_kind(run)
    out = []
    for child in nodes.values():
        parent = nodes.get(child["parent"]) if child["parent"] is not None else None
        if parent is None or not (child.get("feedback") or "").strip():
            continue
        fb = batches.get((parent["id"], "feedback", child["round"]))
        held = batches.get((parent["id"], "heldout", child["round"])) or fb
        if held is None:
            continue
        fb = fb or held
        dev = batches.get((parent["id"], "dev", 0)) or root_dev
        chat = child.get("evolver_chat") or ""
        out.append(State(
            id=state_id(run["suite"], parent["instructions"] or "", _ids(held)),
            run_id=run["id"], node_id=parent["id"], child_id=child["id"], round=child["round"],
            suite=run["suite"], instructions=parent["instructions"] or "", feedback=child["feedback"],
            heldout=_ids(held), parent_heldout=float(held["score"]),
            failures=int(fb["n"] - fb["correct"]), gap=max(0.0, best - (parent["dev_score"] or 0.0)),
            rule=run.get("rule") or "ucb", dev=_ids(dev) if dev else (),
            parent_dev=parent["dev_score"], chat=chat, kind=kind,
            prefill=p if (p := _prefilled(chat)) is not None else prefill,
        ))
    return out


def suite_changed(run: dict[str, Any], current: Callable[[str], str | None]) -> bool:
    """Whether the suite a run used has changed since (its recorded content hash is not the suite's now; a
    suite that is gone has changed). Runs made before the hash was recorded count as unchanged."""
    cfg = run.get("config")
    cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
    recorded = cfg.get("suite_sha") if isinstance(cfg, dict) else None
    return bool(recorded) and current(run["suite"]) != recorded


def harvest(store: Store, prompt: str | None = None, min_failures: int = 1,
            current_suite: Callable[[str], str | None] | None = None) -> list[State]:
    """States of all evolve runs (of `prompt`, when given), filtered and deduplicated; runs whose suite changed
    since (`current_suite` gives a suite's content hash now) are left out: nothing trains on stale data."""
    seen: set[str] = set()
    out = []
    for run in evolve_runs(store, prompt):
        if current_suite is not None and suite_changed(run, current_suite):
            continue
        for s in run_states(store, run):
            if s.failures < min_failures or s.id in seen:
                continue
            seen.add(s.id)
            out.append(s)
    return out




def split_by_run(states: Sequence[State], eval_fraction: float, seed: int = 0,
                 by: str = "run") -> tuple[list[State], list[State]]:
    """(train, dev): whole runs (`by="run"`) or whole suites, i.e. databases (`by="suite"`), go to dev, so the
    checkpoint is chosen on data the evolver never trained on.

    With a single run (suite) there is nothing unseen to hold out and every state is for training.
    """
    if by not in HOLDOUT_BY:
        raise ValueError(f"holdout_by must be one of {HOLDOUT_BY}, got {by!r}")

    def group(s: State) -> str:
        return s.run_id if by == "run" else s.suite

    groups = sorted({group(s) for s in states},
                    key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    n_eval = min(len(groups) - 1, max(1 if eval_fraction > 0 else 0, round(len(groups) * eval_fraction)))
    held = set(groups[: max(0, n_eval)])
    return [s for s in states if group(s) not in held], [s for s in states if group(s) in held]


def epoch_order(states: Sequence[State], seed: int, epoch: int) -> list[State]:
    """One data epoch: every training state once, those furthest below their tree's best most likely first
    (the reference orders its dataset by improvement potential)."""
    return sample_states(states, len(states), random.Random(f"{seed}:epoch:{epoch}"))


def batch_at(states: Sequence[State], batch_size: int, seed: int, step: int) -> tuple[int, list[State]]:
    """(data epoch, states) of rollout batch `step` (1-based): epochs are consecutive, each cut into batches
    of `batch_size` (the last one of an epoch may be smaller). Depends only on (seed, step): resumable."""
    per_epoch = batches_per_epoch(len(states), batch_size)
    epoch, index = divmod(step - 1, per_epoch)
    order = epoch_order(states, seed, epoch)
    return epoch + 1, order[index * batch_size : (index + 1) * batch_size]


def batches_per_epoch(n_states: int, batch_size: int) -> int:
    return max(1, -(-n_states // max(1, batch_size)))


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
            store.db.table("states").upsert_all(rows, pk="id")


def load_states(store: Store) -> tuple[list[State], list[State]]:
    """(train, eval) states saved by `save_states`."""
    train: list[State] = []
    eval_: list[State] = []
    for row in store.db.query("SELECT data FROM states ORDER BY created, id"):
        d = json.loads(row["data"])
        (eval_ if d.get("split") == "eval" else train).append(State.from_dict(d))
    return train, eval_
