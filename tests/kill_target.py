"""An evolution run in its own process, for the kill -9 and concurrency tests (tests/test_kill_resume.py).

    python tests/kill_target.py PROMPT RUN_ID new|resume scripted|slow|tiny

`scripted`: the scripted task model and evolver of tests/test_kill_resume.py, slowed a little so a kill lands
mid-round (`slow`: a second per evolver reply, so a run lasts long enough for another process to meet it). `tiny`: the tiny random model (found through LSE_CACHE_DIR) for both, with few tokens and the
evolver's reply prefilled, so every round makes a real edit. Each progress event is printed as one line, so
the test can kill at a chosen point; `busy: …` (a run held by another process) exits 3.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lse_engine.errors import StoreError  # noqa: E402
from lse_engine.runner import evolve  # noqa: E402
from lse_engine.workspace import Workspace  # noqa: E402
from tests.scripted import ScriptedLLM  # noqa: E402
from tests.test_kill_resume import SETTINGS, TINY_SETTINGS, evolver_reply, task_reply  # noqa: E402


def slow(fn, delay: float):
    def reply(chat):
        time.sleep(delay)
        return fn(chat)

    return reply


def main() -> int:
    prompt, run_id, mode, model = sys.argv[1:5]
    if model == "tiny":
        ws = Workspace(prompt, TINY_SETTINGS)
    else:
        pause = 1.0 if model == "slow" else 0.05
        ws = Workspace(prompt, SETTINGS, llms={"model": ScriptedLLM(slow(task_reply, 0.01), "task"),
                                               "evolver": ScriptedLLM(slow(evolver_reply, pause), "evolver")})
    print("ready", flush=True)
    try:
        result = evolve(ws, new_run_id=run_id if mode == "new" else None, run_id=run_id if mode == "resume" else None,
                        progress=lambda e: print(f"event {e.message}", flush=True))
    except StoreError as exc:
        print(f"error: {exc}", flush=True)
        return 3
    finally:
        ws.close()
    print(f"finished {result.status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
