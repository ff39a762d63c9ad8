"""Rollouts: for one state, ask the evolver again exactly what the search asked (the recorded request: one chat
for the paper's, compact and TextGrad-style requests, one per mistake for facts), sample G edits (one reply per
chat each), read them with the request kind's own proposer, gate them with the search's own rules (a no-op, or a
claim the database contradicts, is invalid), reward them on the state's target problems, and keep what the PPO
update needs (token ids per chat, advantages, old and base log-probs).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from lse_engine.config import TrainConfig
from lse_engine.errors import Cancelled
from lse_engine.evolve.proposers import PROPOSERS, Request, request_from_record
from lse_engine.evolve.proposers.reference import build_chat
from lse_engine.evolve.proposers.textgrad import build_textgrad_chat
from lse_engine.evolve.replies import STOP, with_prefill
from lse_engine.evolve.search import added_text
from lse_engine.llm.base import Chat, Sampling
from lse_engine.train.env import TrainEnv
from lse_engine.train.policy import Policy
from lse_engine.train.rewards import EditReward, advantages, batch_score, reward_instructions
from lse_engine.train.states import State


def state_request(state: State, task_kind: str, sampling: Sampling) -> Request:
    """What the evolver was sent for this state, as the run recorded it; runs older than the recorded request
    get it rebuilt from the state's instructions and feedback (the paper's request, or TextGrad-style's)."""
    recorded = request_from_record(state.chat, state.kind, dataclasses.replace(sampling, stop=(STOP,)))
    if recorded is not None:
        return recorded
    if state.rule == "textgrad":
        chat = build_textgrad_chat(state.instructions, state.feedback)
    else:
        chat = build_chat(state.instructions, state.feedback, task_kind)
    kind = "textgrad" if state.rule == "textgrad" else "reference"
    return Request(kind, (with_prefill(chat) if state.prefill else chat,), dataclasses.replace(sampling, stop=(STOP,)))


def state_chat(state: State, task_kind: str) -> Chat:
    """The one chat of a state whose request has one (what TRL's scale-out trains on)."""
    request = state_request(state, task_kind, Sampling())
    if len(request.chats) != 1:
        raise ValueError(f"state {state.id}: a {request.kind} request has {len(request.chats)} chats")
    return request.chats[0]


def stop_at(policy: Policy, ids: list[int], max_tokens: int,
            stops: Sequence[str] = (STOP,)) -> tuple[list[int], str, bool]:
    """A sampled completion as the search's evolver call returns it: the tokens up to the one that completes
    a stop string (the search generates no further), their text before it, and whether the token limit was hit."""
    text = policy.decode(ids)
    stops = [s for s in stops if s]
    if not any(s in text for s in stops):
        hit_limit = len(ids) >= max_tokens and not (ids and ids[-1] in policy.eos_ids)
        return ids, text, hit_limit
    lo, hi = 1, len(ids)  # the shortest prefix whose text holds a stop string (holding one is monotone)
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in policy.decode(ids[:mid]) for s in stops):
            hi = mid
        else:
            lo = mid + 1
    first = min(text.index(s) for s in stops if s in text)
    return ids[:lo], text[:first], False


@dataclass
class Rollout:
    """G edits of one state with their rewards. An edit is one completion per chat of the request; log-probs
    (filled by `score_logps`) are kept per edit and chat."""

    state: State
    prompts: list[list[int]]  # the request's chats, as token ids
    edits: list[list[list[int]]]  # per edit, one completion per chat
    texts: list[str]  # per edit, the replies as the proposer read them
    parent_score: float
    rewards: list[EditReward]
    advantages: list[float]
    old_logps: list[list[torch.Tensor]] = field(default_factory=list)
    ref_logps: list[list[torch.Tensor]] = field(default_factory=list)

    @classmethod
    def single(cls, state: State, prompt_ids: list[int], completions: list[list[int]], rewards: list[EditReward],
               advantages: list[float], parent_score: float = 0.0) -> Rollout:
        """A rollout of a one-chat request (the paper's): each completion is one edit."""
        return cls(state, [prompt_ids], [[c] for c in completions], [""] * len(completions), parent_score, rewards,
                   advantages)

    @property
    def tokens(self) -> int:
        return sum(len(c) for edit in self.edits for c in edit)

    def segments(self) -> list[tuple[int, int]]:
        """(edit, chat) of every completion that has tokens."""
        return [(e, j) for e, edit in enumerate(self.edits) for j, c in enumerate(edit) if c]


