// VS Code settings (`lse.*`) -> the server's `{settings: {model, evolver, evolve, sql, files}}`. No `vscode` import.
//
// Keys mirror lse.toml. The server maps camelCase keys it knows (baseUrl, batchSize, timeoutSeconds, ...) to
// lse.toml names and passes the others through; empty strings and nulls mean "use lse.toml", so they are dropped.

/** Every `lse.<key>` passed to the server, with its payload path where it differs from the key. */
export const SERVER_SETTINGS: Readonly<Record<string, string>> = {
  'model.backend': 'model.backend',
  'model.name': 'model.name',
  'model.baseUrl': 'model.baseUrl',
  'model.apiKeyEnv': 'model.apiKeyEnv',
  'model.adapter': 'model.adapter',
  'model.sampling.maxTokens': 'model.sampling.maxTokens',
  'model.sampling.temperature': 'model.sampling.temperature',
  'evolver.backend': 'evolver.backend',
  'evolver.name': 'evolver.name',
  'evolver.baseUrl': 'evolver.baseUrl',
  'evolver.adapter': 'evolver.adapter',
  'evolver.sampling.maxTokens': 'evolver.sampling.maxTokens',
  'evolver.sampling.temperature': 'evolver.sampling.temperature',
  'evolve.rule': 'evolve.rule',
  'evolve.c': 'evolve.c',
  'evolve.rounds': 'evolve.rounds',
  'evolve.batchSize': 'evolve.batchSize',
  'evolve.devSize': 'evolve.devSize',
  'evolve.maxModelCalls': 'evolve.maxModelCalls',
  'evolve.maxTokens': 'evolve.maxTokens',
  'evolve.maxWallSeconds': 'evolve.max_wall_s',
  'evolve.acceptanceGate': 'evolve.acceptanceGate',
  'evolve.seed': 'evolve.seed',
  'sql.timeoutSeconds': 'sql.timeoutSeconds',
  'sql.rowCap': 'sql.rowCap',
  'files.prompts': 'files.prompts',
  'files.suites': 'files.suites',
};

/** Settings that change how the server process is started (a change restarts it). */
export const PROCESS_SETTINGS = ['server.path', 'python', 'server.logLevel', 'files.prompts', 'files.suites'] as const;

/** The globs of `lse.files.prompts` / `lse.files.suites` (the server's defaults when unset). */
export function fileGlobs(get: (key: string) => unknown): { prompts: string[]; suites: string[] } {
  const globs = (key: string, fallback: string[]): string[] => {
    const value = get(key);
    const list = Array.isArray(value) ? value.filter((g): g is string => typeof g === 'string' && g.trim() !== '') : [];
    return list.length > 0 ? list : fallback;
  };
  return {
    prompts: globs('files.prompts', ['*.prompt.md']),
    suites: globs('files.suites', ['*.suite.yaml', '*.suite.yml', '*.suite.json']),
  };
}

export type SettingsTree = { [key: string]: unknown };

export interface InitializationOptions {
  settings: SettingsTree;
  trusted: boolean;
}

function isEmpty(value: unknown): boolean {
  return (
    value === undefined ||
    value === null ||
    (typeof value === 'string' && value.trim() === '') ||
    (Array.isArray(value) && value.length === 0)
  );
}

function setPath(target: SettingsTree, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== 'object' || next === null) {
      node[part] = {};
    }
    node = node[part] as SettingsTree;
  }
  node[parts[parts.length - 1]] = typeof value === 'string' ? value.trim() : value;
}

/** The `settings` payload from a getter of `lse.<key>` values (e.g. `workspace.getConfiguration('lse').get`). */
export function buildSettings(get: (key: string) => unknown): SettingsTree {
  const out: SettingsTree = {};
  for (const [key, path] of Object.entries(SERVER_SETTINGS)) {
    const value = get(key);
    if (!isEmpty(value)) {
      setPath(out, path, value);
    }
  }
  return out;
}

export function initializationOptions(get: (key: string) => unknown, trusted: boolean): InitializationOptions {
  return { settings: buildSettings(get), trusted };
}

/** Whether a configuration change needs a server restart (`affects(section)` as in ConfigurationChangeEvent). */
export function needsRestart(affects: (section: string) => boolean): boolean {
  return PROCESS_SETTINGS.some((key) => affects(`lse.${key}`));
}
