"""Client settings (initializationOptions / didChangeConfiguration) -> engine config overrides."""

from __future__ import annotations

from typing import Any

# client key (camelCase, as in the VS Code extension) -> engine key (as in lse.toml)
_KEYMAP = {
    "name": "model",
    "baseUrl": "base_url",
    "apiKeyEnv": "api_key_env",
    "batchSize": "batch_size",
    "devSize": "dev_size",
    "maxModelCalls": "max_model_calls",
    "acceptanceGate": "acceptance_gate",
    "timeoutSeconds": "timeout_s",
    "rowCap": "row_cap",
    "maxTokens": "max_tokens",
}
_SECTIONS = ("model", "evolver", "evolve", "sql", "train")


def _convert(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None or v == "":
                continue
            out[_KEYMAP.get(k, k)] = _convert(v)
        return out
    return value


def to_overrides(settings: Any) -> dict[str, Any]:
    """Accepts `{settings: {...}}`, `{lse: {...}}` or the section dict itself; drops empty values."""
    if not isinstance(settings, dict):
        return {}
    for wrapper in ("settings", "lse"):
        if isinstance(settings.get(wrapper), dict):
            settings = settings[wrapper]
    return {k: _convert(v) for k, v in settings.items() if k in _SECTIONS and isinstance(v, dict) and _convert(v)}
