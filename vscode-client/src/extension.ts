// The LSE extension: starts lse-server, wires its commands, progress, runs view, status bar and winner review.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as vscode from 'vscode';
import type { LanguageClientOptions, ServerOptions } from 'vscode-languageclient/node';
import {
  CancellationToken,
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  ResponseError,
  RevealOutputChannelOn,
  State,
  WorkDoneProgressCancelNotification,
} from 'vscode-languageclient/node';
import { basename, doneMessage } from './format';
import { ProgressNotifications, RunStatusBar } from './progress';
import type { CancelResult, CommandArgs, RunKind, RunUpdate, StartResult } from './protocol';
import { isDone, Method, ServerCommand } from './protocol';
import { NODE_SCHEME, RunsView } from './runsView';
import type { InstallPlan } from './serverCommand';
import { installPlan, isMissing, resolveServerCommand } from './serverCommand';
import { buildSettings, fileGlobs, initializationOptions, needsRestart } from './settings';
import { WinnerReview } from './winnerReview';

const PROMPT_GLOB = '**/*.prompt.md';
const RUN_GOING = 'lse.runGoing';

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration('lse');
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** An LSE source checkout (its pyproject.toml names the `lse` package): where a one-click install comes from. */
function isLseCheckout(dir: string): boolean {
  try {
    return /^name\s*=\s*"lse"\s*$/m.test(fs.readFileSync(`${dir}/pyproject.toml`, 'utf-8'));
  } catch {
    return false;
  }
}

/** The Python extension's interpreter for the first workspace folder, if that extension is installed. */
async function pythonExtensionInterpreter(): Promise<string | undefined> {
  const ext = vscode.extensions.getExtension<{
    environments?: { getActiveEnvironmentPath(resource?: vscode.Uri): { path: string } | undefined };
  }>('ms-python.python');
  if (!ext) {
    return undefined;
  }
  try {
    const api = ext.isActive ? ext.exports : await Promise.race([ext.activate(), new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000))]);
    return api?.environments?.getActiveEnvironmentPath(vscode.workspace.workspaceFolders?.[0]?.uri)?.path;
  } catch {
    return undefined;
  }
}

