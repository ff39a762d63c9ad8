"""The search loop: select a node, ask the proposer for new instructions, gate them, score the child, record.

Round r (1-based), all of it deterministic in (seed, r) so that a resumed run ends in the same tree:
1. select a node by the rule (the selection is recorded first);
2. draw a feedback batch F from train (and, with `heldout_size`, a disjoint held-out batch H);
3. score the node on F; the proposer (`evolve/proposers/`: the paper's request, compact, facts, TextGrad-style)
   says what the evolver is shown and asks it;
4. `candidates` edits are asked for. A reply without usable instructions, or with instructions that are the same
   edit as any node's already in the tree (`Proposer.identity`), is a failed attempt and is retried with a new
   seed; every reply is recorded (`attempts`). With several candidates, the best on F is kept;
5. with the acceptance gate (always for `pareto`, GEPA's rule) a child that does not strictly beat its parent
   on F stops here (`rejected`); otherwise it is scored on dev, the fixed holdout whose score the tree
   selects by (the paper's reward is a child's dev score minus its parent's).
Every scored batch, the selection, each attempt and the child are recorded as they happen (`RunRecorder`);
outcomes go through the scorer's cache, so a resumed run re-generates nothing that was recorded.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from lse_engine.errors import Cancelled, LSEError
from lse_engine.evolve.context import SearchContext
from lse_engine.evolve.dev import NodeScoring, draw_batches
from lse_engine.evolve.proposers import Request
from lse_engine.evolve.proposers.base import request_record
from lse_engine.evolve.result import SearchResult, winner_reason
from lse_engine.evolve.tree import Node, Tree
from lse_engine.progress import ProgressEvent
from lse_engine.records import RunSummary
from lse_engine.tasks.base import Outcome, Problem

__all__ = ["Search", "SearchContext", "SearchResult", "draw_batches"]


@dataclass
class Proposal:
    """One attempt's outcome: new instructions (verdict ok), or why not."""

    instructions: str | None
    raw: str
    error: str | None
    verdict: str  # ok | noop | invalid | false (states what the task's data contradict)
    attempt: int
    prompt_tokens: int
    completion_tokens: int


