import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TreeNode, TreeResult } from '../../src/protocol';
import { applyProgress, bestNode, buildTree, childrenOf, pathTo } from '../../src/tree';

const n = (id: number, parent: number | null, dev: number | null, status = 'ok'): TreeNode => ({
  id,
  parent,
  round: id,
  status,
  instructions: `v${id}`,
  dev,
  train: null,
});

// the shape `lse/tree` returns (checked against the real server in test/server)
const result: TreeResult = {
  runId: 'r1',
  kind: 'evolve',
  rule: 'ucb',
  status: 'done',
  prompt: '/w/shop.prompt.md',
  rootDev: 0.4,
  bestDev: 0.6,
  winner: 3,
  nodes: [n(0, null, 0.4), n(1, 0, 0.5), n(2, 0, null, 'failed'), n(3, 1, 0.6)],
};

describe('tree', () => {
  it('builds parent/child links in id order', () => {
    const t = buildTree(result);
    assert.deepEqual(childrenOf(t, null).map((x) => x.id), [0]);
    assert.deepEqual(childrenOf(t, 0).map((x) => x.id), [1, 2]);
    assert.deepEqual(childrenOf(t, 1).map((x) => x.id), [3]);
    assert.equal(t.winner, 3);
    assert.equal(bestNode(t)?.id, 3);
    assert.deepEqual(pathTo(t, 3), [0, 1, 3]);
  });

  it('grows from progress notifications and takes the final winner', () => {
    const t = buildTree({ runId: 'r1', winner: null, nodes: [n(0, null, 0.4)] });
    assert.equal(applyProgress(t, { runId: 'r1', uri: 'u', kind: 'evolve', done: false, node: n(1, 0, 0.7) }), true);
    assert.equal(applyProgress(t, { runId: 'r1', uri: 'u', kind: 'evolve', done: false, node: null }), false);
    // the same node again (re-scored) replaces, it does not duplicate
    applyProgress(t, { runId: 'r1', uri: 'u', kind: 'evolve', done: false, node: n(1, 0, 0.8) });
    assert.deepEqual(childrenOf(t, 0).map((x) => x.dev), [0.8]);
    applyProgress(t, { runId: 'r1', uri: 'u', kind: 'evolve', done: true, winner: 1 });
    assert.equal(t.winner, 1);
  });

  it('shows nodes whose parent is unknown at the top', () => {
    const t = buildTree({ runId: 'r', winner: null, nodes: [n(5, 4, 0.1)] });
    assert.deepEqual(childrenOf(t, null).map((x) => x.id), [5]);
  });
});
