// The evolution tree from `lse/tree` JSON, and live updates from `lse/runProgress`. No `vscode` import here.
import type { RunUpdate, TreeNode, TreeResult } from './protocol';

export interface TreeModel {
  runId: string;
  winner: number | null;
  nodes: Map<number, TreeNode>;
  children: Map<number | null, number[]>; // parent id (null: roots) -> child ids, in id order
}

export function buildTree(result: Pick<TreeResult, 'runId' | 'winner' | 'nodes'>): TreeModel {
  const model: TreeModel = { runId: result.runId, winner: result.winner, nodes: new Map(), children: new Map() };
  for (const node of result.nodes) {
    upsertNode(model, node);
  }
  return model;
}

/** Insert or replace a node (a node's parent never changes, so children lists only grow). */
export function upsertNode(model: TreeModel, node: TreeNode): void {
  const known = model.nodes.has(node.id);
  model.nodes.set(node.id, node);
  if (!known) {
    // a parent that is not (yet) known makes the node a root until it arrives
    const key = node.parent;
    const list = model.children.get(key) ?? [];
    list.push(node.id);
    list.sort((a, b) => a - b);
    model.children.set(key, list);
  }
}

export function childrenOf(model: TreeModel, id: number | null): TreeNode[] {
  const ids = model.children.get(id) ?? [];
  const out = ids.map((i) => model.nodes.get(i)).filter((n): n is TreeNode => n !== undefined);
  if (id === null) {
    // nodes whose parent is missing from the tree are shown at the top level
    for (const [parent, list] of model.children) {
      if (parent !== null && !model.nodes.has(parent)) {
        out.push(...list.map((i) => model.nodes.get(i)).filter((n): n is TreeNode => n !== undefined));
      }
    }
  }
  return out;
}

/** Apply one progress notification; returns whether the model changed. */
export function applyProgress(model: TreeModel, p: RunUpdate): boolean {
  let changed = false;
  if (p.node && typeof p.node.id === 'number') {
    upsertNode(model, p.node);
    changed = true;
  }
  if (p.done && 'winner' in p && p.winner !== undefined && p.winner !== model.winner) {
    model.winner = p.winner;
    changed = true;
  }
  return changed;
}
