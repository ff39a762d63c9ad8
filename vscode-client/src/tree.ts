// The evolution tree from `lse/tree` JSON, and live updates from `lse/runProgress`. No `vscode` import here.
import type { RunProgress, TreeNode, TreeResult } from './protocol';

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

/** The best scored node by dev score (ties: the earlier node), as the server picks its winner. */
export function bestNode(model: TreeModel): TreeNode | undefined {
  let best: TreeNode | undefined;
  for (const node of model.nodes.values()) {
    if (node.dev != null && (best === undefined || (best.dev ?? -1) < node.dev)) {
      best = node;
    }
  }
  return best;
}

/** Apply one progress notification; returns whether the model changed. */
export function applyProgress(model: TreeModel, p: RunProgress): boolean {
  let changed = false;
  if (p.node && typeof p.node.id === 'number') {
    upsertNode(model, p.node);
    changed = true;
  }
  if (p.done && p.winner !== undefined && p.winner !== model.winner) {
    model.winner = p.winner;
    changed = true;
  }
  return changed;
}

/** The ids from the root to `id` (for revealing a node). */
export function pathTo(model: TreeModel, id: number): number[] {
  const out: number[] = [];
  let cur: number | null | undefined = id;
  const seen = new Set<number>();
  while (cur !== null && cur !== undefined && !seen.has(cur)) {
    seen.add(cur);
    out.unshift(cur);
    cur = model.nodes.get(cur)?.parent;
  }
  return out;
}
