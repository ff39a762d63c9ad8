"""Stand-ins for the few SQLite built-in functions whose single call can outlast any deadline.

SQLite checks for an interrupt between VM steps, never inside a function call. Most built-ins are linear in
their input, which the value limit bounds; a few are not: `replace` and `instr` compare the needle at every
position (O(n·m): a 2.5 MB needle in a 5 MB text takes minutes), two-argument `trim`/`ltrim`/`rtrim` test
each character against every character of the set, and `printf`/`format` repeat a `%c` once per unit of its
precision even after the result has overflowed. These stand-ins give the same results in linear time (or
refuse, for `printf`), and cost nothing to queries that do not call them. LIKE and GLOB stay SQLite's own,
bounded by the pattern-length limit (see `sqlite_exec.LIMITS`).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

_LOCAL = threading.local()
_PRINTF_SPEC = re.compile(r"%([-+ #!0,]*)(\*|\d+)?(?:\.(\*|\d+))?(l{0,2})([a-zA-Z%])")


class GuardError(ValueError):
    """A stand-in refused its arguments; the message reaches the user as the query's error."""


def last_error() -> str | None:
    """The message of the last stand-in that refused, in this thread (SQLite only reports that one raised);
    read once. Every stand-in sets it just before it raises, so it is never a stale one."""
    error = getattr(_LOCAL, "error", None)
    _LOCAL.error = None
    return error


def peek_error() -> str | None:
    """`last_error` without reading it away."""
    return getattr(_LOCAL, "error", None)


def _refuse(message: str) -> GuardError:
    _LOCAL.error = message
    return GuardError(message)


def _real_text(value: float) -> str:
    """A REAL as SQLite renders it as text (`%!.15g`)."""
    if value != value:
        return ""
    if value == 0:
        return "0.0"  # -0.0 too
    if value in (float("inf"), float("-inf")):
        return "Inf" if value > 0 else "-Inf"
    text = f"{value:.15g}"
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + (e + exponent if e else "")


def _text(value: Any) -> str:
    """A value as SQLite's `sqlite3_value_text` sees it (blobs read as UTF-8)."""
    if value.__class__ is str:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float):
        return _real_text(value)
    return str(value)


def _check_length(length: int, limit: int) -> None:
    if length > limit:
        raise _refuse("string or blob too big")


def make_replace(limit: int) -> Callable[[Any, Any, Any], Any]:
    def replace(x: Any, y: Any, z: Any) -> Any:
        if x is None or y is None:
            return None
        y_text = _text(y)
        if not y_text:
            return x  # SQLite returns X itself, with its type
        if z is None:
            return None
        x_text, z_text = _text(x), _text(z)
        if len(z_text) > len(y_text):
            _check_length(len(x_text) + x_text.count(y_text) * (len(z_text) - len(y_text)), limit)
        return x_text.replace(y_text, z_text)

    return replace


def instr(haystack: Any, needle: Any) -> int | None:
    if haystack is None or needle is None:
        return None
    if isinstance(haystack, bytes) and isinstance(needle, bytes):
        return haystack.find(needle) + 1
    return _text(haystack).find(_text(needle)) + 1


def _trimmer(side: str) -> Callable[[Any, Any], str | None]:
    def trim(x: Any, chars: Any) -> str | None:
        if x is None or chars is None:
            return None
        text, charset = _text(x), _text(chars)
        if not charset:
            return text
        return text.strip(charset) if side == "both" else text.lstrip(charset) if side == "left" else \
            text.rstrip(charset)

    return trim


def _as_int(value: Any) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    match = re.match(r"\s*[-+]?\d+", _text(value)) if value is not None else None
    return int(match.group()) if match else 0


def make_printf(limit: int) -> Callable[..., Any]:
    """`printf`/`format`: refuse a `%c` repeated past the value limit, then let SQLite's own printf format."""

    def printf(*args: Any) -> Any:
        if not args or args[0] is None:
            return None
        fmt = _text(args[0])
        rest = list(args[1:])
        for match in _PRINTF_SPEC.finditer(fmt):
            width, precision, kind = match.group(2), match.group(3), match.group(5)
            if kind in "%n":
                continue
            if width == "*" and rest:
                rest.pop(0)
            repeat = (_as_int(rest.pop(0)) if rest else 0) if precision == "*" else int(precision or 0)
            if kind == "c" and repeat > limit:
                raise _refuse(f"printf: %c repeated {repeat:,} times is more than a value may hold")
            if rest:
                rest.pop(0)
        builtin = _builtin(limit)
        marks = ",".join("?" * len(args))
        try:
            return builtin.execute(f"SELECT printf({marks})", args).fetchone()[0]
        except sqlite3.DataError as exc:
            raise _refuse(str(exc)) from exc

    return printf


def _builtin(limit: int) -> sqlite3.Connection:
    """This thread's private in-memory connection, for calling a built-in the user's connection has overridden."""
    conn = getattr(_LOCAL, "builtin", None)
    if conn is None:
        conn = _LOCAL.builtin = sqlite3.connect(":memory:", check_same_thread=False)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)
    return conn


def install(conn: sqlite3.Connection, value_limit: int) -> None:
    """Register the stand-ins on `conn` (they shadow the built-ins of the same name and argument count)."""
    _LOCAL.error = None
    conn.create_function("replace", 3, make_replace(value_limit), deterministic=True)
    conn.create_function("instr", 2, instr, deterministic=True)
    for name, side in (("trim", "both"), ("ltrim", "left"), ("rtrim", "right")):
        conn.create_function(name, 2, _trimmer(side), deterministic=True)
    printf = make_printf(value_limit)
    for name in ("printf", "format"):
        conn.create_function(name, -1, printf, deterministic=True)