def collect(env: TrainEnv, policy: Policy, state: State, cfg: TrainConfig, sampling: Sampling, seed: int,
            base: bool = False, samples: int | None = None) -> Rollout:
    """Sample edits for a state (with the trained evolver, or the base one with `base`) and reward them."""
    if env.cancel.cancelled:
        raise Cancelled("cancelled")
    problems = env.target(state, cfg.reward_on)
    if problems is None:
        raise ValueError(f"state {state.id}: its suite or problems are gone")
    request = state_request(state, env.task_kind(state), sampling)
    # the rollout's temperature, the request's own stop strings, and its own length where the kind has one (facts)
    decoding = dataclasses.replace(sampling, stop=request.sampling.stop,
                                   max_tokens=min(sampling.max_tokens, request.sampling.max_tokens)
                                   if request.kind == "facts" else sampling.max_tokens)
    prompts = [policy.chat_ids(chat) for chat in request.chats]
    n = samples or cfg.samples
    per_chat = []
    with policy.base() if base else contextlib.nullcontext():
        for j, prompt_ids in enumerate(prompts):
            per_chat.append(policy.sample(prompt_ids, n, decoding, seed + 7919 * j))
    proposer = PROPOSERS[request.kind]()
    pctx = env.proposer_context(state)
    scorer = env.scorer(state)
    parent = batch_score(scorer, state.instructions, problems)
    edits, texts, rewards = [], [], []
    for g in range(n):
        cut = [stop_at(policy, per_chat[j][g], decoding.max_tokens, decoding.stop) for j in range(len(prompts))]
        candidate = proposer.read(pctx, request, [text for _, text, _ in cut], [hit for _, _, hit in cut],
                                  state.instructions)
        new = candidate.instructions
        false = env.task(state).contradictions(added_text(new, state.instructions)) if new else []
        rewards.append(reward_instructions(
            scorer, new, problems, parent, parent=state.instructions, identity=proposer.identity,
            error=candidate.error or ("states what the database contradicts: " + "; ".join(false) if false else None),
            reward=cfg.reward, invalid_reward=cfg.invalid_reward, noop_reward=cfg.noop_reward, false=bool(false)))
        edits.append([ids for ids, _, _ in cut])
        texts.append(candidate.raw)
    return Rollout(state, prompts, edits, texts, parent, rewards,
                   advantages([r.reward for r in rewards], cfg.advantage))


@torch.no_grad()
def score_logps(policy: Policy, rollouts: Sequence[Rollout], micro_batch: int) -> None:
    """Fill each rollout's old (trained) and base per-token log-probs, per edit and chat."""
    policy.model.eval()
    items = [(r, e, j) for r in rollouts for e, j in r.segments()]
    for r in rollouts:
        r.old_logps = [[torch.empty(0) for _ in edit] for edit in r.edits]
        r.ref_logps = [[torch.empty(0) for _ in edit] for edit in r.edits]
    for start in range(0, len(items), max(1, micro_batch)):
        chunk = items[start : start + max(1, micro_batch)]
        pairs = [(r.prompts[j], r.edits[e][j]) for r, e, j in chunk]
        old, mask = policy.token_logps(pairs)
        with policy.base():
            ref, _ = policy.token_logps(pairs)
        for row, (r, e, j) in enumerate(chunk):
            n = int(mask[row].sum())
            r.old_logps[e][j], r.ref_logps[e][j] = old[row, :n].cpu(), ref[row, :n].cpu()
