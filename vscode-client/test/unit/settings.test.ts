import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildSettings, fileGlobs, initializationOptions, needsRestart, SERVER_SETTINGS } from '../../src/settings';

describe('settings', () => {
  it('maps lse.* settings to the server sections, dropping empty values', () => {
    const values: Record<string, unknown> = {
      'model.backend': 'transformers',
      'model.name': 'tiny',
      'model.baseUrl': '',
      'model.sampling.maxTokens': 16,
      'model.sampling.temperature': null,
      'evolve.rounds': 3,
      'evolve.batchSize': 4,
      'evolve.acceptanceGate': false,
      'evolve.maxWallSeconds': 60,
      'sql.timeoutSeconds': 2.5,
      'evolver.name': '  ',
    };
    assert.deepEqual(buildSettings((k) => values[k]), {
      model: { backend: 'transformers', name: 'tiny', sampling: { maxTokens: 16 } },
      evolve: { rounds: 3, batchSize: 4, acceptanceGate: false, max_wall_s: 60 },
      sql: { timeoutSeconds: 2.5 },
    });
  });

  it('sends nothing when nothing is set (lse.toml decides)', () => {
    assert.deepEqual(buildSettings(() => undefined), {});
  });

  it('puts the trust state next to the settings', () => {
    const opts = initializationOptions((k) => (k === 'evolve.rounds' ? 2 : undefined), false);
    assert.deepEqual(opts, { settings: { evolve: { rounds: 2 } }, trusted: false });
  });

  it('only uses the sections the server reads', () => {
    for (const path of Object.values(SERVER_SETTINGS)) {
      assert.ok(['model', 'evolver', 'evolve', 'sql', 'files'].includes(path.split('.')[0]), path);
    }
  });

  it('restarts the server only for settings that change how it starts', () => {
    assert.equal(needsRestart((s) => s === 'lse.python'), true);
    assert.equal(needsRestart((s) => s === 'lse.server.path'), true);
    assert.equal(needsRestart((s) => s === 'lse.model.name'), false);
    assert.equal(needsRestart((s) => s === 'lse.files.prompts'), true);
  });

  it('takes the file globs from lse.files.*, the server defaults otherwise', () => {
    assert.deepEqual(fileGlobs(() => undefined), { prompts: ['*.prompt.md'], suites: ['*.suite.yaml', '*.suite.yml', '*.suite.json'] });
    assert.deepEqual(fileGlobs((k) => (k === 'files.prompts' ? ['*.lse.md', ''] : [])).prompts, ['*.lse.md']);
  });
});
