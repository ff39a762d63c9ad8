// Checks on package.json's contributions (what VS Code reads), without VS Code.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { ServerCommand } from '../../src/protocol';
import { SERVER_SETTINGS } from '../../src/settings';
import { clientRoot } from '../helpers/paths';

interface Manifest {
  activationEvents: string[];
  engines: { vscode: string };
  main: string;
  capabilities: { untrustedWorkspaces: { supported: string; restrictedConfigurations: string[] } };
  contributes: {
    languages: { id: string; filenamePatterns?: string[]; extensions?: string[] }[];
    commands: { command: string; title: string }[];
    menus: Record<string, { command: string; when?: string }[]>;
    configuration: { properties: Record<string, { default: unknown }> };
    views: Record<string, { id: string; name: string }[]>;
  };
}

const manifest = JSON.parse(fs.readFileSync(path.join(clientRoot(), 'package.json'), 'utf-8')) as Manifest;
const c = manifest.contributes;

describe('package.json', () => {
  it('claims only *.suite.* file names (not Markdown, YAML, nor Copilot\'s *.prompt.md)', () => {
    const patterns = c.languages.flatMap((l) => l.filenamePatterns ?? []);
    assert.deepEqual(patterns.sort(), ['*.suite.json', '*.suite.yaml', '*.suite.yml']);
    assert.ok(c.languages.every((l) => !l.extensions), 'no extension associations');
  });

  it('activates only in LSE workspaces: an lse.toml or a suite file, not any *.prompt.md', () => {
    assert.deepEqual(manifest.activationEvents, ['workspaceContains:**/lse.toml', 'workspaceContains:**/*.suite.{yaml,yml,json}']);
  });

  it('offers Cancel only while a run is going', () => {
    const cancels = Object.values(c.menus).flat().filter((m) => m.command === 'lse.client.cancel');
    assert.ok(cancels.length > 0);
    for (const m of cancels) {
      assert.ok(m.when?.includes('lse.runGoing') || m.when?.includes('lseRunRunning'), m.when);
    }
  });

  it('has client command ids distinct from the server commands languageclient registers', () => {
    const ids = c.commands.map((x) => x.command);
    for (const serverId of Object.values(ServerCommand)) {
      assert.ok(!ids.includes(serverId), serverId);
    }
    for (const needed of ['evaluate', 'evolve', 'cancel', 'showTree', 'train', 'restartServer']) {
      assert.ok(ids.includes(`lse.client.${needed}`), needed);
    }
  });

  it('puts Evaluate, Evolve, Cancel, Show tree and Train in the editor title of prompt files', () => {
    const title = c.menus['editor/title'].filter((m) => m.when?.includes('.prompt\\.md'));
    assert.deepEqual(
      title.map((m) => m.command).sort(),
      ['lse.client.cancel', 'lse.client.evaluate', 'lse.client.evolve', 'lse.client.showTree', 'lse.client.train'],
    );
    const known = new Set(c.commands.map((x) => x.command));
    for (const items of Object.values(c.menus)) {
      for (const m of items) {
        assert.ok(known.has(m.command), m.command);
      }
    }
  });

  it('declares a setting for every value passed to the server', () => {
    for (const key of Object.keys(SERVER_SETTINGS)) {
      assert.ok(`lse.${key}` in c.configuration.properties, key);
    }
    for (const key of ['lse.server.path', 'lse.python', 'lse.files.prompts', 'lse.files.suites']) {
      assert.ok(key in c.configuration.properties, key);
    }
  });

  it('supports untrusted workspaces in a limited way, never taking the server from workspace settings', () => {
    assert.equal(manifest.capabilities.untrustedWorkspaces.supported, 'limited');
    assert.deepEqual(manifest.capabilities.untrustedWorkspaces.restrictedConfigurations.sort(), ['lse.python', 'lse.server.path']);
  });

  it('contributes the LSE Runs view and targets VS Code ^1.91 with a bundled main', () => {
    assert.ok(Object.values(c.views).flat().some((v) => v.id === 'lseRuns' && v.name === 'LSE Runs'));
    assert.equal(manifest.engines.vscode, '^1.91.0');
    assert.equal(manifest.main, './dist/extension.js');
  });
});
