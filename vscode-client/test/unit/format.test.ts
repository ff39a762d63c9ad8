import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  diffTitle,
  doneMessage,
  nodeDescription,
  nodeLabel,
  parseScoreLabel,
  pct,
  runLabel,
  statusText,
} from '../../src/format';
import type { RunProgress, TreeNode } from '../../src/protocol';

const node = (over: Partial<TreeNode>): TreeNode => ({
  id: 1,
  parent: 0,
  round: 1,
  status: 'ok',
  instructions: 'x',
  dev: 0.55,
  train: 0.4,
  ...over,
});

describe('format', () => {
  it('formats scores as percentages', () => {
    assert.equal(pct(0.554), '55%');
    assert.equal(pct(1), '100%');
    assert.equal(pct(null), '–');
    assert.equal(pct(undefined), '–');
  });

  it('labels runs', () => {
    assert.equal(runLabel({ kind: 'evolve', rootDev: 0.4, bestDev: 0.55 }), 'evolve · dev 40% → 55%');
    assert.equal(runLabel({ kind: 'evaluate', rootDev: 0.4, bestDev: 0.4 }), 'evaluate · dev 40%');
    assert.equal(runLabel({ kind: 'evolve', rootDev: null, bestDev: null }), 'evolve');
  });

  it('labels nodes with scores and marks the winner', () => {
    assert.equal(nodeLabel(node({})), '#1 dev 55%');
    assert.equal(nodeDescription(node({}), 1), 'train 40% · round 1 · ★ winner');
    assert.equal(nodeDescription(node({ id: 0, parent: null, round: 0, train: null }), 1), 'root');
    assert.equal(nodeLabel(node({ status: 'failed', dev: null })), '#1 failed');
  });

  it('shows round and best score in the status bar', () => {
    const p: RunProgress = { runId: 'r', uri: 'file:///a.prompt.md', kind: 'evolve', done: false, round: 2, rounds: 4, bestDev: 0.5 };
    assert.equal(statusText([p]), '$(sync~spin) LSE evolve · round 2/4 · best dev 50%');
    assert.equal(statusText([p, { ...p, runId: 's', kind: 'evaluate', rounds: 0, bestDev: null }]), '$(sync~spin) LSE evaluate (+1)');
    assert.equal(statusText([]), '');
  });

  it('describes finished runs', () => {
    const base: RunProgress = { runId: 'r', uri: 'file:///w/shop.prompt.md', kind: 'evaluate', done: true, message: 'train 10%, dev 20%' };
    assert.equal(doneMessage(base), 'LSE evaluate of shop.prompt.md: train 10%, dev 20%');
    assert.equal(doneMessage({ ...base, error: 'cancelled' }), 'LSE evaluate of shop.prompt.md cancelled.');
    assert.equal(doneMessage({ ...base, error: 'boom' }), 'LSE evaluate of shop.prompt.md failed: boom');
  });

  it('reads the dev scores from the edit label for the diff title', () => {
    assert.deepEqual(parseScoreLabel('LSE: dev 40% → 55%'), { before: '40%', after: '55%' });
    assert.equal(parseScoreLabel('something else'), undefined);
    assert.equal(diffTitle('shop.prompt.md', 'LSE: dev 40% → 55%'), 'shop.prompt.md: current (dev 40%) ↔ winner (dev 55%)');
    assert.equal(diffTitle('shop.prompt.md', undefined), 'shop.prompt.md: current ↔ winner');
  });
});
