// Labels and messages shown in the UI. No `vscode` import here.
import type { RunDone, RunProgress, RunSummary, TreeNode } from './protocol';

/** 0.55 -> "55%"; null/undefined -> "–". */
export function pct(x: number | null | undefined): string {
  return typeof x === 'number' && Number.isFinite(x) ? `${Math.round(x * 100)}%` : '–';
}

/** Seconds since the epoch -> "2026-05-01 14:03" (local time). */
export function when(seconds: number): string {
  const d = new Date(seconds * 1000);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function basename(pathOrUri: string): string {
  const parts = pathOrUri.split(/[\\/]/);
  return decodeURIComponent(parts[parts.length - 1] ?? pathOrUri);
}

/** A run in the tree view: "evolve · dev 40% → 55%" / "evaluate · dev 40%". */
export function runLabel(run: Pick<RunSummary, 'kind' | 'rootDev' | 'winnerDev'>): string {
  if (run.kind === 'evolve') {
    if (run.rootDev == null && run.winnerDev == null) {
      return 'evolve';
    }
    return `evolve · dev ${pct(run.rootDev)} → ${pct(run.winnerDev)}`;
  }
  if (run.kind === 'evaluate') {
    return run.winnerDev == null ? 'evaluate' : `evaluate · dev ${pct(run.winnerDev)}`;
  }
  return run.kind;
}

export function runDescription(run: Pick<RunSummary, 'status' | 'started' | 'rule'>): string {
  const rule = run.rule ? ` · ${run.rule}` : '';
  return `${run.status} · ${when(run.started)}${rule}`;
}

/** A node of the evolution tree: "#3 dev 55%" with "train 40% · round 2 · ★ winner" as description. */
export function nodeLabel(node: TreeNode): string {
  if (node.status !== 'ok' && node.dev == null) {
    return `#${node.id} ${node.status}`;
  }
  return `#${node.id} dev ${pct(node.dev)}`;
}

export function nodeDescription(node: TreeNode, winner: number | null): string {
  const parts: string[] = [];
  if (node.train != null) {
    parts.push(`train ${pct(node.train)}`);
  }
  parts.push(node.id === 0 && node.parent == null ? 'root' : `round ${node.round}`);
  if (node.noAnswer) {
    parts.push(`no answer ${pct(node.noAnswer)}`);
  }
  if (node.id === winner) {
    parts.push('★ winner');
  }
  return parts.join(' · ');
}

export function nodeTooltip(node: TreeNode): string {
  const head = `node #${node.id} (${node.status}) · dev ${pct(node.dev)} · train ${pct(node.train)}`;
  const body = node.error ? `error: ${node.error}` : node.instructions.slice(0, 600);
  return `${head}\n\n${body}`;
}

/** The status bar text while runs are going: "LSE evolve · round 2/8 · scoring dev 12/40 · best dev 55%". */
export function statusText(active: readonly RunProgress[]): string {
  if (active.length === 0) {
    return '';
  }
  const p = active[active.length - 1];
  const more = active.length > 1 ? ` (+${active.length - 1})` : '';
  const parts = [`$(sync~spin) LSE ${p.kind}`];
  if (p.kind === 'evolve' && p.rounds) {
    parts.push(`round ${p.round}/${p.rounds}`);
  }
  if (p.step) {
    parts.push(p.stepTotal ? `${p.step} ${p.stepDone}/${p.stepTotal}` : p.step);
  }
  if (p.winnerDev != null) {
    parts.push(p.kind === 'evolve' ? `best dev ${pct(p.winnerDev)}` : `dev ${pct(p.winnerDev)}`);
  }
  return parts.join(' · ') + more;
}

/** The message logged when a run ends (the server shows its summary to the user itself). */
export function doneMessage(p: RunDone): string {
  const name = basename(p.uri);
  if (p.error === 'cancelled') {
    return `LSE ${p.kind} of ${name} cancelled.`;
  }
  if (p.error) {
    return `LSE ${p.kind} of ${name} failed: ${p.error}`;
  }
  return p.message;
}

/** The diff editor's title: "shop.prompt.md: current (dev 40%) ↔ winner (dev 55%)". */
export function diffTitle(name: string, run: Pick<RunDone, 'rootDev' | 'winnerDev'> | undefined): string {
  return run ? `${name}: current (dev ${pct(run.rootDev)}) ↔ winner (dev ${pct(run.winnerDev)})` : `${name}: current ↔ winner`;
}

/** The question asked before an evolved prompt is applied: "LSE: dev 40% → 55%: apply the evolved prompt to x?" */
export function applyQuestion(name: string, run: Pick<RunDone, 'rootDev' | 'winnerDev'> | undefined): string {
  const scores = run ? `dev ${pct(run.rootDev)} → ${pct(run.winnerDev)}: ` : '';
  return `LSE: ${scores}apply the evolved prompt to ${name}?`;
}
