"""The language server's modules import each other without a cycle: every import counts, the ones inside
functions and under `if TYPE_CHECKING:` too (read with `ast`, nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.import_cycles import cycles

PACKAGE = Path(__file__).resolve().parents[1] / "server" / "lse_server"


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, anywhere in its source."""
    name = package.name
    modules = {f"{name}.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in package.glob("*.py"):
        if path.stem == "__init__":
            continue
        here = f"{name}.{path.stem}"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from .x import y
                    base = ".".join([name, *([base] if base else [])])
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != here:
                    graph[here].add(target)
    return graph


def test_the_server_package_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert "lse_server.app" in graph["lse_server.__main__"]  # an import inside main() is seen
    assert "lse_server.core" in graph["lse_server.diagnostics"]
    assert cycles(graph) == []


def test_the_walk_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    """The check itself: a cycle closed by an import inside a function, or under TYPE_CHECKING, is found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import x\n")
    (pkg / "b.py").write_text("x = 1\n\ndef later():\n    from pkg import c\n    return c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    (pkg / "d.py").write_text("import pkg.a\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b", "pkg.c"]]
