// The "LSE Runs" tree view: prompt files -> runs -> evolution tree nodes, updated live from lse/runProgress.
import * as vscode from 'vscode';
import { basename, nodeDescription, nodeLabel, nodeTooltip, runDescription, runLabel } from './format';
import type { RunSummary, RunsResult, RunUpdate, TreeNode, TreeResult } from './protocol';
import { Method } from './protocol';
import type { TreeModel } from './tree';
import { applyProgress, buildTree, childrenOf } from './tree';

export type Request = <R>(method: string, params: object) => Promise<R>;

type Item =
  | { kind: 'prompt'; uri: string }
  | { kind: 'run'; runId: string }
  | { kind: 'node'; runId: string; nodeId: number }
  | { kind: 'message'; text: string };

export const NODE_SCHEME = 'lse-node';

export class RunsView implements vscode.TreeDataProvider<Item>, vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<Item | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly docChanged = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.docChanged.event;
  private runs: RunSummary[] = [];
  private loaded = false;
  private error: string | undefined;
  private readonly trees = new Map<string, TreeModel>();
  private readonly items = new Map<string, Item>();
  private refreshTimer: NodeJS.Timeout | undefined;
  readonly view: vscode.TreeView<Item>;

  constructor(private readonly request: () => Request | undefined) {
    this.view = vscode.window.createTreeView('lseRuns', { treeDataProvider: this, showCollapseAll: true });
  }

  dispose(): void {
    clearTimeout(this.refreshTimer);
    this.view.dispose();
    this.changed.dispose();
    this.docChanged.dispose();
  }

  private item<T extends Item>(key: string, make: () => T): T {
    const hit = this.items.get(key);
    if (hit) {
      return hit as T;
    }
    const made = make();
    this.items.set(key, made);
    return made;
  }

  private promptItem(uri: string): Item {
    return this.item(`prompt:${uri}`, () => ({ kind: 'prompt', uri }));
  }

  private runItem(runId: string): Item {
    return this.item(`run:${runId}`, () => ({ kind: 'run', runId }));
  }

  private nodeItem(runId: string, nodeId: number): Item {
    return this.item(`node:${runId}:${nodeId}`, () => ({ kind: 'node', runId, nodeId }));
  }

  /** Reload the list of runs (and the trees already shown). */
  async refresh(): Promise<void> {
    const request = this.request();
    if (!request) {
      this.error = 'The LSE server is not running.';
      this.changed.fire(undefined);
      return;
    }
    try {
      const res = await request<RunsResult>(Method.runs, {});
      this.runs = res.runs;
      this.error = undefined;
    } catch (e) {
      this.error = `Cannot list runs: ${e instanceof Error ? e.message : String(e)}`;
    }
    this.loaded = true;
    const reloads = [...this.trees.keys()].map((runId) => this.loadTree(runId).catch(() => undefined));
    await Promise.all(reloads);
    this.changed.fire(undefined);
  }

  scheduleRefresh(delayMs = 300): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => void this.refresh(), delayMs);
  }

  clear(message?: string): void {
    this.runs = [];
    this.trees.clear();
    this.error = message;
    this.changed.fire(undefined);
  }

  private async loadTree(runId: string): Promise<TreeModel> {
    const request = this.request();
    if (!request) {
      throw new Error('The LSE server is not running.');
    }
    const res = await request<TreeResult>(Method.tree, { runId });
    const model = buildTree(res);
    this.trees.set(runId, model);
    return model;
  }

  /** A progress notification: new runs appear, known trees grow, finished runs get their scores. */
  onProgress(p: RunUpdate): void {
    const model = this.trees.get(p.runId);
    if (model && applyProgress(model, p)) {
      this.changed.fire(this.runItem(p.runId));
    }
    const known = this.runs.some((r) => r.runId === p.runId);
    if (!known || p.done) {
      this.scheduleRefresh(p.done ? 100 : 300);
    }
  }

  // -- TreeDataProvider ------------------------------------------------------------------------------
  async getChildren(element?: Item): Promise<Item[]> {
    if (!element) {
      if (!this.loaded) {
        await this.refresh();
      }
      if (this.error) {
        return [{ kind: 'message', text: this.error }];
      }
      if (this.runs.length === 0) {
        return [{ kind: 'message', text: 'No runs yet: Evaluate or Evolve a *.prompt.md file.' }];
      }
      const uris = [...new Set(this.runs.map((r) => r.promptUri))];
      return uris.map((uri) => this.promptItem(uri));
    }
    if (element.kind === 'prompt') {
      return this.runs.filter((r) => r.promptUri === element.uri).map((r) => this.runItem(r.runId));
    }
    if (element.kind === 'run') {
      let model = this.trees.get(element.runId);
      if (!model) {
        try {
          model = await this.loadTree(element.runId);
        } catch (e) {
          return [{ kind: 'message', text: e instanceof Error ? e.message : String(e) }];
        }
      }
      return childrenOf(model, null).map((n) => this.nodeItem(element.runId, n.id));
    }
    if (element.kind === 'node') {
      const model = this.trees.get(element.runId);
      return model ? childrenOf(model, element.nodeId).map((n) => this.nodeItem(element.runId, n.id)) : [];
    }
    return [];
  }

  getParent(element: Item): Item | undefined {
    if (element.kind === 'run') {
      const run = this.runs.find((r) => r.runId === element.runId);
      return run ? this.promptItem(run.promptUri) : undefined;
    }
    if (element.kind === 'node') {
      const parent = this.trees.get(element.runId)?.nodes.get(element.nodeId)?.parent;
      return parent == null ? this.runItem(element.runId) : this.nodeItem(element.runId, parent);
    }
    return undefined;
  }

  getTreeItem(element: Item): vscode.TreeItem {
    const Collapsed = vscode.TreeItemCollapsibleState.Collapsed;
    const None = vscode.TreeItemCollapsibleState.None;
    switch (element.kind) {
      case 'message':
        return new vscode.TreeItem(element.text, None);
      case 'prompt': {
        const item = new vscode.TreeItem(basename(element.uri), vscode.TreeItemCollapsibleState.Expanded);
        item.id = `prompt:${element.uri}`;
        item.resourceUri = vscode.Uri.parse(element.uri);
        item.iconPath = vscode.ThemeIcon.File;
        item.contextValue = 'lsePrompt';
        item.command = { command: 'vscode.open', title: 'Open', arguments: [item.resourceUri] };
        return item;
      }
      case 'run': {
        const run = this.runs.find((r) => r.runId === element.runId);
        const item = new vscode.TreeItem(run ? runLabel(run) : element.runId, Collapsed);
        item.id = `run:${element.runId}`;
        if (run) {
          item.description = runDescription(run);
          item.tooltip = `run ${run.runId} (${run.kind}, ${run.status})`;
          item.iconPath = new vscode.ThemeIcon(
            run.status === 'running' ? 'sync~spin' : run.status === 'failed' ? 'error' : run.kind === 'evolve' ? 'type-hierarchy' : 'beaker',
          );
        }
        item.contextValue = run?.status === 'running' ? 'lseRunRunning' : 'lseRun';
        return item;
      }
      case 'node': {
        const model = this.trees.get(element.runId);
        const node = model?.nodes.get(element.nodeId);
        const hasChildren = (model?.children.get(element.nodeId)?.length ?? 0) > 0;
        if (!model || !node) {
          return new vscode.TreeItem(`#${element.nodeId}`, None);
        }
        const item = new vscode.TreeItem(nodeLabel(node), hasChildren ? vscode.TreeItemCollapsibleState.Expanded : None);
        item.id = `node:${element.runId}:${element.nodeId}`;
        item.description = nodeDescription(node, model.winner);
        item.tooltip = nodeTooltip(node);
        const winner = node.id === model.winner;
        item.iconPath = new vscode.ThemeIcon(winner ? 'star-full' : node.status === 'ok' ? 'circle-outline' : 'circle-slash');
        item.contextValue = winner ? 'lseNodeWinner' : 'lseNode';
        item.command = { command: 'lse.client.openNode', title: 'Open instructions', arguments: [element.runId, node.id] };
        return item;
      }
    }
  }

  // -- node documents (read-only) ----------------------------------------------------------------------
  static nodeUri(runId: string, nodeId: number): vscode.Uri {
    return vscode.Uri.from({ scheme: NODE_SCHEME, path: `/${runId}/node-${nodeId}.prompt.md` });
  }

  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const m = /^\/([^/]+)\/node-(\d+)\.prompt\.md$/.exec(uri.path);
    if (!m) {
      return '';
    }
    const [runId, nodeId] = [m[1], Number(m[2])];
    const model = this.trees.get(runId) ?? (await this.loadTree(runId));
    const node: TreeNode | undefined = model.nodes.get(nodeId);
    if (!node) {
      return `node #${nodeId} is not in run ${runId}`;
    }
    return node.instructions || (node.error ? `(no instructions: ${node.error})` : '');
  }

  async openNode(runId: string, nodeId: number): Promise<void> {
    const doc = await vscode.workspace.openTextDocument(RunsView.nodeUri(runId, nodeId));
    await vscode.window.showTextDocument(doc, { preview: true, preserveFocus: false });
  }

  /** Reveal the latest run of a prompt (its evolve run when there is one). */
  async revealPrompt(uri: string, runId?: string): Promise<boolean> {
    await this.refresh();
    const runs = this.runs.filter((r) => r.promptUri === uri || r.prompt === vscode.Uri.parse(uri).fsPath);
    const run = (runId && runs.find((r) => r.runId === runId)) || runs.find((r) => r.kind === 'evolve') || runs[0];
    if (!run) {
      return false;
    }
    // a reveal racing a refresh of the view (a run that just ended refreshes it) can fail to resolve the item:
    // try again on the settled view before saying anything
    for (let attempt = 1; ; attempt++) {
      try {
        await this.view.reveal(this.runItem(run.runId), { select: true, focus: true, expand: 2 });
        return true;
      } catch (e) {
        if (attempt >= 3) {
          throw e;
        }
        await new Promise((resolve) => setTimeout(resolve, 300 * attempt));
        await this.refresh();
      }
    }
  }
}
