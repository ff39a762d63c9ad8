"""Worker processes for long jobs: start one per run, read its lines, cancel it, and never leave one behind.

A worker gets its `WorkerInput` (the buffer's text included) on stdin and dies with the server: it asks the
kernel for a parent-death signal and watches its parent (lse_server/worker.py). The server, for its part,
cancels every run on shutdown, exit, stdin EOF and SIGTERM (`shutdown`, `terminate_all`).

A cancel asks once (SIGTERM: the worker stops at its next check and records the run as cancelled) and kills the
worker when it does not stop in time. A worker that ends without its last line (killed, crashed) cannot record
the run's end, so the manager does it for the dead worker (`store_reader.close_run`): `cancelled` or `failed`,
never a run left `running`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lse_engine.progress import ProgressEvent
from lse_server.protocol import RunKind, WorkerInput
from lse_server.store_reader import close_run

log = logging.getLogger("lse_server.jobs")
_EVENT_FIELDS = {f.name for f in dataclasses.fields(ProgressEvent)}
KEEP_FINISHED = 50  # finished jobs remembered (lse/tree of a recent run, cancel answers)


@dataclass
class Job:
    run_id: str
    kind: RunKind
    uri: str
    path: Path
    text: str  # the buffer's text the run scores
    version: int | None  # the buffer's version then (None: the file on disk)
    instructions: str  # the instructions in `text`
    suite: Path | None = None  # the suite the prompt names (resolved)
    store: Path | None = None  # the workspace's run store, where the worker records the run
    token: str = ""  # the work-done progress token ("" when the client has none)
    proc: asyncio.subprocess.Process | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False
    killed: bool = False  # the worker did not stop when asked and was killed
    closed_by_server: bool = False  # the server recorded the run's end (the worker could not)
    unapplied: dict[str, Any] | None = None  # an evolve's result whose winner the user has not put in (yet)
    last_event: ProgressEvent | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None  # reads the worker's lines; held here because asyncio keeps tasks weakly
    cancelling: asyncio.Task[None] | None = None  # the cancel under way (one per job, however often it is asked)
    started: float = field(default_factory=time.monotonic)


def to_event(data: Any) -> ProgressEvent | None:
    """A worker's event line back into the engine's ProgressEvent (unknown keys dropped)."""
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
        return None
    try:
        return ProgressEvent(**{k: v for k, v in data.items() if k in _EVENT_FIELDS})
    except TypeError:
        return None


LineHandler = Callable[[Job, ProgressEvent], Awaitable[None]]
ExitHandler = Callable[[Job], Awaitable[None]]


async def _ignore_line(job: Job, event: ProgressEvent) -> None:
    return None


async def _ignore_exit(job: Job) -> None:
    return None


class JobManager:
    """One job per prompt file at a time; each job is a `python -m lse_server.worker` child process."""

    def __init__(self) -> None:
        self.on_event: LineHandler = _ignore_line
        self.on_exit: ExitHandler = _ignore_exit
        self.jobs: dict[str, Job] = {}  # run id -> job (running or finished recently)

    def running_for(self, uri: str) -> Job | None:
        return next((j for j in self.jobs.values() if j.uri == uri and not j.done.is_set()), None)

    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if not j.done.is_set()]

    def unapplied_for(self, uri: str) -> Job | None:
        """The latest finished evolve of `uri` whose winner was not put in (the question was declined, dismissed
        or could not be asked)."""
        found = [j for j in self.jobs.values() if j.uri == uri and j.done.is_set() and j.unapplied]
        return max(found, key=lambda j: j.started) if found else None

    def by_token(self, token: str) -> Job | None:
        return next((j for j in self.jobs.values() if token and j.token == token), None)

    async def start(self, job: Job, work: WorkerInput) -> Job:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "LSE_SERVER_PID": str(os.getpid())}
        job.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lse_server.worker", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=16 * 1024 * 1024, env=env,
        )
        self.jobs[job.run_id] = job
        job.pump = asyncio.get_running_loop().create_task(self._pump(job, json.dumps(work).encode()))
        finished = [run_id for run_id, j in self.jobs.items() if j.done.is_set()]
        for run_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:  # each holds a buffer's text
            del self.jobs[run_id]
        return job

    async def _pump(self, job: Job, work: bytes) -> None:
        proc = job.proc
        assert proc and proc.stdin and proc.stdout and proc.stderr
        stdin, err_stream = proc.stdin, proc.stderr

        async def feed() -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stdin.write(work)
                await stdin.drain()
            stdin.close()

        async def stderr() -> None:
            async for raw in err_stream:
                log.info("[worker %s] %s", job.run_id, raw.decode(errors="replace").rstrip())

        loop = asyncio.get_running_loop()
        feeding, err_task = loop.create_task(feed()), loop.create_task(stderr())
        try:
            async for raw in proc.stdout:
                try:
                    msg = json.loads(raw)
                except json.JSONDecodeError:
                    log.info("[worker %s] %s", job.run_id, raw.decode(errors="replace").rstrip())
                    continue
                if not isinstance(msg, dict):
                    continue
                if isinstance(msg.get("result"), dict):
                    job.result = msg["result"]
                elif "error" in msg:
                    job.error = str(msg["error"])
                elif (event := to_event(msg.get("event"))) is not None:
                    job.last_event = event
                    try:
                        await self.on_event(job, event)
                    except Exception:
                        log.exception("progress handler failed")
            await proc.wait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(feeding, err_task), 2)
            if job.result is None and job.error is None:
                job.error = "cancelled" if job.cancelled else f"the worker exited with code {proc.returncode}"
            if job.result is None:
                await asyncio.to_thread(self._close_run, job)
        finally:
            job.done.set()
            try:
                await self.on_exit(job)
            except Exception:
                log.exception("job exit handler failed")

    @staticmethod
    def _close_run(job: Job) -> None:
        """The worker ended without its result: record the run's end for it (blocking; a worker thread)."""
        proc = job.proc
        if job.store is None or proc is None:
            return
        if job.cancelled:
            how = ("its worker did not stop in time and was killed" if job.killed
                   else "its worker ended before it recorded the end")
            status, message = "cancelled", f"cancelled from the editor; {how} (recorded by the language server)"
        else:
            status, message = "failed", f"the worker ended without a result ({job.error or 'no reason given'})"
        if close_run(job.store, job.run_id, proc.pid, status, message):
            job.closed_by_server = True
            log.info("run %s: recorded as %s for its worker (pid %d)", job.run_id, status, proc.pid)

    def cancel_soon(self, job: Job) -> asyncio.Task[None]:
        """The job's cancel, started once: every caller gets the same task."""
        if job.cancelling is None:
            job.cancelling = asyncio.get_running_loop().create_task(self.cancel(job))
        return job.cancelling

    async def cancel(self, job: Job, grace_s: float = 5.0) -> None:
        """Ask the worker to stop (SIGTERM: it commits and exits); kill it if it does not within `grace_s`.
        Asking again while it stops only waits: a second SIGTERM would end the worker before it commits."""
        proc = job.proc
        if job.cancelled:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(job.done.wait(), grace_s + 3)
            return
        job.cancelled = True
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(job.done.wait(), grace_s)
        except asyncio.TimeoutError:
            job.killed = True
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(job.done.wait(), 3)

    async def shutdown(self, grace_s: float = 2.0) -> None:
        await asyncio.gather(*(self.cancel(j, grace_s) for j in self.running()), return_exceptions=True)

    def terminate_all(self, grace_s: float = 2.0) -> None:
        """Without the event loop (exit, the loop gone): SIGTERM every worker, SIGKILL what is left after
        `grace_s`, and record the end of the runs whose worker was killed. Blocks about `grace_s` seconds."""
        running = [(j, j.proc) for j in self.jobs.values()
                   if j.proc is not None and j.proc.returncode is None and not j.done.is_set()]
        for job in self.jobs.values():
            job.cancelled = True
        for _, proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        alive = list(running)
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [(job, proc) for job, proc in alive if _alive(proc.pid)]
        for job, proc in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            log.warning("killed worker %d (it did not stop within %.1f s)", proc.pid, grace_s)
            job.killed = True
            self._close_run(job)


def _alive(pid: int) -> bool:
    """Whether a child process still runs (reaping it when it has ended)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped already (by asyncio's child watcher)
        return False
    return done == 0
