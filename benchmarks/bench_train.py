"""Evolver training throughput and memory on CPU (and one GRPO step of a 0.5B model when CUDA is there).

1. update: one on-policy PPO-clip update (4 states × 4 edits, 1 pass, token-mean loss) of a small random
   Qwen2-style model, with a LoRA adapter vs full fine-tuning of the same model: updates per minute and
   peak RSS, each measured in its own process (so peak memory is its own); reported as LoRA / full ratios.
2. end to end: `train()` steps (sample edits with the chats the search sent, score them through the
   scorer, update) of the tiny model on a scripted skill workspace, each configuration in its own process:
   LoRA with the batch reward, LoRA with the holdout reward (the paper's: every edit scored on the run's
   dev holdout), and full fine-tuning with the batch reward: steps per minute, task-model calls per step,
   peak RSS, peak Python heap (tracemalloc); the dev evaluations that choose the checkpoint are timed apart.
3. GPU (only with CUDA): one GRPO step of a Qwen2-0.5B-sized model built from its config (random weights):
   time per step and generated tokens per second. Otherwise prints "skipped: no CUDA".

    python benchmarks/bench_train.py [--quick] [--strict]

Writes benchmarks/results/bench_train.json. `--strict` exits 1 when a loss or a reward is not finite.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).parent / "results"


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Tok:
    """The two ids Policy needs, for models without a tokenizer (random weights)."""

    pad_token_id = 0
    eos_token_id = 1


def _rollouts(policy: Any, states: int, samples: int, prompt_len: int, completion_len: int, vocab: int) -> list:
    import torch

    from lse_engine.train.rewards import advantages
    from lse_engine.train.rollout import Rollout

    g = torch.Generator().manual_seed(0)
    out = []
    for s in range(states):
        prompt = torch.randint(2, vocab, (prompt_len,), generator=g).tolist()
        comps = [torch.randint(2, vocab, (completion_len,), generator=g).tolist() for _ in range(samples)]
        rewards = [((s + i) % 3 - 1) / 2 for i in range(samples)]
        out.append(Rollout.single(None, prompt, comps, [], advantages(rewards, "delta")))  # type: ignore[arg-type]
    with torch.no_grad():  # old log-probs only: a full fine-tune has no adapter to switch off for a reference
        for r in out:
            logps, mask = policy.token_logps([(r.prompts[0], edit[0]) for edit in r.edits])
            r.old_logps = [[row[: int(m.sum())]] for row, m in zip(logps, mask, strict=True)]
    return out


def _update_worker(mode: str, updates: int, queue: Any) -> None:
    """Child process: time `updates` PPO updates of the small model with LoRA or full fine-tuning."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from lse_engine.train.policy import Policy, lora_model
    from lse_engine.train.update import ppo_update

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=4096, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    model = Qwen2ForCausalLM(cfg)
    total = sum(p.numel() for p in model.parameters())
    model = lora_model(model, 16, 32, 0.0) if mode == "lora" else model
    policy = Policy(model, _Tok())
    rollouts = _rollouts(policy, states=4, samples=4, prompt_len=256, completion_len=32, vocab=cfg.vocab_size)
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-5)
    ppo_update(policy, opt, rollouts, 1, 0.2, 4, 1.0)  # warm-up (allocates optimizer state)
    t0 = time.perf_counter()
    losses = [ppo_update(policy, opt, rollouts, 1, 0.2, 4, 1.0)["loss"] for _ in range(updates)]
    secs = time.perf_counter() - t0
    queue.put({"mode": mode, "params": total, "trainable": sum(p.numel() for p in policy.trainable_parameters()),
               "updates_per_min": 60 * updates / secs, "seconds_per_update": secs / updates,
               "peak_rss_mb": peak_rss_mb(), "finite": all(math.isfinite(x) for x in losses)})


