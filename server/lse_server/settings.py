"""Client settings (initializationOptions / didChangeConfiguration) -> engine config overrides and the
server's own settings.

Clients send the `lse.toml` sections with camelCase keys (as VS Code settings are spelled): `maxTokens`
becomes `max_tokens`. Two keys differ in name: a model profile's (`model`, `evolver`) `name` is the engine's
`model`, and `timeoutSeconds` is `timeout_s`. Unknown keys reach the engine, which rejects them clearly.
The `files` section is the server's: which file names are prompt files and suites (globs); so is `checks`:
`goldBudgetS`, how long one gold query may run in the editor's diagnostics (scoring allows `[sql]
gold_timeout_s`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

_SECTIONS = ("model", "evolver", "evolve", "sql", "train")
_PROFILES = ("model", "evolver")
PROMPT_GLOBS = ("*.prompt.md",)
SUITE_GLOBS = ("*.suite.yaml", "*.suite.yml", "*.suite.json")
CHECK_BUDGET_S = 5.0


def snake_key(key: str) -> str:
    """`maxModelCalls` -> `max_model_calls`; snake_case keys pass through."""
    return "timeout_s" if key == "timeoutSeconds" else re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def _convert(value: Any, profile: bool = False) -> Any:
    if isinstance(value, dict):
        return {("model" if profile and k == "name" else snake_key(k)): _convert(v)
                for k, v in value.items() if isinstance(k, str) and v is not None and v != ""}
    return value


def _unwrap(settings: Any) -> dict[str, Any]:
    if not isinstance(settings, dict):
        return {}
    found: dict[str, Any] = settings
    for wrapper in ("settings", "lse"):
        inner = found.get(wrapper)
        if isinstance(inner, dict):
            found = inner
    return found


def to_overrides(settings: Any) -> dict[str, Any]:
    """Accepts `{settings: {...}}`, `{lse: {...}}` or the section dict itself; drops empty values."""
    settings = _unwrap(settings)
    out = {k: _convert(v, k in _PROFILES) for k, v in settings.items() if k in _SECTIONS and isinstance(v, dict)}
    return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class FileGlobs:
    """Which files are LSE's, by name: `files.prompts` / `files.suites` (lists of globs)."""

    prompts: tuple[str, ...] = PROMPT_GLOBS
    suites: tuple[str, ...] = SUITE_GLOBS


def file_globs(settings: Any) -> FileGlobs:
    files = _unwrap(settings).get("files")
    if not isinstance(files, dict):
        return FileGlobs()

    def globs(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = files.get(key)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return default
        found = tuple(g for g in value if isinstance(g, str) and g.strip())[:50]
        return found or default

    return FileGlobs(globs("prompts", PROMPT_GLOBS), globs("suites", SUITE_GLOBS))


def check_budget_s(settings: Any) -> float:
    """`checks.goldBudgetS` (or `gold_budget_s`): seconds, above 0 and at most 600; else the default."""
    checks = _unwrap(settings).get("checks")
    value = None
    if isinstance(checks, dict):
        value = checks.get("goldBudgetS", checks.get("gold_budget_s"))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 < value <= 600:
        return float(value)
    return CHECK_BUDGET_S
