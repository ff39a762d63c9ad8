import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TreeNode, TreeResult } from '../../src/protocol';
import { applyProgress, buildTree, childrenOf } from '../../src/tree';
import { done, node, progress } from '../helpers/payloads';

const n = (id: number, parent: number | null, dev: number | null, status = 'ok'): TreeNode =>
  node({ id, parent, round: id, status, instructions: `v${id}`, dev, train: null });

// the shape `lse/tree` returns (checked against the real server in test/server)
const result: TreeResult = {
  runId: 'r1',
  kind: 'evolve',
  rule: 'ucb',
  status: 'done',
  prompt: '/w/shop.prompt.md',
  promptUri: 'file:///w/shop.prompt.md',
  rootDev: 0.4,
  winnerDev: 0.6,
  winner: 3,
  nodes: [n(0, null, 0.4), n(1, 0, 0.5), n(2, 0, null, 'failed'), n(3, 1, 0.6)],
  text: '',
};

describe('tree', () => {
  it('builds parent/child links in id order', () => {
    const t = buildTree(result);
    assert.deepEqual(childrenOf(t, null).map((x) => x.id), [0]);
    assert.deepEqual(childrenOf(t, 0).map((x) => x.id), [1, 2]);
    assert.deepEqual(childrenOf(t, 1).map((x) => x.id), [3]);
    assert.equal(t.winner, 3);
  });

  it('grows from progress notifications and takes the final winner', () => {
    const t = buildTree({ runId: 'r1', winner: null, nodes: [n(0, null, 0.4)] });
    assert.equal(applyProgress(t, progress({ runId: 'r1', node: n(1, 0, 0.7) })), true);
    assert.equal(applyProgress(t, progress({ runId: 'r1' })), false);
    // the same node again (re-scored) replaces, it does not duplicate
    applyProgress(t, progress({ runId: 'r1', node: n(1, 0, 0.8) }));
    assert.deepEqual(childrenOf(t, 0).map((x) => x.dev), [0.8]);
    applyProgress(t, done({ runId: 'r1', winner: 1 }));
    assert.equal(t.winner, 1);
  });

  it('shows nodes whose parent is unknown at the top', () => {
    const t = buildTree({ runId: 'r', winner: null, nodes: [n(5, 4, 0.1)] });
    assert.deepEqual(childrenOf(t, null).map((x) => x.id), [5]);
  });
});