def bench_update(updates: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out: dict[str, Any] = {}
    for mode in ("lora", "full"):
        q = ctx.Queue()
        p = ctx.Process(target=_update_worker, args=(mode, updates, q))
        p.start()
        out[mode] = q.get(timeout=600)
        p.join()
    out["ratio_updates_per_min_lora_vs_full"] = out["lora"]["updates_per_min"] / out["full"]["updates_per_min"]
    out["ratio_peak_rss_lora_vs_full"] = out["lora"]["peak_rss_mb"] / out["full"]["peak_rss_mb"]
    out["ratio_trainable_lora_vs_full"] = out["lora"]["trainable"] / out["full"]["trainable"]
    return out


def _e2e_worker(steps: int, method: str, reward_on: str, queue: Any) -> None:
    """Child process: `train()` on a scripted skill workspace with the tiny model as the evolver."""
    from lse_engine.llm.tiny import build_tiny_model
    from lse_engine.runner import evolve
    from lse_engine.train import train
    from lse_engine.workspace import Workspace
    from tests.conftest import build_skill_workspace
    from tests.scripted import ScriptedLLM
    from tests.test_search import collapsing_evolver, skill_task_reply

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        prompt = build_skill_workspace(Path(tmp) / "ws")
        # evolver chats the tiny model reads quickly; prefilled, so every rollout is instructions to score
        short = {"feedback_chars": 300, "show_schema": False, "evolver_prefill": True}
        for seed in (0, 1):
            ws = Workspace(prompt, {"evolve": {"seed": seed, **short}}, llms={
                "model": ScriptedLLM(skill_task_reply, "task"), "evolver": ScriptedLLM(collapsing_evolver(), "evo")})
            evolve(ws)
            ws.close()
        overrides = {
            "evolver": {"backend": "transformers", "model": model_dir,
                        "sampling": {"max_tokens": 32, "temperature": 1.0}},
            "train": {"states": 4, "samples": 4, "steps": steps, "task_model": "model", "checkpoint_every": 1000,
                      "rollout_max_tokens": 32, "method": method, "reward_on": reward_on, "eval_states": 2},
        }
        task = ScriptedLLM(skill_task_reply, "task")
        ws = Workspace(prompt, overrides, llms={"model": task})
        step_times: list[float] = []
        step_calls: list[int] = []

        def on_event(e: Any) -> None:
            if e.extra.get("phase") == "rollout" and " state 1/" in e.message:
                step_calls.append(len(task.calls))
            if e.extra.get("phase") == "step":
                step_times.append(e.extra["seconds"])
                step_calls[-1] = len(task.calls) - step_calls[-1]

        tracemalloc.start()
        t0 = time.perf_counter()
        result = train(ws, progress=on_event)
        total = time.perf_counter() - t0
        heap_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        ws.close()
    hist = result.history
    queue.put({"method": method, "reward_on": reward_on, "steps": len(hist),
               "steps_per_min": 60 * len(step_times) / sum(step_times),
               "task_calls_per_step": sum(step_calls) / max(1, len(step_calls)),
               "seconds_steps": sum(step_times), "seconds_dev_evaluation": total - sum(step_times),
               "peak_rss_mb": peak_rss_mb(), "python_heap_peak_mb": heap_peak,
               "mean_reward": sum(h["mean_reward"] for h in hist) / len(hist), "chosen_step": result.chosen_step,
               "finite": all(math.isfinite(h[k]) for h in hist for k in ("loss", "mean_reward", "kl"))})


E2E = (("lora", "batch"), ("lora", "holdout"), ("full", "batch"))


def bench_e2e(steps: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out: dict[str, Any] = {}
    for method, reward_on in E2E:
        q = ctx.Queue()
        p = ctx.Process(target=_e2e_worker, args=(steps, method, reward_on, q))
        p.start()
        out[f"{method}-{reward_on}"] = q.get(timeout=600)
        p.join()
    base = out["lora-batch"]
    out["ratio_steps_per_min_holdout_vs_batch"] = out["lora-holdout"]["steps_per_min"] / base["steps_per_min"]
    out["ratio_steps_per_min_full_vs_lora"] = out["full-batch"]["steps_per_min"] / base["steps_per_min"]
    out["ratio_peak_rss_full_vs_lora"] = out["full-batch"]["peak_rss_mb"] / base["peak_rss_mb"]
    return out


def bench_gpu() -> dict[str, Any]:
    """One GRPO step (4 states × 4 edits of 128 tokens, prompts of 512) of a Qwen2-0.5B-sized model on CUDA."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA"}
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from lse_engine.llm.base import Sampling
    from lse_engine.train.policy import Policy, lora_model
    from lse_engine.train.rewards import advantages
    from lse_engine.train.rollout import Rollout, score_logps
    from lse_engine.train.update import ppo_update

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                      tie_word_embeddings=True)
    # transformers wraps Module.to with functools.wraps, which mypy reads as an unbound function
    model = Qwen2ForCausalLM(cfg).to(device="cuda", dtype=torch.bfloat16)  # type: ignore[call-arg]
    params = sum(p.numel() for p in model.parameters())
    policy = Policy(lora_model(model, 16, 32, 0.0), _Tok())
    policy.eos_ids = {-1}  # random weights: run every edit to its full length
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-5)
    sampling = Sampling(max_tokens=128, temperature=1.0)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    rollouts = []
    for s in range(4):
        prompt = torch.randint(2, cfg.vocab_size, (512,)).tolist()
        comps = policy.sample(prompt, 4, sampling, seed=s)
        rollouts.append(Rollout.single(None, prompt, comps, [], advantages([0.1, -0.2, 0.3, 0.0], "grpo")))  # type: ignore[arg-type]
    torch.cuda.synchronize()
    gen_s = time.perf_counter() - t0
    score_logps(policy, rollouts, micro_batch=8)
    ppo_update(policy, opt, rollouts, 1, 0.2, 8, 1.0)  # on-policy: one pass, token-mean
    torch.cuda.synchronize()
    step_s = time.perf_counter() - t0
    gen_tokens = sum(r.tokens for r in rollouts)
    return {"params": params, "seconds_per_step": step_s, "generation_seconds": gen_s,
            "generated_tokens_per_s": gen_tokens / gen_s, "tokens_per_s_step": (gen_tokens + 4 * 512 * 4) / step_s,
            "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30, "device": torch.cuda.get_device_name()}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer updates and steps (under ~40 s)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a loss or reward is not finite")
    args = ap.parse_args()
    report: dict[str, Any] = {"quick": args.quick}
    t0 = time.perf_counter()
    report["update"] = u = bench_update(2 if args.quick else 5)
    print(f"update (small model, 4x4 edits, 1 pass): LoRA {u['lora']['updates_per_min']:.1f}/min, "
          f"full {u['full']['updates_per_min']:.1f}/min  "
          f"→ ratio LoRA/full {u['ratio_updates_per_min_lora_vs_full']:.2f}")
    print(f"  peak RSS: LoRA {u['lora']['peak_rss_mb']:.0f} MB, full {u['full']['peak_rss_mb']:.0f} MB  → ratio "
          f"{u['ratio_peak_rss_lora_vs_full']:.2f};  trainable params ratio {u['ratio_trainable_lora_vs_full']:.4f}")
    report["end_to_end"] = e = bench_e2e(2 if args.quick else 4)
    for method, reward_on in E2E:
        label = f"{method}-{reward_on}"
        r = e[label]
        print(f"end to end {label} (tiny evolver, scripted task model, 4 states x 4 edits): "
              f"{r['steps_per_min']:.1f} steps/min, {r['task_calls_per_step']:.0f} task calls/step, "
              f"dev evaluation {r['seconds_dev_evaluation']:.0f} s, peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"Python heap peak {r['python_heap_peak_mb']:.1f} MB")
    print(f"  ratios: holdout/batch steps/min {e['ratio_steps_per_min_holdout_vs_batch']:.2f}, full/LoRA steps/min "
          f"{e['ratio_steps_per_min_full_vs_lora']:.2f}, full/LoRA peak RSS {e['ratio_peak_rss_full_vs_lora']:.2f}")
    report["gpu"] = g = bench_gpu()
    if "skipped" in g:
        print(f"GPU GRPO step (0.5B): skipped: {g['skipped']}")
    else:
        print(f"GPU GRPO step (0.5B, {g['device']}): {g['seconds_per_step']:.2f} s/step, "
              f"{g['generated_tokens_per_s']:.0f} generated tokens/s, peak {g['peak_gpu_mem_gb']:.1f} GB")
    report["seconds"] = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_train.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'bench_train.json'} ({report['seconds']:.0f} s)")
    ok = u["lora"]["finite"] and u["full"]["finite"] and all(e[f"{m}-{r}"]["finite"] for m, r in E2E)
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
