// Where to find `lse-server`: lse.server.path, lse.python, the workspace's .venv, then PATH. No `vscode` import.
import * as path from 'node:path';

export interface ServerConfig {
  /** `lse.server.path`: the lse-server executable. */
  serverPath?: string;
  /** `lse.python`: an interpreter with the `lse` package; runs `python -m lse_server`. */
  python?: string;
  /** `lse.server.logLevel` */
  logLevel?: string;
}

export interface ResolveEnv {
  workspaceFolders: readonly string[];
  /** The PATH variable. */
  pathEnv: string;
  platform: NodeJS.Platform;
  home: string;
  /** Whether the workspace is trusted: only then is an executable inside it (its .venv) started. */
  trusted: boolean;
  isFile: (file: string) => boolean;
}

export interface ServerCommand {
  command: string;
  args: string[];
  /** Where it came from, for the log and messages. */
  source: 'lse.server.path' | 'lse.python' | 'workspace .venv' | 'PATH';
}

export interface ServerMissing {
  error: string;
  /** Places that were tried, for the setup message. */
  tried: string[];
}

export type Resolution = ServerCommand | ServerMissing;

export function isMissing(r: Resolution): r is ServerMissing {
  return 'error' in r;
}

function paths(env: ResolveEnv): path.PlatformPath {
  return env.platform === 'win32' ? path.win32 : path.posix;
}

function expand(p: string, env: ResolveEnv): string {
  const pp = paths(env);
  let out = p.trim();
  const folder = env.workspaceFolders[0];
  if (folder !== undefined) {
    out = out.replace(/\$\{workspaceFolder\}/g, folder);
  }
  if (out === '~' || out.startsWith('~/')) {
    out = pp.join(env.home, out.slice(1));
  }
  if (!pp.isAbsolute(out) && /[\\/]/.test(out) && folder !== undefined) {
    out = pp.join(folder, out);
  }
  return out;
}

function exeNames(name: string, platform: NodeJS.Platform): string[] {
  return platform === 'win32' ? [`${name}.exe`, `${name}.cmd`, name] : [name];
}

/** The first match of `name` on PATH, if any. */
export function which(name: string, env: ResolveEnv): string | undefined {
  const sep = env.platform === 'win32' ? ';' : ':';
  for (const dir of env.pathEnv.split(sep).filter((d) => d !== '')) {
    for (const exe of exeNames(name, env.platform)) {
      const candidate = paths(env).join(dir, exe);
      if (env.isFile(candidate)) {
        return candidate;
      }
    }
  }
  return undefined;
}

function serverArgs(cfg: ServerConfig): string[] {
  const level = cfg.logLevel?.trim();
  return level ? ['--stdio', '--log-level', level] : ['--stdio'];
}

/** How to start the server, or why it cannot be found. */
export function resolveServerCommand(cfg: ServerConfig, env: ResolveEnv): Resolution {
  const pp = paths(env);
  const args = serverArgs(cfg);
  if (cfg.serverPath?.trim()) {
    const exe = expand(cfg.serverPath, env);
    const found = pp.isAbsolute(exe) ? (env.isFile(exe) ? exe : undefined) : which(exe, env);
    if (found === undefined) {
      return { error: `lse.server.path is set to "${cfg.serverPath}", but ${exe} does not exist.`, tried: [exe] };
    }
    return { command: found, args, source: 'lse.server.path' };
  }
  if (cfg.python?.trim()) {
    const exe = expand(cfg.python, env);
    const found = pp.isAbsolute(exe) ? (env.isFile(exe) ? exe : undefined) : which(exe, env);
    if (found === undefined) {
      return { error: `lse.python is set to "${cfg.python}", but ${exe} does not exist.`, tried: [exe] };
    }
    return { command: found, args: ['-m', 'lse_server', ...args], source: 'lse.python' };
  }
  const tried: string[] = [];
  if (env.trusted) {
    const rel = env.platform === 'win32' ? ['.venv', 'Scripts'] : ['.venv', 'bin'];
    for (const folder of env.workspaceFolders) {
      for (const exe of exeNames('lse-server', env.platform)) {
        const candidate = pp.join(folder, ...rel, exe);
        tried.push(candidate);
        if (env.isFile(candidate)) {
          return { command: candidate, args, source: 'workspace .venv' };
        }
      }
    }
  }
  const onPath = which('lse-server', env);
  tried.push('lse-server on PATH');
  if (onPath !== undefined) {
    return { command: onPath, args, source: 'PATH' };
  }
  return {
    error: 'LSE: lse-server was not found. Install the lse package (pip install -e . in the LSE repo) or set lse.python / lse.server.path.',
    tried,
  };
}
