// Where the LSE repo, its Python environment and lse-server are (env LSE_SERVER / LSE_PYTHON override).
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The repository root: the nearest folder above this file with pyproject.toml and vscode-client/. */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'pyproject.toml')) && fs.existsSync(path.join(dir, 'vscode-client'))) {
      return dir;
    }
    const up = path.dirname(dir);
    if (up === dir) {
      throw new Error(`no LSE repository above ${__dirname}`);
    }
    dir = up;
  }
}

export function clientRoot(): string {
  return path.join(repoRoot(), 'vscode-client');
}

/** The lse-server executable: $LSE_SERVER, else the repo's .venv/bin/lse-server (undefined when absent). */
export function serverExecutable(): string | undefined {
  const candidates = [process.env.LSE_SERVER, path.join(repoRoot(), '.venv', 'bin', 'lse-server')];
  return candidates.find((c): c is string => typeof c === 'string' && c !== '' && fs.existsSync(c));
}

/** The Python next to lse-server (it has the lse package): $LSE_PYTHON, else bin/python beside the server. */
export function pythonExecutable(): string | undefined {
  const server = serverExecutable();
  const candidates = [process.env.LSE_PYTHON, server ? path.join(path.dirname(server), 'python') : undefined];
  return candidates.find((c): c is string => typeof c === 'string' && c !== '' && fs.existsSync(c));
}

export const SKIP_REASON = 'lse-server not found: run ./scripts/setup.sh (creates .venv) or set LSE_SERVER';
