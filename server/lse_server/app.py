"""The composition root: a server with every feature registered. Nothing imports this module but the entry
point (`__main__`), so the feature modules can import `core` without an import cycle."""

from __future__ import annotations

from lse_server import core, diagnostics, runs, views


def build() -> core.LseServer:
    """A server with every feature registered."""
    ls = core.LseServer()
    core.register(ls)
    diagnostics.register(ls)
    views.register(ls)
    runs.register(ls)
    return ls
