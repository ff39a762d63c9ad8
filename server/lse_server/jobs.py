"""Worker processes for long jobs: start, read their progress lines, cancel, and stop them all on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("lse_server.jobs")


@dataclass
class Job:
    run_id: str
    kind: str  # evaluate | evolve | train
    uri: str
    path: Path
    token: str
    version: int | None
    proc: asyncio.subprocess.Process | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False
    last_event: dict[str, Any] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task | None = None  # reads the worker's lines; held here because asyncio keeps tasks weakly


LineHandler = Callable[[Job, dict[str, Any]], Awaitable[None]]


class JobManager:
    """One job per prompt file at a time; each job is a `lse_server.worker` child process."""

    def __init__(self, on_line: LineHandler, on_exit: Callable[[Job], Awaitable[None]]) -> None:
        self.on_line = on_line
        self.on_exit = on_exit
        self.jobs: dict[str, Job] = {}  # run id -> job (running or finished recently)

    def running_for(self, uri: str) -> Job | None:
        return next((j for j in self.jobs.values() if j.uri == uri and not j.done.is_set()), None)

    def by_token(self, token: str) -> Job | None:
        return next((j for j in self.jobs.values() if j.token == token), None)

    async def start(self, job: Job, settings: dict[str, Any], rounds: int | None = None) -> Job:
        cmd = [sys.executable, "-m", "lse_server.worker", job.kind, "--prompt", str(job.path), "--run-id", job.run_id,
               "--settings", json.dumps(settings)]
        if rounds:
            cmd += ["--rounds", str(rounds)]
        job.proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.jobs[job.run_id] = job
        job.pump = asyncio.get_running_loop().create_task(self._pump(job))
        return job

    async def _pump(self, job: Job) -> None:
        assert job.proc and job.proc.stdout and job.proc.stderr

        async def stderr() -> None:
            async for raw in job.proc.stderr:  # type: ignore[union-attr]
                log.info("[worker %s] %s", job.run_id, raw.decode(errors="replace").rstrip())

        err_task = asyncio.get_running_loop().create_task(stderr())
        try:
            async for raw in job.proc.stdout:
                try:
                    msg = json.loads(raw)
                except json.JSONDecodeError:
                    log.info("[worker %s] %s", job.run_id, raw.decode(errors="replace").rstrip())
                    continue
                if "result" in msg:
                    job.result = msg["result"]
                elif "error" in msg:
                    job.error = msg["error"]
                elif "event" in msg:
                    job.last_event = msg["event"]
                try:
                    await self.on_line(job, msg)
                except Exception:
                    log.exception("progress handler failed")
            await job.proc.wait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(err_task, 2)
            if job.result is None and job.error is None:
                job.error = "cancelled" if job.cancelled else f"the worker exited with code {job.proc.returncode}"
        finally:
            job.done.set()
            try:
                await self.on_exit(job)
            except Exception:
                log.exception("job exit handler failed")

    async def cancel(self, job: Job, grace_s: float = 5.0) -> None:
        """Ask the worker to stop (SIGTERM: it commits and exits); kill it if it does not within `grace_s`."""
        job.cancelled = True
        proc = job.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(job.done.wait(), grace_s)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(job.done.wait(), 2)

    async def shutdown(self, grace_s: float = 2.0) -> None:
        running = [j for j in self.jobs.values() if not j.done.is_set()]
        await asyncio.gather(*(self.cancel(j, grace_s) for j in running), return_exceptions=True)

    def kill_all(self) -> None:
        """Last resort at exit: no waiting."""
        for job in self.jobs.values():
            if job.proc is not None and job.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    job.proc.kill()
