// The evolved prompt arrives as workspace/applyEdit; these helpers recognise it and compute the text after it.
// No `vscode` import here.
import type {
  AnnotatedTextEdit,
  ApplyWorkspaceEditParams,
  ChangeAnnotation,
  TextEdit,
  WorkspaceEdit,
} from 'vscode-languageserver-protocol';

export interface LseEvolveEdit {
  uri: string;
  version: number | null;
  edits: TextEdit[];
  /** The run whose winner this is: the server names the change annotation after the run id. */
  runId: string;
  annotation: ChangeAnnotation;
}

/** The evolve edit carried by an applyEdit request (its change annotation is a run id `isRun` knows), or
 * undefined for any other edit. */
export function findEvolveEdit(params: ApplyWorkspaceEditParams, isRun: (id: string) => boolean): LseEvolveEdit | undefined {
  const edit = params.edit;
  const annotations = edit.changeAnnotations ?? {};
  const runId = Object.keys(annotations).find(isRun);
  if (runId === undefined || !edit.documentChanges || edit.documentChanges.length !== 1) {
    return undefined;
  }
  const change = edit.documentChanges[0];
  if (!('textDocument' in change) || !('edits' in change)) {
    return undefined;
  }
  return {
    uri: change.textDocument.uri,
    version: change.textDocument.version,
    edits: change.edits as TextEdit[],
    runId,
    annotation: annotations[runId],
  };
}

/** The same edit without the "needs confirmation" flag (the user confirmed in the diff already). */
export function confirmed(params: ApplyWorkspaceEditParams): ApplyWorkspaceEditParams {
  const annotations = params.edit.changeAnnotations;
  if (!annotations) {
    return params;
  }
  const copy: Record<string, ChangeAnnotation> = {};
  for (const [id, a] of Object.entries(annotations)) {
    copy[id] = { ...a, needsConfirmation: false };
  }
  const edit: WorkspaceEdit = { ...params.edit, changeAnnotations: copy };
  return { ...params, edit };
}

function offsetAt(lineStarts: number[], text: string, line: number, character: number): number {
  if (line >= lineStarts.length) {
    return text.length;
  }
  const start = lineStarts[line];
  const end = line + 1 < lineStarts.length ? lineStarts[line + 1] - 1 : text.length; // before the newline
  return Math.min(start + character, end);
}

/** `text` with LSP text edits applied (positions in UTF-16 code units, as JS strings count). */
export function applyTextEdits(text: string, edits: readonly (TextEdit | AnnotatedTextEdit)[]): string {
  const lineStarts = [0];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\n') {
      lineStarts.push(i + 1);
    }
  }
  const spans = edits
    .map((e) => ({
      start: offsetAt(lineStarts, text, e.range.start.line, e.range.start.character),
      end: offsetAt(lineStarts, text, e.range.end.line, e.range.end.character),
      newText: e.newText,
    }))
    .sort((a, b) => b.start - a.start || b.end - a.end);
  let out = text;
  for (const s of spans) {
    out = out.slice(0, s.start) + s.newText + out.slice(s.end);
  }
  return out;
}