class LseExtension implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<void> | undefined;
  private readonly log = vscode.window.createOutputChannel('LSE', { log: true });
  private readonly status = new RunStatusBar();
  private readonly language = vscode.languages.createLanguageStatusItem('lse.status', [
    { scheme: 'file', pattern: '**/*.prompt.md' },
    { scheme: 'file', pattern: '**/*.suite.{yaml,yml,json}' },
  ]);
  readonly review = new WinnerReview(this.log);
  private readonly progress = new ProgressNotifications((token) => {
    void this.client?.sendNotification(WorkDoneProgressCancelNotification.type, { token });
  });
  readonly runs = new RunsView(() => (this.client?.state === State.Running ? this.client.sendRequest.bind(this.client) : undefined));

  constructor(private readonly context: vscode.ExtensionContext) {}

  dispose(): void {
    this.language.dispose();
    this.progress.dispose();
    this.status.dispose();
    this.review.dispose();
    this.runs.dispose();
    this.log.dispose();
  }

  // -- server lifecycle ----------------------------------------------------------------------------------
  start(): Promise<void> {
    this.starting ??= this.doStart().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const trusted = vscode.workspace.isTrusted;
    const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
    const env = {
      workspaceFolders: folders,
      pathEnv: process.env.PATH ?? '',
      platform: process.platform,
      home: os.homedir(),
      trusted,
      isFile,
      pythonInterpreter: trusted ? await pythonExtensionInterpreter() : undefined,
    };
    const resolved = resolveServerCommand(
      { serverPath: config().get('server.path'), python: config().get('python'), logLevel: config().get('server.logLevel') },
      env,
    );
    if (isMissing(resolved)) {
      this.log.error(`${resolved.error} Tried: ${resolved.tried.join(', ')}`);
      this.runs.clear('The LSE server is not running: see "LSE: Show setup".');
      this.setLanguageStatus('no server', vscode.LanguageStatusSeverity.Error);
      const plan = trusted ? installPlan(env, isLseCheckout) : undefined;
      const actions = plan ? ['Install lse-server', 'Show setup', 'Open settings'] : ['Show setup', 'Open settings'];
      if (resolved.untrusted) {
        actions.unshift('Manage Workspace Trust');
      }
      void vscode.window.showErrorMessage(resolved.error, ...actions).then((choice) => {
        if (choice === 'Install lse-server' && plan) {
          void this.install(plan);
        } else if (choice === 'Manage Workspace Trust') {
          void vscode.commands.executeCommand('workbench.trust.manage');
        } else if (choice === 'Show setup') {
          void vscode.commands.executeCommand('lse.client.showSetup');
        } else if (choice === 'Open settings') {
          void vscode.commands.executeCommand('workbench.action.openSettings', 'lse.server');
        }
      });
      return;
    }
    this.log.info(`starting ${resolved.command} ${resolved.args.join(' ')} (from ${resolved.source}; workspace ${trusted ? 'trusted' : 'NOT trusted: no SQL runs, no models'})`);
    const serverOptions: ServerOptions = {
      command: resolved.command,
      args: resolved.args,
      options: { cwd: folders[0], env: { ...process.env, PYTHONUNBUFFERED: '1' } },
    };
    const globs = fileGlobs((key) => config().get(key));
    const clientOptions: LanguageClientOptions = {
      documentSelector: [
        { scheme: 'file', language: 'lse-prompt' },
        { scheme: 'file', language: 'lse-suite' },
        ...[...globs.prompts, ...globs.suites].map((g) => ({ scheme: 'file', pattern: g.startsWith('**/') ? g : `**/${g}` })),
      ],
      outputChannel: this.log,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationOptions: () => initializationOptions((key) => config().get(key), vscode.workspace.isTrusted),
      middleware: {
        // the server's code lenses and code actions call these ids: give them the client's behaviour
        // (trust check, messages; Show tree reveals the run in LSE Runs instead of returning JSON)
        executeCommand: (command, args: unknown[], next) => {
          switch (command) {
            case ServerCommand.evaluate:
              return this.startRun('evaluate', args[0]);
            case ServerCommand.evolve:
              return this.startRun('evolve', args[0]);
            case ServerCommand.train:
              return this.startRun('train', args[0]);
            case ServerCommand.showTree:
              return this.showTree(args[0]);
            default:
              return next(command, args) as Promise<unknown>;
          }
        },
        handleWorkDoneProgress: (token, params, next) => this.progress.handle(token, params, next),
        workspace: {
          handleApplyEdit: (params, next) =>
            this.review.handleApplyEdit(params, async (p) => {
              const result = await next(p, CancellationToken.None);
              if (result instanceof ResponseError) {
                throw result;
              }
              return result;
            }),
        },
      },
    };
    const client = new LanguageClient('lse', 'LSE', serverOptions, clientOptions);
    client.onNotification(Method.runProgress, (p: RunUpdate) => this.onRunProgress(p));
    this.client = client;
    try {
      await client.start();
      this.log.info('the LSE server is running');
      this.setLanguageStatus(trusted ? 'ready' : 'untrusted workspace: checks only', vscode.LanguageStatusSeverity.Information);
    } catch (e) {
      this.log.error(`the LSE server did not start: ${errorText(e)}`);
      this.setLanguageStatus('the server did not start', vscode.LanguageStatusSeverity.Error);
      void vscode.window.showErrorMessage(`LSE: the server did not start (${errorText(e)}).`, 'Show log', 'Show setup').then((c) => {
        if (c === 'Show log') {
          this.log.show();
        } else if (c === 'Show setup') {
          void vscode.commands.executeCommand('lse.client.showSetup');
        }
      });
      return;
    }
    await this.runs.refresh();
  }

  /** Run the install plan in a terminal task, then start the server it made. */
  private async install(plan: InstallPlan): Promise<void> {
    const task = new vscode.Task(
      { type: 'shell', task: 'lse-install' },
      vscode.TaskScope.Workspace,
      'Install lse-server',
      'LSE',
      new vscode.ShellExecution(plan.command, { cwd: plan.cwd }),
    );
    const done = new Promise<number | undefined>((resolve) => {
      const sub = vscode.tasks.onDidEndTaskProcess((e) => {
        if (e.execution.task.name === task.name && e.execution.task.source === task.source) {
          sub.dispose();
          resolve(e.exitCode);
        }
      });
    });
    this.log.info(`installing lse-server: ${plan.command} (in ${plan.cwd})`);
    await vscode.tasks.executeTask(task);
    const code = await done;
    if (code === 0 && isFile(plan.server)) {
      void vscode.window.showInformationMessage(`LSE: installed ${plan.server}; starting the server.`);
      await this.restart();
    } else {
      void vscode.window.showErrorMessage(`LSE: the install did not finish (exit code ${code ?? '?'}); see its terminal.`);
    }
  }

  private setLanguageStatus(detail: string, severity: vscode.LanguageStatusSeverity): void {
    this.language.name = 'LSE';
    this.language.text = 'LSE';
    this.language.detail = detail;
    this.language.severity = severity;
    this.language.command = { command: 'lse.client.showOutput', title: 'Show log' };
  }

  private showRunsGoing(): void {
    const running = this.status.running;
    void vscode.commands.executeCommand('setContext', RUN_GOING, running.length > 0);
    if (running.length > 0) {
      const p = running[running.length - 1];
      this.language.text = `LSE ${p.kind}`;
      this.language.detail = p.message;
      this.language.busy = true;
      this.language.command = { command: 'lse.client.cancel', title: 'Cancel' };
    } else if (this.language.busy) {
      this.language.busy = false;
      this.setLanguageStatus('ready', vscode.LanguageStatusSeverity.Information);
    }
  }

  async stop(): Promise<void> {
    await this.starting;
    const client = this.client;
    this.client = undefined;
    this.status.clear();
    this.progress.clear();
    this.showRunsGoing();
    if (client) {
      try {
        await client.stop(5000);
      } catch (e) {
        this.log.warn(`stopping the server: ${errorText(e)}`);
      }
      await client.dispose();
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private async running(): Promise<LanguageClient | undefined> {
    await this.starting;
    if (!this.client || this.client.state !== State.Running) {
      await this.start();
    }
    if (this.client?.state === State.Running) {
      return this.client;
    }
    void vscode.window.showErrorMessage('LSE: the language server is not running.', 'Show log', 'Show setup').then((c) => {
      if (c === 'Show log') {
        this.log.show();
      } else if (c === 'Show setup') {
        void vscode.commands.executeCommand('lse.client.showSetup');
      }
    });
    return undefined;
  }

  onConfigChanged(e: vscode.ConfigurationChangeEvent): void {
    if (!e.affectsConfiguration('lse')) {
      return;
    }
    if (needsRestart((s) => e.affectsConfiguration(s))) {
      void this.restart();
    } else if (this.client?.state === State.Running) {
      const settings = buildSettings((key) => config().get(key));
      void this.client.sendNotification(DidChangeConfigurationNotification.type, { settings });
    }
  }

  // -- runs --------------------------------------------------------------------------------------------------
  private onRunProgress(p: RunUpdate): void {
    this.status.update(p);
    this.runs.onProgress(p);
    this.showRunsGoing();
    if (isDone(p)) {
      // the server shows the summary (window/showMessage) and, for a better prompt, sends the edit next
      this.log.info(doneMessage(p));
      this.review.runFinished(p);
    }
  }

  private async execute<T>(command: string, args: CommandArgs): Promise<T | undefined> {
    const client = await this.running();
    if (!client) {
      return undefined;
    }
    try {
      return (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [args] })) as T;
    } catch (e) {
      void vscode.window.showErrorMessage(`LSE: ${errorText(e)}`);
      return undefined;
    }
  }

  async startRun(kind: RunKind, arg?: unknown): Promise<void> {
    if (!vscode.workspace.isTrusted) {
      const choice = await vscode.window.showWarningMessage(
        'LSE runs SQL and loads models only in a trusted workspace.',
        'Manage Workspace Trust',
      );
      if (choice) {
        await vscode.commands.executeCommand('workbench.trust.manage');
      }
      return;
    }
    // train learns from all runs in the prompt's workspace store; the server locates the store from the file
    const uri = await promptUri(arg);
    if (!uri) {
      return;
    }
    const command = kind === 'evaluate' ? ServerCommand.evaluate : kind === 'evolve' ? ServerCommand.evolve : ServerCommand.train;
    const client = await this.running();
    if (!client) {
      return;
    }
    const res = await this.execute<StartResult>(command, { uri: client.code2ProtocolConverter.asUri(uri) });
    if (res?.runId) {
      this.log.info(`${kind} ${basename(uri.path)}: run ${res.runId}`);
    }
  }

  async cancel(arg?: unknown): Promise<void> {
    let args: CommandArgs | undefined;
    if (typeof arg === 'object' && arg !== null && 'runId' in arg && typeof arg.runId === 'string') {
      args = { runId: arg.runId };
    } else if (arg instanceof vscode.Uri) {
      args = { uri: this.client?.code2ProtocolConverter.asUri(arg) ?? arg.toString() };
    } else {
      const running = this.status.running;
      const active = vscode.window.activeTextEditor?.document.uri.toString();
      const mine = running.find((r) => r.uri === active);
      if (mine) {
        args = { runId: mine.runId };
      } else if (running.length === 1) {
        args = { runId: running[0].runId };
      } else if (running.length > 1) {
        const pick = await vscode.window.showQuickPick(
          running.map((r) => ({ label: `${r.kind} ${basename(r.uri)}`, description: r.message, runId: r.runId })),
          { placeHolder: 'Cancel which LSE run?' },
        );
        args = pick ? { runId: pick.runId } : undefined;
      } else {
        void vscode.window.showInformationMessage('LSE: no run is going.');
      }
    }
    if (args) {
      const res = await this.execute<CancelResult>(ServerCommand.cancel, args);
      if (res && !res.cancelled) {
        void vscode.window.showInformationMessage(`LSE: ${res.message}`);
      }
    }
  }

  async showTree(arg?: unknown): Promise<void> {
    const uri = await promptUri(arg);
    await vscode.commands.executeCommand('lseRuns.focus');
    try {
      if (uri && (await this.running()) && !(await this.runs.revealPrompt(uri.toString()))) {
        void vscode.window.showInformationMessage(`LSE: no runs yet for ${basename(uri.path)}.`);
      }
    } catch (e) {
      this.log.error(`Show tree: ${errorText(e)}`);
      void vscode.window.showErrorMessage(`LSE: cannot show the run in LSE Runs (${errorText(e)}).`);
    }
  }

  showLog(): void {
    this.log.show();
  }

  /** The extension's README (vsce packs it as readme.md), rendered. */
  async showSetup(): Promise<void> {
    for (const name of ['README.md', 'readme.md']) {
      const readme = vscode.Uri.joinPath(this.context.extensionUri, name);
      try {
        await vscode.workspace.fs.stat(readme);
      } catch {
        continue;
      }
      try {
        await vscode.commands.executeCommand('markdown.showPreview', readme);
      } catch {
        await vscode.window.showTextDocument(readme);
      }
      return;
    }
    void vscode.window.showInformationMessage('LSE: install the lse package (./scripts/setup.sh in the LSE repository), then set lse.python or lse.server.path.');
  }
}

