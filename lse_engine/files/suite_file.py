"""Suites (`*.suite.yaml|json`): questions with gold answers against one environment. Parse with positions,
validate, split, load and write: everything about the file format lives here.

`parse_suite` never raises on bad input: it returns what it could read plus a list of `Issue`s with 0-based
ranges (the language server turns them into diagnostics). `load_suite` raises the first error as a
`FileFormatError` (1-based file:line:col).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lse_engine.errors import FileFormatError
from lse_engine.files.atomic import write_text_atomic
from lse_engine.files.issues import Issue, Span, first_error
from lse_engine.files.text import MAX_SUITE_BYTES, position, read_user_text, shown_path
from lse_engine.files.yaml_tree import compose, mapping_items, span_of, value_of
from lse_engine.kinds import SPLITS as SUITE_SPLITS
from lse_engine.kinds import TASK_KINDS as KINDS_OF_TASK
from lse_engine.tasks.base import Problem

TASK_KINDS = KINDS_OF_TASK
SUITE_KEYS = {"task", "database", "split", "problems", "name", "description"}
PROBLEM_KEYS = {"id", "question", "evidence", "gold", "options", "split", "difficulty"}
SPLIT_KEYS = {"dev", "test", "seed"}
SPLITS = SUITE_SPLITS
DEFAULT_SPLIT: dict[str, Any] = {"dev": 0.3, "seed": 0}
_PROBLEM_ORDER = ("id", "question", "evidence", "options", "gold", "difficulty", "split")

@dataclass
class Suite:
    path: Path
    task: str
    problems: list[Problem]
    database: Path | None = None
    dev_fraction: float = 0.3
    test_fraction: float = 0.0
    seed: int = 0
    spans: dict[str, dict[str, Span]] = field(default_factory=dict)  # problem id -> field -> value span
    database_span: Span = field(default_factory=Span)
    content_hash: str = ""

    def split(self) -> dict[str, list[Problem]]:
        """Deterministic, seeded split; explicit per-problem `split:` wins. Stable when problems are added.

        Text-to-SQL problems with the same gold query (up to case and spacing) go to the same split: Spider asks
        most of its questions twice in other words, and a paraphrase of a test question in train would let an
        edit that copies train's answers score on test without generalising. A group takes the lowest rank of its
        problems, so a suite without repeated gold queries splits exactly as one problem at a time."""
        out: dict[str, list[Problem]] = {s: [] for s in SPLITS}
        free = []
        for p in self.problems:
            explicit = p.extra.get("split")
            if explicit in SPLITS:
                out[explicit].append(p)
            else:
                free.append(p)

        def rank(p: Problem) -> str:
            return hashlib.sha256(f"{self.seed}:{p.id}".encode()).hexdigest()

        groups: dict[str, list[Problem]] = {}
        for p in free:
            key = " ".join(p.gold.lower().split()) if self.task == "text-to-sql" else f"id:{p.id}"
            groups.setdefault(key, []).append(p)
        ordered = sorted(groups.values(), key=lambda g: min(rank(p) for p in g))
        n_dev = round(len(free) * self.dev_fraction)
        n_test = round(len(free) * self.test_fraction)
        chosen: dict[int, str] = {}
        counts = {"dev": 0, "test": 0}
        for group in ordered:  # dev, then test, each up to its share of problems; the rest is train
            name = "dev" if counts["dev"] < n_dev else "test" if counts["test"] < n_test else "train"
            if name != "train":
                counts[name] += len(group)
                chosen.update({id(p): name for p in group})
        for p in free:  # keep file order inside each split
            out[chosen.get(id(p), "train")].append(p)
        return out

    def by_id(self) -> dict[str, Problem]:
        return {p.id: p for p in self.problems}


def parse_suite(text: str, path: str | Path) -> tuple[Suite | None, list[Issue]]:
    """Read a suite from `text`; return it (None when unusable) and every issue found, with ranges."""
    path = Path(path)
    refused = _unreadable(text)
    if refused:
        return None, refused
    root, issues = compose(text, path)
    if root is None:
        return None, issues or [Issue("empty suite: expected `task`, `database` and `problems`", Span(), "empty")]
    if not isinstance(root, yaml.MappingNode):
        return None, [Issue("a suite must be a mapping with `task` and `problems`", span_of(root), "type")]
    top: dict[str, tuple[yaml.ScalarNode, yaml.Node]] = {}
    for k, v in mapping_items(root):
        if k.value not in SUITE_KEYS:
            issues.append(Issue(f"unknown key {k.value!r}; expected one of {', '.join(sorted(SUITE_KEYS))}",
                                span_of(k), "unknown-key"))
        top[k.value] = (k, v)
    task = _task(top, issues)
    suite = Suite(path=path, task=task, problems=[], content_hash=hashlib.sha256(text.encode()).hexdigest())
    if task == "text-to-sql":
        _database(suite, top, issues)
    if "split" in top:
        _split(suite, top["split"][1], issues)
    if "problems" not in top:
        issues.append(Issue("missing `problems`: a list of {id, question, gold}", Span(), "missing-key"))
        return suite, issues
    _problems(suite, top["problems"][1], issues)
    return suite, issues


def _unreadable(text: str) -> list[Issue]:
    """Why a text cannot be a suite at all (too large, binary), else []."""
    if len(text) > MAX_SUITE_BYTES:
        return [Issue(f"the suite is too large ({len(text):,} characters; at most {MAX_SUITE_BYTES:,})", Span(),
                      "too-large")]
    if "\x00" in text:
        line, col = position(text, text.index("\x00"))
        return [Issue("not a text file (contains NUL bytes)", Span(line, col, line, col + 1), "binary")]
    return []


def _task(top: dict[str, tuple[yaml.ScalarNode, yaml.Node]], issues: list[Issue]) -> str:
    if "task" not in top:
        return "text-to-sql"
    task = value_of(top["task"][1])
    if task not in TASK_KINDS:
        issues.append(Issue(f"unknown task {task!r}; expected {' or '.join(TASK_KINDS)}", span_of(top["task"][1]),
                            "task"))
        return "text-to-sql"
    return str(task)


def _database(suite: Suite, top: dict[str, tuple[yaml.ScalarNode, yaml.Node]], issues: list[Issue]) -> None:
    if "database" not in top:
        issues.append(Issue("missing `database`: the SQLite file the questions are about", Span(), "missing-key"))
        return
    dnode = top["database"][1]
    suite.database_span = span_of(dnode)
    dval = value_of(dnode)
    if not isinstance(dval, str) or not dval:
        issues.append(Issue("`database` must be a path", suite.database_span, "type"))
        return
    suite.database, db_problem = _database_at(suite.path.parent, dval)
    if db_problem:
        issues.append(Issue(db_problem[0], suite.database_span, db_problem[1]))


def _split(suite: Suite, snode: yaml.Node, issues: list[Issue]) -> None:
    if not isinstance(snode, yaml.MappingNode):
        issues.append(Issue("`split` must be a mapping like {dev: 0.3, seed: 0}", span_of(snode), "type"))
        return
    for k, v in mapping_items(snode):
        val = value_of(v)
        if k.value not in SPLIT_KEYS:
            issues.append(Issue(f"unknown split key {k.value!r}; expected dev, test, seed", span_of(k), "unknown-key"))
        elif k.value == "seed":
            if isinstance(val, int) and not isinstance(val, bool):
                suite.seed = val
            else:
                issues.append(Issue("split seed must be an integer", span_of(v), "type"))
        elif isinstance(val, (int, float)) and not isinstance(val, bool) and 0 <= val < 1:
            setattr(suite, f"{k.value}_fraction", float(val))
        else:
            issues.append(Issue(f"split {k.value} must be a fraction in [0, 1)", span_of(v), "type"))
    if suite.dev_fraction + suite.test_fraction >= 1:
        issues.append(Issue("dev + test fractions leave no train problems", span_of(snode), "split"))


def _problems(suite: Suite, pnode: yaml.Node, issues: list[Issue]) -> None:
    if not isinstance(pnode, yaml.SequenceNode):
        issues.append(Issue("`problems` must be a list", span_of(pnode), "type"))
        return
    seen: dict[str, Span] = {}
    for item in pnode.value:
        problem = _parse_problem(item, suite.task, issues)
        if problem is None:
            continue
        spans = {k.value: span_of(v) for k, v in mapping_items(item)}
        spans["_item"] = span_of(item)
        if problem.id in seen:
            issues.append(Issue(f"duplicate id {problem.id!r} (first at line {seen[problem.id].line + 1})",
                                spans.get("id", span_of(item)), "duplicate-id"))
            continue
        seen[problem.id] = spans.get("id", span_of(item))
        suite.spans[problem.id] = spans
        suite.problems.append(problem)
    if not suite.problems and not any(i.severity == "error" for i in issues):
        issues.append(Issue("the suite has no problems", span_of(pnode), "empty"))


def _database_at(folder: Path, ref: str) -> tuple[Path | None, tuple[str, str] | None]:
    """The database a suite names (relative to its folder) and what is wrong with it: (message, code) or None.

    Never raises: a NUL byte or an over-long name in the path, or an unreadable file, is a problem like any."""
    if "\x00" in ref:
        return None, ("the database path contains a NUL byte", "bad-path")
    try:
        db = (folder / os.path.expanduser(ref)).resolve()
        if not db.is_file():
            return (db if db.exists() else None), (f"database not found: {shown_path(db)}", "missing-database")
        with open(db, "rb") as fh:
            header = fh.read(16)
    except (OSError, ValueError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, (f"cannot open the database {shown_path(folder / ref)}: {reason}", "bad-path")
    if header != b"SQLite format 3\x00":
        return db, (f"not an SQLite database: {shown_path(db)}", "not-sqlite")
    return db, None


def _parse_problem(item: yaml.Node, task: str, issues: list[Issue]) -> Problem | None:
    if not isinstance(item, yaml.MappingNode):
        issues.append(Issue("each problem must be a mapping with id, question and gold", span_of(item), "type"))
        return None
    values: dict[str, Any] = {}
    for k, v in mapping_items(item):
        if k.value not in PROBLEM_KEYS:
            issues.append(Issue(f"unknown problem key {k.value!r}; expected one of {', '.join(sorted(PROBLEM_KEYS))}",
                                span_of(k), "unknown-key"))
            continue
        values[k.value] = (value_of(v), v)
    ok = True
    for key in ("id", "question", "gold"):
        if key not in values or values[key][0] in (None, ""):
            issues.append(Issue(f"problem is missing `{key}`", span_of(item), "missing-key"))
            ok = False
    if not ok:
        return None
    options = None
    if task == "multiple-choice":
        opts = values.get("options", (None, item))
        if not isinstance(opts[0], list) or len(opts[0]) < 2:
            issues.append(Issue("a multiple-choice problem needs `options`: a list of 2+ answers", span_of(opts[1]),
                                "options"))
            return None
        options = [str(o) for o in opts[0]]
        gold = str(values["gold"][0]).strip().upper()
        if len(gold) != 1 or not ("A" <= gold <= chr(ord("A") + len(options) - 1)):
            last = chr(ord("A") + len(options) - 1)
            issues.append(Issue(f"gold must be a letter A-{last}", span_of(values["gold"][1]), "gold"))
            return None
        values["gold"] = (gold, values["gold"][1])
    extra: dict[str, Any] = {}
    if "split" in values:
        sval = values["split"][0]
        if sval not in SPLITS:
            issues.append(Issue("problem split must be train, dev or test", span_of(values["split"][1]), "type"))
        else:
            extra["split"] = sval
    if "difficulty" in values:
        extra["difficulty"] = values["difficulty"][0]
    evidence = values.get("evidence", (None,))[0]
    return Problem(
        id=str(values["id"][0]),
        question=str(values["question"][0]),
        gold=str(values["gold"][0]).strip(),
        evidence=str(evidence) if evidence not in (None, "") else None,
        options=options,
        line=item.start_mark.line + 1,
        extra=extra,
    )


def load_suite(path: str | Path) -> Suite:
    """Load and validate a suite file; raise FileFormatError (file:line:col) on the first error."""
    path = Path(path)
    try:
        text = read_user_text(path, "suite", MAX_SUITE_BYTES)
    except FileNotFoundError as exc:
        raise FileFormatError(shown_path(path), "suite file not found", code="missing-suite") from exc
    suite, issues = parse_suite(text, path)
    err = first_error(issues, path)
    if err is not None:
        raise err
    assert suite is not None
    return suite


# -- writing ------------------------------------------------------------------------------------------
class _SuiteDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Safe YAML in block style; multi-line strings as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_SuiteDumper.add_representer(str, _represent_str)


def _ordered(problem: dict[str, Any]) -> dict[str, Any]:
    out = {k: problem[k] for k in _PROBLEM_ORDER if problem.get(k) not in (None, "")}
    out.update((k, v) for k, v in problem.items() if k not in out and v not in (None, ""))
    return out


def suite_text(task: str, problems: Iterable[dict[str, Any]], database: str | None = None,
               split: dict[str, Any] | None = None, comment: str = "") -> str:
    """The YAML text of a suite: keys in the order task, database, split, problems."""
    doc: dict[str, Any] = {"task": task}
    if database is not None:
        doc["database"] = database
    doc["split"] = dict(split or DEFAULT_SPLIT)
    doc["problems"] = [_ordered(p) for p in problems]
    body = yaml.dump(doc, Dumper=_SuiteDumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                     width=1_000_000)
    head = "".join(f"# {line}\n" if line else "#\n" for line in comment.splitlines()) if comment else ""
    return head + body


def write_suite(path: Path, task: str, problems: list[dict[str, Any]], database: str | None = None,
                split: dict[str, Any] | None = None, comment: str = "") -> Path:
    """Write a suite file (replacing an older import) and return its path."""
    write_text_atomic(path, suite_text(task, problems, database, split, comment))
    return path
