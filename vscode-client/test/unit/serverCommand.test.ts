import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ResolveEnv } from '../../src/serverCommand';
import { ancestors, installPlan, isMissing, resolveServerCommand, which } from '../../src/serverCommand';

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

  it('finds the repository .venv above the workspace (examples/shop/ opened after ./scripts/setup.sh)', () => {
    const e = env(['/repo/.venv/bin/lse-server', '/usr/bin/lse-server'], { workspaceFolders: ['/repo/examples/shop'] });
    assert.deepEqual(resolveServerCommand({}, e), { command: '/repo/.venv/bin/lse-server', args: ['--stdio'], source: 'repository .venv' });
    const untrusted = resolveServerCommand({}, { ...e, trusted: false });
    assert.ok(!isMissing(untrusted) && untrusted.source === 'PATH');
  });

  it('uses lse-server beside the Python extension\'s interpreter before PATH', () => {
    const e = env(['/opt/py/bin/lse-server', '/usr/bin/lse-server'], { pythonInterpreter: '/opt/py/bin/python' });
    assert.deepEqual(resolveServerCommand({}, e), { command: '/opt/py/bin/lse-server', args: ['--stdio'], source: 'Python extension' });
  });

  it('names trust when an untrusted workspace has its own lse-server, and never starts it', () => {
    const r = resolveServerCommand({}, env(['/ws/.venv/bin/lse-server'], { trusted: false }));
    assert.ok(isMissing(r) && r.untrusted === true);
    assert.equal(r.error, 'LSE: this workspace is not trusted, so its lse-server (/ws/.venv/bin/lse-server) is not started. '
      + 'Trust the workspace, or set lse.server.path to an lse-server outside it.');
    const above = resolveServerCommand({}, env(['/repo/.venv/bin/lse-server'], { trusted: false, workspaceFolders: ['/repo/examples/shop'] }));
    assert.ok(isMissing(above) && above.error.includes('(/repo/.venv/bin/lse-server) is not started'));
  });

  it('names trust when an untrusted workspace finds no lse-server at all', () => {
    const r = resolveServerCommand({}, env([], { trusted: false }));
    assert.ok(isMissing(r) && r.untrusted === true);
    assert.match(r.error, /^LSE: lse-server was not found on PATH\. This workspace is not trusted, so LSE did not look in its \.venv/);
  });

  it('says what it tried when nothing is found', () => {
    const r = resolveServerCommand({}, env([]));
    assert.ok(isMissing(r) && r.untrusted === undefined);
    assert.match(r.error, /lse-server was not found\. Install it/);
    assert.deepEqual(r.tried, ['/ws/.venv/bin/lse-server', '/.venv/bin/lse-server', 'lse-server on PATH']);
  });

  it('lists the folders above a folder, nearest first', () => {
    assert.deepEqual(ancestors('/a/b/c'), ['/a/b', '/a', '/']);
    assert.deepEqual(ancestors('/'), []);
  });

  it('looks for .exe on Windows', () => {
    const e = env(['C:\\tools\\lse-server.exe'], { platform: 'win32', pathEnv: 'C:\\tools' });
    assert.ok(which('lse-server', e)?.endsWith('lse-server.exe'));
  });
});

describe('installPlan', () => {
  const checkout = (dir: string): boolean => dir === '/repo';

  it('runs the checkout\'s own setup script when the workspace is inside an LSE checkout', () => {
    const e = env(['/repo/scripts/setup.sh'], { workspaceFolders: ['/repo/examples/shop'] });
    assert.deepEqual(installPlan(e, checkout), { cwd: '/repo', command: 'bash /repo/scripts/setup.sh', server: '/repo/.venv/bin/lse-server' });
  });

  it('makes a .venv and installs the checkout into it when there is no setup script', () => {
    const e = env([], { workspaceFolders: ['/repo'] });
    assert.deepEqual(installPlan(e, checkout, '/usr/bin/python3'), {
      cwd: '/repo',
      command: '/usr/bin/python3 -m venv .venv && /repo/.venv/bin/python -m pip install -e .',
      server: '/repo/.venv/bin/lse-server',
    });
  });

  it('has no plan outside an LSE checkout', () => {
    assert.equal(installPlan(env([]), checkout), undefined);
  });
});
