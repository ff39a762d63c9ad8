// Where to find `lse-server`: lse.server.path, lse.python, the workspace's .venv, the .venv of a folder above it
// (the LSE checkout's, after ./scripts/setup.sh), the Python extension's interpreter, then PATH; and how to
// install it when it is nowhere. No `vscode` import.
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
  /** The Python extension's selected interpreter, when there is one. */
  pythonInterpreter?: string;
}

export interface ServerCommand {
  command: string;
  args: string[];
  /** Where it came from, for the log and messages. */
  source: 'lse.server.path' | 'lse.python' | 'workspace .venv' | 'repository .venv' | 'Python extension' | 'PATH';
}

export interface ServerMissing {
  error: string;
  /** Places that were tried, for the setup message. */
  tried: string[];
  /** Set when workspace trust is the reason: the workspace is not trusted, so its own .venv was not used. */
  untrusted?: boolean;
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
  const venvBin = env.platform === 'win32' ? ['.venv', 'Scripts'] : ['.venv', 'bin'];
  const inFolder = (folder: string): string | undefined => {
    for (const exe of exeNames('lse-server', env.platform)) {
      const candidate = pp.join(folder, ...venvBin, exe);
      tried.push(candidate);
      if (env.isFile(candidate)) {
        return candidate;
      }
    }
    return undefined;
  };
  // the workspace's .venv, then the repository's: a workspace opened inside a checkout (examples/shop/ after
  // ./scripts/setup.sh). An untrusted workspace's are looked at but never started: the message names trust.
  let skipped: string | undefined;
  const venvs: [string, ServerCommand['source']][] = [
    ...env.workspaceFolders.map((f): [string, ServerCommand['source']] => [f, 'workspace .venv']),
    ...env.workspaceFolders.flatMap((f) => ancestors(f, pp).map((a): [string, ServerCommand['source']] => [a, 'repository .venv'])),
  ];
  for (const [folder, source] of venvs) {
    const found = inFolder(folder);
    if (found && env.trusted) {
      return { command: found, args, source };
    }
    skipped ??= found;
  }
  if (env.pythonInterpreter?.trim()) {
    const dir = pp.dirname(env.pythonInterpreter.trim());
    for (const exe of exeNames('lse-server', env.platform)) {
      const candidate = pp.join(dir, exe);
      tried.push(candidate);
      if (env.isFile(candidate)) {
        return { command: candidate, args, source: 'Python extension' };
      }
    }
  }
  const onPath = which('lse-server', env);
  tried.push('lse-server on PATH');
  if (onPath !== undefined) {
    return { command: onPath, args, source: 'PATH' };
  }
  if (skipped !== undefined) {
    return {
      error: `LSE: this workspace is not trusted, so its lse-server (${skipped}) is not started. Trust the workspace, or set lse.server.path to an lse-server outside it.`,
      tried,
      untrusted: true,
    };
  }
  if (!env.trusted) {
    return {
      error: 'LSE: lse-server was not found on PATH. This workspace is not trusted, so LSE did not look in its .venv: trust the workspace, or install lse-server on PATH (or set lse.server.path).',
      tried,
      untrusted: true,
    };
  }
  return {
    error: 'LSE: lse-server was not found. Install it into a .venv (one click), or set lse.python / lse.server.path.',
    tried,
  };
}

/** The folders above `folder`, nearest first (not `folder` itself). */
export function ancestors(folder: string, pp: path.PlatformPath = path.posix): string[] {
  const out: string[] = [];
  let dir = pp.dirname(folder);
  while (dir !== folder && out.length < 32) {
    out.push(dir);
    folder = dir;
    dir = pp.dirname(dir);
  }
  return out;
}

export interface InstallPlan {
  /** Where the shell command runs. */
  cwd: string;
  /** One shell command line that creates the .venv and installs lse into it. */
  command: string;
  /** The lse-server it will produce. */
  server: string;
}

/** How to install lse-server with one click: the LSE checkout holding (or above) a workspace folder runs its
 * own setup (./scripts/setup.sh: .venv with a CPU torch and `pip install -e .[dev]`); a checkout without it gets
 * `python -m venv .venv` and `pip install -e .`. Undefined when no workspace folder is inside a checkout. */
export function installPlan(env: ResolveEnv, isLseCheckout: (folder: string) => boolean, python = 'python3'): InstallPlan | undefined {
  const pp = paths(env);
  const bin = env.platform === 'win32' ? pp.join('.venv', 'Scripts') : pp.join('.venv', 'bin');
  for (const folder of env.workspaceFolders) {
    for (const dir of [folder, ...ancestors(folder, pp)]) {
      if (!isLseCheckout(dir)) {
        continue;
      }
      const server = pp.join(dir, bin, env.platform === 'win32' ? 'lse-server.exe' : 'lse-server');
      const setup = pp.join(dir, 'scripts', 'setup.sh');
      if (env.platform !== 'win32' && env.isFile(setup)) {
        return { cwd: dir, command: `bash ${quote(setup)}`, server };
      }
      const venvPython = pp.join(dir, bin, env.platform === 'win32' ? 'python.exe' : 'python');
      return { cwd: dir, command: `${quote(python)} -m venv .venv && ${quote(venvPython)} -m pip install -e .`, server };
    }
  }
  return undefined;
}

function quote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}
