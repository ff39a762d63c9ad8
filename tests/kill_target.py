"""Run an evolution with scripted (slow) replies in this process; the kill -9 test kills it mid-round."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lse_engine.runner import evolve  # noqa: E402
from lse_engine.workspace import Workspace  # noqa: E402
from tests.scripted import ScriptedLLM  # noqa: E402
from tests.test_kill_resume import SETTINGS, evolver_reply, task_reply  # noqa: E402


def slow(fn, delay: float):
    def reply(chat):
        time.sleep(delay)
        return fn(chat)

    return reply


if __name__ == "__main__":
    prompt, run_id = sys.argv[1], sys.argv[2]
    ws = Workspace(prompt, SETTINGS, llms={"model": ScriptedLLM(slow(task_reply, 0.01), "task"),
                                           "evolver": ScriptedLLM(slow(evolver_reply, 0.05), "evolver")})
    evolve(ws, new_run_id=run_id)
