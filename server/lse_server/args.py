"""The arguments of commands and custom requests, and the one refusal every run and store view shares."""

from __future__ import annotations

from typing import Any

from lse_server.errors import RequestFailed
from lse_server.protocol import CommandArgs

UNTRUSTED = "this workspace is not trusted: LSE reads no run store, runs no SQL and loads no model here"


def command_args(args: Any) -> CommandArgs:
    """The one argument of a command or custom request: `{uri, runId, rounds}` (a bare URI string works too)."""
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
        if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= 10_000:
            raise RequestFailed(f"rounds must be a whole number from 1 to 10000, got {rounds!r}")
        out["rounds"] = rounds
    return out
