"""Which documents are LSE's: names matching the configured globs, and for prompt files, front matter with a
`suite:` key. A `*.prompt.md` without one (a Copilot prompt file, say) gets nothing from LSE."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from lse_server.settings import FileGlobs

_SUITE_KEY = re.compile(r"^suite\s*:")
_FRONT_MATTER_LINES = 200


def _matches(path: str, globs: tuple[str, ...]) -> bool:
    posix = path.replace("\\", "/")
    name = PurePosixPath(posix).name
    return any(fnmatchcase(name, g) or fnmatchcase(posix, g) or fnmatchcase(posix, "*/" + g.lstrip("/"))
               for g in globs)


def is_suite(path: str, globs: FileGlobs) -> bool:
    return _matches(path, globs.suites)


def is_prompt_name(path: str, globs: FileGlobs) -> bool:
    return _matches(path, globs.prompts)


def names_a_suite(text: str) -> bool:
    """Whether a prompt file's front matter has a `suite:` key (the mark of an LSE prompt file)."""
    lines = text.split("\n", _FRONT_MATTER_LINES + 1)
    if not lines or lines[0].strip() != "---":
        return False
    for line in lines[1:_FRONT_MATTER_LINES]:
        if line.strip() in ("---", "..."):
            return False
        if _SUITE_KEY.match(line):
            return True
    return False