class Search:
    """One run of tree-guided evolution over a context; resumable from what its recorder holds."""

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        self.run_id = ctx.run_id
        self.s = ctx.settings
        self.recorder = ctx.recorder
        self.started = time.monotonic()
        self._round_no = 0
        self.scoring = NodeScoring(ctx.scorer, ctx.recorder, ctx.dev, self.s, self._emit_step)
        if not ctx.train:
            raise LSEError("the suite has no train problems to learn from; lower split.dev or add problems")
        if not ctx.dev:
            raise LSEError("the suite has no dev problems to choose a winner with; set split.dev above 0")

    # -- the loop --------------------------------------------------------------------------------
    def run(self, root_instructions: str) -> SearchResult:
        tree = self.recorder.load_tree()
        tree.winner_alpha = self.s.winner_alpha if self.s.winner_test == "sign" else None
        try:
            if 0 not in tree.nodes:
                tree.add(Node(id=0, parent=None, instructions=root_instructions, round=0))
                self.recorder.node(tree.root)
            root = tree.root
            if root.status == "pending":
                self.scoring.dev(root, "scoring the root on dev")
                root.status = "ok"
                self.recorder.node(root)
                self.recorder.update(root_dev=root.dev_score, winner_dev=root.dev_score, winner=0)
                self._emit(tree, 0, f"root scored: dev {root.dev_score:.0%}", root)
            stop_reason = ""
            done_rounds = {n.round for n in tree.nodes.values() if n.id != 0 and n.status != "pending"}
            for r in range(1, self.s.rounds + 1):
                if r in done_rounds:
                    continue
                stop_reason = self._budget_left() or ""
                if stop_reason:
                    break
                self._round_no = r
                self._round(tree, r)
            return self._finish(tree, "budget" if stop_reason else "done", stop_reason)
        except Cancelled:
            return self._finish(tree, "cancelled", "cancelled")
        except BaseException as exc:
            self.recorder.update(status="failed", message=f"{type(exc).__name__}: {exc}")
            raise

    def _round(self, tree: Tree, r: int) -> None:
        s = self.s
        if r <= len(tree.selections):
            node = tree.nodes[tree.selections[r - 1]]
        else:
            node = tree.select(s.rule, s.c, s.seed)
            self.recorder.selection(r, node.id)
            tree.record_selection(node.id)
        self._emit(tree, r, f"round {r}/{s.rounds}: expanding node {node.id}")
        fb_batch, held_batch = draw_batches(self.ctx.train, s.seed, r, s.batch_size, s.heldout_size)
        parent_fb, fb_outs = self.scoring.batch(node, fb_batch, "feedback", r,
                                                f"round {r}: scoring node {node.id} on the batch")
        parent_held = None
        if held_batch:
            parent_held, _ = self.scoring.batch(node, held_batch, "heldout", r,
                                                f"round {r}: scoring node {node.id} held out")
        train_scores = [score for split, score in self.recorder.batch_scores(node.id) if split != "dev"]
        node.train_score = sum(train_scores) / len(train_scores)
        self.recorder.node(node)
        child = next((n for n in tree.nodes.values() if n.round == r and n.id != 0), None)
        child_fb: float | None = None
        if child is None:
            child, child_fb = self._expand(tree, node, r, fb_batch, fb_outs)
            if child is None:
                return
        gate = s.acceptance_gate or s.rule == "pareto"
        if gate or held_batch:
            if child_fb is None:
                child_fb, _ = self.scoring.batch(child, fb_batch, "feedback", r,
                                                 f"round {r}: scoring the edit on the batch")
            child.train_score = child_fb
        if held_batch:
            child.heldout_score, _ = self.scoring.batch(child, held_batch, "heldout", r,
                                                        f"round {r}: scoring the edit held out")
            child.parent_heldout = parent_held
        if gate and (child_fb or 0.0) <= parent_fb:
            child.status = "rejected"
            self.recorder.node(child)
            self._emit(tree, r, f"round {r}: edit {child.id} does not beat its parent on the batch "
                                f"({child_fb:.0%} ≤ {parent_fb:.0%}); not scored on dev", child)
            return
        raced = self.scoring.dev(child, f"round {r}: scoring edit {child.id} on dev", node)
        child.status = "raced" if raced else "ok"
        child.error = raced
        self.recorder.node(child)
        best = tree.winner()
        self.recorder.update(winner_dev=best.dev_score, winner=best.id)
        if raced:
            self._emit(tree, r, f"round {r}: edit {child.id} stopped after {len(child.dev_correct or ())} of "
                                f"{len(self.ctx.dev)} dev problems: {raced}", child)
            return
        self._emit(tree, r, f"round {r}/{s.rounds}: edit {child.id} dev {child.dev_score:.0%} "
                            f"(parent {node.dev_score or 0:.0%}), winner #{best.id} {best.dev_score:.0%}", child)

    # -- proposing -------------------------------------------------------------------------------
    def _expand(self, tree: Tree, node: Node, r: int, fb_batch: list[Problem],
                fb_outs: list[Outcome]) -> tuple[Node | None, float | None]:
        """Ask the proposer for the round's edit and record it as a child; (None, None) when none came."""
        proposer = self.ctx.proposer
        assert proposer is not None
        pctx = self.ctx.proposer_context()
        feedback = proposer.feedback(pctx, node, fb_batch, fb_outs, r)
        request = proposer.request(pctx, node, fb_batch, fb_outs, feedback)
        if request is None:
            proposals = [Proposal(None, "", proposer.nothing_to_ask, "noop", 0, 0, 0)]
        else:
            proposals = self._propose(tree, node, request, r)
        good = [p for p in proposals if p.verdict == "ok"]
        child_fb: float | None = None
        chosen = good[0] if good else None
        if len(good) > 1:  # several candidates: keep the best on the feedback batch (ties: the first)
            chosen, child_fb = self._best_candidate(good, fb_batch, r)
        last = proposals[-1]
        status = "pending" if chosen else next(
            (v for v in ("noop", "false") if all(p.verdict == v for p in proposals)), "failed")
        child = tree.add(Node(
            id=tree.next_id(), parent=node.id, instructions=chosen.instructions or "" if chosen else "", round=r,
            status=status, evolver_output=(chosen or last).raw, feedback=feedback.text,
            prompt_tokens=sum(p.prompt_tokens for p in proposals) + feedback.prompt_tokens,
            completion_tokens=sum(p.completion_tokens for p in proposals) + feedback.completion_tokens,
            attempts=len(proposals) + feedback.calls, error=None if chosen else last.error,
            evolver_chat=request_record(request),
        ))
        self.recorder.node(child)
        if chosen is None:
            what = {"noop": "repeated instructions already in the tree",
                    "false": f"instructions the database contradicts ({last.error})"}.get(
                        status, f"no usable prompt ({last.error})")
            self._emit(tree, r, f"round {r}: the evolver gave {what} in {len(proposals)} attempts", child)
            return None, None
        if child_fb is not None:
            self.scoring.batch(child, fb_batch, "feedback", r, f"round {r}: scoring the edit on the batch")  # cached
        return child, child_fb

    def _propose(self, tree: Tree, node: Node, request: Request, r: int) -> list[Proposal]:
        """Ask for `candidates` new instructions, retrying replies that are unusable or not new."""
        proposer = self.ctx.proposer
        assert proposer is not None
        pctx = self.ctx.proposer_context()
        want = max(1, self.s.candidates)
        tries = want * (1 + max(0, self.s.evolver_retries))
        seen = {proposer.identity(n.instructions) for n in tree.nodes.values() if n.instructions}
        noop_error = getattr(proposer, "noop_error", "the same instructions as a prompt already in the tree")
        proposals: list[Proposal] = []
        for attempt in range(tries):
            if sum(p.verdict == "ok" for p in proposals) >= want:
                break
            self._check_cancel()
            self._emit_step(f"round {r}: {request.step} {attempt + 1}", attempt, tries, None)
            sampling = dataclasses.replace(request.sampling, seed=pctx.seed(r, attempt))
            if request.greedy_first and attempt == 0:
                sampling = dataclasses.replace(sampling, temperature=0.0)
            comps = self.ctx.evolver.generate(list(request.chats), sampling)
            p_tok, c_tok = sum(c.prompt_tokens for c in comps), sum(c.completion_tokens for c in comps)
            self.recorder.charge(evolver_calls=len(comps), tokens=p_tok + c_tok)
            candidate = proposer.read(pctx, request, [c.text for c in comps],
                                      [c.finish_reason == "length" for c in comps], node.instructions)
            new, error = candidate.instructions, candidate.error
            verdict = "invalid" if new is None else "ok"
            if new is not None and proposer.identity(new) in seen:
                verdict, error = "noop", noop_error
            elif new is not None:
                false = self.ctx.task.contradictions(added_text(new, node.instructions))
                if false:
                    verdict, error = "false", "states what the database contradicts: " + "; ".join(false)
            if new is not None:
                seen.add(proposer.identity(new))
            proposals.append(Proposal(new if verdict == "ok" else None, candidate.raw, error, verdict, attempt,
                                      p_tok, c_tok))
            self.recorder.attempt({"round": r, "attempt": attempt, "raw": candidate.raw, "instructions": new or "",
                                   "verdict": verdict, "error": error or "", "prompt_tokens": p_tok,
                                   "completion_tokens": c_tok})
            said = "new instructions" if verdict == "ok" else f"{verdict} ({error})"
            self._emit(tree, r, f"round {r}: evolver reply {attempt + 1}/{tries}: {said}")
        return proposals

    def _best_candidate(self, good: list[Proposal], fb_batch: list[Problem], r: int) -> tuple[Proposal, float]:
        """The candidate that scores best on the feedback batch (ties: the first); each score is recorded."""
        scores = []
        for p in good:
            _, outs = self.ctx.scorer.score(p.instructions or "", fb_batch)
            score = sum(o.correct for o in outs) / len(outs)
            self.recorder.attempt({"round": r, "attempt": p.attempt, "raw": p.raw, "instructions": p.instructions or "",
                                   "verdict": p.verdict, "error": "", "prompt_tokens": p.prompt_tokens,
                                   "completion_tokens": p.completion_tokens, "batch_score": score})
            scores.append(score)
        best_i = max(range(len(good)), key=lambda i: (scores[i], -i))
        return good[best_i], scores[best_i]

    # -- scoring, progress, budgets --------------------------------------------------------------
    def _emit_step(self, step: str, done: int, total: int, eta: float | None) -> None:
        self.ctx.progress(ProgressEvent(
            run_id=self.run_id, kind="evolve", message=f"{step} {done}/{total}", round=self._round_no,
            rounds=self.s.rounds, step=step, step_done=done, step_total=total, eta_s=eta))

    def _emit(self, tree: Tree, round_: int, message: str, node: Node | None = None, done: bool = False) -> None:
        best = tree.winner()
        root = tree.nodes.get(0)
        self.ctx.progress(
            ProgressEvent(
                run_id=self.run_id, kind="evolve", message=message, round=round_, rounds=self.s.rounds,
                winner_dev=best.dev_score, root_dev=root.dev_score if root else None,
                node=node.to_dict() if node else None, done=done,
                extra={"winner": best.id, "nodes": len(tree.nodes)},
            )
        )

    def _budget_left(self) -> str | None:
        spent = self.recorder.spent()
        if self.s.max_model_calls and spent.calls >= self.s.max_model_calls:
            return f"model-call budget spent ({spent.calls} ≥ {self.s.max_model_calls})"
        if self.s.max_tokens and spent.tokens >= self.s.max_tokens:
            return f"token budget spent ({spent.tokens} ≥ {self.s.max_tokens})"
        if self.s.max_wall_s and time.monotonic() - self.started >= self.s.max_wall_s:
            return f"wall-time budget spent ({self.s.max_wall_s:g} s)"
        return None

    def _check_cancel(self) -> None:
        if self.ctx.cancel.cancelled:
            raise Cancelled("cancelled")

    def _finish(self, tree: Tree, status: str, message: str) -> SearchResult:
        winner, verdict = tree.decide()
        root_dev = tree.nodes[0].dev_score if 0 in tree.nodes else None
        attempts = self.recorder.attempts()
        result = SearchResult(self.run_id, status, tree, winner, root_dev, message, replies=len(attempts),
                              noop_replies=sum(a.get("verdict") == "noop" for a in attempts),
                              invalid_replies=sum(a.get("verdict") == "invalid" for a in attempts),
                              reason=winner_reason(tree, winner, verdict))
        summary: RunSummary = {
            "winner": winner.id, "winner_dev": winner.dev_score, "root_dev": root_dev,
            "winner_instructions": winner.instructions, "nodes": len(tree.nodes), "rounds_done": result.rounds_done,
            "edits": result.edits, "replies": result.replies, "noop_replies": result.noop_replies,
            "invalid_replies": result.invalid_replies,
            "false_replies": sum(a.get("verdict") == "false" for a in attempts),
            "winner_reason": result.reason,
            "winner_p": verdict.p if verdict else None,
            "raced": sum(n.status == "raced" for n in tree.nodes.values()),
            "dev_skipped": sum(len(self.ctx.dev) - len(n.dev_correct or ()) for n in tree.nodes.values()
                               if n.status == "raced")}
        run_status = "cancelled" if status == "cancelled" else "done"
        self.recorder.update(status=run_status, winner=winner.id, winner_dev=winner.dev_score, root_dev=root_dev,
                             result=dict(summary), message=message)
        self._emit(tree, len(tree.selections),
                   message or f"done: dev {root_dev or 0:.0%} → {winner.dev_score or 0:.0%}", done=True)
        return result


def added_text(new: str, current: str) -> str:
    """The lines of `new` that are not lines of `current` (what an edit states that its parent did not)."""
    have = {" ".join(line.split()) for line in current.splitlines()}
    return "\n".join(line for line in new.splitlines() if " ".join(line.split()) not in have)
