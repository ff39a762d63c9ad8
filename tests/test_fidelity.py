"""docs/fidelity.md stays complete and true (issue 22).

The page is read as data:
- every path in backticks exists: ours in this repository (relative to it or to `lse_engine/`), the reference's
  (`lse/…`, `configs/…`, `scripts/…`, `verl/…`, `gepa/…`, `data/…`) in its mirror;
- every name the page places in a module is defined there: "`NAME` in `PATH`", "`PATH` `NAME`, `NAME2`" and
  "`PATH`: `NAME` …, `NAME2` …" up to the next ";" (Python: a module-level or class-level definition, parsed with
  `ast`; YAML: a key path; other files: the text);
- "`A` in `P` = `B` in `Q`" (or ≠, or = a literal) holds: both sides evaluated from the modules' source;
- every setting, `[table] key` or `[table] key = value, key2 = value2`, is a key of the settings dataclasses and its
  value is accepted by `load_config`; in the column "LSE's default" of the tables of differences the value is the
  default;
- the preset table lists every key of `PAPER` with the default and the preset's value, and every key where
  `preset = "paper"` differs from the defaults is named on the page;
- every row of a table of differences has all its cells, and its last cell (the paper's behaviour) a setting, a
  command-line flag or "none".

The reference's side is checked only where its mirror is present (CI has none): set LSE_REFERENCE_MIRROR to a
clone's git directory to check it elsewhere.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lse_engine.config import Config, load_config
from lse_engine.errors import LSEError
from lse_engine.presets import PAPER, PRESETS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fidelity.md"
MIRROR = Path(os.environ.get("LSE_REFERENCE_MIRROR", "/work/.mirror/chenyn66+learning-to-self-evolve/repo"))
REFERENCE_PREFIXES = ("lse/", "configs/", "scripts/", "verl/", "gepa/", "data/")
SECTIONS = ("model", "evolver", "evolve", "sql", "task", "train")  # the tables of lse.toml

SPAN = re.compile(r"`([^`\n]+)`")
PATH = re.compile(r"^[\w./-]+\.(?:py|ya?ml|sh|json|md|toml)$")
NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
IN_PATH = re.compile(rf"`(?P<name>{NAME})` in `(?P<path>[^`\s]+)`")
NEXT_NAME = re.compile(rf"(?:, and |, | and )`(?P<name>{NAME})`")
CLAIM = re.compile(rf"`(?P<a>{NAME})` in `(?P<pa>[^`\s]+)` (?P<op>[=≠]) `(?P<b>[^`]+)`(?: in `(?P<pb>[^`\s]+)`)?")
SETTING = re.compile(r"^\[(?P<table>[a-z_]+(?:\.[a-z_]+)*)\](?: (?P<body>.+))?$")
BARE_SETTING = re.compile(r"^[a-z_]+ = ")
PRESET = re.compile(r'^preset = "(?P<name>[^"]+)"$')

DIFF_COLUMNS = ["what", "the reference / paper", "LSE's default", "why", "the paper's behaviour"]


# -- reading the page -------------------------------------------------------------------------------------------
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def spans(text: str) -> list[str]:
    return SPAN.findall(text)


def is_path(span: str) -> bool:
    return bool(PATH.match(span)) and "/" in span or bool(re.fullmatch(r"\w+\.py", span))


def is_reference(path: str) -> bool:
    return path.startswith(REFERENCE_PREFIXES)


def cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip())
    return [p.strip() for p in parts[1:-1]]


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table: (header cells, rows of cells)."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|\s*-{3,}", lines[i + 1]):
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append(cells(lines[j]))
                j += 1
            out.append((cells(lines[i]), rows))
            i = j
        else:
            i += 1
    return out


def attributions(text: str) -> list[tuple[str, str]]:
    """(name, path) for every name the page places in a module."""
    found = []
    for line in text.splitlines():
        for m in IN_PATH.finditer(line):
            if is_path(m["path"]):
                found.append((m["name"], m["path"]))
        for m in SPAN.finditer(line):
            path = m.group(1)
            if not is_path(path):
                continue
            rest = line[m.end():]
            first = re.match(rf" `(?P<name>{NAME})`", rest)
            if first:  # `PATH` `NAME`, `NAME2` and `NAME3`
                found.append((first["name"], path))
                at = first.end()
                while (more := NEXT_NAME.match(rest, at)) is not None:
                    found.append((more["name"], path))
                    at = more.end()
            elif rest.startswith(":"):  # `PATH`: `NAME` value, `NAME2` value; (the clause ends at ";" or the cell)
                clause = re.split(r";|(?<!\\)\|", rest[1:], maxsplit=1)[0]
                found += [(s, path) for s in spans(clause) if re.fullmatch(NAME, s)]
    return found


def settings(text: str) -> list[tuple[str, str, str | None]]:
    """(table, key, value as written or None) for every setting the page names; ("", "preset", …) for presets."""
    found: list[tuple[str, str, str | None]] = []
    for span in spans(text):
        preset = PRESET.match(span)
        if preset:
            found.append(("", "preset", f'"{preset["name"]}"'))
            continue
        m = SETTING.match(span)
        if not m:
            continue
        if not m["body"]:
            found.append((m["table"], "", None))  # a table on its own: `[evolver]`
            continue
        for part in re.split(r",\s*(?=[a-z_]+(?:\s*=|$))", m["body"]):
            key, eq, value = part.partition("=")
            found.append((m["table"], key.strip(), value.strip() if eq else None))
    return found


def setting_values(cell: str) -> list[tuple[str, str, str]]:
    return [(t, k, v) for t, k, v in settings(cell) if v is not None and t]


# -- our code and the reference's ----------------------------------------------------------------------------
def our_file(path: str) -> Path | None:
    for base in (ROOT, ROOT / "lse_engine"):
        if (base / path).is_file():
            return base / path
    return None


def mirror_present() -> bool:
    return MIRROR.exists() and shutil.which("git") is not None and bool(reference_paths())


@functools.lru_cache(maxsize=1)
def reference_paths() -> frozenset[str]:
    try:
        out = subprocess.run(["git", "-C", str(MIRROR), "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True,
                             check=True, timeout=60).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(out.splitlines())


@functools.lru_cache(maxsize=256)
def source(path: str) -> str:
    """A file's text: ours, or the reference's from its mirror."""
    if is_reference(path):
        return subprocess.run(["git", "-C", str(MIRROR), "show", f"HEAD:{path}"], capture_output=True, check=True,
                              timeout=60).stdout.decode("utf-8", errors="replace")
    found = our_file(path)
    if found is None:
        raise FileNotFoundError(path)
    return found.read_text(encoding="utf-8")


def _members(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        if isinstance(node, (ast.If, ast.Try)):
            yield from _members([*node.body, *node.orelse, *getattr(node, "finalbody", [])])
        else:
            yield node


def _binding(body: list[ast.stmt], name: str) -> ast.stmt | None:
    for node in _members(body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return node
    return None


def defined(path: str, name: str) -> bool:
    """Whether `name` (dotted: `Class.method`, a YAML key path) is defined in the file at `path`."""
    text = source(path)
    if path.endswith(".py"):
        body: list[ast.stmt] = ast.parse(text).body
        for part in name.split("."):
            node = _binding(body, part)
            if node is None:
                return False
            body = node.body if isinstance(node, ast.ClassDef) else []
        return True
    if path.endswith((".yaml", ".yml")):
        data: Any = yaml.safe_load(text)
        for part in name.split("."):
            if not isinstance(data, dict) or part not in data:
                return False
            data = data[part]
        return True
    return name in text


def constant(path: str, name: str) -> Any:
    """The value of a module-level constant (literals, `+ - * <<`, `.strip()`, other constants of the module)."""
    tree = ast.parse(source(path))
    node = _binding(tree.body, name)
    if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
        raise ValueError(f"{name} is not a constant of {path}")
    return _evaluate(tree, path, node.value)


def _evaluate(tree: ast.Module, path: str, node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(tree, path, node.operand)
    if isinstance(node, ast.BinOp):
        ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
               ast.LShift: lambda a, b: a << b}
        op = ops.get(type(node.op))
        if op is not None:
            return op(_evaluate(tree, path, node.left), _evaluate(tree, path, node.right))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "strip"
            and not node.args):
        return _evaluate(tree, path, node.func.value).strip()
    if isinstance(node, ast.Name):
        return constant(path, node.id)
    raise ValueError(f"cannot evaluate {ast.dump(node)[:80]} in {path}")


# -- the settings -------------------------------------------------------------------------------------------
def section(obj: Any, table: str) -> Any:
    """The settings dataclass of `table` ("model.sampling"), or None."""
    for part in table.split("."):
        obj = getattr(obj, part, None)
        if obj is None or not dataclasses.is_dataclass(obj):
            return None
    return obj


def nested(table: str, key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {key: value}
    for part in reversed(table.split(".")):
        out = {part: out}
    return out


def flat(cfg: Config) -> dict[tuple[str, str], Any]:
    """(table, key) → value for every setting of lse.toml's tables."""
    out: dict[tuple[str, str], Any] = {}

    def walk(obj: Any, table: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{table}.{f.name}")
            else:
                out[(table, f.name)] = value

    for name in SECTIONS:
        walk(getattr(cfg, name), name)
    return out


def preset_keys(preset: dict[str, Any], table: str = "") -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for key, value in preset.items():
        if isinstance(value, dict):
            keys |= preset_keys(value, f"{table}.{key}" if table else key)
        else:
            keys.add((table, key))
    return keys


def toml_value(text: str) -> Any:
    return tomllib.loads(f"v = {text}")["v"]


# -- the checks (each returns what is wrong with a page's text) ---------------------------------------------
def path_problems(text: str, reference: bool) -> list[str]:
    out = []
    for span in dict.fromkeys(spans(text)):
        if not is_path(span):
            continue
        if is_reference(span):
            if reference and span not in reference_paths():
                out.append(f"`{span}` is not a file of the reference")
        elif our_file(span) is None:
            out.append(f"`{span}` is not a file of this repository (nor of lse_engine/)")
    return out


def attribution_problems(text: str, reference: bool) -> list[str]:
    out = []
    for name, path in dict.fromkeys(attributions(text)):
        if is_reference(path) and not reference:
            continue
        if is_reference(path) and path not in reference_paths():
            out.append(f"`{name}` is placed in `{path}`, which the reference does not have")
        elif not is_reference(path) and our_file(path) is None:
            out.append(f"`{name}` is placed in `{path}`, which does not exist")
        elif not defined(path, name):
            out.append(f"`{name}` is not defined in `{path}`")
    return out


def claim_problems(text: str, reference: bool) -> tuple[list[str], int]:
    """What the page's "`A` in `P` = `B` in `Q`" claims get wrong, and how many were checked."""
    out, checked = [], 0
    for m in CLAIM.finditer(text):
        paths = [m["pa"]] + ([m["pb"]] if m["pb"] else [])
        if not reference and any(is_reference(p) for p in paths):
            continue
        try:
            left = constant(m["pa"], m["a"])
            right = constant(m["pb"], m["b"]) if m["pb"] else ast.literal_eval(m["b"])
        except (ValueError, SyntaxError, FileNotFoundError, subprocess.SubprocessError) as exc:
            out.append(f"{m.group(0)}: {exc}")
            continue
        checked += 1
        same = left.strip() == right.strip() if isinstance(left, str) and isinstance(right, str) else left == right
        if same != (m["op"] == "="):
            out.append(f"{m.group(0)} is false: {left!r} vs {right!r}")
    return out, checked


def setting_problems(text: str, config_file: Path) -> list[str]:
    out = []
    defaults = Config()
    for span in spans(text):
        if BARE_SETTING.match(span) and not PRESET.match(span):
            out.append(f"`{span}`: write a setting with its table, `[table] key = value`")
    for table, key, value in dict.fromkeys(settings(text)):
        if table == "":
            if toml_value(value or '""') not in PRESETS:
                out.append(f"`preset = {value}` is not a preset ({', '.join(PRESETS)})")
            continue
        obj = section(defaults, table)
        if obj is None or table.split(".")[0] not in SECTIONS:
            out.append(f"[{table}] is not a table of lse.toml")
            continue
        if not key:
            continue
        names = {f.name for f in dataclasses.fields(obj) if not dataclasses.is_dataclass(getattr(obj, f.name))}
        if key not in names:
            out.append(f"[{table}] {key} is not a setting")
            continue
        if value is None:
            continue
        try:
            load_config(config_file, nested(table, key, toml_value(value)))
        except (LSEError, tomllib.TOMLDecodeError) as exc:
            out.append(f"[{table}] {key} = {value}: {exc}")
    return out


def difference_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """The tables of differences: what | the reference / paper | LSE's default (or LSE, for options such as the
    baselines) | why | the paper's behaviour."""
    return [(h, rows) for h, rows in tables(text)
            if h[:2] == DIFF_COLUMNS[:2] and h[2] in ("LSE's default", "LSE") and h[3:] == DIFF_COLUMNS[3:]]


def default_problems(text: str) -> tuple[list[str], int]:
    """Settings with a value in the column "LSE's default" of a table of differences that are not the default."""
    out, checked = [], 0
    defaults = flat(Config())
    for header, rows in difference_tables(text):
        if "LSE's default" not in header:
            continue
        col = header.index("LSE's default")
        for row in rows:
            for table, key, value in setting_values(row[col] if col < len(row) else ""):
                checked += 1
                actual = defaults.get((table, key))
                if actual != toml_value(value):
                    out.append(f"{row[0]}: LSE's default [{table}] {key} is {actual!r}, not {value}")
    return out, checked


def table_shape_problems(text: str) -> list[str]:
    out = []
    found = difference_tables(text)
    if not found:
        out.append("no table of differences (columns: " + " | ".join(DIFF_COLUMNS) + ")")
    for header, rows in found:
        for row in rows:
            if len(row) != len(header) or not all(row):
                out.append(f"{row[:1]}: a row of differences needs all {len(header)} cells")
                continue
            last = row[-1]
            if not (settings(last) or any("--" in s for s in spans(last)) or re.search(r"\bnone\b", last)):
                out.append(f"{row[0]}: the paper's behaviour needs a setting, a flag or 'none'")
    return out


def preset_table(text: str) -> list[list[str]]:
    for header, rows in tables(text):
        if header and header[0] == "setting" and "LSE's default" in header and '`preset = "paper"`' in header:
            return rows
    return []


def preset_table_problems(text: str, config_file: Path) -> list[str]:
    """The preset table: every key of PAPER once, with the default and the preset's value as they are."""
    rows = preset_table(text)
    if not rows:
        return ['no preset table (columns: setting | LSE\'s default | `preset = "paper"` | …)']
    defaults = flat(Config())
    paper = flat(load_config(config_file, PAPER))
    out, listed = [], []
    for row in rows:
        named = settings(row[0])
        values = [spans(c) for c in row[1:3]]
        if len(named) != 1 or named[0][2] is not None or any(len(v) != 1 for v in values):
            out.append(f"{row[:1]}: a row is `[table] key` | `default` | `preset value`")
            continue
        table, key, _ = named[0]
        listed.append((table, key))
        if (table, key) not in defaults:
            out.append(f"[{table}] {key} is not a setting")
            continue
        default, preset = (toml_value(v[0]) for v in values)
        if defaults[(table, key)] != default:
            out.append(f"[{table}] {key}: the default is {defaults[(table, key)]!r}, the table says {default!r}")
        if paper[(table, key)] != preset:
            out.append(f"[{table}] {key}: the preset sets {paper[(table, key)]!r}, the table says {preset!r}")
    keys = preset_keys(PAPER)
    out += [f"[{t}] {k} is in PAPER but not in the preset table" for t, k in sorted(keys - set(listed))]
    out += [f"[{t}] {k} is in the preset table but not in PAPER" for t, k in sorted(set(listed) - keys)]
    out += [f"[{t}] {k} is listed twice in the preset table" for t, k in sorted(set(listed))
            if listed.count((t, k)) > 1]
    return out


def undocumented_preset_problems(text: str, config_file: Path) -> list[str]:
    """Every key where `preset = "paper"` differs from the defaults, named on the page as `[table] key`."""
    named = {(t, k) for t, k, _ in settings(text)}
    defaults = flat(load_config(config_file))
    paper = flat(load_config(config_file, PAPER))
    return [f"[{t}] {k}: the preset sets {paper[(t, k)]!r} (default {defaults[(t, k)]!r}), the page never names it"
            for t, k in sorted(paper) if paper[(t, k)] != defaults[(t, k)] and (t, k) not in named]


# -- the tests ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty lse.toml, so that no settings file around the test run counts."""
    path = tmp_path_factory.mktemp("fidelity") / "lse.toml"
    path.write_text("")
    return path


def need_mirror() -> None:
    if not mirror_present():
        pytest.skip(f"the reference's mirror is absent ({MIRROR}); CI has none. Set LSE_REFERENCE_MIRROR to check "
                    "the reference's side")


def test_the_page_is_read_as_data() -> None:
    text = doc_text()
    assert len(attributions(text)) >= 60
    assert len(settings(text)) >= 80
    assert len(difference_tables(text)) >= 5
    assert len(preset_table(text)) == len(preset_keys(PAPER))


def test_every_path_of_ours_exists() -> None:
    assert path_problems(doc_text(), reference=False) == []


def test_every_name_placed_in_our_modules_is_defined_there() -> None:
    assert attribution_problems(doc_text(), reference=False) == []


def test_claims_between_our_modules_hold() -> None:
    problems, checked = claim_problems(doc_text(), reference=False)
    assert problems == []
    assert checked >= 3


def test_every_setting_exists_and_its_value_is_valid(config_file: Path) -> None:
    assert setting_problems(doc_text(), config_file) == []


def test_lse_defaults_in_the_tables_of_differences_are_the_defaults() -> None:
    problems, checked = default_problems(doc_text())
    assert problems == []
    assert checked >= 20


def test_every_difference_says_how_to_get_the_papers_behaviour() -> None:
    assert table_shape_problems(doc_text()) == []


def test_the_preset_table_lists_every_key_of_the_preset_as_it_is(config_file: Path) -> None:
    assert preset_table_problems(doc_text(), config_file) == []


def test_every_setting_the_preset_changes_is_documented(config_file: Path) -> None:
    assert undocumented_preset_problems(doc_text(), config_file) == []


def test_every_reference_path_exists_in_the_mirror() -> None:
    need_mirror()
    assert path_problems(doc_text(), reference=True) == []


def test_every_name_placed_in_the_reference_is_defined_there() -> None:
    need_mirror()
    assert attribution_problems(doc_text(), reference=True) == []


def test_claims_about_the_reference_hold() -> None:
    need_mirror()
    problems, checked = claim_problems(doc_text(), reference=True)
    assert problems == []
    assert checked >= 8


def test_the_checks_catch_what_issue_22_found(config_file: Path) -> None:
    """The page once said the importers start from the reference's seed instructions, and missed settings the
    preset changes: each kind of error is caught."""
    text = doc_text()
    said_same = text.replace("`SQL_INSTRUCTIONS` in `importers/write.py` ≠", "`SQL_INSTRUCTIONS` in `importers/write.py` =")
    assert said_same != text and claim_problems(said_same, reference=False)[0]
    misplaced = text + "\nThe importers write `SEED_INSTRUCTIONS` in `importers/write.py`.\n"
    assert attribution_problems(misplaced, reference=False) == [
        "`SEED_INSTRUCTIONS` is not defined in `importers/write.py`"]
    no_race = "\n".join(line for line in text.splitlines() if "`[evolve] race" not in line)
    assert undocumented_preset_problems(no_race, config_file) == [
        "[evolve] race: the preset sets False (default True), the page never names it"]
    assert "[evolve] race is in PAPER but not in the preset table" in preset_table_problems(no_race, config_file)
    stale = text.replace("| `[evolve] rounds` | `10` | `25` |", "| `[evolve] rounds` | `10` | `24` |")
    assert stale != text and preset_table_problems(stale, config_file) == [
        "[evolve] rounds: the preset sets 25, the table says 24"]
    wrong_default = text.replace("`[evolve] rounds = 10`; a round", "`[evolve] rounds = 12`; a round")
    assert wrong_default != text and default_problems(wrong_default)[0]
    unknown = text + "\nSet `[evolve] roundz = 3` or `[sql] timeout_s = -1.0` or `request = \"facts\"`.\n"
    assert setting_problems(unknown, config_file)[:1] == [
        '`request = "facts"`: write a setting with its table, `[table] key = value`']
    assert len(setting_problems(unknown, config_file)) == 3
    gone = text + "\nSee `evolve/evolver.py`.\n"
    assert path_problems(gone, reference=False) == ["`evolve/evolver.py` is not a file of this repository (nor of "
                                                    "lse_engine/)"]
