"""The search loop: select a node, show the evolver how it did, score the child; commit every step.

Round r (1-based), all of it deterministic in (seed, r) so that a resumed run ends in the same tree:
1. select a node by the rule (the selection is committed first);
2. draw a feedback batch F from train (and, with `heldout_size`, a disjoint held-out batch H);
3. score the node on F; the evolver is shown the node's agent prompt (schema included) and every problem of F;
   with the `textgrad` rule it first writes one short critique per failure (TextGrad-style);
4. the evolver proposes `candidates` edits. A reply without usable instructions, or with instructions equal
   (up to whitespace) to any node's already in the tree, is a failed attempt and is retried with a new seed;
   every reply is stored (`attempts`). With several candidates, the best on F is kept;
5. with the acceptance gate (always for `pareto`, GEPA's rule) a child that does not strictly beat its parent
   on F stops here (`rejected`); otherwise it is scored on dev, the fixed holdout whose score the tree
   selects by (the paper's reward is a child's dev score minus its parent's).
Every scored batch, the selection, each attempt and the child are committed as they happen; outcomes go
through the shared cache, so a resumed run re-generates nothing that was committed.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lse_engine.errors import Cancelled, LSEError
from lse_engine.evolve import evolver as ev
from lse_engine.evolve.context import SearchContext
from lse_engine.evolve.feedback import (
    group_samples,
    has_literal,
    mistakes,
    problem_entry,
    query_edits,
    summarize,
)
from lse_engine.evolve.tree import Node, Tree
from lse_engine.llm.base import Chat
from lse_engine.progress import ProgressEvent
from lse_engine.store import Store
from lse_engine.tasks.base import Outcome, Problem

__all__ = ["Search", "SearchContext", "SearchResult", "draw_batches", "load_tree"]


@dataclass
class SearchResult:
    run_id: str
    status: str  # done | cancelled | budget
    tree: Tree
    winner: Node
    root_dev: float | None
    message: str = ""
    attempts: int = 0  # evolver replies
    noop_attempts: int = 0  # replies whose instructions were not new
    invalid_attempts: int = 0  # replies without usable instructions
    root_test: float | None = None  # filled by the runner when the suite has a test split
    winner_test: float | None = None

    @property
    def rounds_done(self) -> int:
        return len(self.tree.selections)

    @property
    def edits(self) -> int:
        """Children with new instructions (scored, or rejected by the gate)."""
        return sum(1 for n in self.tree.nodes.values() if n.id != 0 and n.status in ("ok", "rejected"))


def per_problem(outcomes: Sequence[Outcome], n_problems: int) -> tuple[float, ...]:
    """Each problem's fraction of samples answered right (outcomes are problem-major)."""
    k = max(1, len(outcomes) // max(1, n_problems))
    return tuple(sum(o.correct for o in outcomes[i * k:(i + 1) * k]) / k for i in range(n_problems))


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
                outs = [found[k] for k in b["keys"]]
                tree.nodes[b["node_id"]].dev_correct = per_problem(outs, len(dict.fromkeys(b["problem_ids"])))
    return tree


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


@dataclass
class _Proposal:
    instructions: str | None
    raw: str
    error: str | None
    verdict: str  # ok | noop | invalid
    attempt: int
    prompt_tokens: int
    completion_tokens: int


class Search:
    """One run of tree-guided evolution over a context; resumable from the store."""

    def __init__(self, run_id: str, ctx: SearchContext) -> None:
        self.run_id = run_id
        self.ctx = ctx
        self.s = ctx.settings
        self.started = time.monotonic()
        self._round_no = 0
        if not ctx.train:
            raise LSEError("the suite has no train problems to learn from; lower split.dev or add problems")
        if not ctx.dev:
            raise LSEError("the suite has no dev problems to choose a winner with; set split.dev above 0")

    # -- helpers ---------------------------------------------------------------------------------
    def _score(self, node: Node, problems: Sequence[Problem], split: str, round_: int,
               step: str) -> tuple[float, list[Outcome]]:
        scorer = self.ctx.scorer
        scorer.on_progress = lambda done, total, eta: self._emit_step(step, done, total, eta)
        try:
            keys, outs = scorer.score(node.instructions, problems)
        finally:
            scorer.on_progress = None
        ids = [p.id for p in problems for _ in range(len(keys) // max(1, len(problems)))]
        score = self.ctx.store.add_batch(self.run_id, node.id, split, round_, ids, keys, outs)
        return score, outs

    def _commit(self, node: Node) -> None:
        self.ctx.store.add_node(self.run_id, node.to_row())

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

    def _check_cancel(self) -> None:
        if self.ctx.cancel.cancelled:
            raise Cancelled("cancelled")

    # -- proposing edits ---------------------------------------------------------------------------
    def _request(self, node: Node, feedback: str, n_problems: int) -> Chat:
        """What the evolver is sent for this node: the reference's request, the compact one for small evolvers,
        or TextGrad-style's edit step."""
        start = ""
        if self.s.rule == "textgrad":
            chat = ev.build_textgrad_chat(node.instructions, feedback)
        elif self.s.request == "compact":
            chat = ev.build_compact_chat(node.instructions, feedback, self.ctx.task_kind)
            start = ev.compact_start(node.instructions)
        else:
            agent_prompt = self.ctx.task.agent_prompt(node.instructions, show_schema=self.s.show_schema)
            chat = ev.build_chat(node.instructions, feedback, self.ctx.task_kind, agent_prompt, n_problems)
        return ev.with_prefill(chat, start) if self.s.evolver_prefill else chat

    def _propose(self, tree: Tree, node: Node, chat: Chat, round_: int) -> list[_Proposal]:
        """Ask for `candidates` new instructions, retrying replies that are unusable or not new."""
        want = max(1, self.s.candidates)
        tries = want * (1 + max(0, self.s.evolver_retries))
        prefilled = self.s.evolver_prefill
        request = "\n".join(m["content"] for m in chat if m["role"] != "assistant")
        current = node.instructions
        seen = {ev.normalize(n.instructions) for n in tree.nodes.values() if n.instructions}
        proposals: list[_Proposal] = []
        for attempt in range(tries):
            if sum(p.verdict == "ok" for p in proposals) >= want:
                break
            self._check_cancel()
            self._emit_step(f"round {round_}: evolver writing edit {attempt + 1}", attempt, tries, None)
            sampling = dataclasses.replace(self.ctx.evolver_sampling,
                                           seed=(self.s.seed * 1_000_003 + round_ * 101 + attempt) % 2**31)
            comp = self.ctx.evolver.generate([chat], sampling)[0]
            self.ctx.store.add_usage(self.run_id, evolver_calls=1, tokens=comp.prompt_tokens + comp.completion_tokens)
            hit_limit = comp.finish_reason == "length"
            raw = ev.reply_text(chat, comp.text, hit_limit=hit_limit)
            new, error = ev.parse_edit(raw, prefilled, self.s.max_prompt_chars, request=request, current=current,
                                       hit_limit=hit_limit)
            verdict = "invalid" if new is None else "ok"
            if new is not None and ev.normalize(new) in seen:
                verdict, error = "noop", "the same instructions as a prompt already in the tree"
            if new is not None:
                seen.add(ev.normalize(new))
            proposal = _Proposal(new if verdict == "ok" else None, raw, error, verdict, attempt,
                                 comp.prompt_tokens, comp.completion_tokens)
            proposals.append(proposal)
            self.ctx.store.add_attempt(self.run_id, round_, attempt, raw=raw, instructions=new or "",
                                       verdict=verdict, error=error or "", prompt_tokens=comp.prompt_tokens,
                                       completion_tokens=comp.completion_tokens)
        return proposals

    def _propose_facts(self, tree: Tree, node: Node, problems: Sequence[Problem], outcomes: Sequence[Outcome],
                       round_: int) -> tuple[list[_Proposal], Chat]:
        """`request = "facts"`: one short question per mistake (batched), the facts appended to the instructions.
        Candidate 0 decodes greedily, the others sample; each candidate is one attempt."""
        kind = self.ctx.task_kind
        chats: list[Chat] = []
        stores: list[str] = []  # per chat, how the column it asks about stores its values ("" for other chats)
        missed_values = getattr(self.ctx.task, "missed_values", None)
        # one question per column a round, none about a column the instructions describe already
        asked = ev.described_columns(node.instructions)
        for p, outs in group_samples(problems, outcomes):
            answer = outs[0].answer or ""
            if outs[0].correct or not answer:
                continue
            question = p.question + (f" (evidence: {p.evidence})" if p.evidence else "")
            if kind != "text-to-sql":
                chats.append(ev.build_fact_chat(question, answer, p.gold, answer, p.gold, kind))
                stores.append("")
                continue
            missed = missed_values(answer, p.gold) if missed_values else []
            if missed:  # a value compared with a column: ask about the column, showing how it stores its values
                pick = next(((m, stored) for m, stored in missed if m.column.lower() not in asked), None)
                if pick:
                    column, stored = pick
                    asked.add(column.column.lower())
                    chats.append(ev.build_column_fact_chat(question, answer, p.gold, column.column,
                                                           " and ".join(column.values), stored))
                    stores.append(stored)
                continue
            edits = query_edits(answer, p.gold)
            if edits and has_literal(edits[0][1]):  # a value the model got wrong: knowledge about the data
                chats.append(ev.build_fact_chat(question, answer, p.gold, *edits[0], kind))
                stores.append("")
        seen = {ev.facts_identity(n.instructions) for n in tree.nodes.values() if n.instructions}
        proposals: list[_Proposal] = []
        want = max(1, self.s.candidates)
        for attempt in range(want * (1 + max(0, self.s.evolver_retries))):
            if not chats or sum(p.verdict == "ok" for p in proposals) >= want:
                break
            self._check_cancel()
            self._emit_step(f"round {round_}: evolver naming what {len(chats)} mistakes missed", attempt,
                            want, None)
            sampling = dataclasses.replace(self.ctx.evolver_sampling, stop=("\n",), max_tokens=96,
                                           seed=(self.s.seed * 1_000_003 + round_ * 101 + attempt) % 2**31)
            if attempt == 0:
                sampling = dataclasses.replace(sampling, temperature=0.0)
            comps = self.ctx.evolver.generate(chats, sampling)
            p_tok, c_tok = sum(c.prompt_tokens for c in comps), sum(c.completion_tokens for c in comps)
            self.ctx.store.add_usage(self.run_id, evolver_calls=len(chats), tokens=p_tok + c_tok)
            texts = [ev.fact_text(chat, c.text) for chat, c in zip(chats, comps)]
            facts = [f for f, stored in zip(map(ev.parse_fact, texts), stores) if f and ev.fits_column(f, stored)]
            new = ev.with_facts(node.instructions, facts)
            raw = "\n".join(f"Fact: {t}" for t in texts)
            verdict, error = "ok", None
            if not facts:
                verdict, error = "invalid", "no usable fact in the replies"
            elif ev.facts_identity(new) in seen:
                verdict, error = "noop", "every fact is already in the instructions or the tree"
            seen.add(ev.facts_identity(new))
            proposals.append(_Proposal(new if verdict == "ok" else None, raw, error, verdict, attempt, p_tok, c_tok))
            self.ctx.store.add_attempt(self.run_id, round_, attempt, raw=raw, instructions=new if facts else "",
                                       verdict=verdict, error=error or "", prompt_tokens=p_tok,
                                       completion_tokens=c_tok)
        if not chats:
            proposals.append(_Proposal(None, "", "no mistake of the batch got a value wrong", "noop", 0, 0, 0))
        return proposals, chats[0] if chats else []

    def _critiques(self, node: Node, problems: Sequence[Problem], outcomes: Sequence[Outcome],
                   round_: int) -> tuple[str, tuple[int, int, int]]:
        """TextGrad-style backward pass: one short critique per failure (one batched call), aggregated.

        Returns the aggregated feedback and (evolver calls, prompt tokens, completion tokens) spent.
        """
        kind = self.ctx.task_kind
        groups = group_samples(problems, outcomes)
        failures = [(i, p, outs) for i, (p, outs) in enumerate(groups, start=1) if not outs[0].correct]
        if not failures:
            return ev.aggregate_critiques([], len(groups)), (0, 0, 0)
        self._check_cancel()
        chats = [ev.build_critique_chat(node.instructions, problem_entry(i, p, outs, kind, 1200))
                 for i, p, outs in failures]
        sampling = dataclasses.replace(self.ctx.evolver_sampling,
                                       seed=(self.s.seed * 1_000_003 + round_ * 101 + 50) % 2**31)
        comps = self.ctx.evolver.generate(chats, sampling)
        p_tok = sum(c.prompt_tokens for c in comps)
        c_tok = sum(c.completion_tokens for c in comps)
        self.ctx.store.add_usage(self.run_id, evolver_calls=len(chats), tokens=p_tok + c_tok)
        critiques = [(p.id, ev.parse_critique(c.text)) for (_, p, _), c in zip(failures, comps)]
        return ev.aggregate_critiques(critiques, len(groups)), (len(chats), p_tok, c_tok)

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
                root.dev_score, outs = self._score(root, self.ctx.dev, "dev", 0, "scoring the root on dev")
                root.dev_correct = per_problem(outs, len(self.ctx.dev))
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
                self._round_no = r
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
        fb_batch, held_batch = draw_batches(self.ctx.train, s.seed, r, s.batch_size, s.heldout_size)
        parent_fb, fb_outs = self._score(node, fb_batch, "feedback", r, f"round {r}: scoring node {node.id} on the batch")
        parent_held = None
        if held_batch:
            parent_held, _ = self._score(node, held_batch, "heldout", r, f"round {r}: scoring node {node.id} held out")
        train_scores = [b["score"] for b in store.get_batches(self.run_id, node.id) if b["split"] != "dev"]
        node.train_score = sum(train_scores) / len(train_scores)
        self._commit(node)
        child = next((n for n in tree.nodes.values() if n.round == r and n.id != 0), None)
        child_fb: float | None = None
        if child is None:
            child, child_fb = self._expand(tree, node, r, fb_batch, fb_outs)
            if child is None:
                return
        gate = s.acceptance_gate or s.rule == "pareto"
        if gate or held_batch:
            if child_fb is None:
                child_fb, _ = self._score(child, fb_batch, "feedback", r, f"round {r}: scoring the edit on the batch")
            child.train_score = child_fb
        if held_batch:
            child.heldout_score, _ = self._score(child, held_batch, "heldout", r, f"round {r}: scoring the edit held out")
            child.parent_heldout = parent_held
        if gate and (child_fb or 0.0) <= parent_fb:
            child.status = "rejected"
            self._commit(child)
            self._emit(tree, r, f"round {r}: edit {child.id} does not beat its parent on the batch "
                                f"({child_fb:.0%} ≤ {parent_fb:.0%}); not scored on dev", child)
            return
        child.dev_score, outs = self._score(child, self.ctx.dev, "dev", 0, f"round {r}: scoring edit {child.id} on dev")
        child.dev_correct = per_problem(outs, len(self.ctx.dev))
        child.status = "ok"
        self._commit(child)
        best = tree.winner()
        store.update_run(self.run_id, best_dev=best.dev_score, winner=best.id)
        self._emit(tree, r, f"round {r}/{s.rounds}: edit {child.id} dev {child.dev_score:.0%} "
                            f"(parent {node.dev_score or 0:.0%}), best {best.dev_score:.0%}", child)

    def _expand(self, tree: Tree, node: Node, r: int, fb_batch: list[Problem],
                fb_outs: list[Outcome]) -> tuple[Node | None, float | None]:
        """Propose the round's edit and commit it as a child; (None, None) when no new instructions came."""
        s = self.s
        pre = (0, 0, 0)  # evolver calls and tokens spent before the edit (TextGrad-style critiques)
        if s.request == "facts" and s.rule != "textgrad":
            feedback = mistakes(fb_batch, fb_outs, self.ctx.task_kind)
            proposals, chat = self._propose_facts(tree, node, fb_batch, fb_outs, r)
        else:
            if s.rule == "textgrad":
                feedback, pre = self._critiques(node, fb_batch, fb_outs, r)
            elif s.request == "compact":
                feedback = mistakes(fb_batch, fb_outs, self.ctx.task_kind)
            else:
                feedback = summarize(fb_batch, fb_outs, self.ctx.task_kind, max_chars=s.feedback_chars)
            chat = self._request(node, feedback, len(fb_batch))
            proposals = self._propose(tree, node, chat, r)
        good = [p for p in proposals if p.verdict == "ok"]
        tokens = (sum(p.prompt_tokens for p in proposals) + pre[1], sum(p.completion_tokens for p in proposals) + pre[2])
        child_fb: float | None = None
        chosen = good[0] if good else None
        if len(good) > 1:  # several candidates: keep the best on the feedback batch (ties: the first)
            scores = []
            for p in good:
                _, outs = self.ctx.scorer.score(p.instructions or "", fb_batch)
                score = sum(o.correct for o in outs) / len(outs)
                self.ctx.store.add_attempt(self.run_id, r, p.attempt, raw=p.raw, instructions=p.instructions,
                                           verdict=p.verdict, error="", prompt_tokens=p.prompt_tokens,
                                           completion_tokens=p.completion_tokens, batch_score=score)
                scores.append(score)
            best_i = max(range(len(good)), key=lambda i: (scores[i], -i))
            chosen, child_fb = good[best_i], scores[best_i]
        last = proposals[-1]
        status = "pending" if chosen else ("noop" if all(p.verdict == "noop" for p in proposals) else "failed")
        child = tree.add(Node(
            id=tree.next_id(), parent=node.id, instructions=chosen.instructions or "" if chosen else "", round=r,
            status=status, evolver_output=(chosen or last).raw, feedback=feedback,
            prompt_tokens=tokens[0], completion_tokens=tokens[1], attempts=len(proposals) + pre[0],
            error=None if chosen else last.error, evolver_chat=json.dumps(chat, ensure_ascii=False),
        ))
        self._commit(child)
        if chosen is None:
            what = "repeated instructions already in the tree" if status == "noop" else f"no usable prompt ({last.error})"
            self._emit(tree, r, f"round {r}: the evolver gave {what} in {len(proposals)} attempts", child)
            return None, None
        if child_fb is not None:
            self._score(child, fb_batch, "feedback", r, f"round {r}: scoring the edit on the batch")  # cached
        return child, child_fb

    def _finish(self, tree: Tree, status: str, message: str) -> SearchResult:
        winner = tree.winner()
        root_dev = tree.nodes[0].dev_score if 0 in tree.nodes else None
        attempts = self.ctx.store.get_attempts(self.run_id)
        result = SearchResult(self.run_id, status, tree, winner, root_dev, message, attempts=len(attempts),
                              noop_attempts=sum(a["verdict"] == "noop" for a in attempts),
                              invalid_attempts=sum(a["verdict"] == "invalid" for a in attempts))
        summary = {"winner": winner.id, "winner_dev": winner.dev_score, "root_dev": root_dev,
                   "winner_instructions": winner.instructions, "nodes": len(tree.nodes),
                   "rounds_done": result.rounds_done, "edits": result.edits, "attempts": result.attempts,
                   "noop_attempts": result.noop_attempts, "invalid_attempts": result.invalid_attempts}
        run_status = "cancelled" if status == "cancelled" else "done"
        self.ctx.store.update_run(self.run_id, status=run_status, winner=winner.id, best_dev=winner.dev_score,
                                  root_dev=root_dev, result=summary, message=message)
        self._emit(tree, len(tree.selections), message or f"done: dev {root_dev or 0:.0%} → {winner.dev_score or 0:.0%}",
                   done=True)
        return result
