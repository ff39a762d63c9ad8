"""How many threads torch uses for CPU inference.

An explicit count (`[model] threads`, else `$LSE_THREADS`) is used as given. Otherwise the count is measured as the
model decodes: `ThreadTuner` times decode steps, now and then tries another candidate (1, half, all the cores) for
a step or two, and keeps whichever is faster. The reason: torch's OpenMP threads wait for each other at the end of
every operation, so when the cores are busy with other work (another LSE process, say the language server's worker
beside a CLI run) a thread that is switched out stalls the others; on this project's 2-core machine, under load, 2
threads decoded 4-7x slower than 1 (benchmarks/README.md). On an idle machine all cores win, and the tuner finds
that too. torch's thread count is per process, so there is one tuner per process.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator

ENV = "LSE_THREADS"
FIRST_PROBE = 4  # decode steps before the first try of another count
PROBE_EVERY = 24  # steps between tries, doubled after each try that lost (up to MAX_EVERY)
MAX_EVERY = 768
PROBE_STEPS = 2  # steps a try lasts (it ends after one if that step is already much slower)
WIN = 0.93  # a candidate must take at most this fraction of the current count's step time to replace it


def cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def fixed(setting: int = 0) -> int | None:
    """The explicit count: the setting if > 0, else $LSE_THREADS if a positive integer, else None (tuned)."""
    if setting > 0:
        return setting
    env = os.environ.get(ENV, "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


def initial() -> int:
    """Where tuning starts (the first prompts are prefilled with it): half the cores, so that two processes that
    start together do not oversubscribe the machine before their first measurements (on 2 cores, 1 thread: alone
    it is 1.5x slower than 2 until the tuner moves up, a few tokens in; two processes at 2 threads each are 3-5x
    slower); one when the machine is already busier than its cores."""
    n = cores()
    try:
        busy = os.getloadavg()[0] >= n
    except OSError:  # pragma: no cover - no load average on this platform
        busy = False
    return 1 if busy else max(1, n // 2)


def set_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class ThreadTuner:
    """Chooses among `candidates` thread counts by timing decode steps (`step(rows)` around each)."""

    def __init__(self, candidates: list[int], start: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.candidates = sorted(set(candidates))
        self.current = start if start in self.candidates else self.candidates[-1]
        self.clock = clock
        self.every = {n: PROBE_EVERY for n in self.candidates}
        self.due = {n: FIRST_PROBE for n in self.candidates}  # steps until each is tried next
        self.recent: deque[tuple[int, float]] = deque(maxlen=PROBE_STEPS)  # (rows, seconds) at the current count
        self.trying: int | None = None
        self.tried: list[float] = []
        self.rows = -1
        self._t0 = 0.0
        self.switches = 0

    @property
    def threads(self) -> int:
        return self.trying if self.trying is not None else self.current

    def start(self, rows: int) -> int:
        """Before a decode step of `rows` rows: the thread count to run it with (already applied to torch)."""
        if self.trying is None and rows == self.rows and len(self.recent) == PROBE_STEPS:
            for n in self.candidates:
                if n != self.current:
                    self.due[n] -= 1
            ready = [n for n in self.candidates if n != self.current and self.due[n] <= 0]
            if ready:
                self.trying, self.tried = ready[0], []
        if rows != self.rows:  # rows left the batch: step times are not comparable across the change
            self.recent.clear()
            if self.trying is not None:
                self._end_try(won=False, judged=False)
            self.rows = rows
        set_threads(self.threads)
        self._t0 = self.clock()
        return self.threads

    def done(self) -> None:
        """After the step."""
        seconds = self.clock() - self._t0
        if self.trying is None:
            self.recent.append((self.rows, seconds))
            return
        self.tried.append(seconds)
        base = statistics.median(s for _, s in self.recent)
        if seconds > 1.5 * base:  # clearly slower: stop at once
            self._end_try(won=False)
        elif len(self.tried) >= PROBE_STEPS:
            self._end_try(won=statistics.median(self.tried) <= WIN * base)

    def _end_try(self, won: bool, judged: bool = True) -> None:
        n = self.trying
        assert n is not None
        self.trying = None
        if won:
            self.every[self.current] = PROBE_EVERY
            self.due[self.current] = PROBE_EVERY
            self.current = n
            self.switches += 1
            self.recent.clear()
            self.recent.extend((self.rows, s) for s in self.tried[-PROBE_STEPS:])
        elif judged:
            self.every[n] = min(MAX_EVERY, self.every[n] * 2)
            self.due[n] = self.every[n]
        else:
            self.due[n] = 1  # interrupted: try again soon
        set_threads(self.threads)


_tuner: ThreadTuner | None = None


def tuner() -> ThreadTuner:
    """This process's tuner (created on first use)."""
    global _tuner
    if _tuner is None:
        n = cores()
        _tuner = ThreadTuner([1, max(1, n // 2), n], initial())
    return _tuner


def apply(setting: int = 0) -> int | None:
    """Fix torch's thread count if one is set (returns it); else start the tuner (returns None)."""
    n = fixed(setting)
    if n is not None:
        set_threads(n)
        return n
    set_threads(tuner().threads)
    return None


@contextlib.contextmanager
def for_training() -> Iterator[int]:
    """Every core (or $LSE_THREADS) for a training update, then the inference count back. An update's products are
    large, so threads spend little time waiting for each other; without this, an update ran at whatever count the
    decode tuner last chose for the rollouts (often 1 on 2 cores)."""
    import torch

    before = torch.get_num_threads()
    n = fixed() or cores()
    set_threads(n)
    try:
        yield n
    finally:
        set_threads(before)
