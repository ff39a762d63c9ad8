"""The search loop: select a node, show the evolver its failures, score the child; commit every step.

Round r (1-based), all of it deterministic in (seed, r) so that a resumed run ends in the same tree:
1. select a node by the rule (the selection is committed first);
2. draw two disjoint train batches: F (feedback) and H (held out for this expansion);
3. score the node on F and H; summarise F's outcomes as feedback;
4. the evolver writes a child (retries on malformed output; if all fail, the child is recorded as failed);
   with the `textgrad` rule it first writes one short critique per failure of F (one batched call, every
   critique counted as a model call and in the child's `attempts`), and the edit sees the critiques;
5. score the child on H (delta = child(H) − node(H), the paper's reward signal); with the acceptance gate
   a child no better than its parent on H stops here; otherwise score it on dev.
Every scored batch, the selection and the child are committed as they happen; outcomes go through the
shared cache, so a resumed run re-generates nothing that was committed.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lse_engine.config import EvolveConfig
from lse_engine.errors import Cancelled, LSEError
from lse_engine.evolve import evolver as evolver_prompt
from lse_engine.evolve.feedback import _entry as failure_entry
from lse_engine.evolve.feedback import summarize
from lse_engine.evolve.tree import Node, Tree
from lse_engine.llm.base import LLM, CancelToken, Sampling
from lse_engine.progress import ProgressCallback, ProgressEvent, ignore_progress
from lse_engine.scoring import Scorer
from lse_engine.store import Store
from lse_engine.tasks.base import Problem


@dataclass
class SearchResult:
    run_id: str
    status: str  # done | cancelled | budget
    tree: Tree
    winner: Node
    root_dev: float | None
    message: str = ""


@dataclass
class SearchContext:
    """What one search needs; built by the runner from a workspace."""

    store: Store
    scorer: Scorer
    evolver: LLM
    evolver_sampling: Sampling
    train: Sequence[Problem]
    dev: Sequence[Problem]
    settings: EvolveConfig
    task_kind: str = "text-to-sql"
    cancel: CancelToken = dataclasses.field(default_factory=CancelToken)
    progress: ProgressCallback = ignore_progress


def load_tree(store: Store, run_id: str, outcomes: bool = False) -> Tree:
    """A run's tree from the store; with `outcomes`, each node's per-problem dev results too (pareto)."""
    tree = Tree()
    for row in store.get_nodes(run_id):
        tree.add(Node.from_row(row))
    for sel in store.get_selections(run_id):
        if sel["node_id"] in tree.nodes:
            tree.record_selection(sel["node_id"])
    if outcomes:
        dev = [b for b in store.get_batches(run_id) if b["split"] == "dev" and b["node_id"] in tree.nodes]
        found = store.get_outcomes([k for b in dev for k in b["keys"]])
        for b in dev:
            if all(k in found for k in b["keys"]):
                tree.nodes[b["node_id"]].dev_correct = tuple(found[k].correct for k in b["keys"])
    return tree


def draw_batches(train: Sequence[Problem], seed: int, round_: int, size: int) -> tuple[list[Problem], list[Problem]]:
    """Two train batches for a round: F for feedback, H held out; disjoint when the train split allows."""
    k = min(size, len(train))
    feedback = random.Random(f"{seed}:{round_}:feedback").sample(list(train), k)
    rest = [p for p in train if p not in feedback]
    pool = rest if len(rest) >= k else list(train)
    heldout = random.Random(f"{seed}:{round_}:heldout").sample(pool, k)
    return feedback, heldout


class Search:
    """One run of tree-guided evolution over a context; resumable from the store."""

    def __init__(self, run_id: str, ctx: SearchContext) -> None:
        self.run_id = run_id
        self.ctx = ctx
        self.s = ctx.settings
        self.started = time.monotonic()
        if not ctx.train:
            raise LSEError("the suite has no train problems to learn from; lower split.dev or add problems")
        if not ctx.dev:
            raise LSEError("the suite has no dev problems to choose a winner with; set split.dev above 0")

    # -- helpers ---------------------------------------------------------------------------------
    def _score(self, node: Node, problems: Sequence[Problem], split: str, round_: int) -> tuple[float, list]:
        keys, outs = self.ctx.scorer.score(node.instructions, problems)
        score = self.ctx.store.add_batch(self.run_id, node.id, split, round_, [p.id for p in problems], keys, outs)
        return score, outs

    def _commit(self, node: Node) -> None:
        self.ctx.store.add_node(self.run_id, node.to_row())

    def _emit(self, tree: Tree, round_: int, message: str, node: Node | None = None, done: bool = False) -> None:
        best = tree.winner()
        root = tree.nodes.get(0)
        self.ctx.progress(
            ProgressEvent(
                run_id=self.run_id, kind="evolve", message=message, round=round_, rounds=self.s.rounds,
                best_dev=best.dev_score, root_dev=root.dev_score if root else None,
                node=node.to_dict() if node else None, done=done,
                extra={"winner": best.id, "nodes": len(tree.nodes)},
            )
        )

    def _budget_left(self) -> str | None:
        run = self.ctx.store.get_run(self.run_id) or {}
        calls = (run.get("task_calls") or 0) + (run.get("evolver_calls") or 0)
        if self.s.max_model_calls and calls >= self.s.max_model_calls:
            return f"model-call budget spent ({calls} ≥ {self.s.max_model_calls})"
        if self.s.max_tokens and (run.get("tokens") or 0) >= self.s.max_tokens:
            return f"token budget spent ({run.get('tokens')} ≥ {self.s.max_tokens})"
        if self.s.max_wall_s and time.monotonic() - self.started >= self.s.max_wall_s:
            return f"wall-time budget spent ({self.s.max_wall_s:g} s)"
        return None

    def _expand(self, node: Node, feedback: str, round_: int) -> tuple[str | None, str, str | None, int, int, int]:
        """Ask the evolver for new instructions: (instructions or None, raw reply, error, attempts, tokens in/out)."""
        build = evolver_prompt.build_textgrad_chat if self.s.rule == "textgrad" else evolver_prompt.build_chat
        chat = build(node.instructions, feedback, self.ctx.task_kind)
        prefix = evolver_prompt.PROMPT_PREFILL if self.s.evolver_prefill else ""
        if prefix:
            chat = evolver_prompt.with_prefill(chat)
        raw, error, p_tok, c_tok = "", None, 0, 0
        attempts = 0
        for attempt in range(1 + max(0, self.s.evolver_retries)):
            if self.ctx.cancel.cancelled:
                raise Cancelled("cancelled")
            attempts += 1
            sampling = dataclasses.replace(self.ctx.evolver_sampling,
                                           seed=(self.s.seed * 1_000_003 + round_ * 101 + attempt) % 2**31)
            comp = self.ctx.evolver.generate([chat], sampling)[0]
            p_tok += comp.prompt_tokens
            c_tok += comp.completion_tokens
            self.ctx.store.add_usage(self.run_id, evolver_calls=1, tokens=comp.prompt_tokens + comp.completion_tokens)
            raw = prefix + comp.text
            # prefilled, the reply is the new prompt by construction, up to </prompt> or the token limit
            new, error = evolver_prompt.parse_reply(raw, self.s.max_prompt_chars, allow_unclosed=bool(prefix))
            if new is not None:
                return new, raw, None, attempts, p_tok, c_tok
        return None, raw, error, attempts, p_tok, c_tok

    def _critiques(self, node: Node, problems: Sequence[Problem], outcomes: Sequence,
                   round_: int) -> tuple[str, tuple[int, int, int]]:
        """TextGrad's backward pass: one short critique per failure (one batched call), aggregated.

        Returns the aggregated feedback and (evolver calls, prompt tokens, completion tokens) spent.
        """
        kind = self.ctx.task_kind
        failures = [(p, o) for p, o in zip(problems, outcomes) if not o.correct]
        if not failures:
            return evolver_prompt.aggregate_critiques([], len(outcomes)), (0, 0, 0)
        if self.ctx.cancel.cancelled:
            raise Cancelled("cancelled")
        chats = [evolver_prompt.build_critique_chat(node.instructions, failure_entry(p, o, kind), kind)
                 for p, o in failures]
        sampling = dataclasses.replace(self.ctx.evolver_sampling,
                                       seed=(self.s.seed * 1_000_003 + round_ * 101 + 50) % 2**31)
        comps = self.ctx.evolver.generate(chats, sampling)
        p_tok = sum(c.prompt_tokens for c in comps)
        c_tok = sum(c.completion_tokens for c in comps)
        self.ctx.store.add_usage(self.run_id, evolver_calls=len(chats), tokens=p_tok + c_tok)
        critiques = [(p.id, evolver_prompt.parse_critique(c.text)) for (p, _), c in zip(failures, comps)]
        return evolver_prompt.aggregate_critiques(critiques, len(outcomes)), (len(chats), p_tok, c_tok)

    # -- the loop --------------------------------------------------------------------------------
    def run(self, root_instructions: str) -> SearchResult:
        store, s = self.ctx.store, self.s
        tree = load_tree(store, self.run_id, outcomes=s.rule == "pareto")
        try:
            if 0 not in tree.nodes:
                tree.add(Node(id=0, parent=None, instructions=root_instructions, round=0))
                self._commit(tree.root)
            root = tree.root
            if root.status == "pending":
                root.dev_score, outs = self._score(root, self.ctx.dev, "dev", 0)
                root.dev_correct = tuple(o.correct for o in outs)
                root.status = "ok"
                self._commit(root)
                store.update_run(self.run_id, root_dev=root.dev_score, best_dev=root.dev_score, winner=0)
                self._emit(tree, 0, f"root scored: dev {root.dev_score:.0%}", root)
            stop_reason = ""
            done_rounds = {n.round for n in tree.nodes.values() if n.id != 0 and n.status != "pending"}
            for r in range(1, s.rounds + 1):
                if r in done_rounds:
                    continue
                stop_reason = self._budget_left() or ""
                if stop_reason:
                    break
                self._round(tree, r)
            return self._finish(tree, "budget" if stop_reason else "done", stop_reason)
        except Cancelled:
            return self._finish(tree, "cancelled", "cancelled")
        except BaseException as exc:
            store.update_run(self.run_id, status="failed", message=f"{type(exc).__name__}: {exc}")
            raise

    def _round(self, tree: Tree, r: int) -> None:
        store, s = self.ctx.store, self.s
        if r <= len(tree.selections):
            node = tree.nodes[tree.selections[r - 1]]
        else:
            node = tree.select(s.rule, s.c, s.seed)
            store.add_selection(self.run_id, r, node.id)
            tree.record_selection(node.id)
        self._emit(tree, r, f"round {r}/{s.rounds}: expanding node {node.id}")
        fb_batch, held_batch = draw_batches(self.ctx.train, s.seed, r, s.batch_size)
        _, fb_outs = self._score(node, fb_batch, "feedback", r)
        parent_held, _ = self._score(node, held_batch, "heldout", r)
        train_scores = [b["score"] for b in store.get_batches(self.run_id, node.id) if b["split"] != "dev"]
        node.train_score = sum(train_scores) / len(train_scores)
        self._commit(node)
        child = next((n for n in tree.nodes.values() if n.round == r and n.id != 0), None)
        if child is None:
            pre = (0, 0, 0)  # evolver calls and tokens spent before the edit (textgrad's critiques)
            if s.rule == "textgrad":
                feedback, pre = self._critiques(node, fb_batch, fb_outs, r)
            else:
                feedback = summarize(fb_batch, fb_outs, self.ctx.task_kind, max_tokens=s.feedback_chars // 4,
                                     successes_shown=s.successes_shown, seed=s.seed + r)
            new, raw, error, attempts, p_tok, c_tok = self._expand(node, feedback, r)
            child = tree.add(Node(
                id=tree.next_id(), parent=node.id, instructions=new or "", round=r,
                status="pending" if new is not None else "failed", evolver_output=raw, feedback=feedback,
                prompt_tokens=p_tok + pre[1], completion_tokens=c_tok + pre[2], attempts=attempts + pre[0],
                error=error,
            ))
            self._commit(child)
            if new is None:
                self._emit(tree, r, f"round {r}: the evolver gave no usable prompt ({error})", child)
                return
        child.heldout_score, _ = self._score(child, held_batch, "heldout", r)
        child.parent_heldout = parent_held
        child.train_score = child.heldout_score
        if s.acceptance_gate and child.heldout_score <= parent_held:
            child.status = "rejected"
            self._commit(child)
            self._emit(tree, r, f"round {r}: child {child.id} no better than its parent on the batch; skipped dev",
                       child)
            return
        child.dev_score, outs = self._score(child, self.ctx.dev, "dev", 0)
        child.dev_correct = tuple(o.correct for o in outs)
        child.status = "ok"
        self._commit(child)
        best = tree.winner()
        store.update_run(self.run_id, best_dev=best.dev_score, winner=best.id)
        self._emit(tree, r, f"round {r}/{s.rounds}: node {child.id} dev {child.dev_score:.0%}, "
                            f"best {best.dev_score:.0%}", child)

    def _finish(self, tree: Tree, status: str, message: str) -> SearchResult:
        winner = tree.winner()
        root_dev = tree.nodes[0].dev_score if 0 in tree.nodes else None
        result = {"winner": winner.id, "winner_dev": winner.dev_score, "root_dev": root_dev,
                  "winner_instructions": winner.instructions, "nodes": len(tree.nodes)}
        run_status = "cancelled" if status == "cancelled" else "done"
        self.ctx.store.update_run(self.run_id, status=run_status, winner=winner.id, best_dev=winner.dev_score,
                                  root_dev=root_dev, result=result, message=message)
        self._emit(tree, len(tree.selections), message or f"done: dev {root_dev or 0:.0%} → {winner.dev_score or 0:.0%}",
                   done=True)
        return SearchResult(self.run_id, status, tree, winner, root_dev, message)
