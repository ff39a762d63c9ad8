"""`lse train`: states from real runs, delta rewards scored as the tree scores, PPO-clip on a LoRA adapter
of a tiny model, checkpoints and resume. The task model is scripted at the backend boundary where exact
rewards matter; the evolver is a real (tiny, random) transformers model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest

from lse_engine.config import TrainConfig
from lse_engine.runner import evolve
from lse_engine.train.env import TrainEnv
from lse_engine.train.rewards import advantages, batch_score, reward_edit
from lse_engine.train.states import harvest, load_states, sample_states, split_by_run
from lse_engine.workspace import Workspace
from tests.conftest import build_skill_workspace
from tests.scripted import ScriptedLLM, instructions_of
from tests.test_search import collapsing_evolver, skill_task_reply

TASK_ID = "scripted:task"


def make_runs(root: Path, seeds: tuple[int, ...] = (0, 1, 2), rounds: int = 4) -> Path:
    """A skill workspace with one evolve run per seed (scripted task model and evolver)."""
    prompt = build_skill_workspace(root)
    for seed in seeds:
        ws = Workspace(prompt, {"evolve": {"seed": seed, "rounds": rounds}},
                       llms={"model": ScriptedLLM(skill_task_reply, "task"),
                             "evolver": ScriptedLLM(collapsing_evolver(), "evolver")})
        evolve(ws)
        ws.close()
    return prompt


def scripted_workspace(prompt: Path, overrides: dict | None = None) -> Workspace:
    return Workspace(prompt, overrides, llms={"model": ScriptedLLM(skill_task_reply, "task")})


def tiny_overrides(model_dir: str, **train: object) -> dict:
    return {
        "evolver": {"backend": "transformers", "model": model_dir, "sampling": {"max_tokens": 16, "temperature": 1.0}},
        "model": {"sampling": {"max_tokens": 16}},
        "train": {"states": 2, "samples": 2, "epochs": 2, "task_model": "model", "lora_r": 4, "lora_alpha": 8,
                  "learning_rate": 1e-3, **train},
    }


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_runs(tmp_path_factory.mktemp("runs") / "ws")


# -- states ------------------------------------------------------------------------------------------------
def test_states_come_from_the_recorded_expansions(runs_dir: Path) -> None:
    ws = scripted_workspace(runs_dir)
    store = ws.store
    states = harvest(store, str(ws.prompt_path), min_failures=1)
    assert states
    for s in states:
        parent = next(n for n in store.get_nodes(s.run_id) if n["id"] == s.node_id)
        child = next(n for n in store.get_nodes(s.run_id) if n["id"] == s.child_id)
        held = next(b for b in store.get_batches(s.run_id, s.node_id) if b["split"] == "heldout" and b["round"] == s.round)
        assert child["parent"] == s.node_id and child["round"] == s.round
        assert s.instructions == parent["instructions"] and s.feedback == child["feedback"]
        assert list(s.heldout) == held["problem_ids"] and s.parent_heldout == held["score"]
        assert s.failures >= 1
    assert len({s.id for s in states}) == len(states)
    stricter = harvest(store, min_failures=4)
    assert all(s.failures >= 4 for s in stricter) and len(stricter) < len(states)
    ws.close()


def test_split_is_by_run_and_sampling_prefers_nodes_far_below_the_best(runs_dir: Path) -> None:
    ws = scripted_workspace(runs_dir)
    states = harvest(ws.store)
    train, held = split_by_run(states, 0.25, seed=0)
    assert train and held and not ({s.run_id for s in train} & {s.run_id for s in held})
    only_one = [s for s in states if s.run_id == states[0].run_id]
    assert split_by_run(only_one, 0.25) == (only_one, [])
    # priority: a state far below its tree's best is drawn far more often than one at the best
    far, near = dataclasses.replace(states[0], id="far", gap=0.75), dataclasses.replace(states[0], id="near", gap=0.0)
    rng = random.Random(0)
    counts = {far.id: 0, near.id: 0}
    for _ in range(400):
        counts[sample_states([far, near], 1, rng)[0].id] += 1
    assert counts[far.id] > 5 * counts[near.id]
    ws.close()


def test_the_same_expansion_in_two_runs_is_one_state(tmp_path: Path) -> None:
    prompt = make_runs(tmp_path / "ws", seeds=(5, 5), rounds=3)  # the same seed: identical trees
    ws = Workspace(prompt)
    runs = [r["id"] for r in sorted(ws.store.list_runs(), key=lambda r: r["created"])]
    states = harvest(ws.store, min_failures=0)
    assert len(runs) == 2 and len(states) == 3 and {s.run_id for s in states} == {runs[0]}  # kept once
    ws.close()


# -- rewards -----------------------------------------------------------------------------------------------
def test_reward_is_a_delta_on_the_same_batch(runs_dir: Path) -> None:
    ws = scripted_workspace(runs_dir)
    env = TrainEnv(ws)
    env.use_task_model("model", None)
    state = next(s for s in harvest(ws.store) if 0 < s.parent_heldout < 1 and "BROKEN" not in s.instructions)
    problems = env.problems(state)
    scorer = env.scorer(state)
    parent = batch_score(scorer, state.instructions, problems)
    assert parent == state.parent_heldout  # scored exactly as the tree scored it (same cache keys)

    def reward(reply: str, **kw: object):
        return reward_edit(scorer, reply, problems, parent, **kw)

    same = reward(f"thinking…<prompt>{state.instructions}</prompt>")
    assert same.valid and same.reward == 0.0 and same.delta == 0.0
    better = reward("<prompt>t0 t1 t2 t3</prompt>")
    assert better.score == 1.0 and better.reward == pytest.approx(1.0 - parent) and better.reward > 0
    worse = reward("<prompt>t0 t1 t2 t3 BROKEN</prompt>")
    assert worse.reward == pytest.approx(-parent) and worse.reward < 0
    assert reward("no tags here").reward == -1.0 and not reward("no tags here").valid
    assert reward("<prompt> </prompt>", invalid_reward=-0.5).reward == -0.5
    assert reward("<prompt>t0 t1 t2 t3</prompt>", reward="post").reward == 1.0
    assert reward("<prompt>t0 t1 t2 t3</prompt>").reward == better.reward  # deterministic (cached)
    # the edit's task chats carry the edit as their instructions, like a node's
    task_llm = env.task_llm
    assert isinstance(task_llm, ScriptedLLM)
    assert any(instructions_of(c) == "t0 t1 t2 t3" for c in task_llm.calls)
    env.close()
    ws.close()


def test_advantages_delta_is_the_reward_and_grpo_normalises_the_group() -> None:
    rewards = [0.2, -1.0, 0.0, 0.6]
    assert advantages(rewards, "delta") == rewards
    adv = advantages(rewards, "grpo")
    mean = sum(rewards) / 4
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / 3)
    assert adv == pytest.approx([(r - mean) / (std + 1e-4) for r in rewards])
    assert advantages([0.3] * 4, "grpo") == [0.0] * 4
    assert advantages([-1.0] * 4, "delta") == [-1.0] * 4


# -- the policy gradient on a tiny model ---------------------------------------------------------------------
def _tiny_policy(model_dir: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lse_engine.train.policy import Policy, lora_model

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return Policy(lora_model(model, 4, 8, 0.0), AutoTokenizer.from_pretrained(model_dir))


def test_equal_group_gives_exactly_zero_gradient_under_grpo(tiny_model_dir: str) -> None:
    import torch

    from lse_engine.llm.base import Sampling
    from lse_engine.train.policy import ppo_loss

    policy = _tiny_policy(tiny_model_dir)
    prompt = policy.chat_ids([{"role": "user", "content": "improve: t0"}])
    completions = policy.sample(prompt, 4, Sampling(max_tokens=8, temperature=1.0), seed=0)
    pairs = [(prompt, c) for c in completions]
    with torch.no_grad():
        old, _ = policy.token_logps(pairs)
    params = policy.trainable_parameters()
    # perturb the adapter so the ratio is not 1 and LoRA B is not zero: gradients would flow if allowed to
    with torch.no_grad():
        for p in params:
            p.add_(0.01 * torch.randn_like(p))

    def grads(adv: list[float]) -> list[torch.Tensor]:
        policy.model.zero_grad(set_to_none=False)
        logps, mask = policy.token_logps(pairs)
        ppo_loss(logps, old, torch.tensor(adv), mask, 0.2).backward()
        return [p.grad.clone() for p in params]

    equal = grads(advantages([0.5] * 4, "grpo"))
    assert all(torch.count_nonzero(g) == 0 for g in equal)
    mixed = grads(advantages([0.5, 0.0, -1.0, 0.5], "grpo"))
    assert any(torch.count_nonzero(g) > 0 for g in mixed)
    delta = grads(advantages([0.5] * 4, "delta"))  # the same group under `delta` does push the policy
    assert any(torch.count_nonzero(g) > 0 for g in delta)


def test_update_skips_a_zero_advantage_batch(tiny_model_dir: str) -> None:
    import torch

    from lse_engine.train.rollout import Rollout
    from lse_engine.train.update import ppo_update

    policy = _tiny_policy(tiny_model_dir)
    prompt = policy.chat_ids([{"role": "user", "content": "x"}])
    ro = Rollout(state=None, prompt_ids=prompt, completions=[[5, 6], [7]], texts=["", ""], parent_score=0.0,  # type: ignore[arg-type]
                 rewards=[], advantages=[0.0, 0.0], old_logps=[torch.zeros(2), torch.zeros(1)])
    before = [p.detach().clone() for p in policy.trainable_parameters()]
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=0.1)
    out = ppo_update(policy, opt, [ro], epochs=2, clip=0.2, micro_batch=2, max_grad_norm=1.0)
    assert out["active"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.trainable_parameters()))


# -- end to end -------------------------------------------------------------------------------------------------
def test_train_end_to_end_saves_an_adapter_and_resumes(tmp_path: Path, tiny_model_dir: str) -> None:
    from lse_engine.llm.base import Sampling
    from lse_engine.llm.transformers_backend import TransformersLLM
    from lse_engine.train import train

    prompt = make_runs(tmp_path / "ws", seeds=(0, 1))
    events = []
    ws = scripted_workspace(prompt, tiny_overrides(tiny_model_dir, steps=2, checkpoint_every=1))
    result = train(ws, progress=events.append)
    ws.close()
    assert result.status == "done" and result.step == 2
    assert result.data["runs"] == 2 and result.data["eval_runs"] == 1 and result.data["eval_states"] > 0
    assert [h["step"] for h in result.history] == [1.0, 2.0]
    for h in result.history:
        assert all(math.isfinite(h[k]) for k in ("loss", "mean_reward", "mean_delta", "kl", "grad_norm"))
    assert {e.kind for e in events} == {"train"} and events[-1].done
    assert [e.round for e in events if e.extra.get("phase") == "step"] == [1, 2]
    out = tmp_path / "ws" / ".lse" / "evolvers" / "evolver"
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    meta = json.loads((out / "lse_meta.json").read_text())
    assert meta["data"]["states"] == result.data["states"] and meta["metrics"]["steps"] == 2
    assert set(meta["metrics"]["evaluation"]) >= {"base", "trained"}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000001", "step-000002"]
    assert load_states(Workspace(prompt).store)[1]  # states saved with their split

    # the adapter loads back into the transformers backend and generates
    llm = TransformersLLM(tiny_model_dir, adapter=str(out))
    assert llm.generate([[{"role": "user", "content": "hi"}]], Sampling(max_tokens=4))[0] is not None
    llm.close()

    # resume: continues at step 3, repeats nothing
    events.clear()
    ws = scripted_workspace(prompt, tiny_overrides(tiny_model_dir, steps=3, checkpoint_every=1))
    resumed = train(ws, resume=True, progress=events.append)
    ws.close()
    assert resumed.status == "done" and resumed.step == 3
    assert [e.round for e in events if e.extra.get("phase") == "step"] == [3]
    assert [h["step"] for h in resumed.history] == [1.0, 2.0, 3.0]
    assert resumed.history[:2] == result.history


def test_cancel_keeps_a_checkpoint_and_resume_continues(tmp_path: Path, tiny_model_dir: str) -> None:
    from lse_engine.llm.base import CancelToken
    from lse_engine.train import train

    prompt = make_runs(tmp_path / "ws", seeds=(0,))
    cancel = CancelToken()

    def stop_after_first_step(ev) -> None:
        if ev.extra.get("phase") == "step":
            cancel.cancel()

    overrides = tiny_overrides(tiny_model_dir, steps=3, checkpoint_every=10, states=1, epochs=1)
    ws = scripted_workspace(prompt, overrides)
    cut = train(ws, progress=stop_after_first_step, cancel=cancel)
    ws.close()
    assert cut.status == "cancelled" and cut.step == 1 and cut.adapter is None
    assert (cut.out_dir / "checkpoints" / "step-000001" / "trainer_state.pt").is_file()
    ws = scripted_workspace(prompt, overrides)
    steps = []
    done = train(ws, resume=True, progress=lambda e: steps.append(e.round) if e.extra.get("phase") == "step" else None)
    ws.close()
    assert done.status == "done" and steps == [2, 3]


def test_self_task_model_answers_with_the_adapter_off(tiny_model_dir: str) -> None:
    import torch

    from lse_engine.llm.base import Sampling
    from lse_engine.llm.transformers_backend import TransformersLLM
    from lse_engine.train.env import SelfTaskLLM
    from lse_engine.train.policy import lora_model

    chats = [[{"role": "user", "content": f"Question: which row holds {i}?"}] for i in range(3)]
    greedy = Sampling(max_tokens=12)
    reference = [c.text for c in TransformersLLM(tiny_model_dir).generate(chats, greedy)]
    inner = TransformersLLM(tiny_model_dir)
    peft_model = lora_model(inner.model, 4, 8, 0.0)
    with torch.no_grad():  # a strong adapter: with it on, the answers change
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p))
    with_adapter = [c.text for c in inner.generate(chats, greedy)]
    task = SelfTaskLLM(inner, peft_model)
    assert [c.text for c in task.generate(chats, greedy)] == reference != with_adapter
    assert task.model_id == inner.model_id and inner.model_id.endswith(":")  # the base's identity in cache keys


def test_train_with_the_self_task_model(tmp_path: Path, tiny_model_dir: str) -> None:
    from lse_engine.train import train

    prompt = make_runs(tmp_path / "ws", seeds=(0,))
    ws = Workspace(prompt, tiny_overrides(tiny_model_dir, steps=1, states=1, epochs=1, task_model="self"))
    result = train(ws)
    ws.close()
    assert result.status == "done" and math.isfinite(result.history[0]["mean_reward"])
    meta = json.loads((result.out_dir / "lse_meta.json").read_text())
    assert meta["task_model"] == meta["base_model"] and meta["task_model"].startswith("transformers:")


def test_no_runs_means_no_states(tmp_path: Path, tiny_model_dir: str) -> None:
    from lse_engine.train import train

    prompt = build_skill_workspace(tmp_path / "ws")
    ws = Workspace(prompt, tiny_overrides(tiny_model_dir))
    result = train(ws)
    ws.close()
    assert result.status == "no-states" and "lse evolve" in result.message


def test_cli_train_tiny(tmp_path: Path, tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from lse_engine.cli import main

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny-model").symlink_to(tiny_model_dir)  # `--tiny` finds the built model there
    monkeypatch.setenv("LSE_CACHE_DIR", str(tmp_path / "cache"))
    prompt = make_runs(tmp_path / "ws", seeds=(0, 1))
    args = ["train", "--workspace", str(tmp_path / "ws"), "--tiny", "--name", "cli-evolver", "--steps", "1",
            "--states", "1", "--samples", "2", "--epochs", "1"]
    assert main(args) == 0
    out = tmp_path / "ws" / ".lse" / "evolvers" / "cli-evolver"
    assert (out / "adapter_model.safetensors").is_file() and (out / "lse_meta.json").is_file()
    assert main(["train", str(prompt), "--workspace", str(tmp_path / "ws")]) == 2  # both: refused
    # the trained evolver, by name, drives an evolution
    assert main(["evolve", str(prompt), "--tiny", "--evolver", "cli-evolver", "--rounds", "1", "--batch-size", "3",
                 "--dev-size", "4"]) == 0
    store = Workspace(prompt).store
    run = store.list_runs(str(prompt.resolve()), limit=1)[0]
    assert run["evolver_id"].endswith(f":{out}") and run["evolver_calls"] >= 1


def test_trl_scale_out_uses_raw_delta_rewards_as_advantages(runs_dir: Path, tiny_model_dir: str) -> None:
    """The TRL path (GRPOTrainer) on CPU: one step; the rewards reach the loss unnormalised."""
    pytest.importorskip("trl")
    from lse_engine.train.trl_scale import build_trainer

    ws = scripted_workspace(runs_dir, tiny_overrides(tiny_model_dir))
    env = TrainEnv(ws)
    cfg = TrainConfig(name="trl", states=1, samples=2, epochs=1, steps=1, advantage="delta")
    trainer = build_trainer(env, cfg, harvest(ws.store)[:2], use_cpu=True)
    trainer.train()
    log = trainer.state.log_history[0]
    rewards = trainer.lse_reward.last
    # ratio 1 on the first pass: loss = −mean(advantage) = −mean(raw reward); a group-mean baseline would give 0
    assert log["loss"] == pytest.approx(-sum(rewards) / len(rewards), abs=1e-3)
    env.close()
    ws.close()
