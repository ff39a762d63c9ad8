// Before an evolved prompt is applied: a diff (current ↔ winner, with dev scores) and Apply / Discard.
// The server sends the winner as workspace/applyEdit; the client middleware `workspace.handleApplyEdit`
// routes it here and answers the request with applied true/false.
import * as vscode from 'vscode';
import type { ApplyWorkspaceEditParams, ApplyWorkspaceEditResult } from 'vscode-languageserver-protocol';
import { confirmed, findEvolveEdit, applyTextEdits } from './edits';
import { applyQuestion, basename, diffTitle } from './format';
import type { RunDone } from './protocol';

export const WINNER_SCHEME = 'lse-winner';
type Next = (params: ApplyWorkspaceEditParams) => Promise<ApplyWorkspaceEditResult>;

interface Pending {
  right: vscode.Uri;
  decide: (apply: boolean) => void;
}

export class WinnerReview implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly contents = new Map<string, string>();
  private readonly pending = new Map<string, Pending>();
  private readonly disposables: vscode.Disposable[] = [];
  /** Finished evolve runs by id: the server announces a run's end (lse/runProgress) before its edit. */
  private readonly finished = new Map<string, RunDone>();

  constructor(private readonly log: vscode.LogOutputChannel) {
    this.disposables.push(
      vscode.workspace.registerTextDocumentContentProvider(WINNER_SCHEME, this),
      // closing the diff without choosing discards the winner
      vscode.window.tabGroups.onDidChangeTabs((e) => {
        for (const tab of e.closed) {
          if (tab.input instanceof vscode.TabInputTextDiff) {
            this.pending.get(tab.input.modified.toString())?.decide(false);
          }
        }
      }),
    );
  }

  dispose(): void {
    for (const p of this.pending.values()) {
      p.decide(false);
    }
    for (const d of this.disposables) {
      d.dispose();
    }
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.contents.get(uri.toString()) ?? '';
  }

  /** Apply or discard the winner shown in the active diff editor (editor title buttons). */
  decide(apply: boolean, uri?: vscode.Uri): boolean {
    const key = uri?.scheme === WINNER_SCHEME ? uri.toString() : this.activeWinner();
    const p = key ? this.pending.get(key) : [...this.pending.values()].pop();
    p?.decide(apply);
    return p !== undefined;
  }

  private activeWinner(): string | undefined {
    const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
    return input instanceof vscode.TabInputTextDiff && input.modified.scheme === WINNER_SCHEME
      ? input.modified.toString()
      : undefined;
  }

  /** Remember a finished evolve run: its winner's edit may follow. */
  runFinished(run: RunDone): void {
    if (run.kind === 'evolve' && run.winner) {
      this.finished.set(run.runId, run);
    }
  }

  /** The middleware: evolve edits are reviewed first, any other edit goes straight through. */
  async handleApplyEdit(params: ApplyWorkspaceEditParams, next: Next): Promise<ApplyWorkspaceEditResult> {
    const evolve = findEvolveEdit(params, (id) => this.finished.has(id));
    if (!evolve) {
      return next(params);
    }
    const run = this.finished.get(evolve.runId);
    this.finished.delete(evolve.runId);
    const docUri = vscode.Uri.parse(evolve.uri);
    const doc = await vscode.workspace.openTextDocument(docUri);
    if (evolve.version != null && doc.version !== evolve.version) {
      const reason = `${basename(evolve.uri)} changed during the run; the winner was not applied.`;
      void vscode.window.showWarningMessage(`LSE: ${reason}`);
      return { applied: false, failureReason: reason };
    }
    const name = basename(evolve.uri);
    const runId = evolve.runId;
    const right = vscode.Uri.from({ scheme: WINNER_SCHEME, path: `/${runId}/${name}`, query: `run=${runId}` });
    this.contents.set(right.toString(), applyTextEdits(doc.getText(), evolve.edits));
    const decision = new Promise<boolean>((resolve) => {
      this.pending.set(right.toString(), { right, decide: resolve });
    });
    await vscode.commands.executeCommand('setContext', 'lse.reviewPending', true);
    await vscode.commands.executeCommand('vscode.diff', docUri, right, diffTitle(name, run), { preview: false });
    const message = applyQuestion(name, run);
    void vscode.window.showInformationMessage(message, 'Apply', 'Discard').then((choice) => {
      if (choice !== undefined) {
        this.pending.get(right.toString())?.decide(choice === 'Apply');
      }
    });
    const apply = await decision;
    this.pending.delete(right.toString());
    await vscode.commands.executeCommand('setContext', 'lse.reviewPending', this.pending.size > 0);
    await this.closeDiff(right);
    this.contents.delete(right.toString());
    if (!apply) {
      this.log.info(`discarded the winner of run ${runId} for ${name}`);
      return { applied: false, failureReason: 'discarded by the user' };
    }
    const result = await next(confirmed(params));
    this.log.info(`applied the winner of run ${runId} to ${name}: ${result.applied}`);
    if (!result.applied) {
      void vscode.window.showWarningMessage(`LSE: could not apply the winner to ${name} (${result.failureReason ?? 'the document changed'}).`);
    } else {
      await vscode.window.showTextDocument(docUri, { preview: false });
    }
    return result;
  }

  private async closeDiff(right: vscode.Uri): Promise<void> {
    const tabs = vscode.window.tabGroups.all
      .flatMap((g) => g.tabs)
      .filter((t) => t.input instanceof vscode.TabInputTextDiff && t.input.modified.toString() === right.toString());
    if (tabs.length > 0) {
      await vscode.window.tabGroups.close(tabs);
    }
  }
}
