"""`lse train`: states from real runs with the exact chats the search sent, rewards scored as the tree
scores (the run's dev holdout with k samples, or the round's batch), the reference's schedule (on-policy
over data epochs, token-mean loss), checkpoints chosen on held-out runs, LoRA and full fine-tuning, resume,
and the paper's recipe through the public commands. The task model is scripted at the backend boundary
(in process, or behind a real HTTP server for the CLI); the evolver is a real (tiny, random) transformers
model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest

from lse_engine.config import TrainConfig
from lse_engine.llm.base import Sampling
from lse_engine.runner import evolve
from lse_engine.train.env import TrainEnv
from lse_engine.train.rewards import advantages, batch_score, reward_edit
from lse_engine.train.rollout import state_request
from lse_engine.train.states import batch_at, harvest, load_states, sample_states, split_by_run
from lse_engine.workspace import Workspace
from tests.conftest import build_skill_workspace
from tests.scripted import ScriptedLLM, current_of, instructions_of, question_of, user_message
from tests.test_search import collapsing_evolver, skill_task_reply

TASK_ID = "scripted:task"


SHORT = {"feedback_chars": 300, "show_schema": False}  # shorter evolver chats: the tiny model reads them faster


def make_runs(root: Path, seeds: tuple[int, ...] = (0, 1, 2), rounds: int = 4, overrides: dict | None = None) -> Path:
    """A skill workspace with one evolve run per seed (scripted task model and evolver)."""
    prompt = build_skill_workspace(root)
    for seed in seeds:
        evolve_settings = {**SHORT, "seed": seed, "rounds": rounds, **(overrides or {}).get("evolve", {})}
        settings = {**(overrides or {}), "evolve": evolve_settings}
        ws = Workspace(prompt, settings, llms={"model": ScriptedLLM(skill_task_reply, "task"),
                                               "evolver": ScriptedLLM(collapsing_evolver(), "evolver")})
        evolve(ws)
        ws.close()
    return prompt


def scripted_workspace(prompt: Path, overrides: dict | None = None, task: ScriptedLLM | None = None) -> Workspace:
    return Workspace(prompt, overrides, llms={"model": task or ScriptedLLM(skill_task_reply, "task")})


def tiny_overrides(model_dir: str, **train: object) -> dict:
    return {
        "evolver": {"backend": "transformers", "model": model_dir, "sampling": {"max_tokens": 16, "temperature": 1.0}},
        "model": {"sampling": {"max_tokens": 16}},
        "train": {"states": 2, "samples": 2, "data_epochs": 1, "task_model": "model", "lora_r": 4, "lora_alpha": 8,
                  "learning_rate": 1e-3, "rollout_max_tokens": 16, "reward_on": "batch", "eval_states": 1, **train},
    }


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_runs(tmp_path_factory.mktemp("runs") / "ws")


# -- states ------------------------------------------------------------------------------------------------
def test_states_carry_the_chat_the_evolver_was_sent_and_the_runs_holdout(runs_dir: Path) -> None:
    ws = scripted_workspace(runs_dir)
    store = ws.store
    states = harvest(store, str(ws.prompt_path), min_failures=1)
    assert states
    for s in states:
        nodes = {n["id"]: n for n in store.get_nodes(s.run_id)}
        batches = store.get_batches(s.run_id)
        parent, child = nodes[s.node_id], nodes[s.child_id]
        feedback = next(b for b in batches if (b["node_id"], b["split"], b["round"]) == (s.node_id, "feedback", s.round))
        root_dev = next(b for b in batches if (b["node_id"], b["split"]) == (0, "dev"))
        assert child["parent"] == s.node_id and child["round"] == s.round
        assert s.instructions == parent["instructions"] and s.feedback == child["feedback"]
        request = state_request(s, "text-to-sql", Sampling())
        recorded = json.loads(child["evolver_chat"])
        assert request.kind == recorded["kind"] == s.kind == "reference" and not s.prefill
        assert list(request.chats) == recorded["chats"] and len(request.chats) == 1
        assert list(s.heldout) == list(dict.fromkeys(feedback["problem_ids"])) and s.parent_heldout == feedback["score"]  # no H: F
        assert list(s.dev) == list(dict.fromkeys(root_dev["problem_ids"])) and s.parent_dev == parent["dev_score"]
        assert s.failures >= 1
    assert len({s.id for s in states}) == len(states)
    stricter = harvest(store, min_failures=4)
    assert all(s.failures >= 4 for s in stricter) and len(stricter) < len(states)
    ws.close()


def test_a_run_with_a_heldout_batch_gives_that_batch(tmp_path: Path) -> None:
    prompt = make_runs(tmp_path / "ws", seeds=(0,), rounds=2, overrides={"evolve": {"heldout_size": 4}})
    ws = Workspace(prompt)
    state = harvest(ws.store, min_failures=0)[0]
    held = next(b for b in ws.store.get_batches(state.run_id, state.node_id)
                if b["split"] == "heldout" and b["round"] == state.round)
    assert list(state.heldout) == held["problem_ids"] and len(state.heldout) == 4
    ws.close()


def test_split_by_run_or_suite_and_sampling_prefers_nodes_far_below_the_best(runs_dir: Path) -> None:
    ws = scripted_workspace(runs_dir)
    states = harvest(ws.store)
    train, held = split_by_run(states, 0.25, seed=0)
    assert train and held and not ({s.run_id for s in train} & {s.run_id for s in held})
    only_one = [s for s in states if s.run_id == states[0].run_id]
    assert split_by_run(only_one, 0.25) == (only_one, [])
    other = [dataclasses.replace(s, suite="/elsewhere/other.suite.yaml") for s in states[:3]]
    train, held = split_by_run(states + other, 0.5, seed=0, by="suite")
    assert len({s.suite for s in held}) == 1 and not ({s.suite for s in train} & {s.suite for s in held})
    # priority: a state far below its tree's best is drawn far more often than one at the best
    far, near = dataclasses.replace(states[0], id="far", gap=0.75), dataclasses.replace(states[0], id="near", gap=0.0)
    rng = random.Random(0)
    counts = {far.id: 0, near.id: 0}
    for _ in range(400):
        counts[sample_states([far, near], 1, rng)[0].id] += 1
    assert counts[far.id] > 5 * counts[near.id]
    ws.close()


def test_data_epochs_visit_every_state_once_each_in_batches(runs_dir: Path) -> None:
    ws = scripted_workspace(runs_dir)
    states = harvest(ws.store)[:7]
    per_epoch = 3  # 7 states in batches of 3: 3 + 3 + 1
    seen: dict[int, list[str]] = {}
    for step in range(1, 2 * per_epoch + 1):
        epoch, batch = batch_at(states, 3, seed=0, step=step)
        seen.setdefault(epoch, []).extend(s.id for s in batch)
        assert batch_at(states, 3, seed=0, step=step) == (epoch, batch)  # a function of (seed, step): resumable
    assert sorted(seen) == [1, 2]
    assert all(sorted(ids) == sorted(s.id for s in states) for ids in seen.values())
    assert seen[1] != seen[2]  # each epoch has its own order
    ws.close()


def test_the_same_expansion_in_two_runs_is_one_state(tmp_path: Path) -> None:
    prompt = make_runs(tmp_path / "ws", seeds=(5, 5), rounds=3)  # the same seed: identical trees
    ws = Workspace(prompt)
    runs = [r["id"] for r in sorted(ws.store.list_runs(), key=lambda r: r["created"])]
    states = harvest(ws.store, min_failures=0)
    assert len(runs) == 2 and len(states) == 3 and {s.run_id for s in states} == {runs[0]}  # kept once
    ws.close()


# -- rewards -----------------------------------------------------------------------------------------------
def test_holdout_reward_is_post_minus_pre_on_the_runs_dev_holdout_with_k_samples(tmp_path: Path) -> None:
    two = {"model": {"sampling": {"samples": 2}}}
    prompt = make_runs(tmp_path / "ws", seeds=(0,), rounds=3, overrides=two)
    task = ScriptedLLM(skill_task_reply, "task")
    ws = scripted_workspace(prompt, two, task)
    env = TrainEnv(ws)
    env.use_task_model("model", None)
    state = next(s for s in harvest(ws.store, min_failures=0) if 0 < (s.parent_dev or 0) < 1)
    dev = env.target(state, "holdout")
    assert dev is not None and [p.id for p in dev] == list(state.dev) and len(dev) == 20
    scorer = env.scorer(state)
    parent = batch_score(scorer, state.instructions, dev)
    assert parent == state.parent_dev and task.calls == []  # the run's own dev score, from the outcome cache
    r = reward_edit(scorer, "<prompt>t0 t1 t2 t3</prompt>", dev, parent, parent=state.instructions)
    assert r.valid and r.score == 1.0 and r.reward == pytest.approx(1.0 - parent)
    assert len(task.calls) == 2 * len(dev)  # k = 2 samples of every dev problem, as the tree scores a node
    assert {instructions_of(c) for c in task.calls} == {"t0 t1 t2 t3"}
    env.close()
    ws.close()


def test_batch_reward_noops_and_prefilled_replies(runs_dir: Path) -> None:
    ws = scripted_workspace(runs_dir)
    env = TrainEnv(ws)
    env.use_task_model("model", None)
    state = next(s for s in harvest(ws.store) if 0 < s.parent_heldout < 1 and "BROKEN" not in s.instructions)
    problems = env.target(state, "batch")
    assert problems is not None and [p.id for p in problems] == list(state.heldout)
    scorer = env.scorer(state)
    parent = batch_score(scorer, state.instructions, problems)
    assert parent == state.parent_heldout  # scored exactly as the tree scored it (same cache keys)

    def reward(reply: str, **kw: object):
        return reward_edit(scorer, reply, problems, parent, parent=state.instructions, **kw)

    better = reward("thinking…<prompt>t0 t1 t2 t3</prompt>")
    assert better.score == 1.0 and better.reward == pytest.approx(1.0 - parent) and better.reward > 0
    worse = reward("<prompt>t0 t1 t2 t3 BROKEN</prompt>")
    assert worse.reward == pytest.approx(-parent) and worse.reward < 0
    assert reward("<prompt>t0 t1 t2 t3</prompt>", reward="post").reward == 1.0
    # a no-op edit (whitespace aside) is invalid, as in the search; or worth exactly 0 when asked
    spaced = "<prompt>  " + "\n".join(state.instructions.split()) + " </prompt>"
    noop = reward(spaced)
    assert not noop.valid and noop.noop and noop.reward == -1.0
    assert reward(spaced, noop_reward="zero").reward == 0.0
    assert reward("no tags here").reward == -1.0 and not reward("no tags here").valid
    assert reward("<prompt> </prompt>", invalid_reward=-0.5).reward == -0.5
    # the search's parser: a prefilled reply may repeat the opening tag, or end without the closing one
    assert reward("<prompt>\n<prompt>\nt0 t1 t2 t3</prompt>", prefilled=True).reward == better.reward
    assert reward("<prompt>\nt0 t1 t2 t3", prefilled=True).reward == better.reward
    assert not reward("<prompt>\nt0 t1 t2 t3").valid  # the same reply without the prefill is unfinished
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


# -- rollouts see the search's prompts (A4) -----------------------------------------------------------------------
def test_rollouts_use_the_searchs_chat_and_prefill(tmp_path: Path, tiny_model_dir: str) -> None:
    from lse_engine.evolve.proposers.reference import build_chat
    from lse_engine.evolve.replies import with_prefill
    from lse_engine.llm.transformers_backend import TransformersLLM
    from lse_engine.train.policy import Policy, lora_model
    from lse_engine.train.rollout import collect, state_chat

    prompt = make_runs(tmp_path / "ws", seeds=(0,), rounds=2, overrides={"evolve": {"evolver_prefill": True}})
    ws = scripted_workspace(prompt, tiny_overrides(tiny_model_dir))
    state = harvest(ws.store, min_failures=0)[0]
    chat = state_chat(state, "text-to-sql")
    assert state.prefill and chat[-1] == {"role": "assistant", "content": "<prompt>\n"}
    backend = TransformersLLM(tiny_model_dir)
    policy = Policy(lora_model(backend.model, 4, 8, 0.0), backend.tokenizer, render=backend.render)
    assert policy.chat_ids(chat) == backend.render(chat)  # token for token what `lse evolve` sends
    env = TrainEnv(ws)
    env.use_task_model("model", None)
    cfg = TrainConfig(samples=3, reward_on="batch")
    from lse_engine.llm.base import Sampling

    ro = collect(env, policy, state, cfg, Sampling(max_tokens=12, temperature=1.0), seed=0)
    assert all(t.startswith("<prompt>\n") for t in ro.texts)
    # read as the search reads them: random tokens cut by the token limit before </prompt> are no instructions
    assert [r.error for r in ro.rewards] == ["the reply ran into the token limit before </prompt>"] * 3
    env.close()
    # a run older than the evolver_chat column: the chat is rebuilt, prefill included
    ws.store.db.execute("UPDATE nodes SET evolver_chat = NULL")
    ws.store.db.conn.commit()
    old = harvest(ws.store, min_failures=0)[0]
    assert old.chat == "" and old.prefill
    assert state_chat(old, "text-to-sql") == with_prefill(build_chat(old.instructions, old.feedback, "text-to-sql"))
    ws.close()


def test_rollout_replies_end_where_the_search_stops_the_evolver(tiny_model_dir: str) -> None:
    from lse_engine.evolve.replies import reply_text
    from lse_engine.train.rewards import parse_reply
    from lse_engine.train.rollout import stop_at

    policy = _tiny_policy(tiny_model_dir)
    plain, prefilled = [{"role": "user", "content": "x"}], [{"role": "user", "content": "x"},
                                                            {"role": "assistant", "content": "<prompt>\n"}]
    ids = policy.tokenizer("think <prompt>rule A</prompt> more <prompt>rule B</prompt>")["input_ids"]
    kept, text, hit_limit = stop_at(policy, ids, max_tokens=len(ids))
    # the search's evolver call stops at the first </prompt>: its tokens are the last ones generated
    assert policy.decode(kept).endswith("</prompt>") and policy.decode(kept).count("</prompt>") == 1
    assert text == "think <prompt>rule A" and not hit_limit
    assert parse_reply(reply_text(plain, text), False, 8000) == ("rule A", None)
    # a reply that ended (EOS) inside its block is closed, as the search closes it; one cut by the limit is not
    assert reply_text(plain, "ok <prompt>rule C") == "ok <prompt>rule C</prompt>"
    assert reply_text(plain, "ok <prompt>rule C", hit_limit=True) == "ok <prompt>rule C"
    assert reply_text(plain, "no tags") == "no tags"
    assert reply_text(prefilled, "rule D") == "<prompt>\nrule D</prompt>"
    assert parse_reply(reply_text(prefilled, "rule D", hit_limit=True), True, 8000) == ("rule D", None)
    cut = policy.tokenizer("abc def ghi")["input_ids"]
    assert stop_at(policy, cut, max_tokens=len(cut)) == (cut, "abc def ghi", True)


# -- the policy gradient on a tiny model ---------------------------------------------------------------------
def _tiny_policy(model_dir: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lse_engine.train.policy import Policy, lora_model

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return Policy(lora_model(model, 4, 8, 0.0), AutoTokenizer.from_pretrained(model_dir))


def test_loss_is_token_mean_over_the_batch_as_the_reference() -> None:
    import torch

    from lse_engine.train.policy import ppo_loss

    zeros = torch.zeros(2, 3)  # ratio 1: the loss is −advantage per token
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # edits of 3 and 1 tokens
    adv = torch.tensor([1.0, -1.0])
    assert float(ppo_loss(zeros, zeros, adv, mask, 0.2)) == pytest.approx((-3 + 1) / 4)  # token-mean
    assert float(ppo_loss(zeros, zeros, adv, mask, 0.2, "seq-mean")) == pytest.approx((-1 + 1) / 2)
    assert float(ppo_loss(zeros, zeros, adv, mask, 0.2, "token-mean", denominator=8)) == pytest.approx(-2 / 8)


def test_update_token_mean_counts_every_token_of_the_batch(tiny_model_dir: str) -> None:
    import torch

    from lse_engine.train.rollout import Rollout
    from lse_engine.train.update import ppo_update

    policy = _tiny_policy(tiny_model_dir)
    prompt = policy.chat_ids([{"role": "user", "content": "x"}])
    comps = [[5, 6, 7], [8], [9, 10, 11, 12]]
    with torch.no_grad():
        logps, mask = policy.token_logps([(prompt, c) for c in comps])
    old = [row[: int(m.sum())] for row, m in zip(logps, mask, strict=True)]
    ro = Rollout.single(None, prompt, comps, [], [1.0, -1.0, 0.0])  # type: ignore[arg-type]
    ro.old_logps = [[o] for o in old]
    opt = torch.optim.SGD(policy.trainable_parameters(), lr=0.0)
    out = ppo_update(policy, opt, [ro], epochs=1, clip=0.2, micro_batch=1, max_grad_norm=1.0)
    # ratio 1 on the first pass: −(1·3 − 1·1) / 8 tokens (the zero-advantage edit's 4 tokens count too)
    assert out["loss"] == pytest.approx(-2 / 8, abs=1e-5) and out["active"] == pytest.approx(2 / 3)
    seq = ppo_update(policy, opt, [ro], epochs=1, clip=0.2, micro_batch=1, max_grad_norm=1.0, agg="seq-mean")
    assert seq["loss"] == pytest.approx(0.0, abs=1e-5)


def test_an_update_runs_on_every_core_and_gives_decoding_its_count_back(tiny_model_dir: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The decode tuner may leave torch at 1 thread after the rollouts; the update's backward uses every core
    ($LSE_THREADS when set) and the tuner's count comes back after."""
    import torch

    from lse_engine.llm import cpu_threads
    from lse_engine.train.rollout import Rollout
    from lse_engine.train.update import ppo_update

    monkeypatch.delenv("LSE_THREADS", raising=False)
    policy = _tiny_policy(tiny_model_dir)
    prompt = policy.chat_ids([{"role": "user", "content": "x"}])
    with torch.no_grad():
        logps, mask = policy.token_logps([(prompt, [5, 6])])
    ro = Rollout.single(None, prompt, [[5, 6]], [], [1.0])  # type: ignore[arg-type]
    ro.old_logps = [[logps[0, : int(mask[0].sum())]]]
    seen: list[int] = []
    measure = policy.token_logps
    monkeypatch.setattr(policy, "token_logps", lambda pairs: (seen.append(torch.get_num_threads()), measure(pairs))[1])
    before = torch.get_num_threads()
    try:
        for env, want in (("", cpu_threads.cores()), ("1", 1)):
            monkeypatch.setenv("LSE_THREADS", env)
            torch.set_num_threads(1 if want > 1 else 2)
            ppo_update(policy, torch.optim.SGD(policy.trainable_parameters(), lr=0.0), [ro], epochs=1, clip=0.2,
                       micro_batch=1, max_grad_norm=1.0)
            assert seen[-1] == want and torch.get_num_threads() == (1 if want > 1 else 2)
    finally:
        torch.set_num_threads(before)


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
    ro = Rollout.single(None, prompt, [[5, 6], [7]], [], [0.0, 0.0])  # type: ignore[arg-type]
    ro.old_logps = [[torch.zeros(2)], [torch.zeros(1)]]
    before = [p.detach().clone() for p in policy.trainable_parameters()]
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=0.1)
    out = ppo_update(policy, opt, [ro], epochs=2, clip=0.2, micro_batch=2, max_grad_norm=1.0)
    assert out["active"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.trainable_parameters(), strict=True))


