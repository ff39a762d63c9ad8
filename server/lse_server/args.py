"""The arguments of commands and custom requests, and the one refusal every run and store view shares."""

from __future__ import annotations

from typing import Any

from lse_engine.config import check_setting
from lse_server.errors import RequestFailed
from lse_server.protocol import CommandArgs

UNTRUSTED = "this workspace is not trusted: LSE reads no run store, runs no SQL and loads no model here"


def command_args(args: Any) -> CommandArgs:
    """The one argument of a command or custom request: `{uri, runId, rounds, evolver}` (a bare URI string works
    too)."""
    first = args._asdict() if hasattr(args, "_asdict") else args  # pygls hands custom params as named tuples
    if isinstance(first, (list, tuple)):
        first = first[0] if first else {}
    if hasattr(first, "_asdict"):
        first = first._asdict()
    if isinstance(first, str):
        return {"uri": first}
    if not isinstance(first, dict):
        return {}
    out: CommandArgs = {}
    if isinstance(first.get("uri"), str):
        out["uri"] = first["uri"]
    if isinstance(first.get("runId"), str):
        out["runId"] = first["runId"]
    rounds = first.get("rounds")
    if rounds is not None:
        problem = check_setting("evolve.rounds", rounds) if isinstance(rounds, int) else "must be a whole number"
        if problem:  # the one bound on rounds (lse_engine.config), as lse.toml and the CLI apply it
            raise RequestFailed(f"rounds {problem}")
        out["rounds"] = rounds
    if isinstance(first.get("evolver"), str) and first["evolver"]:
        out["evolver"] = first["evolver"]
    return out
