"""The worker process: runs one long job (evaluate, evolve, train) and streams JSON lines on stdout.

The language server never runs searches itself (the GIL would stall its replies); it starts this process,
writes one `WorkerInput` to its stdin (the editor buffer's text included: the run scores exactly what the user
sees), reads its lines (`WorkerLine`) and forwards them as LSP progress. The worker alone writes the run store.
SIGTERM requests cooperative cancellation (committed work is kept; the run is resumable).

The worker dies with its server: on Linux the kernel sends it SIGTERM when the server exits
(prctl PR_SET_PDEATHSIG); everywhere a watchdog thread notices the parent is gone, cancels, and exits at the
latest `ORPHAN_GRACE_S` seconds later.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from lse_engine.errors import LSEError
from lse_engine.llm.base import CancelToken
from lse_engine.progress import ProgressEvent
from lse_server.protocol import EvaluateResult, EvolveResult, WorkerInput, WorkerLine

ORPHAN_GRACE_S = 2.5  # after the parent is gone: time to commit, then exit regardless
_PR_SET_PDEATHSIG = 1
_out = sys.stdout
_out_lock = threading.Lock()
_cancel = CancelToken()


def emit(line: WorkerLine) -> None:
    with _out_lock:
        try:
            _out.write(json.dumps(line, default=str) + "\n")
            _out.flush()
        except (BrokenPipeError, ValueError, OSError):  # the server is gone: stop
            _cancel.cancel()


def _on_event(ev: ProgressEvent) -> None:
    emit({"event": ev.to_dict()})


def _get(obj: Any, name: str) -> Any:
    return getattr(obj, name, None)


def _winner_reason(ws: Any, run_id: str) -> str | None:
    """Why the run's answer is what it is (the paired test, in words), as the run recorded it."""
    run = ws.store.get_run(run_id)
    reason = ((run or {}).get("result") or {}).get("winner_reason")
    return str(reason) if reason else None


def run_job(work: WorkerInput, cancel: CancelToken) -> dict[str, Any]:
    from lse_engine.workspace import Workspace

    overrides = work.get("settings") or {}
    if work["job"] == "train":
        from lse_engine.train import run_from_worker

        trained: dict[str, Any] = run_from_worker(work["prompt"], overrides, run_id=work["runId"], cancel=cancel,
                                                  progress=_on_event)
        return trained
    ws = Workspace(work["prompt"], overrides, text=work.get("text"))
    try:
        if work["job"] == "evaluate":
            from lse_engine.runner import evaluate

            report = evaluate(ws, cancel=cancel, progress=_on_event, run_id=work["runId"])
            evaluated: EvaluateResult = {"runId": report.run_id, "status": report.status,
                                         "accuracy": report.accuracy, "calls": report.calls, "cached": report.cached}
            return dict(evaluated)
        from lse_engine.runner import evolve

        result = evolve(ws, run_id=work.get("resume"), rounds=work.get("rounds"), cancel=cancel, progress=_on_event,
                        new_run_id=work["runId"])
        evolved: EvolveResult = {
            "runId": result.run_id, "status": result.status, "rootDev": result.root_dev,
            "winner": result.winner.id, "winnerDev": result.winner.dev_score,
            "instructions": result.winner.instructions, "rootTest": _get(result, "root_test"),
            "winnerTest": _get(result, "winner_test"), "roundsDone": _get(result, "rounds_done"),
            "edits": result.edits, "replies": result.replies, "noopReplies": result.noop_replies,
            "winnerReason": _winner_reason(ws, result.run_id),
        }
        return dict(evolved)
    finally:
        ws.close()


def _exit_later(seconds: float) -> None:
    time.sleep(seconds)
    os._exit(143)


def die_with_parent(parent: int) -> None:
    """Exit soon after the server does, however it ends (even kill -9)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    def orphaned() -> None:
        _cancel.cancel()
        _exit_later(ORPHAN_GRACE_S)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.25)
        orphaned()

    if parent > 0:
        threading.Thread(target=watch, name="lse-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    global _out
    parent = int(os.environ.get("LSE_SERVER_PID") or os.getppid())
    die_with_parent(parent)
    # Keep the protocol channel clean: anything else printed (libraries, warnings) goes to stderr.
    _out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def on_term(signum: int, frame: Any) -> None:  # noqa: ARG001
        if _cancel.cancelled:
            os._exit(143)
        _cancel.cancel()
        # a job stuck in one long call (a model load, a generate) still ends: exit after a grace period
        threading.Thread(target=_exit_later, args=(ORPHAN_GRACE_S * 2,), daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        work: WorkerInput = json.loads(sys.stdin.buffer.read() or b"{}")
        if not isinstance(work, dict) or work.get("job") not in ("evaluate", "evolve", "train"):
            raise LSEError("the worker got no job on stdin")
        emit({"result": run_job(work, _cancel)})
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
