"""Suites (`*.suite.yaml|json`) and prompt files (`*.prompt.md`): parse, validate with positions, split.

Parsing never raises on bad input: `parse_suite` / `parse_prompt` return what they could read plus a
list of `Issue`s with 0-based ranges (the language server turns them into diagnostics).
`load_suite` / `load_prompt` raise the first error as a `FileFormatError` (1-based file:line:col).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lse_engine.errors import FileFormatError
from lse_engine.tasks.base import Problem

TASK_KINDS = ("text-to-sql", "multiple-choice")
SUITE_KEYS = {"task", "database", "split", "problems", "name", "description"}
PROBLEM_KEYS = {"id", "question", "evidence", "gold", "options", "split", "difficulty"}
SPLIT_KEYS = {"dev", "test", "seed"}
SPLITS = ("train", "dev", "test")
PROMPT_KEYS = {"suite", "name", "description"}


@dataclass(frozen=True)
class Span:
    """A 0-based range in a file (LSP style)."""

    line: int = 0
    col: int = 0
    end_line: int = 0
    end_col: int = 0


@dataclass
class Issue:
    """A problem found in a user file, at a range, with a stable code."""

    message: str
    span: Span
    code: str
    severity: str = "error"  # error | warning | info

    def to_error(self, path: str | Path) -> FileFormatError:
        s = self.span
        return FileFormatError(str(path), self.message, s.line + 1, s.col + 1, self.code, s.end_line + 1, s.end_col + 1)


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
        """Deterministic, seeded split; explicit per-problem `split:` wins. Stable when problems are added."""
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

        ordered = sorted(free, key=rank)
        n_dev = round(len(ordered) * self.dev_fraction)
        n_test = round(len(ordered) * self.test_fraction)
        chosen = {id(p): "dev" for p in ordered[:n_dev]}
        chosen.update({id(p): "test" for p in ordered[n_dev : n_dev + n_test]})
        for p in free:  # keep file order inside each split
            out[chosen.get(id(p), "train")].append(p)
        return out

    def by_id(self) -> dict[str, Problem]:
        return {p.id: p for p in self.problems}


@dataclass
class PromptFile:
    path: Path
    instructions: str
    suite_ref: str | None
    front_matter: dict[str, Any]
    body_line: int  # 0-based line where the instructions start
    text: str
    suite_span: Span = field(default_factory=Span)

    @property
    def suite_path(self) -> Path | None:
        return (self.path.parent / self.suite_ref).resolve() if self.suite_ref else None

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def _span(node: yaml.Node) -> Span:
    return Span(node.start_mark.line, node.start_mark.column, node.end_mark.line, node.end_mark.column)


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~7x faster composing


def _scalar(node: yaml.Node) -> Any:
    """The Python value of a composed node (safe types only)."""
    if node is None:
        return None
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except yaml.YAMLError:
        return None


def _compose(text: str, path: Path) -> tuple[yaml.Node | None, list[Issue]]:
    if path.suffix == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            sp = Span(exc.lineno - 1, exc.colno - 1, exc.lineno - 1, exc.colno)
            return None, [Issue(f"invalid JSON: {exc.msg}", sp, "json")]
        text = text.replace("\t", " ")  # YAML forbids tabs where JSON allows them
    try:
        return yaml.compose(text, Loader=_LOADER), []
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line, mark.column) if mark else (0, 0)
        msg = f"invalid YAML: {exc.problem or exc}" + (f" ({exc.context})" if exc.context else "")
        return None, [Issue(msg, Span(line, col, line, col + 1), "yaml")]
    except yaml.YAMLError as exc:
        return None, [Issue(f"invalid YAML: {exc}", Span(), "yaml")]


def _mapping_items(node: yaml.MappingNode) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    return [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]


def parse_suite(text: str, path: str | Path) -> tuple[Suite | None, list[Issue]]:
    """Read a suite from `text`; return it (None when unusable) and every issue found, with ranges."""
    path = Path(path)
    if "\x00" in text:
        return None, [Issue("not a text file (contains NUL bytes)", Span(), "binary")]
    root, issues = _compose(text, path)
    if root is None and not issues:
        return None, [Issue("empty suite: expected `task`, `database` and `problems`", Span(), "empty")]
    if root is None:
        return None, issues
    if not isinstance(root, yaml.MappingNode):
        return None, [Issue("a suite must be a mapping with `task` and `problems`", _span(root), "type")]
    top: dict[str, tuple[yaml.ScalarNode, yaml.Node]] = {}
    for k, v in _mapping_items(root):
        if k.value not in SUITE_KEYS:
            issues.append(Issue(f"unknown key {k.value!r}; expected one of {', '.join(sorted(SUITE_KEYS))}",
                                _span(k), "unknown-key"))
        top[k.value] = (k, v)

    task = "text-to-sql"
    if "task" in top:
        task_val = _scalar(top["task"][1])
        if task_val not in TASK_KINDS:
            issues.append(Issue(f"unknown task {task_val!r}; expected {' or '.join(TASK_KINDS)}",
                                _span(top["task"][1]), "task"))
        else:
            task = task_val
    suite = Suite(path=path, task=task, problems=[], content_hash=hashlib.sha256(text.encode()).hexdigest())

    if task == "text-to-sql":
        if "database" not in top:
            issues.append(Issue("missing `database`: the SQLite file the questions are about", Span(), "missing-key"))
        else:
            dnode = top["database"][1]
            suite.database_span = _span(dnode)
            dval = _scalar(dnode)
            if not isinstance(dval, str) or not dval:
                issues.append(Issue("`database` must be a path", suite.database_span, "type"))
            else:
                suite.database = (path.parent / os.path.expanduser(dval)).resolve()
                if not suite.database.is_file():
                    issues.append(Issue(f"database not found: {suite.database}", suite.database_span, "missing-database"))
                    suite.database = None if not suite.database.exists() else suite.database
                else:
                    with open(suite.database, "rb") as fh:
                        if fh.read(16) != b"SQLite format 3\x00":
                            issues.append(Issue(f"not an SQLite database: {suite.database}", suite.database_span,
                                                "not-sqlite"))

    if "split" in top:
        snode = top["split"][1]
        if not isinstance(snode, yaml.MappingNode):
            issues.append(Issue("`split` must be a mapping like {dev: 0.3, seed: 0}", _span(snode), "type"))
        else:
            for k, v in _mapping_items(snode):
                val = _scalar(v)
                if k.value not in SPLIT_KEYS:
                    issues.append(Issue(f"unknown split key {k.value!r}; expected dev, test, seed", _span(k), "unknown-key"))
                elif k.value == "seed":
                    if isinstance(val, int) and not isinstance(val, bool):
                        suite.seed = val
                    else:
                        issues.append(Issue("split seed must be an integer", _span(v), "type"))
                elif isinstance(val, (int, float)) and not isinstance(val, bool) and 0 <= val < 1:
                    setattr(suite, f"{k.value}_fraction", float(val))
                else:
                    issues.append(Issue(f"split {k.value} must be a fraction in [0, 1)", _span(v), "type"))
            if suite.dev_fraction + suite.test_fraction >= 1:
                issues.append(Issue("dev + test fractions leave no train problems", _span(snode), "split"))

    if "problems" not in top:
        issues.append(Issue("missing `problems`: a list of {id, question, gold}", Span(), "missing-key"))
        return suite, issues
    pnode = top["problems"][1]
    if not isinstance(pnode, yaml.SequenceNode):
        issues.append(Issue("`problems` must be a list", _span(pnode), "type"))
        return suite, issues
    seen: dict[str, Span] = {}
    for item in pnode.value:
        problem = _parse_problem(item, task, issues)
        if problem is None:
            continue
        spans = {k.value: _span(v) for k, v in _mapping_items(item)}
        spans["_item"] = _span(item)
        if problem.id in seen:
            issues.append(Issue(f"duplicate id {problem.id!r} (first at line {seen[problem.id].line + 1})",
                                spans.get("id", _span(item)), "duplicate-id"))
            continue
        seen[problem.id] = spans.get("id", _span(item))
        suite.spans[problem.id] = spans
        suite.problems.append(problem)
    if not suite.problems and not any(i.severity == "error" for i in issues):
        issues.append(Issue("the suite has no problems", _span(pnode), "empty"))
    return suite, issues


def _parse_problem(item: yaml.Node, task: str, issues: list[Issue]) -> Problem | None:
    if not isinstance(item, yaml.MappingNode):
        issues.append(Issue("each problem must be a mapping with id, question and gold", _span(item), "type"))
        return None
    values: dict[str, Any] = {}
    for k, v in _mapping_items(item):
        if k.value not in PROBLEM_KEYS:
            issues.append(Issue(f"unknown problem key {k.value!r}; expected one of {', '.join(sorted(PROBLEM_KEYS))}",
                                _span(k), "unknown-key"))
            continue
        values[k.value] = (_scalar(v), v)
    ok = True
    for key in ("id", "question", "gold"):
        if key not in values or values[key][0] in (None, ""):
            issues.append(Issue(f"problem is missing `{key}`", _span(item), "missing-key"))
            ok = False
    if not ok:
        return None
    options = None
    if task == "multiple-choice":
        opts = values.get("options", (None, item))
        if not isinstance(opts[0], list) or len(opts[0]) < 2:
            issues.append(Issue("a multiple-choice problem needs `options`: a list of 2+ answers", _span(opts[1]), "options"))
            return None
        options = [str(o) for o in opts[0]]
        gold = str(values["gold"][0]).strip().upper()
        if len(gold) != 1 or not ("A" <= gold <= chr(ord("A") + len(options) - 1)):
            issues.append(Issue(f"gold must be a letter A-{chr(ord('A') + len(options) - 1)}", _span(values["gold"][1]), "gold"))
            return None
        values["gold"] = (gold, values["gold"][1])
    extra: dict[str, Any] = {}
    if "split" in values:
        sval = values["split"][0]
        if sval not in SPLITS:
            issues.append(Issue("problem split must be train, dev or test", _span(values["split"][1]), "type"))
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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FileFormatError(str(path), "suite file not found", code="missing-suite") from exc
    except UnicodeDecodeError as exc:
        raise FileFormatError(str(path), "suite is not UTF-8 text", code="binary") from exc
    suite, issues = parse_suite(text, path)
    errors = sorted((i for i in issues if i.severity == "error"), key=lambda i: (i.span.line, i.span.col))
    if errors:
        err = errors[0].to_error(path)
        if len(errors) > 1:
            err.args = (f"{err.args[0]} (and {len(errors) - 1} more)",)
        raise err
    assert suite is not None
    return suite


def parse_prompt(text: str, path: str | Path) -> tuple[PromptFile, list[Issue]]:
    """Split a prompt file into front matter and instructions; check the front matter."""
    path = Path(path)
    issues: list[Issue] = []
    lines = text.split("\n")
    front: dict[str, Any] = {}
    body_line = 0
    suite_span = Span()
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is None:
            issues.append(Issue("front matter is not closed by a `---` line", Span(0, 0, 0, 3), "front-matter"))
        else:
            fm_text = "\n".join(lines[1:end])
            try:
                node = yaml.compose(fm_text, Loader=_LOADER)
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark
                ln = (mark.line + 1) if mark else 1
                issues.append(Issue(f"invalid front matter: {exc.problem}", Span(ln, 0, ln, len(lines[ln]) if ln < len(lines) else 0),
                                    "front-matter"))
                node = None
            if node is not None and not isinstance(node, yaml.MappingNode):
                issues.append(Issue("front matter must be `key: value` lines", Span(1, 0, end, 0), "front-matter"))
            elif node is not None:
                for k, v in _mapping_items(node):
                    ks = _span(k)
                    ks = Span(ks.line + 1, ks.col, ks.end_line + 1, ks.end_col)
                    if k.value not in PROMPT_KEYS:
                        issues.append(Issue(f"unknown front matter key {k.value!r}", ks, "unknown-key", "warning"))
                    front[k.value] = _scalar(v)
                    if k.value == "suite":
                        vs = _span(v)
                        suite_span = Span(vs.line + 1, vs.col, vs.end_line + 1, vs.end_col)
            body_line = end + 1
    instructions = "\n".join(lines[body_line:]).strip("\n")
    suite_ref = front.get("suite")
    if suite_ref is not None and not isinstance(suite_ref, str):
        issues.append(Issue("`suite` must be a path", suite_span, "type"))
        suite_ref = None
    prompt = PromptFile(path, instructions, suite_ref, front, body_line, text, suite_span)
    if suite_ref is None and not any(i.code == "front-matter" for i in issues):
        issues.append(Issue("no `suite:` in the front matter: add `---\\nsuite: my.suite.yaml\\n---` at the top",
                            Span(0, 0, 0, len(lines[0]) if lines else 0), "missing-suite"))
    elif suite_ref is not None and prompt.suite_path and not prompt.suite_path.is_file():
        issues.append(Issue(f"suite not found: {prompt.suite_path}", suite_span, "missing-suite"))
    if not instructions.strip():
        issues.append(Issue("the prompt has no instructions after the front matter", Span(body_line, 0, body_line, 0),
                            "empty", "warning"))
    return prompt, issues


def load_prompt(path: str | Path) -> PromptFile:
    """Load a prompt file; raise FileFormatError when it has no usable suite reference."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FileFormatError(str(path), "prompt file not found", code="missing-prompt") from exc
    prompt, issues = parse_prompt(text, path)
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        raise errors[0].to_error(path)
    return prompt


def render_prompt(prompt: PromptFile, instructions: str) -> str:
    """The prompt file's text with its instructions replaced and the front matter kept byte for byte."""
    lines = prompt.text.split("\n")
    head = "\n".join(lines[: prompt.body_line])
    body = instructions.strip("\n") + "\n"
    return (head + "\n" + body) if prompt.body_line else body


def write_instructions(prompt: PromptFile, instructions: str) -> None:
    """Atomically replace the instructions on disk; refuse when the file changed since it was read."""
    current = prompt.path.read_text(encoding="utf-8")
    if hashlib.sha256(current.encode()).hexdigest() != prompt.sha:
        raise FileFormatError(str(prompt.path), "the file changed on disk since the run started; not overwriting it",
                              code="changed")
    new_text = render_prompt(prompt, instructions)
    fd, tmp = tempfile.mkstemp(prefix=".lse-", dir=str(prompt.path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        os.chmod(tmp, os.stat(prompt.path).st_mode & 0o777)
        os.replace(tmp, prompt.path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
