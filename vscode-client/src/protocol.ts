// Wire types of the LSE language server's custom protocol (see server/app.py). No `vscode` import here.

export type RunKind = 'evaluate' | 'evolve' | 'train';

/** Server-side commands (workspace/executeCommand); the client registers its own ids under `lse.client.*`. */
export const ServerCommand = {
  evaluate: 'lse.evaluate',
  evolve: 'lse.evolve',
  cancel: 'lse.cancel',
  showTree: 'lse.showTree',
  train: 'lse.train',
} as const;

export const Method = {
  runs: 'lse/runs',
  tree: 'lse/tree',
  runProgress: 'lse/runProgress',
} as const;

/** One node of an evolution tree, as `lse/tree` and `lse/runProgress` send it. */
export interface TreeNode {
  id: number;
  parent: number | null;
  round: number;
  status: string; // ok | failed | ...
  instructions: string;
  dev: number | null;
  train: number | null;
  visits?: number;
  error?: string | null;
  [extra: string]: unknown;
}

export interface TreeResult {
  runId: string;
  kind: RunKind;
  rule: string | null;
  status: string;
  prompt: string;
  rootDev: number | null;
  bestDev: number | null;
  winner: number | null;
  nodes: TreeNode[];
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
  bestDev: number | null;
  winner: number | null;
}

export interface RunsResult {
  runs: RunSummary[];
}

/** `lse/runProgress`: one per progress event, then a final one with `done: true`. */
export interface RunProgress {
  runId: string;
  uri: string;
  kind: RunKind;
  done: boolean;
  message?: string;
  round?: number | null;
  rounds?: number | null;
  bestDev?: number | null;
  rootDev?: number | null;
  node?: TreeNode | null;
  // final notification only
  error?: string | null;
  winner?: number | null;
  instructions?: string;
  /** evaluate: accuracy per split */
  dev?: number;
  train?: number;
  [extra: string]: unknown;
}

export interface CommandArgs {
  uri?: string;
  runId?: string;
  rounds?: number;
}

export interface StartResult {
  runId: string;
}
