"""Prompt files (`*.prompt.md`): front matter naming a suite, then the instructions being evolved.

This module holds the one rule for where the instructions sit in a prompt file (`instructions_range`,
`replace_instructions`): the CLI, the server's edits, the importers and bench all use it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lse_engine.errors import FileFormatError
from lse_engine.files.atomic import write_text_atomic
from lse_engine.files.issues import Issue, Span
from lse_engine.files.text import (
    MAX_PROMPT_BYTES,
    describe_char,
    first_control,
    position,
    read_user_text,
    shown_path,
)
from lse_engine.files.yaml_tree import compose_yaml, mapping_items, span_of, value_of

PROMPT_KEYS = {"suite", "name", "description"}


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


def parse_prompt(text: str, path: str | Path) -> tuple[PromptFile, list[Issue]]:
    """Split a prompt file into front matter and instructions; check the front matter."""
    path = Path(path)
    issues: list[Issue] = []
    if len(text) > MAX_PROMPT_BYTES:
        issues.append(Issue(f"the prompt file is too large ({len(text):,} characters; at most {MAX_PROMPT_BYTES:,})",
                            Span(), "too-large"))
        text = text[:MAX_PROMPT_BYTES]
    lines = text.split("\n")
    front, body_line, suite_span = _front_matter(lines, issues)
    issues.extend(_text_issues(text, body_line))
    instructions = "\n".join(lines[body_line:]).strip("\n")
    suite_ref = front.get("suite")
    if suite_ref is not None and not isinstance(suite_ref, str):
        issues.append(Issue("`suite` must be a path", suite_span, "type"))
        suite_ref = None
    elif suite_ref is not None and ("\x00" in suite_ref or not suite_ref.strip()):
        issues.append(Issue("`suite` must be a path (without NUL bytes)", suite_span, "type"))
        suite_ref = None
    prompt = PromptFile(path, instructions, suite_ref, front, body_line, text, suite_span)
    if suite_ref is None and not any(i.code == "front-matter" for i in issues):
        issues.append(Issue("no `suite:` in the front matter: add `---\\nsuite: my.suite.yaml\\n---` at the top",
                            Span(0, 0, 0, len(lines[0]) if lines else 0), "missing-suite"))
    elif suite_ref is not None:
        suite_problem, usable = _suite_problem(prompt)
        if suite_problem:
            issues.append(Issue(suite_problem, suite_span, "missing-suite"))
        if not usable:  # a path no system call accepts (too long, …): no suite, rather than one that raises
            prompt.suite_ref = None
    if not instructions.strip():
        issues.append(Issue("the prompt has no instructions after the front matter", Span(body_line, 0, body_line, 0),
                            "empty", "warning"))
    return prompt, issues


def _front_matter(lines: list[str], issues: list[Issue]) -> tuple[dict[str, Any], int, Span]:
    """The front matter's keys, the line the instructions start on, and where `suite:`'s value is; issues found
    are appended (positions in the file)."""
    front: dict[str, Any] = {}
    suite_span = Span()
    if not lines or lines[0].strip() != "---":
        return front, 0, suite_span
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        issues.append(Issue("front matter is not closed by a `---` line", Span(0, 0, 0, 3), "front-matter"))
        return front, 0, suite_span
    node, problems = compose_yaml("\n".join(lines[1:end]))
    for problem in problems:  # positions are in the front matter, which starts on line 1
        sp = problem.span
        message = problem.message.replace("invalid YAML: ", "")
        issues.append(Issue(f"invalid front matter: {message}", Span(sp.line + 1, sp.col, sp.end_line + 1, sp.end_col),
                            "front-matter"))
    if node is not None and not isinstance(node, yaml.MappingNode):
        issues.append(Issue("front matter must be `key: value` lines", Span(1, 0, end, 0), "front-matter"))
    elif node is not None:
        for k, v in mapping_items(node):
            ks = span_of(k)
            if k.value not in PROMPT_KEYS:
                issues.append(Issue(f"unknown front matter key {k.value!r}",
                                    Span(ks.line + 1, ks.col, ks.end_line + 1, ks.end_col), "unknown-key", "warning"))
            front[k.value] = value_of(v)
            if k.value == "suite":
                vs = span_of(v)
                suite_span = Span(vs.line + 1, vs.col, vs.end_line + 1, vs.end_col)
    return front, end + 1, suite_span


def _suite_problem(prompt: PromptFile) -> tuple[str | None, bool]:
    """Why the suite a prompt names cannot be read, and whether its path is usable at all (never raises)."""
    try:
        suite = prompt.suite_path
        if suite is not None and not suite.is_file():
            return f"suite not found: {shown_path(suite)}", True
    except (OSError, ValueError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"cannot read the suite {shown_path(prompt.suite_ref or '')}: {reason}", False
    return None, True


def _text_issues(text: str, body_line: int) -> list[Issue]:
    """A NUL byte (an error: not a text file) or another control character (a warning) in the file."""
    if "\x00" in text:
        line, col = position(text, text.index("\x00"))
        return [Issue("not a text file: it contains NUL bytes", Span(line, col, line, col + 1), "binary")]
    body_start = sum(len(line) + 1 for line in text.split("\n", body_line)[:body_line])
    found = first_control(text[body_start:])  # in the front matter, YAML reports it as an error
    if found is None:
        return []
    line, col = position(text, body_start + found[0])
    return [Issue(f"the control character {describe_char(found[1])} in the instructions (invisible in most "
                  "editors)", Span(line, col, line, col + 1), "control-character", "warning")]


def load_prompt(path: str | Path, text: str | None = None) -> PromptFile:
    """Load a prompt file (or parse `text`, an editor's unsaved buffer, as if it were that file); raise
    FileFormatError when it has no usable suite reference."""
    path = Path(path)
    if text is None:
        try:
            text = read_user_text(path, "prompt file", MAX_PROMPT_BYTES)
        except FileNotFoundError as exc:
            raise FileFormatError(shown_path(path), "prompt file not found", code="missing-prompt") from exc
    prompt, issues = parse_prompt(text, path)
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        raise errors[0].to_error(path)
    return prompt


def instructions_range(prompt: PromptFile) -> Span:
    """Where the instructions sit: from the line after the front matter to the end of the file (0-based)."""
    lines = prompt.text.split("\n")
    return Span(prompt.body_line, 0, len(lines) - 1, len(lines[-1]))


def replace_instructions(prompt: PromptFile, instructions: str) -> str:
    """The prompt file's text with its instructions replaced and the front matter kept byte for byte."""
    lines = prompt.text.split("\n")
    head = "\n".join(lines[: prompt.body_line])
    body = instructions.strip("\n") + "\n"
    return (head + "\n" + body) if prompt.body_line else body


def prompt_text(suite_ref: str, instructions: str) -> str:
    """The text of a new prompt file for a suite (`suite_ref` relative to the prompt file)."""
    ref = suite_ref if all(c not in suite_ref for c in ":#'\"{}[]&*!|>%@`") else json.dumps(suite_ref)
    return f"---\nsuite: {ref}\n---\n{instructions.strip()}\n"


def write_new_prompt(path: Path, suite_file: Path, instructions: str, overwrite: bool = False) -> bool:
    """Write a prompt file for `suite_file`. An existing file is kept unless `overwrite` (it may hold evolved
    work); returns whether the file was written."""
    text = prompt_text(Path(os.path.relpath(suite_file.resolve(), path.parent.resolve())).as_posix(), instructions)
    if path.exists() and (not overwrite or path.read_text(encoding="utf-8") == text):
        return False
    write_text_atomic(path, text)
    return True


def write_instructions(prompt: PromptFile, instructions: str) -> None:
    """Atomically replace the instructions on disk; refuse when the file changed since it was read."""
    current = prompt.path.read_text(encoding="utf-8")
    if hashlib.sha256(current.encode()).hexdigest() != prompt.sha:
        raise FileFormatError(str(prompt.path), "the file changed on disk since the run started; not overwriting it",
                              code="changed")
    write_text_atomic(prompt.path, replace_instructions(prompt, instructions), os.stat(prompt.path).st_mode & 0o777)
