"""Errors the engine raises; each carries enough to tell the user what to do."""

from __future__ import annotations

import errno


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


def environment_failure(exc: BaseException) -> str | None:
    """One line for an error the user's machine caused (a full disk, a read-only or unwritable folder, a store
    damaged on disk), raised from deep inside a run; None for anything else (a bug: keep its traceback)."""
    text = str(exc).lower()
    code = exc.errno if isinstance(exc, OSError) else None
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
    if code == errno.ENOSPC or "disk is full" in text:
        return f"the disk is full{where}: free some space and run again (committed work is kept)"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly database" in text or "read-only" in text:
        return f"cannot write{where}: {reason}; make the workspace's .lse folder writable"
    if "disk i/o error" in text or "database disk image is malformed" in text or code == errno.EIO:
        return f"the disk failed{where}: {reason}"
    return None
