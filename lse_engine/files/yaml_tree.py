"""YAML (and JSON, read as YAML) composed into nodes that keep their positions, for parsers that report ranges.

Composing is safe on hostile text: aliases are counted before anything is built from them (a "billion laughs"
file is refused in milliseconds, as are recursive aliases), nesting is bounded (libyaml stops at 1,000 levels,
this module at `MAX_DEPTH`, JSON's decoder before Python's recursion limit), and every YAML or JSON error, a
control character included, becomes an `Issue` with a position.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, cast

import yaml

from lse_engine.files.issues import Issue, Span
from lse_engine.files.text import position

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~7x faster composing
MAX_DEPTH = 64  # levels of nested mappings and lists (a suite needs four)
ALIAS_NODES = 1_000_000  # values aliases may add beyond those written out
ALIAS_CHARS = 16_000_000  # characters aliases may add beyond those written out
_CONSTRUCTORS = threading.local()
_JSON_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def span_of(node: yaml.Node) -> Span:
    return Span(node.start_mark.line, node.start_mark.column, node.end_mark.line, node.end_mark.column)


def value_of(node: yaml.Node) -> Any:
    """The Python value of a composed node (safe types only; None when it has no valid value, such as an
    integer of 5,000 digits or the 30th of February)."""
    if node is None:
        return None
    constructor = getattr(_CONSTRUCTORS, "constructor", None)
    if constructor is None:
        constructor = _CONSTRUCTORS.constructor = yaml.constructor.SafeConstructor()
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError, TypeError):
        return None
    finally:
        constructor.constructed_objects.clear()
        constructor.recursive_objects.clear()


def compose(text: str, path: Path) -> tuple[yaml.Node | None, list[Issue]]:
    """The root node of a suite's YAML or JSON text, or None and the issue that stopped it."""
    if path.suffix == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            sp = Span(exc.lineno - 1, exc.colno - 1, exc.lineno - 1, exc.colno)
            return None, [Issue(f"invalid JSON: {exc.msg}", sp, "json")]
        except RecursionError:
            line, col = position(text, _deepest_bracket(text))
            return None, [Issue(f"JSON nests more than {MAX_DEPTH} levels deep", Span(line, col, line, col + 1),
                                "too-deep")]
        except ValueError as exc:  # an integer of thousands of digits, …
            return None, [Issue(f"invalid JSON: {str(exc).splitlines()[0]}", Span(), "json")]
        text = text.replace("\t", " ")  # YAML forbids tabs where JSON allows them
    return compose_yaml(text)


def compose_yaml(text: str) -> tuple[yaml.Node | None, list[Issue]]:
    """The root node of YAML `text` (None for an empty document), or None and an issue with its position."""
    try:
        root = yaml.compose(text, Loader=LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line, mark.column) if mark else (0, 0)
        msg = f"invalid YAML: {exc.problem or exc}" + (f" ({exc.context})" if exc.context else "")
        return None, [Issue(msg, Span(line, col, line, col + 1), "yaml")]
    except yaml.reader.ReaderError as exc:  # a control character, or a byte that is not UTF-8
        index = exc.position
        if LOADER is not yaml.SafeLoader:  # libyaml counts UTF-8 bytes
            index = len(text.encode("utf-8")[: exc.position].decode("utf-8", errors="ignore"))
        line, col = position(text, index)
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        return None, [Issue(f"invalid YAML: the control character {char} is not allowed",
                            Span(line, col, line, col + 1), "control-character")]
    except yaml.YAMLError as exc:
        return None, [Issue(f"invalid YAML: {str(exc).splitlines()[0]}", Span(), "yaml")]
    except RecursionError:  # the pure-Python composer, without libyaml
        return None, [Issue(f"YAML nests more than {MAX_DEPTH} levels deep", Span(), "too-deep")]
    if root is None or isinstance(root, yaml.ScalarNode):
        return root, []
    problem = _expansion_problem(root, len(text))
    return (None, [problem]) if problem else (root, [])


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return cast("list[yaml.Node]", node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _expansion_problem(root: yaml.Node, written: int) -> Issue | None:
    """An issue when aliases expand the document past the allowances (beyond `written`, the text's length, which
    bounds what is written out), refer to themselves, or it nests too deeply; measured on the composed graph
    (each collection once, scalars inline), before any value is built."""
    sizes: dict[int, tuple[int, int, int]] = {}  # id(collection) -> (values, characters, depth) once expanded
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    scalar = yaml.ScalarNode
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            values, chars, depth = 1, 0, 0
            for child in _children(node):
                if child.__class__ is scalar:
                    values, chars = values + 1, chars + len(child.value)
                else:
                    c_values, c_chars, c_depth = sizes[id(child)]
                    values, chars, depth = values + c_values, chars + c_chars, max(depth, c_depth)
            sizes[key] = (values, chars, depth + 1)
            visiting.discard(key)
            if depth + 1 > MAX_DEPTH:
                return Issue(f"the document nests more than {MAX_DEPTH} levels deep", span_of(node), "too-deep")
            if values > written + ALIAS_NODES or chars > written + ALIAS_CHARS:
                return Issue(f"YAML aliases expand this to {values:,} values and {chars:,} characters, more than "
                             "a suite may hold (an alias bomb?)", span_of(node), "alias-expansion")
            continue
        if key in sizes:
            continue
        if key in visiting:
            return Issue("a YAML alias refers to the value that contains it", span_of(node), "alias-expansion")
        visiting.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node)
                     if child.__class__ is not scalar and id(child) not in sizes)
    return None


def _deepest_bracket(text: str) -> int:
    """The index of the first bracket past `MAX_DEPTH` levels in JSON text (0 when there is none)."""
    depth = 0
    for match in _JSON_BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif token in "]}":
            depth -= 1
    return 0


def mapping_items(node: yaml.MappingNode) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    return [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]