function isPrompt(uri: vscode.Uri): boolean {
  return uri.path.endsWith('.prompt.md');
}

/** The prompt file a command is about: its argument, the active editor, or one picked from the workspace. */
async function promptUri(arg: unknown): Promise<vscode.Uri | undefined> {
  if (arg instanceof vscode.Uri) {
    return arg;
  }
  if (typeof arg === 'object' && arg !== null && 'uri' in arg && typeof arg.uri === 'string') {
    return vscode.Uri.parse(arg.uri);
  }
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active && isPrompt(active) && active.scheme === 'file') {
    return active;
  }
  const found = await vscode.workspace.findFiles(PROMPT_GLOB, '**/node_modules/**', 200);
  if (found.length === 1) {
    return found[0];
  }
  if (found.length === 0) {
    void vscode.window.showInformationMessage('LSE: open a *.prompt.md file first.');
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(
    found.map((u) => ({ label: vscode.workspace.asRelativePath(u), uri: u })),
    { placeHolder: 'Which prompt?' },
  );
  return pick?.uri;
}

let current: LseExtension | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const ext = new LseExtension(context);
  current = ext;
  const reg = (id: string, fn: (...args: unknown[]) => unknown): void => {
    context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  };
  context.subscriptions.push(
    ext,
    vscode.workspace.registerTextDocumentContentProvider(NODE_SCHEME, ext.runs),
    vscode.workspace.onDidChangeConfiguration((e) => ext.onConfigChanged(e)),
    vscode.workspace.onDidGrantWorkspaceTrust(() => void ext.restart()),
  );
  reg('lse.client.evaluate', (arg) => ext.startRun('evaluate', arg));
  reg('lse.client.evolve', (arg) => ext.startRun('evolve', arg));
  reg('lse.client.train', (arg) => ext.startRun('train', arg));
  reg('lse.client.cancel', (arg) => ext.cancel(arg));
  reg('lse.client.showTree', (arg) => ext.showTree(arg));
  reg('lse.client.restartServer', () => ext.restart());
  reg('lse.client.showOutput', () => ext.showLog());
  reg('lse.client.showSetup', () => ext.showSetup());
  reg('lse.client.refreshRuns', () => ext.runs.refresh());
  reg('lse.client.showRuns', () => vscode.commands.executeCommand('lseRuns.focus'));
  reg('lse.client.openNode', (runId, nodeId) => ext.runs.openNode(String(runId), Number(nodeId)));
  reg('lse.client.applyWinner', () => ext.review.decide(true));
  reg('lse.client.discardWinner', () => ext.review.decide(false));
  void vscode.commands.executeCommand('setContext', RUN_GOING, false);
  await ext.start();
}

export async function deactivate(): Promise<void> {
  await current?.stop();
  current = undefined;
}
