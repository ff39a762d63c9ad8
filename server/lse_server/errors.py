"""Errors a request answers with: LSP `RequestFailed` and a one-line message, never a traceback."""

from __future__ import annotations

from lsprotocol import types
from pygls.exceptions import JsonRpcException

REQUEST_FAILED = int(types.LSPErrorCodes.RequestFailed)


class RequestFailed(JsonRpcException):
    """A request the server understood but cannot do (not trusted, a run already going, no such run, ...)."""

    CODE = REQUEST_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message=one_line(message), code=REQUEST_FAILED)


def one_line(message: object, limit: int = 500) -> str:
    """The first line of a message, cut to `limit` characters."""
    text = str(message).strip()
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def describe(exc: BaseException) -> str:
    """An exception as a one-line message: user errors as they are, anything else with its type."""
    from lse_engine.errors import LSEError

    if isinstance(exc, (LSEError, JsonRpcException)):
        return one_line(getattr(exc, "message", None) or exc)
    if isinstance(exc, (OSError, ValueError, UnicodeError)):
        return one_line(exc)
    return one_line(f"internal error: {type(exc).__name__}: {exc}")
