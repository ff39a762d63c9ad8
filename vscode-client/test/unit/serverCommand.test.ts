import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ResolveEnv } from '../../src/serverCommand';
import { isMissing, resolveServerCommand, which } from '../../src/serverCommand';

function env(files: string[], over: Partial<ResolveEnv> = {}): ResolveEnv {
  const set = new Set(files);
  return {
    workspaceFolders: ['/ws'],
    pathEnv: '/usr/local/bin:/usr/bin',
    platform: 'linux',
    home: '/home/me',
    trusted: true,
    isFile: (f) => set.has(f),
    ...over,
  };
}

describe('resolveServerCommand', () => {
  it('prefers lse.server.path, expanding ${workspaceFolder} and ~', () => {
    const r1 = resolveServerCommand({ serverPath: '${workspaceFolder}/env/bin/lse-server' }, env(['/ws/env/bin/lse-server']));
    assert.deepEqual(r1, { command: '/ws/env/bin/lse-server', args: ['--stdio'], source: 'lse.server.path' });
    const r2 = resolveServerCommand({ serverPath: '~/bin/lse-server', python: '/usr/bin/python3' }, env(['/home/me/bin/lse-server']));
    assert.ok(!isMissing(r2) && r2.command === '/home/me/bin/lse-server');
  });

  it('reports a configured path that does not exist', () => {
    const r = resolveServerCommand({ serverPath: '/nope/lse-server' }, env([]));
    assert.ok(isMissing(r));
    assert.match(r.error, /lse\.server\.path.*does not exist/);
  });

  it('runs python -m lse_server for lse.python, found on PATH by name', () => {
    const r = resolveServerCommand({ python: 'python3', logLevel: 'DEBUG' }, env(['/usr/bin/python3']));
    assert.deepEqual(r, {
      command: '/usr/bin/python3',
      args: ['-m', 'lse_server', '--stdio', '--log-level', 'DEBUG'],
      source: 'lse.python',
    });
  });

  it('finds the workspace .venv before PATH, only in a trusted workspace', () => {
    const files = ['/ws/.venv/bin/lse-server', '/usr/bin/lse-server'];
    const trusted = resolveServerCommand({}, env(files));
    assert.ok(!isMissing(trusted) && trusted.source === 'workspace .venv' && trusted.command === '/ws/.venv/bin/lse-server');
    const untrusted = resolveServerCommand({}, env(files, { trusted: false }));
    assert.ok(!isMissing(untrusted) && untrusted.source === 'PATH' && untrusted.command === '/usr/bin/lse-server');
  });

  it('says what it tried when nothing is found', () => {
    const r = resolveServerCommand({}, env([]));
    assert.ok(isMissing(r));
    assert.match(r.error, /lse-server was not found/);
    assert.deepEqual(r.tried, ['/ws/.venv/bin/lse-server', 'lse-server on PATH']);
  });

  it('looks for .exe on Windows', () => {
    const e = env(['C:\\tools\\lse-server.exe'], { platform: 'win32', pathEnv: 'C:\\tools' });
    assert.ok(which('lse-server', e)?.endsWith('lse-server.exe'));
  });
});
