"""The file corpus: each hostile suite, prompt file, settings file or database through the parse API and the CLI
(`lse eval`, in a child process): the expected diagnostic, one `error: …` line with exit code 2 (never a
traceback), in time, in bounded memory, no file changed or created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.adversarial import file_corpus, harness


def test_the_corpus_has_sixty_kinds_of_attack() -> None:
    names = [a.name for a in file_corpus.CORPUS]
    assert len(set(names)) == len(names) >= 60
    assert {a.family for a in file_corpus.CORPUS} == {"suite", "json", "database", "prompt", "settings"}


def test_every_file_attack_is_a_diagnostic_or_one_line(tmp_path: Path) -> None:
    results, rc = harness.run_child("files", tmp_path)
    assert rc == 0, "the process died"
    assert {r.name for r in results} == {a.name for a in file_corpus.CORPUS}
    assert len([r for r in results if r.path == "cli"]) >= 60
    assert harness.failures(results) == []


def test_the_lse_command_prints_one_line(tmp_path: Path) -> None:
    """The installed entry point, for a few of them: exit code 2, `error: …` on one line, nothing else."""
    lse = Path(sys.executable).with_name("lse")
    picked = ["billion laughs in a question", "a truncated database", "timeout_s = nan", "a prompt that is not UTF-8",
              "a NUL byte in the database path"]
    for attack in (a for a in file_corpus.CORPUS if a.name in picked):
        ws = attack.build(tmp_path / str(picked.index(attack.name)))
        proc = subprocess.run([str(lse), "eval", str(ws.prompt), "--quiet", *attack.cli_args], capture_output=True,
                              text=True, timeout=60, env={"COLUMNS": "60", "PATH": "/usr/bin:/bin"})
        lines = proc.stderr.strip().splitlines()
        assert (proc.returncode, len(lines), proc.stdout) == (2, 1, ""), (attack.name, proc.stderr)
        assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
