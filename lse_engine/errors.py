"""Errors the engine raises; each carries enough to tell the user what to do."""

from __future__ import annotations


class LSEError(Exception):
    """Base class for errors shown to users as-is (no traceback)."""


class FileFormatError(LSEError):
    """A user file is malformed; carries file, line and column (1-based), plus an optional code and end."""

    def __init__(
        self,
        path: str,
        message: str,
        line: int = 1,
        column: int = 1,
        code: str = "format",
        end_line: int | None = None,
        end_column: int | None = None,
    ) -> None:
        self.path = str(path)
        self.message = message
        self.line = line
        self.column = column
        self.code = code
        self.end_line = end_line if end_line is not None else line
        self.end_column = end_column if end_column is not None else column
        super().__init__(f"{self.path}:{line}:{column}: {message}")


class DatabaseOpenError(LSEError):
    """A user's database cannot be read: missing, unreadable, not SQLite, truncated or a bad path (one line)."""


class StoreError(LSEError):
    """The run store cannot be opened or written (a read-only or full disk, a bad file), or is busy (one line)."""


class ModelNotFoundError(LSEError):
    """Model weights could not be found; the message says where we looked and how to configure another."""


class BackendError(LSEError):
    """A model backend failed in a way that retrying will not fix."""


class Cancelled(LSEError):
    """Cooperative cancellation was requested."""
