import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyQuestion, diffTitle, doneMessage, nodeDescription, nodeLabel, pct, runLabel, statusText } from '../../src/format';
import { done, node, progress } from '../helpers/payloads';

describe('format', () => {
  it('formats scores as percentages', () => {
    assert.equal(pct(0.554), '55%');
    assert.equal(pct(1), '100%');
    assert.equal(pct(null), '–');
    assert.equal(pct(undefined), '–');
  });

  it('labels runs', () => {
    assert.equal(runLabel({ kind: 'evolve', rootDev: 0.4, winnerDev: 0.55 }), 'evolve · dev 40% → 55%');
    assert.equal(runLabel({ kind: 'evaluate', rootDev: 0.4, winnerDev: 0.4 }), 'evaluate · dev 40%');
    assert.equal(runLabel({ kind: 'evolve', rootDev: null, winnerDev: null }), 'evolve');
  });

  it('labels nodes with scores and marks the winner', () => {
    assert.equal(nodeLabel(node()), '#1 dev 55%');
    assert.equal(nodeDescription(node(), 1), 'train 40% · round 1 · ★ winner');
    assert.equal(nodeDescription(node({ id: 0, parent: null, round: 0, train: null }), 1), 'root');
    assert.equal(nodeDescription(node({ noAnswer: 0.25 }), 1), 'train 40% · round 1 · no answer 25% · ★ winner');
    assert.equal(nodeLabel(node({ status: 'failed', dev: null })), '#1 failed');
  });

  it('shows the round, the step with its counts and the best score in the status bar', () => {
    const p = progress({ round: 2, rounds: 4, step: 'scoring dev', stepDone: 12, stepTotal: 40, winnerDev: 0.5 });
    assert.equal(statusText([p]), '$(sync~spin) LSE evolve · round 2/4 · scoring dev 12/40 · best dev 50%');
    const evaluate = progress({ runId: 's', kind: 'evaluate' });
    assert.equal(statusText([p, evaluate]), '$(sync~spin) LSE evaluate (+1)');
    assert.equal(statusText([]), '');
  });

  it('logs finished runs with the server summary', () => {
    const base = done({ kind: 'evaluate', message: 'LSE evaluate of shop.prompt.md: train 10%, dev 20%' });
    assert.equal(doneMessage(base), 'LSE evaluate of shop.prompt.md: train 10%, dev 20%');
    assert.equal(doneMessage({ ...base, error: 'cancelled' }), 'LSE evaluate of shop.prompt.md cancelled.');
    assert.equal(doneMessage({ ...base, error: 'boom' }), 'LSE evaluate of shop.prompt.md failed: boom');
  });

  it('titles the diff and asks with the scores of the run, not parsed from a label', () => {
    const run = done({ rootDev: 0.4, winnerDev: 0.55 });
    assert.equal(diffTitle('shop.prompt.md', run), 'shop.prompt.md: current (dev 40%) ↔ winner (dev 55%)');
    assert.equal(diffTitle('shop.prompt.md', undefined), 'shop.prompt.md: current ↔ winner');
    assert.equal(applyQuestion('shop.prompt.md', run), 'LSE: dev 40% → 55%: apply the evolved prompt to shop.prompt.md?');
  });
});