# -- end to end -------------------------------------------------------------------------------------------------
def test_train_chooses_the_checkpoint_best_on_held_out_runs_and_resumes(tmp_path: Path, tiny_model_dir: str) -> None:
    from lse_engine.llm.base import Sampling
    from lse_engine.llm.transformers_backend import TransformersLLM
    from lse_engine.train import train

    prompt = make_runs(tmp_path / "ws", seeds=(0, 1))
    events = []
    settings = tiny_overrides(tiny_model_dir, steps=2, checkpoint_every=1, keep_checkpoints=1)
    ws = scripted_workspace(prompt, settings)
    result = train(ws, progress=events.append)
    ws.close()
    assert result.status == "done" and result.step == 2
    assert result.data["runs"] == 2 and result.data["eval_runs"] == 1 and result.data["eval_states"] > 0
    assert [h["step"] for h in result.history] == [1.0, 2.0]
    for h in result.history:
        assert all(math.isfinite(h[k]) for k in ("loss", "mean_reward", "mean_delta", "kl", "grad_norm"))
    assert {e.kind for e in events} == {"train"} and events[-1].done
    assert [e.round for e in events if e.extra.get("phase") == "step"] == [1, 2]
    # every checkpoint was evaluated on the dev states; the best one (earliest on a tie) is the evolver
    ev = result.evaluation
    by_step = {int(k): v for k, v in ev["by_step"].items()}
    assert ev["on"] == "eval" and sorted(by_step) == [0, 1, 2] and ev["states"] == 1
    best = min((1, 2), key=lambda s: (-by_step[s], s))
    assert result.chosen_step == ev["step"] == best and ev["trained"]["mean_reward"] == by_step[best]
    assert ev["base"]["mean_reward"] == by_step[0]
    out = tmp_path / "ws" / ".lse" / "evolvers" / "evolver"
    chosen = out / "checkpoints" / f"step-{best:06d}"
    assert (out / "adapter_model.safetensors").read_bytes() == (chosen / "adapter_model.safetensors").read_bytes()
    kept = {p.name for p in (out / "checkpoints").iterdir()}
    assert kept == {"step-000002", chosen.name}  # the newest, and the best on dev whatever `keep` says
    meta = json.loads((out / "lse_meta.json").read_text())
    assert meta["data"]["states"] == result.data["states"] and meta["metrics"]["chosen_step"] == best
    assert meta["method"] == "lora"
    assert load_states(Workspace(prompt).store)[1]  # states saved with their split

    # the adapter loads back into the transformers backend and generates
    llm = TransformersLLM(tiny_model_dir, adapter=str(out))
    assert llm.generate([[{"role": "user", "content": "hi"}]], Sampling(max_tokens=4))[0] is not None
    llm.close()

    # resume: continues at step 3, repeats nothing, keeps the earlier history and dev evaluations
    events.clear()
    ws = scripted_workspace(prompt, {**settings, "train": {**settings["train"], "steps": 3}})
    resumed = train(ws, resume=True, progress=events.append)
    ws.close()
    assert resumed.status == "done" and resumed.step == 3
    assert [e.round for e in events if e.extra.get("phase") == "step"] == [3]
    assert [h["step"] for h in resumed.history] == [1.0, 2.0, 3.0] and resumed.history[:2] == result.history
    assert {int(k) for k in resumed.evaluation["by_step"]} == {0, 1, 2, 3}
    assert all(resumed.evaluation["by_step"][k] == v for k, v in ev["by_step"].items())


