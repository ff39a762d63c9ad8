"""The wheel, as users get it: built from the working tree, installed (not editable) into a fresh venv, run.

The fresh venv has no pip and reuses this environment's third-party packages through a `.pth` line (so no
torch is installed again); LSE itself comes only from the wheel, installed with `--no-deps`. Every `lse`
subcommand's `--help`, `lse-server --version`, and `--tiny` runs of eval, evolve and bench must work there.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import build_skill_workspace

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DIST_NAME = "lse-prompts"
PACKAGE_ROOTS = {"lse_engine": "lse_engine", "lse_server": "server/lse_server", "lse_examples": "examples"}


def tracked_files() -> list[str]:
    """The working tree's files as git sees them: tracked, plus new ones not ignored."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know the project's files")
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                         check=True).stdout.decode()
    return sorted(f for f in out.split("\0") if f and (REPO / f).is_file())


def in_wheel(path: str) -> str | None:
    """Where a project file lands in the wheel (None: outside the packages, or a hidden file)."""
    for package, folder in PACKAGE_ROOTS.items():
        if path.startswith(folder + "/"):
            rest = path[len(folder) + 1:]
            if any(part.startswith(".") for part in rest.split("/")):
                return None
            return f"{package}/{rest}"
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel` of a copy of the working tree (the build writes nothing into the shared checkout)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    for f in tracked_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(base / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    (found,) = (base / "dist").glob("*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel; third-party packages reached through a `.pth` line."""
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # a .pth line adds the folder to sys.path without running the .pth files in it (our editable install's finder)
    (Path(purelib) / "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return root


def run(venv: Path, cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """A command from the venv's bin/, outside the checkout, with no PYTHONPATH or editable finder in play."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    base["PATH"] = f"{venv / 'bin'}{os.pathsep}{base.get('PATH', '')}"
    base["COLUMNS"] = "200"
    return subprocess.run([str(venv / "bin" / cmd[0]), *cmd[1:]], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_the_wheel_holds_every_module_and_data_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read("lse_prompts-0.1.0.dist-info/METADATA").decode()
        entry_points = zf.read("lse_prompts-0.1.0.dist-info/entry_points.txt").decode()
    expected = {w for f in tracked_files() if (w := in_wheel(f))}
    assert "lse_engine/models/pull.py" in expected and "lse_examples/shop/shop.suite.yaml" in expected
    missing = sorted(expected - names)
    assert missing == [], f"files the wheel left out (add their kind to package-data in pyproject.toml): {missing}"
    assert {n.split("/")[0] for n in names} == {"lse_engine", "lse_server", "lse_examples",
                                                "lse_prompts-0.1.0.dist-info"}
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert f"\nName: {DIST_NAME}\n" in metadata
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not [r for r in requires if r.startswith(("llm-", "llama-cpp", "llm "))]  # no compiler, no file carriers
    assert "lse = lse_engine.cli:main" in entry_points and "lse-server = lse_server.__main__:main" in entry_points


def _bird(root: Path, n: int = 16) -> Path:
    """A BIRD-style dev folder: `dev.json` + `dev_databases/alpha/alpha.sqlite`."""
    db = root / "dev_databases" / "alpha" / "alpha.sqlite"
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE nums (n INTEGER PRIMARY KEY, label TEXT)")
    conn.executemany("INSERT INTO nums VALUES (?, ?)", [(i, f"n{i}") for i in range(50)])
    conn.commit()
    conn.close()
    rows = [{"question_id": i, "db_id": "alpha", "question": f"Which row holds {i}?", "evidence": "",
             "SQL": f"SELECT n FROM nums WHERE n = {i}", "difficulty": "simple"} for i in range(n)]
    (root / "dev.json").write_text(json.dumps(rows))
    return root


def test_the_installed_wheel_runs_every_command(venv: Path, tmp_path: Path, tiny_model_dir: str) -> None:
    where = run(venv, ["python", "-c", "import lse_engine, lse_server, lse_examples.shop, importlib.metadata as m; "
                                       "print(lse_engine.__file__); print(lse_server.__file__); "
                                       f"print(m.version('{DIST_NAME}'))"], tmp_path)
    assert where.returncode == 0, where.stderr
    engine, server, version = where.stdout.split()
    assert engine.startswith(str(venv)) and server.startswith(str(venv)) and version == "0.1.0"

    commands = run(venv, ["python", "-c", (
        "import argparse\n"
        "from lse_engine.cli import build_parser\n"
        "def walk(p, path):\n"
        "    print(' '.join(path))\n"
        "    for a in p._actions:\n"
        "        if isinstance(a, argparse._SubParsersAction):\n"
        "            for name, sub in a.choices.items():\n"
        "                walk(sub, path + [name])\n"
        "walk(build_parser(), [])\n")], tmp_path)
    assert commands.returncode == 0, commands.stderr
    paths = [line.split() for line in commands.stdout.splitlines()]
    assert ["models", "pull"] in paths and ["bench"] in paths and len(paths) >= 12
    for path in paths:
        helped = run(venv, ["lse", *path, "--help"], tmp_path)
        assert helped.returncode == 0 and helped.stdout.startswith(f"usage: lse {' '.join(path)}".rstrip()), \
            (path, helped.stderr)
    server_version = run(venv, ["lse-server", "--version"], tmp_path)
    assert (server_version.returncode, server_version.stdout.strip()) == (0, "lse-server 0.1.0")

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny-model").symlink_to(tiny_model_dir)
    env = {"LSE_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    prompt = build_skill_workspace(tmp_path / "ws", n_problems=12,
                                   toml="[evolve]\nrounds = 1\nbatch_size = 3\ndev_size = 4\nevolver_retries = 0\n")
    evaluated = run(venv, ["lse", "eval", str(prompt), "--tiny", "--quiet"], tmp_path, env)
    assert evaluated.returncode == 0, evaluated.stderr
    evolved = run(venv, ["lse", "evolve", str(prompt), "--tiny", "--rounds", "1", "--max-model-calls", "30"],
                  tmp_path, env)
    assert evolved.returncode == 0, evolved.stderr
    assert (tmp_path / "ws" / ".lse" / "lse.db").is_file()
    out = tmp_path / "bench-out"
    benched = run(venv, ["lse", "bench", "bird", "--data", str(_bird(tmp_path / "bird")), "--rules", "ucb",
                         "--seeds", "1", "--max-model-calls", "12", "--batch-size", "2", "--dev-size", "3",
                         "--out", str(out), "--tiny", "--quiet"], tmp_path, env)
    assert benched.returncode == 0, benched.stderr
    assert (out / "bench.md").read_text().startswith("# lse bench bird")
