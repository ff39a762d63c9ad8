import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ApplyWorkspaceEditParams } from 'vscode-languageserver-protocol';
import { applyTextEdits, confirmed, findEvolveEdit } from '../../src/edits';

const text = '---\nsuite: shop.suite.yaml\n---\nold line 1\nold line 2';

// the edit the server sends at the end of an evolve (server/lse_server/runs.py): its annotation is the run id
const params: ApplyWorkspaceEditParams = {
  label: 'LSE: dev 40% → 55%',
  edit: {
    documentChanges: [
      {
        textDocument: { uri: 'file:///w/shop.prompt.md', version: 3 },
        edits: [
          {
            range: { start: { line: 3, character: 0 }, end: { line: 4, character: 10 } },
            newText: 'new instructions\n',
            annotationId: 'run1',
          },
        ],
      },
    ],
    changeAnnotations: {
      run1: { label: 'LSE: dev 40% → 55%', needsConfirmation: true, description: 'evolved by run run1: node #3' },
    },
  },
};

describe('edits', () => {
  const known = (id: string): boolean => id === 'run1';

  it('recognises the evolve edit by the run id of its annotation', () => {
    const e = findEvolveEdit(params, known);
    assert.ok(e);
    assert.equal(e.uri, 'file:///w/shop.prompt.md');
    assert.equal(e.version, 3);
    assert.equal(e.runId, 'run1');
    assert.equal(e.annotation.needsConfirmation, true);
  });

  it('passes other edits through (no annotation, or one that names no finished run)', () => {
    assert.equal(findEvolveEdit({ edit: { changes: { 'file:///a': [] } } }, known), undefined);
    assert.equal(findEvolveEdit(params, () => false), undefined);
  });

  it('computes the text after the edit (the right side of the diff)', () => {
    const e = findEvolveEdit(params, known);
    assert.ok(e);
    assert.equal(applyTextEdits(text, e.edits), '---\nsuite: shop.suite.yaml\n---\nnew instructions\n');
  });

  it('applies several edits from the end, clamps past-the-end positions, counts UTF-16', () => {
    const edits = [
      { range: { start: { line: 0, character: 0 }, end: { line: 0, character: 1 } }, newText: 'A' },
      { range: { start: { line: 1, character: 2 }, end: { line: 1, character: 99 } }, newText: '!' },
      { range: { start: { line: 9, character: 0 }, end: { line: 9, character: 0 } }, newText: '+' },
    ];
    assert.equal(applyTextEdits('ab\n😀cd', edits), 'Ab\n😀!+');
  });

  it('drops the confirmation flag once the user chose Apply in the diff', () => {
    const c = confirmed(params);
    assert.equal(c.edit.changeAnnotations?.run1.needsConfirmation, false);
    assert.equal(params.edit.changeAnnotations?.run1.needsConfirmation, true);
  });
});
