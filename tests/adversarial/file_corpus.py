"""Hostile user files: 60+ attack kinds in suites (YAML and JSON), prompt files, settings and the databases a suite
names. Each builds a small workspace with one hostile part and names the diagnostic codes the parse API may
report for it (any of them; an empty set: none at all), and what `lse eval` on it must end in: one `error: …`
line with exit code 2 ("error-line"), or nothing to check (None: the files are fine and a model would run).

The harness (tests/adversarial/harness.py) checks the rest for every attack: time, memory, no files created or
changed (the run store under `.lse/` aside), no traceback.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lse_engine.errors import LSEError

Content = str | bytes
SETTINGS = "[model]\nmax_retries = 0\ntimeout_s = 2.0\n"  # `lse eval` reaching a model fails at once: port 9
CLI_ARGS = ("--backend", "openai", "--base-url", "http://127.0.0.1:9/v1")
PROBLEMS = "problems:\n  - id: q1\n    question: How many?\n    gold: SELECT count(*) FROM t\n"
SUITE = "task: text-to-sql\ndatabase: d.sqlite\n" + PROBLEMS
PROMPT = "---\nsuite: x.suite.yaml\n---\nWrite SQLite.\n"


@dataclass
class Workspace:
    root: Path
    prompt: Path
    suite: Path
    database: Path


@dataclass(frozen=True)
class FileAttack:
    name: str
    family: str
    files: dict[str, Content | Callable[[Path], None]]  # relative path -> content, or a function that makes it
    codes: frozenset[str]
    cli: frozenset[str] | None = frozenset({"error-line"})
    seconds: float = 2.0
    cli_args: tuple[str, ...] = CLI_ARGS
    suite_name: str = "x.suite.yaml"
    extra: dict[str, str] = field(default_factory=dict)

    def build(self, folder: Path) -> Workspace:
        folder.mkdir(parents=True, exist_ok=True)
        if "d.sqlite" not in self.files:
            _make_db(folder / "d.sqlite")
        files: dict[str, Content | Callable[[Path], None]] = {
            "lse.toml": SETTINGS, "x.prompt.md": PROMPT.replace("x.suite.yaml", self.suite_name),
            self.suite_name: SUITE}
        files.update(self.files)
        for rel, content in files.items():
            path = folder / rel
            if callable(content):
                content(path)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return Workspace(folder, folder / "x.prompt.md", folder / self.suite_name, folder / "d.sqlite")

    def check(self, ws: Workspace) -> tuple[list[str], str]:
        """The codes the parse API reports for this workspace: prompt, suite, settings, then the database."""
        from lse_engine.config import load_config
        from lse_engine.files import parse_prompt, parse_suite
        from lse_engine.files.text import MAX_PROMPT_BYTES, MAX_SUITE_BYTES, read_user_text
        from lse_engine.tasks.sqlite_exec import open_readonly

        codes: list[str] = []
        notes: list[str] = []
        for path, limit, parse in ((ws.prompt, MAX_PROMPT_BYTES, parse_prompt), (ws.suite, MAX_SUITE_BYTES, parse_suite)):
            try:
                text = read_user_text(path, path.name, limit)
            except LSEError as exc:
                codes.append(getattr(exc, "code", "error"))
                notes.append(str(exc))
                continue
            found = parse(text, path)
            codes += [i.code for i in found[1]]
            notes += [i.message for i in found[1]]
            if parse is parse_suite and found[0] is not None and found[0].database and not found[1]:
                try:
                    open_readonly(found[0].database).close()
                except LSEError as exc:
                    codes.append("database")
                    notes.append(str(exc))
        try:
            load_config(ws.root)
        except LSEError as exc:
            codes.append(getattr(exc, "code", "error"))
            notes.append(str(exc))
        return codes, " | ".join(notes)[:600]


def _make_db(path: Path, wal: bool = False) -> None:
    if path.exists():
        return
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(200)])
    conn.commit()
    conn.close()


def _wal_db(path: Path) -> None:
    _make_db(path, wal=True)


def _truncated_db(path: Path) -> None:
    tmp = path.with_suffix(".full")
    conn = sqlite3.connect(tmp)
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 100) for i in range(2000)])
    conn.commit()
    conn.close()
    data = tmp.read_bytes()
    tmp.unlink()
    path.write_bytes(data[: len(data) // 2])


def _hostile_view_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    conn.execute("CREATE VIEW forever AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                 "SELECT count(*) AS n FROM c")
    conn.commit()
    conn.close()


def _symlink_loop(path: Path) -> None:
    os.symlink(path.name, path)


def _directory(path: Path) -> None:
    path.mkdir()


def _rm(path: Path) -> None:
    """No file at `path` (the default one removed)."""
    if path.exists():
        path.unlink()


def _lol(key: str, levels: int = 9) -> str:
    """A "billion laughs" suite whose problem's `key` is the last alias (10**levels strings)."""
    lines = ['x0: &x0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"x{i}: &x{i} [" + ",".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, levels)]
    problem = {"id": "q1", "question": "How many?", "gold": "SELECT 1", key: f"*x{levels - 1}"}
    body = "\n".join(f"    {k}: {v}" if i else f"  - {k}: {v}" for i, (k, v) in enumerate(problem.items()))
    return "task: text-to-sql\ndatabase: d.sqlite\n" + "\n".join(lines) + "\nproblems:\n" + body + "\n"


def _many(n: int, extra: str = "") -> str:
    return "task: text-to-sql\ndatabase: d.sqlite\nproblems:\n" + "".join(
        f"  - id: q{i}\n    question: q{i}?\n    gold: SELECT {i}\n{extra}" for i in range(n))


def _junk(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


YAML_ERRORS = frozenset({"yaml"})
S = "x.suite.yaml"
J = "x.suite.json"
P = "x.prompt.md"
T = "lse.toml"
JSON_OK = json.dumps({"task": "text-to-sql", "database": "d.sqlite",
                      "problems": [{"id": "q1", "question": "How many?", "gold": "SELECT count(*) FROM t"}]})

CORPUS: list[FileAttack] = [
    # -- suites: YAML --------------------------------------------------------------------------------------------
    FileAttack("billion laughs in a question", "suite", {S: _lol("question")}, frozenset({"alias-expansion"})),
    FileAttack("billion laughs in an id", "suite", {S: _lol("id")}, frozenset({"alias-expansion"})),
    FileAttack("billion laughs in the gold", "suite", {S: _lol("gold")}, frozenset({"alias-expansion"})),
    FileAttack("billion laughs in options", "suite", {S: _lol("options").replace("text-to-sql", "multiple-choice")},
               frozenset({"alias-expansion"})),
    FileAttack("billion laughs, 12 levels", "suite", {S: _lol("question", 12)}, frozenset({"alias-expansion"})),
    FileAttack("aliases of a long string", "suite",
               {S: 'task: text-to-sql\ndatabase: d.sqlite\nlong: &l "' + "x" * 300_000 + '"\n'
                   "problems:\n  - id: q1\n    gold: SELECT 1\n    question: [" + ",".join(["*l"] * 200) + "]\n"},
               frozenset({"alias-expansion"})),
    FileAttack("recursive alias", "suite", {S: "task: text-to-sql\ndatabase: d.sqlite\nx: &a [*a]\n" + PROBLEMS},
               frozenset({"alias-expansion"})),
    FileAttack("merge-key bomb", "suite",
               {S: "base: &m0 {a: 1, b: 2}\n" + "".join(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}\n"
                                                         for i in range(1, 40)) + SUITE},
               frozenset({"alias-expansion"})),
    FileAttack("100,000-deep flow nesting", "suite", {S: "x: " + "[" * 100_000 + "]" * 100_000 + "\n" + SUITE},
               YAML_ERRORS),
    FileAttack("100,000-deep block nesting", "suite", {S: "x: " + "- " * 100_000 + "1\n" + SUITE},
               YAML_ERRORS),
    FileAttack("80-deep nesting", "suite", {S: SUITE + "name: " + "[" * 80 + "]" * 80 + "\n"},
               frozenset({"too-deep"})),
    FileAttack("a control character in a question", "suite", {S: SUITE.replace("How many?", "How\x07 many?")},
               frozenset({"control-character"})),
    FileAttack("terminal escapes in a question", "suite",
               {S: SUITE.replace("How many?", "\x1b[2J\x1b[31mHow many?")}, frozenset({"control-character"})),
    FileAttack("a NUL byte", "suite", {S: SUITE.replace("How many?", "How\x00 many?")}, frozenset({"binary"})),
    FileAttack("a byte that is not UTF-8", "suite", {S: SUITE.encode().replace(b"How", b"H\xffow")},
               frozenset({"encoding"})),
    FileAttack("UTF-16", "suite", {S: "\ufeff".encode("utf-16-le") + SUITE.encode("utf-16-le")},
               frozenset({"binary", "encoding"})),
    FileAttack("binary junk", "suite", {S: _junk(20_000)}, frozenset({"binary", "encoding"})),
    FileAttack("a PNG named as a suite", "suite", {S: b"\x89PNG\r\n\x1a\n" + _junk(5000, 1)},
               frozenset({"binary", "encoding"})),
    FileAttack("a suite over the size limit", "suite", {S: SUITE + "# " + "x" * (17 << 20) + "\n"},
               frozenset({"too-large"}), seconds=3.0),
    FileAttack("a 5,000-digit id", "suite", {S: SUITE.replace("id: q1", "id: 1" + "0" * 5000)},
               frozenset({"missing-key"})),
    FileAttack("the 30th of February as an id", "suite", {S: SUITE.replace("id: q1", "id: 2001-02-30")},
               frozenset({"missing-key"})),
    FileAttack("a list as a mapping key", "suite", {S: SUITE + "? [a, b]\n: c\n"}, frozenset()),  # skipped
    FileAttack("a python object tag", "suite",
               {S: SUITE.replace("How many?", "!!python/object/apply:os.system ['echo evil']")},
               frozenset({"missing-key"})),
    FileAttack("bad !!binary", "suite", {S: SUITE.replace("How many?", "!!binary '%%%'")}, frozenset()),
    FileAttack("a mapping as a question", "suite", {S: SUITE.replace("How many?", "{a: {b: {c: 1}}}")},
               frozenset(), cli=None),
    FileAttack("two documents", "suite", {S: SUITE + "---\n" + SUITE}, YAML_ERRORS),
    FileAttack("tabs for indentation", "suite", {S: SUITE.replace("    question", "\tquestion")}, YAML_ERRORS),
    FileAttack("5,000 duplicate ids", "suite", {S: re.sub(r"id: q\d+", "id: same", _many(5000))},
               frozenset({"duplicate-id"}), seconds=3.0),
    FileAttack("5,000 problems with unknown keys", "suite", {S: _many(5000, "    hint: x\n")},
               frozenset({"unknown-key"}), seconds=3.0),
    FileAttack("a question of 2 MB on one line", "suite", {S: SUITE.replace("How many?", "x" * 2_000_000)},
               frozenset(), cli=None),
    FileAttack("bidi overrides and emoji", "suite", {S: SUITE.replace("How many?", "\u202eHow\u2066 many? 🙂")},
               frozenset(), cli=None),
    FileAttack("an empty suite", "suite", {S: ""}, frozenset({"empty"})),
    FileAttack("a suite that is a list", "suite", {S: "- 1\n- 2\n"}, frozenset({"type"})),
    # -- suites: JSON --------------------------------------------------------------------------------------------
    FileAttack("100,000-deep JSON", "json", {J: "[" * 100_000 + "]" * 100_000}, frozenset({"too-deep"}),
               suite_name=J),
    FileAttack("a 5,000-digit JSON number", "json", {J: JSON_OK.replace('"q1"', "1" + "0" * 5000)},
               frozenset({"json"}), suite_name=J),
    FileAttack("a control character in JSON", "json", {J: JSON_OK.replace("How many?", "How\x07 many?")},
               frozenset({"json"}), suite_name=J),
    FileAttack("a NUL byte in JSON", "json", {J: JSON_OK.replace("How many?", "How\x00 many?")},
               frozenset({"binary"}), suite_name=J),
    FileAttack("JSON that is not UTF-8", "json", {J: JSON_OK.encode().replace(b"How", b"\xc3\x28")},
               frozenset({"encoding"}), suite_name=J),
    FileAttack("JSON with trailing junk", "json", {J: JSON_OK + " }}}"}, frozenset({"json"}), suite_name=J),
    FileAttack("JSON billion laughs as YAML aliases", "json", {J: _lol("question").replace("x0:", '"x0":')},
               frozenset({"json"}), suite_name=J),
    # -- the database a suite names ----------------------------------------------------------------------------
    FileAttack("a database that is not SQLite", "database", {"d.sqlite": b"hello, world\n" * 100},
               frozenset({"not-sqlite"})),
    FileAttack("an empty database file", "database", {"d.sqlite": b""}, frozenset({"not-sqlite"})),
    FileAttack("a truncated database", "database", {"d.sqlite": _truncated_db}, frozenset({"database"})),
    FileAttack("only an SQLite header", "database", {"d.sqlite": b"SQLite format 3\x00" + b"\x10\x00" + b"\x00" * 82},
               frozenset({"database"})),
    FileAttack("a damaged header", "database", {"d.sqlite": b"SQLite format 3\x00" + _junk(4000, 2)},
               frozenset({"database"})),
    FileAttack("a NUL byte in the database path", "database", {S: SUITE.replace("d.sqlite", '"d\\0.sqlite"')},
               frozenset({"bad-path"})),
    FileAttack("a 5,000-character database name", "database", {S: SUITE.replace("d.sqlite", "d" * 5000)},
               frozenset({"bad-path", "missing-database"})),
    FileAttack("a database that is a directory", "database", {S: SUITE.replace("d.sqlite", "dbdir"),
                                                               "dbdir": _directory},
               frozenset({"missing-database"})),
    FileAttack("a missing database", "database", {S: SUITE.replace("d.sqlite", "nowhere.sqlite")},
               frozenset({"missing-database"})),
    FileAttack("a database under an unknown user's home", "database",
               {S: SUITE.replace("d.sqlite", "~no-such-user-lse/x.sqlite")}, frozenset({"missing-database"})),
    FileAttack("/dev/zero as the database", "database", {S: SUITE.replace("d.sqlite", "/dev/zero")},
               frozenset({"missing-database", "not-sqlite"})),
    FileAttack("a symlink loop as the database", "database", {S: SUITE.replace("d.sqlite", "loop.sqlite"),
                                                              "loop.sqlite": _symlink_loop},
               frozenset({"missing-database", "bad-path"})),
    FileAttack("a database in WAL mode", "database", {"d.sqlite": _wal_db}, frozenset()),
    FileAttack("a view over an endless query", "database",
               {"d.sqlite": _hostile_view_db, S: SUITE.replace("SELECT count(*) FROM t", "SELECT n FROM forever")},
               frozenset()),
    # -- prompt files ------------------------------------------------------------------------------------------
    FileAttack("billion laughs in front matter", "prompt",
               {P: "---\n" + _lol("question").split("problems:")[0] + "suite: x.suite.yaml\n---\nhi\n"},
               frozenset({"front-matter"})),
    FileAttack("a control character in front matter", "prompt", {P: PROMPT.replace("suite:", "suite:\x07")},
               frozenset({"front-matter"})),
    FileAttack("a NUL byte in the instructions", "prompt", {P: PROMPT.replace("Write", "Wr\x00ite")},
               frozenset({"binary"})),
    FileAttack("a prompt that is not UTF-8", "prompt", {P: PROMPT.encode().replace(b"Write", b"Wr\xe9ite")},
               frozenset({"encoding"})),
    FileAttack("a binary prompt", "prompt", {P: _junk(3000, 3)}, frozenset({"binary", "encoding"})),
    FileAttack("a prompt over the size limit", "prompt", {P: PROMPT + "x" * (2 << 20)}, frozenset({"too-large"})),
    FileAttack("a NUL byte in the suite path", "prompt", {P: PROMPT.replace("x.suite.yaml", '"x\\0.suite.yaml"')},
               frozenset({"type", "missing-suite"})),
    FileAttack("a 5,000-character suite path", "prompt", {P: PROMPT.replace("x.suite.yaml", "s" * 5000)},
               frozenset({"missing-suite"})),
    FileAttack("a directory as the suite", "prompt", {P: PROMPT.replace("x.suite.yaml", "sdir"), "sdir": _directory},
               frozenset({"missing-suite"})),
    FileAttack("front matter never closed", "prompt", {P: "---\nsuite: x.suite.yaml\nWrite SQLite.\n"},
               frozenset({"front-matter"})),
    FileAttack("front matter that is a list", "prompt", {P: "---\n- a\n- b\n---\nhi\n"},
               frozenset({"front-matter"})),
    FileAttack("deep front matter", "prompt", {P: "---\nsuite: x.suite.yaml\nx: " + "[" * 100_000 + "\n---\nhi\n"},
               frozenset({"front-matter"})),
    FileAttack("terminal escapes in the instructions", "prompt", {P: PROMPT.replace("Write", "\x1b[2JWrite")},
               frozenset({"control-character"}), cli=None),
    FileAttack("/dev/zero as the suite", "prompt", {P: PROMPT.replace("x.suite.yaml", "/dev/zero")},
               frozenset({"missing-suite"})),
    # -- settings ----------------------------------------------------------------------------------------------
    FileAttack("settings that are not UTF-8", "settings", {T: b"[evolve]\nrule = \"caf\xe9\"\n"},
               frozenset({"encoding"})),
    FileAttack("binary settings", "settings", {T: _junk(2000, 4)}, frozenset({"binary", "encoding", "toml"})),
    FileAttack("a control character in settings", "settings", {T: "[evolve]\nrule = \"u\x07cb\"\n"},
               frozenset({"toml"})),
    FileAttack("timeout_s = nan", "settings", {T: "[sql]\ntimeout_s = nan\n"}, frozenset({"value"})),
    FileAttack("timeout_s = -1", "settings", {T: "[sql]\ntimeout_s = -1\n"}, frozenset({"value"})),
    FileAttack("gold_timeout_s = inf", "settings", {T: "[sql]\ngold_timeout_s = inf\n"}, frozenset({"value"})),
    FileAttack("row_cap = -1", "settings", {T: "[sql]\nrow_cap = -1\n"}, frozenset({"value"})),
    FileAttack("a typo in the rule", "settings", {T: "[evolve]\nrule = \"ucbb\"\n"}, frozenset({"value"})),
    FileAttack("an unknown key", "settings", {T: "[evolve]\nroundz = 3\n"}, frozenset({"unknown-key"})),
    FileAttack("[sql] not a table", "settings", {T: "sql = 5\n"}, frozenset({"type"})),
    FileAttack("[tool.lse] not a table", "settings", {"pyproject.toml": "[tool]\nlse = 3\n", T: _rm},
               frozenset({"type"})),
    FileAttack("[tool] not a table", "settings", {"pyproject.toml": 'tool = "x"\nnote = """\n[tool.lse]\n"""\n', T: _rm},
               frozenset({"type"})),
    FileAttack("arrays nested 100,000 deep", "settings", {T: "x = " + "[" * 100_000 + "]" * 100_000 + "\n"},
               frozenset({"toml"})),
    FileAttack("settings over the size limit", "settings", {T: "# " + "x" * (2 << 20) + "\n"},
               frozenset({"too-large"})),
]


def quick() -> list[FileAttack]:
    """A few attacks of each family: the part that runs in the quick test suite."""
    picked: dict[str, list[FileAttack]] = {}
    for attack in CORPUS:
        picked.setdefault(attack.family, [])
        if len(picked[attack.family]) < 2:
            picked[attack.family].append(attack)
    names = {"billion laughs in a question", "a truncated database", "timeout_s = nan", "a database in WAL mode"}
    extra = [a for a in CORPUS if a.name in names and all(a is not b for v in picked.values() for b in v)]
    return [a for v in picked.values() for a in v] + extra