def test_cancel_during_an_evaluation_keeps_the_checkpoint_and_resume_evaluates_it(tmp_path: Path,
                                                                                  tiny_model_dir: str) -> None:
    from lse_engine.llm.base import CancelToken
    from lse_engine.train import train
    from lse_engine.train.checkpoints import load_trainer_state

    prompt = make_runs(tmp_path / "ws", seeds=(0, 1), rounds=2)
    cancel = CancelToken()

    def stop_in_the_evaluation(ev) -> None:
        if ev.extra.get("phase") == "eval" and ev.message.startswith("evaluating step 1"):
            cancel.cancel()

    overrides = tiny_overrides(tiny_model_dir, steps=1, states=1)
    ws = scripted_workspace(prompt, overrides)
    cut = train(ws, progress=stop_in_the_evaluation, cancel=cancel)
    ws.close()
    assert cut.status == "cancelled" and cut.step == 1 and cut.adapter is None
    saved = load_trainer_state(cut.out_dir / "checkpoints" / "step-000001")
    assert saved["step"] == 1 and set(saved["evals"]) == {0}  # saved before its evaluation
    ws = scripted_workspace(prompt, overrides)
    steps = []
    done = train(ws, resume=True, progress=lambda e: steps.append(e.round) if e.extra.get("phase") == "step" else None)
    ws.close()
    assert done.status == "done" and steps == [] and done.chosen_step == 1  # nothing re-trained, only evaluated
    assert set(done.evaluation["by_step"]) == {"0", "1"}
    assert set(load_trainer_state(done.out_dir / "checkpoints" / "step-000001")["evals"]) == {0, 1}


