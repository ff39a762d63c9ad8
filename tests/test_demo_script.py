"""`./scripts/demo.sh` as a new user runs it, on empty model caches (issue 21): set-up, then the demo with the tiny
random model (the real models are 1.6 GB; `tests/test_models_needed.py` shows they are fetched before any model
call), at least up to the evolver's first reply, with progress lines a log can show."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_demo_script_on_empty_caches_reaches_the_evolver_and_the_result(tmp_path: Path) -> None:
    env = {**os.environ, "LSE_CACHE_DIR": str(tmp_path / "lse-cache"), "HF_HUB_CACHE": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    env.pop("LSE_THREADS", None)
    demo = tmp_path / "demo"
    proc = subprocess.run([str(ROOT / "scripts" / "demo.sh"), "--tiny", "--rounds", "1", "--dir", str(demo)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert not (tmp_path / "lse-cache" / "models").exists()  # --tiny fetched nothing
    assert (tmp_path / "lse-cache" / "tiny-model" / "config.json").is_file()  # built on the fly, empty cache
    lines = out.splitlines()
    assert any("root scored: dev " in line for line in lines)
    assert any("round 1: evolver reply 1/" in line for line in lines)  # the evolver was asked and answered
    assert "seed prompt vs the evolved winner" in out and "1 rounds" in out and "wall time" in out
    assert "\x1b[" not in out  # plain lines in a log
