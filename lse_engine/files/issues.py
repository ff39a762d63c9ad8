"""Positions and problems found in a user's file: what parsers return and the language server publishes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lse_engine.errors import FileFormatError


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


def first_error(issues: list[Issue], path: str | Path) -> FileFormatError | None:
    """The first error (by position) as an exception, noting how many more there are; None when there is none."""
    errors = sorted((i for i in issues if i.severity == "error"), key=lambda i: (i.span.line, i.span.col))
    if not errors:
        return None
    err = errors[0].to_error(path)
    if len(errors) > 1:
        err.args = (f"{err.args[0]} (and {len(errors) - 1} more)",)
    return err
