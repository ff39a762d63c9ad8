"""LSE's protocol beyond LSP, declared once: command and method names, every custom payload the server and
its clients exchange, and the messages between the server and its worker processes.

Keys are camelCase as they travel. `vscode-client/src/protocol.ts` mirrors the client-facing part field for
field; `tests/test_server.py::test_protocol_ts_mirrors_protocol_py` holds the two together. A score has one
name on every hop: `rootDev` (the prompt the run started from) and `winnerDev` (the best node so far).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

RunKind = Literal["evaluate", "evolve", "train"]


class Command:
    """Server commands (`workspace/executeCommand`); each takes one `CommandArgs`."""

    EVALUATE = "lse.evaluate"
    EVOLVE = "lse.evolve"
    TRAIN = "lse.train"
    CANCEL = "lse.cancel"
    SHOW_TREE = "lse.showTree"
    APPLY_WINNER = "lse.applyWinner"  # put an evolve's winner in, after the question was declined or not asked
    ALL = (EVALUATE, EVOLVE, TRAIN, CANCEL, SHOW_TREE, APPLY_WINNER)


class Method:
    """Custom requests (`lse/tree`, `lse/runs`) and the progress notification (`lse/runProgress`)."""

    RUN_PROGRESS = "lse/runProgress"
    TREE = "lse/tree"
    RUNS = "lse/runs"


# -- client <-> server ---------------------------------------------------------------------------------------
class CommandArgs(TypedDict, total=False):
    """The one argument of every command and custom request."""

    uri: str
    runId: str
    rounds: int
    evolver: str  # lse.evolve: a trained evolver of the workspace (a name under .lse/evolvers/) for this run


class StartResult(TypedDict):
    """`lse.evaluate`, `lse.evolve`, `lse.train`: the run started (its progress follows)."""

    runId: str


class CancelResult(TypedDict):
    cancelled: bool
    runId: str | None
    message: str


class TreeNode(TypedDict):
    """One prompt version of a run's tree."""

    id: int
    parent: int | None
    round: int
    status: str  # ok | failed | noop | ...
    instructions: str
    dev: float | None
    train: float | None
    visits: int
    error: str | None
    noAnswer: float | None  # share of the node's dev replies with no answer at all


class TreeResult(TypedDict):
    """`lse/tree` and `lse.showTree`: a run's tree, and the same tree as text (`text`) for any editor."""

    runId: str
    kind: RunKind
    rule: str | None
    status: str
    prompt: str
    promptUri: str
    rootDev: float | None
    winnerDev: float | None
    winner: int | None
    nodes: list[TreeNode]
    text: str


class RunSummary(TypedDict):
    runId: str
    prompt: str
    promptUri: str
    kind: RunKind
    status: str  # running | done | cancelled | failed | ...
    started: float  # seconds since the epoch
    rule: str | None
    rootDev: float | None
    winnerDev: float | None
    winner: int | None


class RunsResult(TypedDict):
    runs: list[RunSummary]


class RunProgress(TypedDict):
    """`lse/runProgress` while a run goes: one per progress event of the worker."""

    runId: str
    uri: str
    kind: RunKind
    done: bool
    message: str  # the progress line as shown: "round 2/8 · scoring dev 12/40 · best dev 55%"
    round: int
    rounds: int
    step: str
    stepDone: int
    stepTotal: int
    etaS: float | None
    rootDev: float | None
    winnerDev: float | None
    node: TreeNode | None


class RunDone(RunProgress):
    """The last `lse/runProgress` of a run (`done: true`); `message` is the summary shown to the user."""

    error: str | None  # None: finished; "cancelled"; else why it failed
    winner: int | None
    instructions: str | None  # the winner's instructions (evolve)
    accuracy: dict[str, float]  # evaluate: per split
    rootTest: float | None
    winnerTest: float | None
    roundsDone: int | None
    edits: int | None  # children with new instructions
    replies: int | None  # evolver replies (an edit may take several)
    noopReplies: int | None  # replies whose instructions were already in the tree
    winnerReason: str | None  # why the winner is the winner (or why the seed stays): the paired test, in words


# -- server <-> worker (JSON: one input on stdin, then one line per message on stdout) --------------------
class WorkerInput(TypedDict):
    """What the server writes to a worker's stdin (then closes it)."""

    job: RunKind
    prompt: str  # the prompt file's path
    runId: str
    resume: str | None
    rounds: int | None
    settings: dict[str, Any]  # engine config overrides
    text: str | None  # the editor buffer's text, scored instead of the file on disk
    version: int | None  # the buffer's version the text belongs to


class EvaluateResult(TypedDict):
    runId: str
    status: str
    accuracy: dict[str, float]
    calls: int
    cached: int


class EvolveResult(TypedDict):
    """Optional engine fields (tests, counts) are None when the engine does not report them."""

    runId: str
    status: str
    rootDev: float | None
    winner: int
    winnerDev: float | None
    instructions: str
    rootTest: float | None
    winnerTest: float | None
    roundsDone: int | None
    edits: int | None  # children with new instructions
    replies: int | None  # evolver replies (an edit may take several)
    noopReplies: int | None  # replies whose instructions were already in the tree
    winnerReason: str | None  # why the winner is the winner (or why the seed stays): the paired test, in words


class WorkerLine(TypedDict, total=False):
    """One stdout line of a worker: exactly one of `event` (a `ProgressEvent` as a dict, many), `result`
    (`EvaluateResult`, `EvolveResult` or the trainer's result; last) or `error` (a one-line message; last)."""

    event: dict[str, Any]
    result: dict[str, Any]
    error: str
