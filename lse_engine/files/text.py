"""Reading a user's text file safely: a size limit, UTF-8 with the position of the first bad byte, no binary.

Every user file (prompt files, suites, settings) comes through `read_user_text`, so a file that is too large,
not UTF-8, or binary gives one line with a position instead of a `UnicodeDecodeError` or a stalled parse.
"""

from __future__ import annotations

import re
from pathlib import Path

from lse_engine.errors import FileFormatError

MAX_SUITE_BYTES = 16 << 20  # ~60,000 problems; parsing takes ~3 s and ~100 MB per 5 MB
MAX_PROMPT_BYTES = 1 << 20
MAX_SETTINGS_BYTES = 1 << 20
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls but tab, LF and CR; and DEL


def position(text: str, index: int) -> tuple[int, int]:
    """The 0-based (line, column) of character `index` in `text`."""
    line = text.count("\n", 0, index)
    return line, index - (text.rfind("\n", 0, index) + 1)


def first_control(text: str) -> tuple[int, str] | None:
    """The index and the character of the first control character (not tab, LF or CR), if any."""
    found = _CONTROL.search(text)
    return (found.start(), found.group()) if found else None


def describe_char(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def shown_path(path: str | Path) -> str:
    """A path as it can be printed on one line: NUL bytes escaped, very long names shortened."""
    text = str(path).replace("\x00", "\\0")
    return text if len(text) <= 200 else text[:120] + f"…({len(text)} characters)"


def read_user_text(path: str | Path, what: str, limit: int) -> str:
    """The UTF-8 text of `path` (a leading BOM dropped). FileNotFoundError passes through, for the caller's
    own message; any other problem is a FileFormatError with a position where there is one."""
    path = Path(path)
    shown = shown_path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise
    except IsADirectoryError as exc:
        raise FileFormatError(shown, f"the {what} is a directory, not a file", code="unreadable") from exc
    except (OSError, ValueError) as exc:  # permissions, a NUL byte or an over-long name in the path, …
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FileFormatError(shown, f"cannot read the {what}: {reason}", code="unreadable") from exc
    if len(data) > limit:
        raise FileFormatError(shown, f"the {what} is too large (more than {limit >> 20} MB)", code="too-large")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if 0 <= nul < exc.start:
            exc_at, message, code = nul, "not a text file: it contains NUL bytes", "binary"
        else:
            exc_at, message, code = exc.start, f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded", \
                "encoding"
        line = data.count(b"\n", 0, exc_at)
        col = len(data[data.rfind(b"\n", 0, exc_at) + 1: exc_at].decode("utf-8", errors="replace"))
        raise FileFormatError(shown, message, line + 1, col + 1, code=code) from exc
    if nul >= 0:
        line, col = position(text, text.index("\x00"))
        raise FileFormatError(shown, "not a text file: it contains NUL bytes", line + 1, col + 1, code="binary")
    return text
