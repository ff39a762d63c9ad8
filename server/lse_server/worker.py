"""The worker process: runs one long job (evaluate, evolve, train) and streams JSON lines on stdout.

The language server never runs searches itself (the GIL would stall its replies); it starts this process,
reads its lines and forwards them as LSP progress. The worker alone writes the run store.
Lines: {"event": ProgressEvent} while running, then one {"result": {...}} or {"error": "..."}.
SIGTERM requests cooperative cancellation (committed work is kept; the run is resumable).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from typing import Any

from lse_engine.errors import LSEError
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressEvent

_out = sys.stdout


def emit(obj: dict[str, Any]) -> None:
    _out.write(json.dumps(obj, default=str) + "\n")
    _out.flush()


def _on_event(ev: ProgressEvent) -> None:
    emit({"event": ev.to_dict()})


def run_job(args: argparse.Namespace, cancel: CancelToken) -> dict[str, Any]:
    from lse_engine.workspace import Workspace

    overrides = json.loads(args.settings or "{}")
    if args.job == "train":
        from lse_engine.train import run_from_worker

        return run_from_worker(args.prompt, overrides, run_id=args.run_id, cancel=cancel, progress=_on_event)
    ws = Workspace(args.prompt, overrides)
    try:
        if args.job == "evaluate":
            from lse_engine.runner import evaluate

            report = evaluate(ws, cancel=cancel, progress=_on_event, run_id=args.run_id)
            return {"runId": report.run_id, "status": report.status, "accuracy": report.accuracy,
                    "calls": report.calls, "cached": report.cached}
        from lse_engine.runner import evolve

        result = evolve(ws, run_id=args.resume, rounds=args.rounds, cancel=cancel, progress=_on_event,
                        new_run_id=args.run_id)
        return {"runId": result.run_id, "status": result.status, "rootDev": result.root_dev,
                "winner": result.winner.id, "winnerDev": result.winner.dev_score,
                "instructions": result.winner.instructions, "promptSha": ws.prompt.sha}
    finally:
        ws.close()


def main(argv: list[str] | None = None) -> int:
    global _out
    ap = argparse.ArgumentParser(prog="lse-worker")
    ap.add_argument("job", choices=["evaluate", "evolve", "train"])
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--run-id")
    ap.add_argument("--resume")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--settings", default="{}")
    args = ap.parse_args(argv)
    # Keep the protocol channel clean: anything else printed (libraries, warnings) goes to stderr.
    _out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    cancel = CancelToken()

    def on_term(signum, frame):  # noqa: ARG001
        if cancel.cancelled:
            os._exit(143)
        cancel.cancel()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        emit({"result": run_job(args, cancel)})
        return 0
    except LSEError as exc:
        emit({"error": str(exc)})
        return 2
    except Exception as exc:  # report, never hang the server
        traceback.print_exc()
        emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
