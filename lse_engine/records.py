"""The run store's rows as types: what `Store` returns and what the CLI, the bench, training and the language
server read. One name per value from the store to the wire: `root_dev` (the prompt the run started from),
`winner_dev` (the node the run would apply), `replies` (evolver replies), `edits` (children with new
instructions). Imports nothing of the engine."""

from __future__ import annotations

from typing import Any, TypedDict


class RunSummary(TypedDict, total=False):
    """`runs.result` of an evolve run: what it ended with (written when it finishes)."""

    winner: int
    winner_dev: float | None
    root_dev: float | None
    winner_instructions: str
    winner_reason: str  # why this node (or the seed) is the winner: the paired test, in words
    winner_p: float | None  # the paired test's p-value (adjusted for the children compared), None for the seed
    nodes: int
    rounds_done: int
    edits: int  # children with new instructions (scored, raced out, or rejected by the gate)
    replies: int  # evolver replies
    noop_replies: int  # replies whose instructions were already in the tree
    invalid_replies: int  # replies without usable instructions
    false_replies: int  # replies whose instructions state something the database contradicts
    raced: int  # children stopped part-way through dev (behind their parent beyond noise)
    dev_skipped: int  # dev problems racing did not score
    root_test: float | None
    winner_test: float | None
    test_gain_interval: list[float] | None  # 95 % interval of winner − root on test (paired), in points
    bench_wall_s: float  # `lse bench`: wall time of the process that ran it to the end (resumed: that process's part)
    bench_peak_rss_mb: float | None  # `lse bench`: peak resident memory of that process while it ran the run


class RunRow(TypedDict):
    """One row of `runs`: an evaluate or evolve run. `config` and `result` are decoded JSON."""

    id: str
    kind: str  # evaluate | evolve
    prompt: str
    suite: str
    status: str  # running | done | cancelled | failed
    created: float
    updated: float
    rule: str | None
    seed: int | None
    prompt_sha: str | None
    root_instructions: str | None
    winner: int | None
    root_dev: float | None
    winner_dev: float | None
    model_id: str | None
    evolver_id: str | None
    task_calls: int
    evolver_calls: int
    tokens: int
    config: dict[str, Any] | None
    message: str | None
    result: dict[str, Any] | None
    pid: int | None


class NodeRow(TypedDict, total=False):
    """One row of `nodes`: a prompt version of a run's tree (`evolve.tree.Node` is its in-memory form)."""

    run_id: str
    id: int
    parent: int | None
    round: int
    status: str
    instructions: str
    train_score: float | None
    dev_score: float | None
    heldout_score: float | None
    parent_heldout: float | None
    evolver_output: str
    feedback: str
    prompt_tokens: int
    completion_tokens: int
    error: str | None
    attempts: int
    evolver_chat: str
    dev_outcomes: str  # JSON: per dev problem (dev order), the fraction of its samples answered right
    no_answer: float | None  # share of the node's dev replies with no answer at all
    created: float


class BatchRow(TypedDict):
    """One row of `batches`: a node scored on a list of problems (`keys` point into the outcome cache)."""

    run_id: str
    node_id: int
    split: str  # dev | feedback | heldout | train | test
    round: int
    problem_ids: list[str]
    keys: list[str]
    correct: int
    n: int
    score: float
    created: float


class AttemptRow(TypedDict, total=False):
    """One row of `attempts`: one evolver reply of a round, usable or not."""

    run_id: str
    round: int
    attempt: int
    node_id: int | None
    raw: str
    instructions: str
    verdict: str  # ok | noop | invalid | false
    error: str
    prompt_tokens: int
    completion_tokens: int
    batch_score: float | None
    created: float


class SelectionRow(TypedDict):
    """One row of `selections`: the node expanded in a round."""

    run_id: str
    round: int
    node_id: int
    created: float
