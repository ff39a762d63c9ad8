"""Best dev score against model calls, rebuilt from a run's committed batches (so resumed runs plot whole).

A run's cost is counted as the bench budgets it: each outcome new to the run is one task-model call, and
each evolver call (edit attempts, and textgrad's critiques, both in the child's `attempts`) is one more.
"""

from __future__ import annotations

from collections.abc import Sequence

from lse_engine.records import BatchRow
from lse_engine.store import Store

Curve = list[tuple[int, float]]


def run_curve(store: Store, run_id: str) -> Curve:
    """(cumulative model calls, best dev so far) after the root and after each round."""
    nodes = {n["id"]: n for n in store.get_nodes(run_id)}
    child_of = {n["round"]: nid for nid, n in nodes.items() if nid != 0}
    batches = store.get_batches(run_id)
    dev_of = {b["node_id"]: b for b in batches if b["split"] == "dev"}
    by_round: dict[int, list[BatchRow]] = {}
    for b in batches:
        if b["split"] != "dev":
            by_round.setdefault(b["round"], []).append(b)
    seen: set[str] = set()
    calls, best = 0, None
    points: Curve = []
    for r in sorted({0, *by_round, *child_of}):
        child = 0 if r == 0 else child_of.get(r)
        group = list(by_round.get(r, []))
        if child is not None and child in dev_of:
            group.append(dev_of[child])
        for b in group:
            new = set(b["keys"]) - seen
            calls += len(new)
            seen |= new
        if child is not None and r > 0:
            calls += nodes[child]["attempts"] or 0
        scored = child is not None and child in dev_of and nodes[child].get("status") == "ok"  # raced: partial
        dev = nodes[child]["dev_score"] if scored and child is not None else None
        if dev is not None:
            best = dev if best is None else max(best, dev)
        if best is not None:
            points.append((calls, best))
    return points


def value_at(curve: Curve, calls: float) -> float | None:
    """The best dev reached within `calls` model calls (None before the root was scored)."""
    found = None
    for c, v in curve:
        if c > calls:
            break
        found = v
    return found


def mean_curve(curves: Sequence[Curve], points: int = 60) -> tuple[list[float], list[float]]:
    """The seeds' curves averaged on a common grid of call counts (where every seed has a value)."""
    curves = [c for c in curves if c]
    if not curves:
        return [], []
    top = max(c[-1][0] for c in curves)
    start = max(c[0][0] for c in curves)
    xs = [start + (top - start) * i / max(points - 1, 1) for i in range(points)] if top > start else [float(start)]
    out_x, out_y = [], []
    for x in xs:
        vals = [value_at(c, x) for c in curves]
        if all(v is not None for v in vals):
            out_x.append(x)
            out_y.append(sum(v for v in vals if v is not None) / len(vals))
    return out_x, out_y
