// Drive the real lse-server from node over stdio, as the extension's language client does.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { spawn } from 'node:child_process';
import type {
  ApplyWorkspaceEditParams,
  ApplyWorkspaceEditResult,
  InitializeResult,
  ProgressToken,
  ProtocolConnection,
  WorkDoneProgressBegin,
  WorkDoneProgressEnd,
  WorkDoneProgressReport,
} from 'vscode-languageserver-protocol/node';
import {
  ApplyWorkspaceEditRequest,
  createProtocolConnection,
  ExecuteCommandRequest,
  InitializeRequest,
  InitializedNotification,
  StreamMessageReader,
  StreamMessageWriter,
  WorkDoneProgressCreateRequest,
} from 'vscode-languageserver-protocol/node';
import type { InitializationOptions } from '../../src/settings';
import type { RunDone, RunUpdate } from '../../src/protocol';
import { isDone, Method } from '../../src/protocol';
import { fileUri } from './workspace';

type ProgressValue = WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd;

export interface Session {
  conn: ProtocolConnection;
  proc: ChildProcessWithoutNullStreams;
  init: InitializeResult;
  progress: RunUpdate[];
  workDone: { token: ProgressToken; value: ProgressValue }[];
  messages: string[];
  stderr: string[];
  /** Answers workspace/applyEdit (default: not applied). */
  onApplyEdit: (params: ApplyWorkspaceEditParams) => ApplyWorkspaceEditResult;
  execute: <R>(command: string, args: object) => Promise<R>;
  /** Resolves with the final `lse/runProgress` (done: true) of a run. */
  waitDone: (runId: string, timeoutMs?: number) => Promise<RunDone>;
  close: () => Promise<void>;
}

export async function startSession(server: string, cwd: string, options: InitializationOptions): Promise<Session> {
  const proc = spawn(server, ['--stdio'], { cwd, env: { ...process.env, PYTHONUNBUFFERED: '1' } });
  const conn = createProtocolConnection(new StreamMessageReader(proc.stdout), new StreamMessageWriter(proc.stdin));
  const session = {
    conn,
    proc,
    progress: [] as RunUpdate[],
    workDone: [] as { token: ProgressToken; value: ProgressValue }[],
    messages: [] as string[],
    stderr: [] as string[],
    onApplyEdit: (): ApplyWorkspaceEditResult => ({ applied: false, failureReason: 'test' }),
  } as unknown as Session;
  proc.stderr.on('data', (d: Buffer) => session.stderr.push(d.toString('utf-8')));
  const waiters = new Map<string, (p: RunDone) => void>();
  conn.onNotification(Method.runProgress, (p: RunUpdate) => {
    session.progress.push(p);
    if (isDone(p)) {
      waiters.get(p.runId)?.(p);
    }
  });
  conn.onNotification('window/showMessage', (p: { message: string }) => {
    session.messages.push(p.message);
  });
  conn.onNotification('window/logMessage', () => undefined);
  conn.onNotification('textDocument/publishDiagnostics', () => undefined);
  conn.onNotification('$/progress', (p: { token: ProgressToken; value: ProgressValue }) => {
    session.workDone.push(p);
  });
  conn.onRequest(WorkDoneProgressCreateRequest.type, () => undefined);
  conn.onRequest(ApplyWorkspaceEditRequest.type, (params) => session.onApplyEdit(params));
  conn.onRequest('workspace/codeLens/refresh', () => null);
  conn.onRequest('client/registerCapability', () => null);
  conn.onRequest('workspace/configuration', () => []);
  conn.listen();
  session.init = await conn.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    rootUri: fileUri(cwd),
    workspaceFolders: [{ uri: fileUri(cwd), name: 'ws' }],
    capabilities: {
      window: { workDoneProgress: true },
      workspace: {
        applyEdit: true,
        workspaceEdit: { documentChanges: true, changeAnnotationSupport: { groupsOnLabel: true } },
        codeLens: { refreshSupport: true },
        configuration: false,
      },
    },
    initializationOptions: options,
  });
  await conn.sendNotification(InitializedNotification.type, {});
  session.execute = <R>(command: string, args: object): Promise<R> =>
    conn.sendRequest(ExecuteCommandRequest.type, { command, arguments: [args] }) as Promise<R>;
  session.waitDone = (runId: string, timeoutMs = 240_000): Promise<RunDone> => {
    const already = session.progress.find((p): p is RunDone => p.runId === runId && isDone(p));
    if (already) {
      return Promise.resolve(already);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`run ${runId} not done after ${timeoutMs} ms\n${session.stderr.join('').slice(-3000)}`)), timeoutMs);
      waiters.set(runId, (p) => {
        clearTimeout(timer);
        resolve(p);
      });
    });
  };
  session.close = async (): Promise<void> => {
    try {
      await Promise.race([conn.sendRequest('shutdown'), new Promise((r) => setTimeout(r, 5000))]);
      await conn.sendNotification('exit');
    } catch {
      // the server may be gone already
    }
    await new Promise<void>((resolve) => {
      if (proc.exitCode !== null) {
        resolve();
        return;
      }
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        resolve();
      }, 5000);
      proc.on('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    conn.dispose();
  };
  return session;
}