def test_full_fine_tuning_on_cpu_trains_a_copy_and_saves_a_loadable_model(tmp_path: Path, tiny_model_dir: str) -> None:
    import torch

    from lse_engine.llm.base import Sampling
    from lse_engine.llm.transformers_backend import TransformersLLM
    from lse_engine.train import train

    prompt = make_runs(tmp_path / "ws", seeds=(0, 1), rounds=3)
    evolver = TransformersLLM(tiny_model_dir)
    before = {k: v.clone() for k, v in evolver.model.state_dict().items()}
    ws = scripted_workspace(prompt, tiny_overrides(tiny_model_dir, method="full", steps=1, states=1,
                                                   learning_rate=1e-2))
    result = train(ws, llms={"evolver": evolver})
    ws.close()
    assert result.status == "done" and result.chosen_step == 1 and math.isfinite(result.history[0]["loss"])
    assert result.history[0]["active"] > 0  # edits with a non-zero reward: the weights had a gradient
    out = result.out_dir
    assert {"config.json", "model.safetensors", "lse_meta.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "adapter_config.json").exists()
    assert all(torch.equal(before[k], v) for k, v in evolver.model.state_dict().items())  # the base is untouched
    trained = TransformersLLM(str(out))
    changed = [k for k, v in trained.model.state_dict().items() if not torch.equal(before[k], v)]
    assert changed  # every weight was trainable: they moved
    # `--evolver NAME` (an adapter setting) takes a full fine-tune too
    via_adapter = TransformersLLM(tiny_model_dir, adapter=str(out))
    chat = [[{"role": "user", "content": "hi"}]]
    assert via_adapter.generate(chat, Sampling(max_tokens=6))[0].text == trained.generate(chat, Sampling(max_tokens=6))[0].text
    assert json.loads((out / "lse_meta.json").read_text())["method"] == "full"


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
    task = SelfTaskLLM(inner, peft_model, "pool:base")
    assert [c.text for c in task.generate(chats, greedy)] == reference != with_adapter
    assert task.model_id == "pool:base"


def test_train_with_the_self_task_model(tmp_path: Path, tiny_model_dir: str) -> None:
    from lse_engine.models.resolve import model_identity
    from lse_engine.train import train

    prompt = make_runs(tmp_path / "ws", seeds=(0,))
    ws = Workspace(prompt, tiny_overrides(tiny_model_dir, steps=1, states=1, task_model="self"))
    result = train(ws)
    base = dataclasses.replace(ws.config.evolver, adapter="")
    ws.close()
    assert result.status == "done" and math.isfinite(result.history[0]["mean_reward"])
    assert result.evaluation["on"] == "train" and result.chosen_step == 1  # one run: nothing held out
    meta = json.loads((result.out_dir / "lse_meta.json").read_text())
    # the base weights' identity: the cache keys of a run whose task model had these weights
    assert meta["task_model"] == "pool:" + model_identity(base, ws.config.root)


def test_no_runs_means_no_states(tmp_path: Path, tiny_model_dir: str) -> None:
    from lse_engine.train import train

    prompt = build_skill_workspace(tmp_path / "ws")
    ws = Workspace(prompt, tiny_overrides(tiny_model_dir))
    result = train(ws)
    ws.close()
    assert result.status == "no-states" and "lse evolve" in result.message


def test_the_old_epochs_key_is_a_clear_error(tmp_path: Path, tiny_model_dir: str) -> None:
    from lse_engine.errors import LSEError
    from lse_engine.train import train

    prompt = make_runs(tmp_path / "ws", seeds=(0,), rounds=2)
    ws = Workspace(prompt, tiny_overrides(tiny_model_dir, epochs=4))
    with pytest.raises(LSEError, match="train.epochs is gone.*train.ppo_epochs.*train.data_epochs"):
        train(ws)
    ws.close()


def test_cli_train_tiny(tmp_path: Path, tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    from lse_engine.cli import main

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny-model").symlink_to(tiny_model_dir)  # `--tiny` finds the built model there
    monkeypatch.setenv("LSE_CACHE_DIR", str(tmp_path / "cache"))
    prompt = make_runs(tmp_path / "ws", seeds=(0, 1), rounds=2)
    with (tmp_path / "ws" / "lse.toml").open("a") as f:
        f.write("[train]\neval_states = 1\n")  # one dev state: the tiny model writes its replies to the limit
    args = ["train", "--workspace", str(tmp_path / "ws"), "--tiny", "--name", "cli-evolver", "--steps", "1",
            "--states", "1", "--samples", "2", "--reward-on", "batch"]
    assert main(args) == 0
    out = tmp_path / "ws" / ".lse" / "evolvers" / "cli-evolver"
    assert (out / "adapter_model.safetensors").is_file() and (out / "lse_meta.json").is_file()
    assert json.loads((out / "lse_meta.json").read_text())["train"]["rollout_max_tokens"] == 32
    assert "chosen: step 1" in capsys.readouterr().out
    assert main(["train", str(prompt), "--workspace", str(tmp_path / "ws")]) == 2  # both: refused
    assert main([*args, "--epochs", "2"]) == 2
    assert "--ppo-epochs" in capsys.readouterr().err
    # the trained evolver, by name, drives an evolution
    assert main(["evolve", str(prompt), "--tiny", "--evolver", "cli-evolver", "--rounds", "1", "--batch-size", "3",
                 "--dev-size", "4"]) == 0
    store = Workspace(prompt).store
    run = store.list_runs(str(prompt.resolve()), limit=1)[0]
    assert str(out) in run["evolver_id"] and run["evolver_calls"] >= 1


def test_trl_scale_out_uses_raw_delta_rewards_as_advantages(runs_dir: Path, tiny_model_dir: str) -> None:
    """The TRL path (GRPOTrainer) on CPU: one step; the rewards reach the loss unnormalised."""
    pytest.importorskip("trl")
    from lse_engine.train.trl_scale import build_trainer

    ws = scripted_workspace(runs_dir, tiny_overrides(tiny_model_dir))
    env = TrainEnv(ws)
    cfg = TrainConfig(name="trl", states=1, samples=2, steps=1, advantage="delta", reward_on="batch",
                      rollout_max_tokens=16, loss_agg="seq-mean")
    trainer = build_trainer(env, cfg, harvest(ws.store)[:2], use_cpu=True)
    trainer.train()
    log = trainer.state.log_history[0]
    rewards = trainer.lse_reward.last
    # ratio 1 on the first pass: loss = −mean(advantage) = −mean(raw reward); a group-mean baseline would give 0
    assert log["loss"] == pytest.approx(-sum(rewards) / len(rewards), abs=1e-3)
    env.close()
    ws.close()


# -- the paper's recipe through the public commands ------------------------------------------------------------
RECIPE_TOML = """[model]
backend = "openai"
model = "scripted"
base_url = "{base_url}"
[model.sampling]
max_tokens = 32
[evolver]
backend = "transformers"
model = "{evolver}"
[evolver.sampling]
max_tokens = 16
temperature = 1.0
[evolve]
evolver_prefill = true
evolver_retries = 0
feedback_chars = 300
show_schema = false
[train]
rollout_max_tokens = 16
eval_states = 2
learning_rate = 0.001
lora_r = 4
lora_alpha = 8
"""


def test_recipe_train_on_some_databases_then_evaluate_on_an_unseen_one(tmp_path: Path, tiny_model_dir: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/training.md's recipe: `lse bench` runs on two databases, `lse train --workspace` on them, then
    `lse bench --evolver` compares base and trained on a third database the evolver never saw. The task
    model is scripted behind a real HTTP server (the openai backend); the evolver is the tiny model."""
    from lse_engine.cli import main
    from lse_engine.store import Store
    from tests.openai_stub import ScriptedOpenAIServer
    from tests.test_bench import build_spider

    data = build_spider(tmp_path / "spider", dbs=("alpha", "beta", "gamma"), per_db=16)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "root.txt").write_text("t0\n")
    common = ["--data", str(data), "--rules", "ucb", "--max-model-calls", "24", "--batch-size", "3",
              "--dev-size", "4", "--prompt", "root.txt", "--quiet"]
    with ScriptedOpenAIServer(lambda messages, request: skill_task_reply(messages)) as srv:
        (tmp_path / "lse.toml").write_text(RECIPE_TOML.format(base_url=srv.base_url, evolver=tiny_model_dir))
        assert main(["bench", "spider", "--dbs", "alpha,beta", "--seeds", "2", "--out", "runs-train", *common]) == 0
        assert main(["train", "--workspace", "runs-train", "--name", "sql-evolver", "--steps", "2", "--states", "2",
                     "--samples", "2", "--task-model", "model"]) == 0
        evolver = tmp_path / "runs-train" / ".lse" / "evolvers" / "sql-evolver"
        assert main(["bench", "spider", "--dbs", "gamma", "--seeds", "1", "--out", "runs-test", "--evolver",
                     str(evolver), *common]) == 0
    meta = json.loads((evolver / "lse_meta.json").read_text())
    trained_on = {Path(p).name for p in meta["data"]["train_suites"] + meta["data"]["eval_suites"]}
    assert trained_on == {"alpha.suite.yaml", "beta.suite.yaml"}  # states from both databases, none from gamma
    assert meta["data"]["eval_runs"] == 1 and meta["metrics"]["chosen_step"] in (1, 2)
    assert meta["train"]["reward_on"] == "holdout" and meta["task_model"].startswith("pool:")
    report = json.loads((tmp_path / "runs-test" / "bench.json").read_text())
    assert [s["name"] for s in report["suites"]] == ["gamma"]  # the evaluation covers only the unseen database
    runs = report["suites"][0]["runs"]
    assert sorted(r["evolver"] for r in runs) == ["base", "sql-evolver"]
    assert all(r["winner_test"] is not None for r in runs)
    store = Store(tmp_path / "runs-test" / ".lse" / "lse.db", readonly=True)
    rows = {r["id"]: r for r in store.list_runs(limit=10)}
    trained = rows[next(r["run_id"] for r in runs if r["evolver"] == "sql-evolver")]
    assert str(evolver) in trained["evolver_id"] and trained["evolver_calls"] >= 1  # the saved adapter drove it
    store.close()


# -- every request kind trains (issue 22) -------------------------------------------------------------------------
class ScriptedSamplePolicy:
    """A fake at the sampling boundary only: the evolver's replies come from a function of the chat (as in the
    scripted searches), encoded by the tiny model's real tokenizer; the rest of training (the recorded request
    asked again, the kind's own reading and gate, the rewards) is real."""

    def __init__(self, policy, reply) -> None:  # noqa: ANN001
        self.inner, self.reply, self.asked = policy, reply, []

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.inner, name)

    def chat_ids(self, chat):  # noqa: ANN001, ANN201
        ids = self.inner.chat_ids(chat)
        self.asked.append((ids, chat))
        return ids

    def sample(self, prompt_ids, n, sampling, seed):  # noqa: ANN001, ANN201
        chat = next(c for ids, c in self.asked if ids == prompt_ids)
        text = self.reply(chat) + (sampling.stop[0] if sampling.stop else "")
        return [self.inner.tokenizer(text, add_special_tokens=False)["input_ids"] for _ in range(n)]


def _train_env_states(prompt: Path, run_settings: dict, evolver_reply, task_reply):
    ws = Workspace(prompt, run_settings, llms={"model": ScriptedLLM(task_reply, "task"),
                                               "evolver": ScriptedLLM(evolver_reply, "evolver")})
    result = evolve(ws)
    ws.close()
    ws = scripted_workspace(prompt, run_settings, task=ScriptedLLM(task_reply, "task"))
    env = TrainEnv(ws)
    env.use_task_model("model", None)
    return ws, env, harvest(ws.store, min_failures=1), result


@pytest.mark.parametrize("kind", ["facts", "reference"])
def test_every_request_kind_trains_on_what_the_search_accepted(tmp_path: Path, tiny_model_dir: str, kind: str) -> None:
    """The replies the search accepted, sampled again in training for the same recorded request, are read and
    gated exactly as the search read them: valid edits with real rewards (a facts run used to give every reply
    −1: training looked for a <prompt> block in a fact)."""
    import re as re_

    from lse_engine.llm.base import Sampling
    from lse_engine.train.rollout import collect
    from tests.test_method import _coded_workspace

    def fact(chat) -> str:
        column = re_.search(r"The correct query compares (\w+) with ", chat[0]["content"]).group(1)
        return {"status_code": " stores the state: 'D' is delivered, 'C' cancelled, 'P' pending.",
                "region": " stores regions in capital letters."}[column]

    def rewrite(chat) -> str:
        return f"<prompt>{current_of(chat)}\nstatus_code 'D' means delivered.</prompt>"

    def task(chat) -> str:
        instructions = instructions_of(chat) + user_message(chat)  # a fact may come with the question alone
        where = re_.search(r"Which orders are (.+?) \(#", question_of(chat)).group(1)
        code = {"delivered": "D", "cancelled": "C", "pending": "P"}.get(where)
        if code and f"'{code}'" in instructions:
            return f"<answer>SELECT id FROM orders WHERE status_code = '{code}'</answer>"
        return "<answer>SELECT id FROM orders WHERE id > 99</answer>"

    prompt = _coded_workspace(tmp_path / "ws")
    settings = {"evolve": {"rounds": 1, "batch_size": 10, "request": kind}}
    ws, env, states, result = _train_env_states(prompt, settings, fact if kind == "facts" else rewrite, task)
    assert result.tree.nodes[1].status == "ok" and states  # the search kept the edit
    state = states[0]
    assert state.kind == kind
    policy = ScriptedSamplePolicy(_tiny_policy(tiny_model_dir), fact if kind == "facts" else rewrite)
    ro = collect(env, policy, state, TrainConfig(samples=2, reward_on="holdout"), Sampling(max_tokens=64,
                                                                                          temperature=1.0), seed=0)
    assert len(ro.prompts) == (2 if kind == "facts" else 1)  # facts: one chat per column asked about, as the search
    assert all(r.valid for r in ro.rewards), [r.error for r in ro.rewards]
    child = result.tree.nodes[1]
    assert ro.rewards[0].delta == pytest.approx((child.dev_score or 0) - (result.root_dev or 0))  # the search's delta
    env.close()
    ws.close()


def test_train_says_clearly_when_runs_hold_nothing_to_learn_from(tmp_path: Path) -> None:
    """No run, runs without a failure to learn from, runs whose suite changed since: one clear message each,
    counted, and nothing trained on stale data."""
    from lse_engine.train import train

    prompt = build_skill_workspace(tmp_path / "ws")
    evolver = ScriptedLLM(lambda chat: f"<prompt>{current_of(chat)} x</prompt>", "evolver")
    task = ScriptedLLM(skill_task_reply, "task")
    result = train(Workspace(prompt), llms={"model": task, "evolver": evolver})
    assert result.status == "no-states" and result.message.endswith("no evolve runs yet; run `lse evolve` first")
    prompt.write_text(prompt.read_text().replace("t0\n", "t0 t1 t2 t3\n"))  # every question right: no failure
    ws = Workspace(prompt, {"evolve": {"rounds": 1}}, llms={"model": task, "evolver": evolver})
    evolve(ws)
    ws.close()
    result = train(Workspace(prompt), llms={"model": task, "evolver": evolver})
    assert result.status == "no-states" and result.message.endswith(
        ": 1 evolve run(s); no expansion with at least 1 failure(s) in its feedback batch (train.min_failures)")
    suite = prompt.parent / "nums.suite.yaml"
    suite.write_text(suite.read_text() + "\n# edited since\n")
    result = train(Workspace(prompt), llms={"model": task, "evolver": evolver})
    assert "1 left out because their suite changed since (nothing trains on stale data" in result.message
    assert result.data["stale_runs"] and not result.data["states"]
