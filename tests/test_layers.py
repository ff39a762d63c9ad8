"""The engine's import graph has no cycle (function-level imports included) and every import goes down its layers:
types at the bottom, then settings and files, data and tasks, models, scoring, the search, the run assembler,
the bench and training, and the CLI on top. The language server (`tests/test_server_imports.py`) sits above it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.import_cycles import cycles

ROOT = Path(__file__).resolve().parents[1]
# lowest first; a module is placed by its most specific entry (`llm.base` holds only types)
LAYERS: list[tuple[str, ...]] = [
    ("kinds", "errors", "records", "tags", "progress", "llm.base"),
    ("files", "config", "presets", "tasks.base"),
    ("models", "tasks", "store"),
    ("llm",),
    ("scoring", "workspace"),
    ("evolve",),
    ("runner", "report"),
    ("bench", "train", "importers"),
    ("cli",),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "lse_engine").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the engine modules it imports anywhere in its body (lazy imports included), its own packages
    left out (a package's parent is imported before it, whatever it imports)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != mod and not mod.startswith(name + "."):
                    edges[mod].add(name)
    return edges


def layer(mod: str) -> int:
    rest = mod.removeprefix("lse_engine").lstrip(".")
    best = (-1, -1)  # (length of the matching entry, layer)
    for i, names in enumerate(LAYERS):
        for name in names:
            if (rest == name or rest.startswith(name + ".")) and len(name) > best[0]:
                best = (len(name), i)
    return best[1] if rest else -1


def test_every_engine_module_has_a_layer() -> None:
    assert [m for m in modules() if m != "lse_engine" and layer(m) < 0] == []


def test_imports_go_down_the_layers() -> None:
    edges = imports(modules())
    upward = [f"{m} ({layer(m)}) imports {t} ({layer(t)})" for m, ts in edges.items() for t in sorted(ts)
              if m != "lse_engine" and layer(t) > layer(m)]
    assert upward == []


def test_no_import_cycle() -> None:
    assert cycles(imports(modules())) == []


def test_the_checks_see_a_lazy_upward_import(tmp_path: Path) -> None:
    """The walk finds an import inside a function, and `layer` ranks it."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from lse_engine.runner import evolve\n")
    found = {n.module for n in ast.walk(ast.parse(src.read_text())) if isinstance(n, ast.ImportFrom)}
    assert found == {"lse_engine.runner"} and layer("lse_engine.runner") > layer("lse_engine.config")
