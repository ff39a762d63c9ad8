"""`preset = "paper"` means the paper (issue 22): its training, request and template; keys a file sets over it
are said when a run starts; the feedback batch is scored once while the holdout takes k samples."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lse_engine.config import Config, load_config
from lse_engine.presets import PAPER
from lse_engine.progress import ProgressEvent
from lse_engine.runner import evolve
from lse_engine.workspace import Workspace
from tests.conftest import build_skill_workspace
from tests.scripted import ScriptedLLM, current_of
from tests.test_search import skill_task_reply


def test_the_paper_preset_is_the_papers_training_request_and_template(tmp_path: Path) -> None:
    (tmp_path / "lse.toml").write_text('preset = "paper"\n')
    cfg = load_config(tmp_path)
    assert (cfg.train.method, cfg.train.learning_rate, cfg.train.reward_on, cfg.train.advantage) == (
        "full", 1e-6, "holdout", "delta")
    assert (cfg.evolve.request, cfg.task.show_work, cfg.evolve.dev_size, cfg.model.sampling.samples) == (
        "reference", True, 50, 8)
    assert (cfg.evolve.race, cfg.evolve.winner_test, cfg.evolve.evolver_prefill) == (False, "none", False)
    assert cfg.preset_notes() == []
    defaults = Config()
    assert defaults.train.method == "lora" and defaults.evolve.race and defaults.evolve.winner_test == "sign"


def test_keys_a_file_sets_over_the_preset_are_listed(tmp_path: Path) -> None:
    (tmp_path / "lse.toml").write_text('preset = "paper"\n[evolve]\nrequest = "facts"\nrounds = 25\n'
                                       "[task]\nshow_work = false\n")
    cfg = load_config(tmp_path)
    assert cfg.evolve.request == "facts"  # the file wins ...
    assert cfg.preset_notes() == ["lse.toml sets 2 key(s) over preset = 'paper': [evolve] request = 'facts' "
                                  "(paper: 'reference'); [task] show_work = False (paper: True)"]  # ... and says so


def test_a_run_says_so_when_it_starts_and_scores_feedback_once(tmp_path: Path) -> None:
    prompt = build_skill_workspace(tmp_path / "ws", n_problems=40, toml='preset = "paper"\n[evolve]\nrounds = 1\n'
                                   'batch_size = 4\nrequest = "compact"\n[model.sampling]\nsamples = 3\n')
    calls: list[str] = []

    def task(chat) -> str:
        calls.append(chat[-1]["content"])
        return skill_task_reply(chat)

    events: list[ProgressEvent] = []
    ws = Workspace(prompt, llms={"model": ScriptedLLM(task, "task"),
                                 "evolver": ScriptedLLM(lambda c: f"<prompt>{current_of(c)} t1</prompt>", "e")})
    result = evolve(ws, progress=events.append)
    notes = [e.message for e in events if "preset" in e.message or "holdout is 50" in e.message]
    assert notes[0].startswith("lse.toml sets 4 key(s) over preset = 'paper': [model.sampling] samples = 3 (paper: 8); "
                               "[evolve] rounds = 1 (paper: 25)")
    assert "the suite's dev split has 20 problems: the paper's holdout is 50" in notes[1]
    feedback = next(b for b in ws.store.get_batches(result.run_id) if b["split"] == "feedback")
    dev = next(b for b in ws.store.get_batches(result.run_id) if b["split"] == "dev")
    assert len(feedback["keys"]) == len(set(feedback["problem_ids"])) == 4  # the feedback batch: one sample each
    assert len(dev["keys"]) == 3 * len(set(dev["problem_ids"]))  # the holdout: k = 3 samples each
    ws.close()
    assert dataclasses.asdict(load_config(prompt).evolve)["rounds"] == 1 and PAPER["evolve"]["rounds"] == 25
