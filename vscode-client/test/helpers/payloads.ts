// Protocol payloads for unit tests, complete as the server sends them (see src/protocol.ts).
import type { RunDone, RunProgress, TreeNode } from '../../src/protocol';

export function node(over: Partial<TreeNode> = {}): TreeNode {
  return { id: 1, parent: 0, round: 1, status: 'ok', instructions: 'x', dev: 0.55, train: 0.4, visits: 0, error: null, noAnswer: null, ...over };
}

export function progress(over: Partial<RunProgress> = {}): RunProgress {
  return {
    runId: 'r',
    uri: 'file:///w/shop.prompt.md',
    kind: 'evolve',
    done: false,
    message: '',
    round: 0,
    rounds: 0,
    step: '',
    stepDone: 0,
    stepTotal: 0,
    etaS: null,
    rootDev: null,
    winnerDev: null,
    node: null,
    ...over,
  };
}

export function done(over: Partial<RunDone> = {}): RunDone {
  return {
    ...progress({ done: true }),
    error: null,
    winner: null,
    instructions: null,
    accuracy: {},
    rootTest: null,
    winnerTest: null,
    roundsDone: null,
    edits: null,
    replies: null,
    noopReplies: null,
    winnerReason: null,
    ...over,
  };
}
