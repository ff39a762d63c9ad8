// LSE's protocol beyond LSP, mirroring server/lse_server/protocol.py field for field (a test holds the two
// together: tests/test_server.py::test_protocol_ts_mirrors_protocol_py). No `vscode` import here.
// A score has one name on every hop: `rootDev` (the prompt the run started from), `winnerDev` (the best node).

export type RunKind = 'evaluate' | 'evolve' | 'train';

/** Server-side commands (workspace/executeCommand); the client registers its own ids under `lse.client.*`. */
export const ServerCommand = {
  evaluate: 'lse.evaluate',
  evolve: 'lse.evolve',
  train: 'lse.train',
  cancel: 'lse.cancel',
  showTree: 'lse.showTree',
  /** Puts an evolve's winner in when the Apply question was declined or could not be asked (code action). */
  applyWinner: 'lse.applyWinner',
} as const;

export const Method = {
  runProgress: 'lse/runProgress',
  tree: 'lse/tree',
  runs: 'lse/runs',
} as const;

/** The one argument of every command and custom request. */
export interface CommandArgs {
  uri?: string;
  runId?: string;
  rounds?: number;
  evolver?: string; // lse.evolve: a trained evolver of the workspace (a name under .lse/evolvers/) for this run
}

/** `lse.evaluate`, `lse.evolve`, `lse.train`: the run started (its progress follows). */
export interface StartResult {
  runId: string;
}

export interface CancelResult {
  cancelled: boolean;
  runId: string | null;
  message: string;
}

/** One prompt version of a run's tree. */
export interface TreeNode {
  id: number;
  parent: number | null;
  round: number;
  status: string; // ok | failed | noop | ...
  instructions: string;
  dev: number | null;
  train: number | null;
  visits: number;
  error: string | null;
  noAnswer: number | null; // share of the node's dev replies with no answer at all
}

/** `lse/tree` and `lse.showTree`: a run's tree, and the same tree as text. */
export interface TreeResult {
  runId: string;
  kind: RunKind;
  rule: string | null;
  status: string;
  prompt: string;
  promptUri: string;
  rootDev: number | null;
  winnerDev: number | null;
  winner: number | null;
  nodes: TreeNode[];
  text: string;
}

export interface RunSummary {
  runId: string;
  prompt: string;
  promptUri: string;
  kind: RunKind;
  status: string; // running | done | cancelled | failed | ...
  started: number; // seconds since the epoch
  rule: string | null;
  rootDev: number | null;
  winnerDev: number | null;
  winner: number | null;
}

export interface RunsResult {
  runs: RunSummary[];
}

/** `lse/runProgress` while a run goes: one per progress event of the worker. */
export interface RunProgress {
  runId: string;
  uri: string;
  kind: RunKind;
  done: boolean;
  /** the progress line as shown, e.g. "round 2/8 · scoring dev 12/40 · best dev 55%" */
  message: string;
  round: number;
  rounds: number;
  step: string;
  stepDone: number;
  stepTotal: number;
  etaS: number | null;
  rootDev: number | null;
  winnerDev: number | null;
  node: TreeNode | null;
}

/** The last `lse/runProgress` of a run (`done: true`); `message` is the summary shown to the user. */
export interface RunDone extends RunProgress {
  error: string | null; // null: finished; "cancelled"; else why it failed
  winner: number | null;
  instructions: string | null; // the winner's instructions (evolve)
  accuracy: Record<string, number>; // evaluate: per split
  rootTest: number | null;
  winnerTest: number | null;
  roundsDone: number | null;
  edits: number | null; // children with new instructions
  replies: number | null; // evolver replies (an edit may take several)
  noopReplies: number | null; // replies whose instructions were already in the tree
  winnerReason: string | null; // why the winner is the winner (or why the seed stays): the paired test, in words
}

/** Either kind of `lse/runProgress`. */
export type RunUpdate = RunProgress | RunDone;

export function isDone(p: RunUpdate): p is RunDone {
  return p.done;
}
