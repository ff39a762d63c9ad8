"""Which model files a command needs, found before any model is called: the task model, the evolver, a trained
evolver, a `--task-model`. A missing one is fetched with the consent message (the demo) or named, with every
other missing one, in one error that gives the command fetching them all."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lse_engine.config import Config, ModelConfig
from lse_engine.errors import ModelNotFoundError
from lse_engine.models.catalog import Catalog, ModelSpec
from lse_engine.models.pull import ensure_model, human_size, locate
from lse_engine.models.resolve import looks_like_path, resolve_adapter, resolve_backend


@dataclass(frozen=True)
class Missing:
    """A model a command needs and does not have: `spec` for a catalog model (fetchable), else `why`."""

    role: str  # the task model | the evolver | the trained evolver
    name: str
    why: str
    spec: ModelSpec | None = None


def catalog_of(config: Config) -> Catalog:
    """The models a workspace knows: the built-in catalog and its lse.toml's `[models.NAME]` tables (read from the
    settings already loaded, not from the file again)."""
    return Catalog.load(config.models, config.root, str(config.source or "lse.toml"))


Role = tuple[str, ModelConfig]  # (what it is for, the profile that names it)


def profiles(config: Config, roles: Iterable[str] = ("model", "evolver")) -> list[Role]:
    """(role, profile) for each role a command uses: "model" (the task model) and "evolver"."""
    named = {"model": ("the task model", config.model), "evolver": ("the evolver", config.evolver)}
    return [named[r] for r in roles]


def missing(config: Config, roles: Iterable[str] = ("model", "evolver"), extra: Iterable[Role] = ()) -> list[Missing]:
    """Every model the roles (and `extra` profiles: trained evolvers a bench compares) need that is not on disk,
    each named once."""
    catalog = catalog_of(config)
    found: dict[str, Missing] = {}
    for role, profile in [*profiles(config, roles), *extra]:
        backend, model = resolve_backend(profile)
        if backend == "openai":
            continue  # a server: nothing on this machine to find
        problem = _missing_weights(model, catalog, config.root, role)
        if problem is not None:
            found.setdefault(problem.name, problem)
        adapter = resolve_adapter(profile.adapter, config.root)
        weights = ("adapter_config.json", "config.json")
        if adapter and not any(os.path.isfile(os.path.join(adapter, f)) for f in weights):
            found.setdefault(adapter, Missing("the trained evolver", profile.adapter,
                                              f"no trained evolver at {adapter} (see `lse train`)"))
    return list(found.values())


def _missing_weights(model: str, catalog: Catalog, root: Path, role: str) -> Missing | None:
    if model == "tiny":
        return None  # built on the fly
    spec = None if os.path.exists(os.path.expanduser(model)) else catalog.get(model)
    if spec is not None:
        good, _ = locate(spec)
        return None if good is not None else Missing(role, spec.name, f"{human_size(spec.size)}, not downloaded", spec)
    local = (root / model) if not os.path.isabs(os.path.expanduser(model)) else Path(os.path.expanduser(model))
    if looks_like_path(model):
        there = local if local.exists() else Path(os.path.expanduser(model))
        return None if there.exists() else Missing(role, model, f"no such file or folder: {there}")
    return None  # a Hugging Face id: the backend reads the local HF cache and says where it looked


def message(gone: list[Missing]) -> str:
    """One error naming every missing model and the command that fetches the fetchable ones."""
    lines = [f"{m.name} ({m.role}: {m.why})" for m in gone]
    fetchable = [m.name for m in gone if m.spec is not None]
    how = f"; fetch them with `lse models pull {' '.join(fetchable)}`" if fetchable else ""
    return f"missing model{'s' * (len(gone) > 1)}: " + "; ".join(lines) + how


def require(config: Config, roles: Iterable[str] = ("model", "evolver"), extra: Iterable[Role] = ()) -> None:
    """Raise ModelNotFoundError naming every missing model at once (nothing is called or loaded before)."""
    gone = missing(config, roles, extra)
    if gone:
        raise ModelNotFoundError(message(gone))


def fetch(config: Config, consent: Callable[[str], bool | None], roles: Iterable[str] = ("model", "evolver")) -> None:
    """Fetch every missing catalog model the roles need, each after `consent` hears what and how big; anything
    else missing is one error (`require`)."""
    catalog = catalog_of(config)
    for m in missing(config, roles):
        if m.spec is not None:
            ensure_model(m.spec.name, consent, catalog=catalog)
    require(config, roles)
