// The requests the extension makes, against the real Python server (spawned like the extension does).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { DidChangeConfigurationNotification } from 'vscode-languageserver-protocol/node';
import type { ApplyWorkspaceEditParams } from 'vscode-languageserver-protocol/node';
import { applyTextEdits, findEvolveEdit } from '../../src/edits';
import { nodeLabel, runLabel } from '../../src/format';
import type { CancelResult, RunsResult, StartResult, TreeResult } from '../../src/protocol';
import { Method, ServerCommand } from '../../src/protocol';
import { buildSettings, initializationOptions, SERVER_SETTINGS } from '../../src/settings';
import { buildTree, childrenOf } from '../../src/tree';
import type { Session } from '../helpers/lsp';
import { startSession } from '../helpers/lsp';
import { HINT, startStub } from '../helpers/openaiStub';
import type { Stub } from '../helpers/openaiStub';
import { serverExecutable, SKIP_REASON } from '../helpers/paths';
import type { DemoWorkspace } from '../helpers/workspace';
import { demoWorkspace, suiteGolds } from '../helpers/workspace';

const server = serverExecutable();
// VS Code settings as a user would set them: the tiny random model (fast; its scores mean nothing)
const TINY: Record<string, unknown> = { 'model.backend': 'transformers', 'model.name': 'tiny', 'model.sampling.maxTokens': 16 };
const get = (values: Record<string, unknown>) => (key: string) => values[key];

