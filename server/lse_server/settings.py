"""Client settings (initializationOptions / didChangeConfiguration) -> engine config overrides.

Clients send the `lse.toml` sections with camelCase keys (as VS Code settings are spelled): `maxTokens`
becomes `max_tokens`. Two keys differ in name: a model profile's (`model`, `evolver`) `name` is the engine's
`model`, and `timeoutSeconds` is `timeout_s`. Unknown keys reach the engine, which rejects them clearly.
"""

from __future__ import annotations

import re
from typing import Any

_SECTIONS = ("model", "evolver", "evolve", "sql", "train")
_PROFILES = ("model", "evolver")


def snake_key(key: str) -> str:
    """`maxModelCalls` -> `max_model_calls`; snake_case keys pass through."""
    return "timeout_s" if key == "timeoutSeconds" else re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def _convert(value: Any, profile: bool = False) -> Any:
    if isinstance(value, dict):
        return {("model" if profile and k == "name" else snake_key(k)): _convert(v)
                for k, v in value.items() if v is not None and v != ""}
    return value


def to_overrides(settings: Any) -> dict[str, Any]:
    """Accepts `{settings: {...}}`, `{lse: {...}}` or the section dict itself; drops empty values."""
    if not isinstance(settings, dict):
        return {}
    for wrapper in ("settings", "lse"):
        if isinstance(settings.get(wrapper), dict):
            settings = settings[wrapper]
    out = {k: _convert(v, k in _PROFILES) for k, v in settings.items() if k in _SECTIONS and isinstance(v, dict)}
    return {k: v for k, v in out.items() if v}
