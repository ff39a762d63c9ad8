"""Client settings (initializationOptions / didChangeConfiguration) -> engine config overrides.

Clients send the `lse.toml` sections with camelCase keys (as VS Code settings are spelled): `maxTokens`
becomes `max_tokens`. Two keys differ in name: the model profile's `name` is the engine's `model`, and
`timeoutSeconds` is `timeout_s`. Unknown keys reach the engine, which rejects them with a clear message.
"""

from __future__ import annotations

import re
from typing import Any

_RENAMED = {"name": "model", "timeoutSeconds": "timeout_s"}
_SECTIONS = ("model", "evolver", "evolve", "sql", "train")


def snake_key(key: str) -> str:
    """`maxModelCalls` -> `max_model_calls`; snake_case keys pass through."""
    return _RENAMED.get(key) or re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def _convert(value: Any) -> Any:
    if isinstance(value, dict):
        return {snake_key(k): _convert(v) for k, v in value.items() if v is not None and v != ""}
    return value


def to_overrides(settings: Any) -> dict[str, Any]:
    """Accepts `{settings: {...}}`, `{lse: {...}}` or the section dict itself; drops empty values."""
    if not isinstance(settings, dict):
        return {}
    for wrapper in ("settings", "lse"):
        if isinstance(settings.get(wrapper), dict):
            settings = settings[wrapper]
    return {k: _convert(v) for k, v in settings.items() if k in _SECTIONS and isinstance(v, dict) and _convert(v)}
