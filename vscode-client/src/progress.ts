// Server work-done progress for LSE runs shown as a notification with a Cancel button (vscode-languageclient
// alone shows it in the status bar without one), and a status bar item while runs are going.
import * as vscode from 'vscode';
import type { ProgressToken, WorkDoneProgressBegin, WorkDoneProgressEnd, WorkDoneProgressReport } from 'vscode-languageserver-protocol';
import { statusText } from './format';
import type { RunProgress, RunUpdate } from './protocol';

type Value = WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd;

interface Shown {
  progress?: vscode.Progress<{ message?: string; increment?: number }>;
  reported: number;
  done: () => void;
}

export class ProgressNotifications implements vscode.Disposable {
  private readonly shown = new Map<ProgressToken, Shown>();

  constructor(private readonly cancel: (token: ProgressToken) => void) {}

  /** The `handleWorkDoneProgress` middleware. */
  handle(token: ProgressToken, value: Value, next: (token: ProgressToken, value: Value) => void): void {
    if (typeof token !== 'string' || !token.startsWith('lse-')) {
      next(token, value);
      return;
    }
    if (value.kind === 'begin') {
      this.begin(token, value);
    } else if (value.kind === 'report') {
      this.report(token, value);
    } else {
      this.shown.get(token)?.done();
      this.shown.delete(token);
      next(token, value); // lets the client drop its own (never shown) progress part
    }
  }

  private begin(token: string, value: WorkDoneProgressBegin): void {
    const entry: Shown = { reported: 0, done: () => undefined };
    this.shown.set(token, entry);
    void vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: value.title, cancellable: value.cancellable ?? true },
      (progress, cancelToken) =>
        new Promise<void>((resolve) => {
          entry.progress = progress;
          entry.done = resolve;
          cancelToken.onCancellationRequested(() => this.cancel(token));
          this.report(token, { kind: 'report', message: value.message, percentage: value.percentage });
        }),
    );
  }

  private report(token: string, value: WorkDoneProgressReport): void {
    const entry = this.shown.get(token);
    if (!entry?.progress) {
      return;
    }
    let increment: number | undefined;
    if (typeof value.percentage === 'number') {
      const pct = Math.max(0, Math.min(100, value.percentage));
      increment = Math.max(0, pct - entry.reported);
      entry.reported += increment;
    }
    entry.progress.report({ message: value.message, increment });
  }

  /** Close every notification (the server stopped). */
  clear(): void {
    for (const entry of this.shown.values()) {
      entry.done();
    }
    this.shown.clear();
  }

  dispose(): void {
    this.clear();
  }
}

export class RunStatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('lse.runs', vscode.StatusBarAlignment.Left, 10);
  private readonly active = new Map<string, RunProgress>();

  constructor() {
    this.item.name = 'LSE runs';
    this.item.command = 'lse.client.showRuns';
  }

  get running(): RunProgress[] {
    return [...this.active.values()];
  }

  update(p: RunUpdate): void {
    if (p.done) {
      this.active.delete(p.runId);
    } else {
      const prev = this.active.get(p.runId);
      this.active.set(p.runId, { ...p, winnerDev: p.winnerDev ?? prev?.winnerDev ?? null });
    }
    this.render();
  }

  clear(): void {
    this.active.clear();
    this.render();
  }

  private render(): void {
    const runs = this.running;
    if (runs.length === 0) {
      this.item.hide();
      return;
    }
    this.item.text = statusText(runs);
    this.item.tooltip = runs.map((r) => `${r.kind} ${r.runId}: ${r.message}`).join('\n') + '\nClick to show LSE Runs';
    this.item.show();
  }

  dispose(): void {
    this.item.dispose();
  }
}
