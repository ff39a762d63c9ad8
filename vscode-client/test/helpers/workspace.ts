// A temporary copy of examples/shop with its database built (as `lse demo` does), so the repo is never written.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pythonExecutable, repoRoot } from './paths';

export interface DemoWorkspace {
  dir: string;
  prompt: string;
  promptUri: string;
  suite: string;
  remove: () => void;
}

export function fileUri(p: string): string {
  return 'file://' + p.split(path.sep).map(encodeURIComponent).join('/');
}

const TEST_SETTINGS = `# written by the tests (test/helpers/workspace.ts): the demo's settings, its models left to the editor
[model.sampling]
max_tokens = 256
temperature = 0.0
[evolve]
rounds = 3
batch_size = 8
rule = "ucb"
request = "reference"
[sql]
example_values = 2
`;

export function demoWorkspace(prefix = 'lse-ws-'): DemoWorkspace {
  const python = pythonExecutable();
  if (!python) {
    throw new Error('no Python with the lse package (set LSE_PYTHON)');
  }
  const src = path.join(repoRoot(), 'examples', 'shop');
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  for (const name of fs.readdirSync(src)) {
    if (/\.(md|yaml|yml|json|toml)$/.test(name)) {
      fs.copyFileSync(path.join(src, name), path.join(dir, name));
    }
  }
  // The demo's lse.toml names real models (a 1.5B evolver with the facts request); these tests drive the tiny
  // model or the scripted stub through the editor's settings, so the workspace gets the demo's other settings
  // without the [evolver] model and with the paper's request (what the stub answers).
  fs.writeFileSync(path.join(dir, 'lse.toml'), TEST_SETTINGS);
  execFileSync(python, [path.join(src, 'build_db.py'), path.join(dir, 'shop.sqlite')], { stdio: 'pipe' });
  const prompt = path.join(dir, 'shop.prompt.md');
  return {
    dir,
    prompt,
    promptUri: fileUri(prompt),
    suite: path.join(dir, 'shop.suite.yaml'),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** question -> gold SQL of a suite file (read with the project's own Python and PyYAML). */
export function suiteGolds(suiteFile: string): Record<string, string> {
  const python = pythonExecutable();
  if (!python) {
    throw new Error('no Python with the lse package (set LSE_PYTHON)');
  }
  const code =
    'import json, sys, yaml\n' +
    'd = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))\n' +
    'print(json.dumps({p["question"]: p["gold"] for p in d["problems"]}))';
  return JSON.parse(execFileSync(python, ['-c', code, suiteFile], { encoding: 'utf-8' })) as Record<string, string>;
}