describe('lse-server, driven like the extension drives it', { skip: server ? false : SKIP_REASON, timeout: 600_000 }, () => {
  let ws: DemoWorkspace;
  let s: Session;
  let stub: Stub | undefined;

  before(async () => {
    ws = demoWorkspace();
    s = await startSession(server as string, ws.dir, initializationOptions(get(TINY), true));
  });

  after(async () => {
    await s?.close();
    await stub?.close();
    ws?.remove();
  });

  it('initializes with the settings and offers the five commands', () => {
    const commands = s.init.capabilities.executeCommandProvider?.commands ?? [];
    assert.deepEqual([...commands].sort(), Object.values(ServerCommand).sort());
    assert.deepEqual(initializationOptions(get(TINY), true).settings, {
      model: { backend: 'transformers', name: 'tiny', sampling: { maxTokens: 16 } },
    });
  });

  it('lists no runs in a fresh workspace', async () => {
    const res = await s.conn.sendRequest<RunsResult>(Method.runs, { uri: ws.promptUri });
    assert.deepEqual(res, { runs: [] });
  });

  it('evaluates: {runId} at once, cancellable progress, lse/runProgress until done, then runs and tree', async () => {
    const started = Date.now();
    const { runId } = await s.execute<StartResult>(ServerCommand.evaluate, { uri: ws.promptUri });
    assert.match(runId, /\S+/);
    assert.ok(Date.now() - started < 10_000, 'evaluate returns before the run ends');
    const done = await s.waitDone(runId);
    assert.equal(done.error, null, s.stderr.join('').slice(-2000));
    assert.equal(done.kind, 'evaluate');
    assert.equal(done.uri, ws.promptUri);
    assert.equal(typeof done.accuracy.dev, 'number', 'the final evaluate notification carries the accuracy per split');
    assert.match(done.message, /^LSE evaluate of shop\.prompt\.md: .*dev \d+%/);
    assert.ok(s.messages.includes(done.message), 'the summary is shown (window/showMessage)');
    const token = `lse-${runId}`;
    const begin = s.workDone.find((w) => w.token === token && w.value.kind === 'begin');
    assert.ok(begin && begin.value.kind === 'begin' && begin.value.cancellable === true);
    assert.ok(s.workDone.some((w) => w.token === token && w.value.kind === 'end'));

    const { runs } = await s.conn.sendRequest<RunsResult>(Method.runs, {});
    const run = runs.find((r) => r.runId === runId);
    assert.ok(run);
    assert.equal(run.kind, 'evaluate');
    assert.equal(run.status, 'done');
    assert.equal(run.promptUri, ws.promptUri);
    assert.equal(typeof run.started, 'number');
    assert.match(runLabel(run), /^evaluate · dev \d+%$/);

    const tree = await s.conn.sendRequest<TreeResult>(Method.tree, { runId });
    assert.equal(tree.runId, runId);
    const root = tree.nodes[0];
    for (const key of ['id', 'parent', 'round', 'status', 'instructions', 'dev', 'train', 'visits', 'error']) {
      assert.ok(key in root, `node has ${key}`);
    }
    assert.equal(root.parent, null);
    assert.equal(typeof root.dev, 'number');
    assert.match(nodeLabel(root), /^#0 dev \d+%$/);
    assert.equal(root.instructions, fs.readFileSync(ws.prompt, 'utf-8').split('---\n')[2].trim(), 'the root is the prompt file');
  });

  it('refuses a second run on the same prompt, and cancels by runId', async () => {
    const { runId } = await s.execute<StartResult>(ServerCommand.evaluate, { uri: ws.promptUri });
    await assert.rejects(s.execute(ServerCommand.evaluate, { uri: ws.promptUri }), /already/);
    const res = await s.execute<CancelResult>(ServerCommand.cancel, { runId });
    assert.deepEqual(res, { cancelled: true, runId, message: `cancelled run ${runId}` });
    const done = await s.waitDone(runId);
    assert.equal(done.error, 'cancelled');
  });

  it('evolves with the settings changed by didChangeConfiguration and sends the winner as an annotated applyEdit', async () => {
    stub = await startStub(suiteGolds(ws.suite));
    const settings = buildSettings(
      get({ 'model.backend': 'openai', 'model.name': 'scripted', 'model.baseUrl': stub.baseUrl, 'evolve.rounds': 2, 'evolve.batchSize': 4, 'evolve.devSize': 8 }),
    );
    await s.conn.sendNotification(DidChangeConfigurationNotification.type, { settings });
    const edits: ApplyWorkspaceEditParams[] = [];
    const applied = new Promise<void>((resolve) => {
      s.onApplyEdit = (params) => {
        edits.push(params);
        resolve();
        return { applied: false, failureReason: 'discarded in the test' };
      };
    });
    const { runId } = await s.execute<StartResult>(ServerCommand.evolve, { uri: ws.promptUri });
    const done = await s.waitDone(runId);
    assert.equal(done.error, null, s.stderr.join('').slice(-2000));
    assert.ok(stub.requests > 0, 'the scripted model was used');
    assert.equal(done.rootDev, 0);
    assert.equal(done.winnerDev, 1);
    assert.ok(typeof done.winner === 'number' && done.winner > 0);
    const original = fs.readFileSync(ws.prompt, 'utf-8');
    const rootInstructions = original.split('---\n')[2].trim();
    assert.equal(done.instructions, `${rootInstructions}\n${HINT}`, 'the winner is the root plus the scripted hint');
    const rounds = s.progress.filter((p) => p.runId === runId && !p.done);
    assert.ok(rounds.some((p) => p.node && typeof p.node.id === 'number'), 'progress carries nodes');
    assert.ok(rounds.some((p) => p.stepTotal > 0 && /\d+\/\d+/.test(p.message)), 'progress carries step counts');

    await applied;
    const evolve = findEvolveEdit(edits[0], (id) => id === runId);
    assert.ok(evolve, 'the edit is recognised as the run\'s evolve edit');
    assert.equal(evolve.uri, ws.promptUri);
    assert.equal(edits[0].label, 'LSE: dev 0% → 100%');
    assert.equal(evolve.annotation.needsConfirmation, true);
    const after = applyTextEdits(original, evolve.edits);
    assert.equal(after, `---\nsuite: shop.suite.yaml\n---\n${done.instructions}\n`, 'exactly the winner, front matter kept');
    assert.ok(!/<\/?(prompt|current)>/.test(after), 'no stray tags');
    assert.ok(!original.includes(HINT) && !fs.readFileSync(ws.prompt, 'utf-8').includes(HINT), 'discarded: the file is unchanged');

    const tree = buildTree(await s.conn.sendRequest<TreeResult>(Method.tree, { runId }));
    assert.equal(tree.winner, done.winner);
    assert.equal(childrenOf(tree, null).length, 1);
    assert.equal(tree.nodes.get(done.winner)?.dev, 1);
    const byUri = await s.conn.sendRequest<TreeResult>(Method.tree, { uri: ws.promptUri });
    assert.equal(byUri.runId, runId, 'lse/tree {uri} gives the latest evolve run');
  });
});

describe('lse-server and the extension settings', { skip: server ? false : SKIP_REASON, timeout: 120_000 }, () => {
  it('accepts every setting the extension can send, and reports a bad one', async () => {
    // one value for every lse.* setting passed to the server (package.json declares each of them)
    const all: Record<string, unknown> = {
      'model.backend': 'openai', 'model.name': 'm', 'model.baseUrl': 'http://127.0.0.1:9/v1', 'model.apiKeyEnv': 'LSE_KEY',
      'model.adapter': 'a', 'model.sampling.maxTokens': 64, 'model.sampling.temperature': 0.2,
      'evolver.backend': 'openai', 'evolver.name': 'e', 'evolver.baseUrl': 'http://127.0.0.1:9/v1', 'evolver.adapter': 'b',
      'evolver.sampling.maxTokens': 256, 'evolver.sampling.temperature': 0.7,
      'evolve.rule': 'best', 'evolve.c': 1.5, 'evolve.rounds': 3, 'evolve.batchSize': 5, 'evolve.devSize': 9,
      'evolve.maxModelCalls': 100, 'evolve.maxTokens': 10000, 'evolve.maxWallSeconds': 60, 'evolve.acceptanceGate': true,
      'evolve.seed': 7, 'sql.timeoutSeconds': 2, 'sql.rowCap': 1000,
      'files.prompts': ['*.prompt.md'], 'files.suites': ['*.suite.yaml'],
    };
    assert.deepEqual(Object.keys(all).sort(), Object.keys(SERVER_SETTINGS).sort());
    const ws = demoWorkspace();
    const s = await startSession(server as string, ws.dir, initializationOptions(get(all), true));
    try {
      await s.conn.sendRequest(Method.runs, {}); // answered after the settings check
      assert.deepEqual(s.messages.filter((m) => m.startsWith('LSE settings')), []);
      await s.conn.sendNotification(DidChangeConfigurationNotification.type, { settings: buildSettings(get({ 'evolve.rounds': 'many' })) });
      await s.conn.sendRequest(Method.runs, {});
      assert.ok(s.messages.some((m) => /LSE settings: .*rounds/.test(m)), s.messages.join('\n'));
    } finally {
      await s.close();
      ws.remove();
    }
  });
});

describe('lse-server in an untrusted workspace', { skip: server ? false : SKIP_REASON, timeout: 120_000 }, () => {
  it('refuses to run anything', async () => {
    const ws = demoWorkspace();
    const s = await startSession(server as string, ws.dir, initializationOptions(get(TINY), false));
    try {
      await assert.rejects(s.execute(ServerCommand.evaluate, { uri: ws.promptUri }), /not trusted/);
      assert.deepEqual(s.progress, []);
    } finally {
      await s.close();
      ws.remove();
    }
  });
});
