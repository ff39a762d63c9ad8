"""CPU generation on the demo's workload with the demo model: the engine's path against one-at-a-time transformers
(and llama.cpp on the same GGUF when it is installed), measured in the same run.

The workload is what the scorer and the evolver send:
  task       N text-to-SQL chats on examples/shop, rendered by `SQLiteTask.render` (system: task overview, the
             schema with example values, the instructions; user: the question, the instructions again, the
             `<answer>` format line), greedy, stop `</answer>`, at most `--max-tokens` tokens each;
  evolver    one chat of ~2-3k tokens (the agent prompt with the schema, five answers the model gave, a request
             for new instructions in `<prompt>` tags) at temperature 0.7, run to its whole budget (end token and
             stop string ignored: the worst case), with the default configuration.

Configurations:
  baseline        transformers `generate()`, one chat at a time, float32: the engine before its CPU path
                  (de-quantised GGUF weights, no batching, no shared prefix); run on the first few chats only
  engine fp32     `TransformersLLM.generate` on all N chats: one batch sharing the system prompt's keys and
                  values, rows leaving as they end
  engine bf16     the same with bfloat16 weights
  engine int8     the same with int8 weights (dynamic quantisation): the default on CPU
  engine int8 b8  the same in calls of 8 chats, as the scorer sends them with `[model] batch_size = 8`
  llama.cpp       llama-cpp-python if importable, else a `llama-server` on PATH through the OpenAI-compatible
                  backend, else skipped (never required, never built here)

Reports generated tokens/s, seconds per problem, the ratio to the baseline's seconds per problem, the projected
demo time (150 problem generations + 3 evolver calls of `--evolver-tokens` tokens) and the machine's load average
next to each number; checks that greedy float32 replies are the same in the engine and the baseline. Writes
`benchmarks/results/bench_generation.json`.

    python benchmarks/bench_generation.py [--quick] [--strict] [--model NAME_OR_PATH] [--configs a,b,...]
    python benchmarks/bench_generation.py --two-processes   # thread settings, one process vs two at once

With `--quick`, or without the real model (`lse models pull qwen2.5-coder-0.5b`), a random Qwen2 of the same widths
but 2 layers runs instead (its replies are noise and never stop early: numbers for the code path only).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import other_engines  # noqa: E402

from lse_engine.errors import LSEError  # noqa: E402
from lse_engine.llm.base import Chat, Completion, Sampling  # noqa: E402
from lse_engine.llm.transformers_backend import cut_at_stop  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SUITE = ROOT / "examples" / "shop" / "shop.suite.yaml"
DEMO_MODEL = "qwen2.5-coder-0.5b"
TARGET_RATIO = 5.0  # engine default vs one at a time, seconds per problem
DEMO_PROBLEMS, DEMO_EVOLVER_CALLS = 150, 3
INSTRUCTIONS = ("Think about which tables and columns the question needs. Use only columns that exist in the schema. "
                "Join tables through their foreign keys. Return one SQLite query.")
EVOLVER_REQUEST = """You are an expert at designing text-to-SQL agents. The agent is running on a fixed database
schema. Below is the current agent prompt and a summary of recent performance. Rewrite ONLY the instructions to
improve execution accuracy while maintaining strict output format.

Current prompt:
{agent_prompt}

The current instructions, the part you rewrite:
<current>
{instructions}
</current>

Evaluation summary over {n} problems and the agent's full thinking process:
{summary}

Keep it concise and practical. Do not change the output format; the agent should still return the final SQL
query in tags: <answer> ... </answer>. When you are ready, put your revised Instructions within
<prompt>[your new instructions]</prompt> tags."""


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


# -- the workload ---------------------------------------------------------------------------------------------------
def task_chats(tmp: Path, n: int, example_values: int) -> tuple[Any, list[Any], list[Chat]]:
    """The scorer's chats for the first n problems of the shop suite (database built in `tmp`)."""
    from examples.shop.build_db import DEFAULT_PATH, build
    from lse_engine.files.suite_file import load_suite
    from lse_engine.tasks.text_to_sql import SQLiteTask

    if not DEFAULT_PATH.exists():  # the suite names it (a fresh clone has not built it yet)
        build(DEFAULT_PATH)
    task = SQLiteTask(build(tmp / "shop.sqlite"), example_values=example_values)
    problems = load_suite(SUITE).problems[:n]
    return task, problems, [task.render(INSTRUCTIONS, p) for p in problems]


def worked_replies(problems: list[Any]) -> list[str]:
    """Replies of the length the task model writes when it reasons first (~250 tokens each), for an evolver
    request of the demo's size when no real replies are at hand."""
    return [(f"The question asks: {p.question} I look for the tables and columns it needs in the schema, check how "
             "the values are stored (codes, cents, days as numbers), join the tables through their keys and "
             "filter on the conditions the question names. " * 4) + f"\n<answer>{p.gold}</answer>"
            for p in problems]


def evolver_chat(task: Any, problems: list[Any], replies: list[str]) -> Chat:
    """An evolver request of the demo's size: the agent prompt with the schema and five answers with their gold."""
    summary = "\n\n".join(f"Problem {i + 1}: {p.question}\nAgent's response:\n{r}\nResult: wrong. Gold SQL: {p.gold}"
                          for i, (p, r) in enumerate(zip(problems[:5], replies[:5], strict=False)))
    text = EVOLVER_REQUEST.format(agent_prompt=task.agent_prompt(INSTRUCTIONS), instructions=INSTRUCTIONS,
                                  n=len(problems[:5]), summary=summary)
    return [{"role": "user", "content": text}]


# -- models ---------------------------------------------------------------------------------------------------------
def random_qwen2(out: Path) -> str:
    """A random Qwen2 with the demo model's widths but 2 layers (and the tiny model's tokenizer)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from lse_engine.llm.tiny import build_tiny_model
    from lse_engine.llm.transformers_backend import quiet_progress_bars

    tok = AutoTokenizer.from_pretrained(build_tiny_model(out / "tiny"))
    config = Qwen2Config(vocab_size=len(tok), hidden_size=896, intermediate_size=4864, num_hidden_layers=2,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=8192,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    with quiet_progress_bars():
        model.save_pretrained(out / "qwen2")
    tok.save_pretrained(out / "qwen2")
    return str(out / "qwen2")


def locate(model: str, tmp: Path) -> tuple[str, str | None, bool]:
    """(directory or id, GGUF file name, real?) for `model`; a random stand-in when the real one is absent."""
    from lse_engine.llm import resolve_weights

    try:
        path, gguf = resolve_weights(model, None, None)
        return path, gguf, True
    except LSEError as e:
        print(f"note: {e}\n      using a random Qwen2 stand-in: numbers for the code path, not the demo")
        return random_qwen2(tmp), None, False


def variant(base: Any, dtype: str) -> Any:
    """A copy of the loaded float32 model in another precision (so the GGUF is de-quantised only once)."""
    import torch

    from lse_engine.llm.cpu_quant import quantize_int8

    model = copy.deepcopy(base)
    if dtype == "bf16":
        return model.to(torch.bfloat16)
    if dtype == "int8":
        return quantize_int8(model)
    return model


# -- one measurement -----------------------------------------------------------------------------------------------
def timed(generate: Any, chats: list[Chat], sampling: Sampling) -> tuple[dict[str, Any], list[Completion]]:
    load = load_avg()
    t0 = time.perf_counter()
    out = generate(chats, sampling)
    secs = time.perf_counter() - t0
    tokens = sum(c.completion_tokens for c in out)
    return {"seconds": round(secs, 2), "problems": len(chats), "tokens": tokens,
            "tokens_per_s": round(tokens / secs, 2), "s_per_problem": round(secs / len(chats), 2),
            "load_before": load, "load_after": load_avg()}, out


def agreement(llm: Any, models: dict[str, Any], chats: list[Chat], replies: list[Completion]) -> dict[str, float]:
    """How often each model's next token is float32's, along float32's own greedy replies (teacher forced, through
    the engine's decoder, so its attention precision counts too): a precision's fidelity, where word-for-word
    equality of long replies says little (one different token and the rest differs)."""
    import torch

    from lse_engine.llm import decode

    prompts = [llm.render(c) for c in chats]
    forced = [llm.tokenizer(r.text, add_special_tokens=False)["input_ids"] or [0] for r in replies]
    picks: dict[str, list[list[int]]] = {}
    for name, model in models.items():
        picked: list[list[int]] = [[] for _ in prompts]

        def choose(logits: Any, rows: list[int], picked: list[list[int]] = picked) -> Any:
            tokens = []
            for row, best in zip(rows, logits.argmax(dim=-1).tolist(), strict=True):
                picked[row].append(best)
                tokens.append(forced[row][len(picked[row]) - 1])
            return torch.tensor(tokens)

        with torch.inference_mode():
            decode.Decoder(model).generate(prompts, max(len(f) for f in forced), choose,
                                           lambda row, gen: len(gen) >= len(forced[row]), pad_id=0)
        picks[name] = picked
    total = sum(len(f) for f in forced)
    def same(picked: list[list[int]]) -> int:
        return sum(a == b for p, q in zip(picked, picks["fp32"], strict=True) for a, b in zip(p, q, strict=False))

    return {name: round(same(picked) / total, 4) for name, picked in picks.items() if name != "fp32"}


def evolver_run(llm: Any, chat: Chat, tokens: int) -> dict[str, Any]:
    """One evolver reply of exactly `tokens` tokens at temperature 0.7, through the engine's decoder with the end
    token and stop strings ignored: the worst case (a small model's reply may stop much earlier)."""
    import torch

    from lse_engine.llm import decode
    from lse_engine.llm.transformers_backend import sample_rows

    prompt = llm.render(chat)
    generator = [torch.Generator().manual_seed(0)]
    decoder = decode.Decoder(llm.model, llm.prefix_cache)

    def generate(chats: list[Chat], sampling: Sampling) -> list[Completion]:
        with torch.inference_mode():
            out = decoder.generate([prompt], tokens, lambda logits, rows: sample_rows(logits, generator, 0.7, 1.0),
                                   lambda row, gen: False, pad_id=0, split=llm.stem(chat, prompt))
        return [Completion("", len(prompt), len(out[0]))]

    r, _ = timed(generate, [chat], Sampling())
    return {**r, "prompt_tokens": len(prompt)}


def precision(engine: str, args: argparse.Namespace) -> str:
    return args.ort_precision if engine == "onnxruntime-genai" else "int8"


def evolver_rows(args: argparse.Namespace, llm: Any, base: Any, default: str, chat: Chat,
                 threads: int) -> dict[str, Any]:
    """One evolver-length reply (`--evolver-tokens` at T 0.7) by the engine and by the other engines asked for, on
    `--evolver-model` (default: the task model)."""
    import gc

    from lse_engine.llm.transformers_backend import TransformersLLM

    rows: dict[str, Any] = {}
    if args.evolver_model:
        path, gguf, _ = locate(args.evolver_model, Path(tempfile.gettempdir()))
        llm.model = None
        gc.collect()
        llm = TransformersLLM(path, gguf_file=gguf, dtype="int8", threads=threads)
        label = f"{default} ({Path(gguf or path).stem})"
    else:
        path, gguf = llm.name, llm.gguf_file
        dtype, _ = engine_config(default, args.problems)
        llm.model = base if dtype == "fp32" else variant(base, dtype)
        llm.fast = True
        label = default
    rows[label] = r = evolver_run(llm, chat, args.evolver_tokens)
    print(f"evolver     {label}: {r['prompt_tokens']} prompt tokens, {describe(r)}", flush=True)
    prompt = llm.render(chat)
    engines = args.evolver_engines.split(",") if args.evolver_engines is not None else args.configs
    for name in [c for c in engines if c in other_engines.ENGINES]:
        runner, why = other_engines.prepare(name, path, gguf, Path(gguf or path).stem, precision(name, args),
                                            llm.tokenizer, threads, print)
        if runner is None:
            rows[name] = {"skipped": why}
        else:
            def one(chats: list[Chat], s: Sampling, runner: Any = runner) -> list[Completion]:
                return [Completion("", len(prompt), runner.one(prompt, args.evolver_tokens, 0.7))]
            rows[name], _ = timed(one, [chat], Sampling())
            rows[name].update(prompt_tokens=len(prompt), precision=precision(name, args))
            del runner
            gc.collect()
        print(f"evolver     {name}: {describe(rows[name])}", flush=True)
    if args.evolver_model:
        llm.close()
    return rows


def in_calls(llm: Any, size: int, chats: list[Chat], sampling: Sampling) -> list[Completion]:
    """`llm.generate` on `size` chats at a time, as the scorer calls it."""
    return [c for i in range(0, len(chats), size) for c in llm.generate(chats[i: i + size], sampling)]


def llama_cpp(path: str, gguf: str | None, chats: list[Chat], sampling: Sampling, threads: int) -> dict[str, Any]:
    """llama.cpp on the same GGUF: the Python binding if importable, else a llama-server on PATH, else skipped."""
    if not gguf:
        return {"skipped": "no GGUF file"}
    file = os.path.join(path, gguf)
    try:
        from llama_cpp import Llama  # type: ignore[import-not-found]
    except ImportError:
        Llama = None
    if Llama is not None:
        llm = Llama(model_path=file, n_ctx=8192, n_threads=threads, verbose=False)

        def generate(chats: list[Chat], s: Sampling) -> list[Completion]:
            outs = []
            for chat in chats:  # one at a time; the binding reuses the previous prompt's common prefix
                r = llm.create_chat_completion(messages=chat, temperature=s.temperature, max_tokens=s.max_tokens,
                                               stop=list(s.stop) or None)
                usage = r["usage"]
                outs.append(Completion(r["choices"][0]["message"]["content"] or "", usage["prompt_tokens"],
                                       usage["completion_tokens"]))
            return outs

        result, _ = timed(generate, chats, sampling)
        return {"via": "llama-cpp-python", **result}
    server = shutil.which("llama-server")
    if server is None:
        return {"skipped": "llama.cpp not installed"}
    from lse_engine.llm.openai_backend import OpenAICompatLLM

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "-m", file, "--port", str(port), "-t", str(threads), "-c", "16384",
                             "-np", "4", "--log-disable"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = OpenAICompatLLM("demo", base_url=f"http://127.0.0.1:{port}/v1", max_concurrency=4, timeout_s=600)
        deadline = time.monotonic() + 120
        while True:  # until the model is loaded
            try:
                client.generate([[{"role": "user", "content": "hi"}]], Sampling(max_tokens=1))
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    return {"skipped": "llama-server did not start"}
                time.sleep(1)
        result, _ = timed(client.generate, chats, sampling)
        client.close()
        return {"via": "llama-server (4 slots)", **result}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- the run --------------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from lse_engine.llm import cpu_threads
    from lse_engine.llm.transformers_backend import TransformersLLM

    tmp = Path(tempfile.mkdtemp(prefix="lse-bench-gen-"))
    try:
        task, problems, chats = task_chats(tmp, args.problems, args.example_values)
        path, gguf, real = locate(args.model, tmp) if args.model else (random_qwen2(tmp), None, False)
        t0 = time.perf_counter()
        # one fixed thread count for every configuration, so that they compare (the engine's own default tunes
        # it while decoding, which generate() cannot): every core on an idle machine, 1 on a busy one
        threads = args.threads or (cpu_threads.cores() if os.getloadavg()[0] < cpu_threads.cores() else 1)
        llm = TransformersLLM(path, gguf_file=gguf, dtype="float32", batch_size=args.problems, threads=threads)
        load_s = time.perf_counter() - t0
        prompt_tokens = [len(llm.render(c)) for c in chats]
        shared = min(len(os.path.commonprefix([llm.render(chats[0]), llm.render(c)])) for c in chats)
        greedy = Sampling(max_tokens=args.max_tokens, stop=("</answer>",))
        res: dict[str, Any] = {
            "model": f"{path}/{gguf}" if gguf else path, "real_model": real, "load_s": round(load_s, 1),
            "evolver_tokens": args.evolver_tokens,
            "torch_threads": torch.get_num_threads(), "problems": len(chats), "max_tokens": args.max_tokens,
            "prompt_tokens_mean": round(sum(prompt_tokens) / len(chats)), "shared_prefix_tokens": shared,
            "configs": {}}
        print(f"model {res['model']} (loaded in {load_s:.0f} s), {torch.get_num_threads()} threads; "
              f"{len(chats)} chats of {res['prompt_tokens_mean']} prompt tokens on average, {shared} shared")
        base = llm.model
        replies: dict[str, list[Completion]] = {}
        prompts = [llm.render(c) for c in chats]
        for name in args.configs:
            if name == "llama.cpp":
                r = llama_cpp(path, gguf, chats, greedy, torch.get_num_threads())
            elif name in other_engines.ENGINES:
                runner, why = other_engines.prepare(name, path, gguf, Path(gguf or path).stem,
                                                    precision(name, args), llm.tokenizer, threads, print)
                if runner is None:
                    r = {"skipped": why}
                else:
                    def run_engine(chats: list[Chat], s: Sampling, runner: Any = runner) -> list[Completion]:
                        outs = runner.batch(prompts, s.max_tokens, s.stop)
                        return [Completion(cut_at_stop(llm.tokenizer.decode(o, skip_special_tokens=True), s.stop)[0],
                                           len(p), len(o)) for o, p in zip(outs, prompts, strict=True)]
                    r, replies[name] = timed(run_engine, chats, greedy)
                    r["precision"] = precision(name, args)
                    del runner
            elif name == "baseline":
                llm.model, llm.fast, llm.batch_size = base, False, 1
                r, replies[name] = timed(llm.generate, chats[: args.baseline_problems], greedy)
            else:
                dtype, batch = engine_config(name, args.problems)
                llm.model = base if dtype == "fp32" else variant(base, dtype)
                llm.fast, llm.batch_size = True, batch
                llm.prefix_cache.clear()
                r, replies[name] = timed(functools.partial(in_calls, llm, batch), chats, greedy)
            if name in replies:
                outcomes = task.score(problems[: len(replies[name])], [c.text for c in replies[name]])
                r["correct"] = sum(o.correct for o in outcomes)
            res["configs"][name] = r
            print(f"{name:<16} {describe(r)}", flush=True)
        if "engine fp32" in replies and args.agreement:
            dtypes = {engine_config(n, 0)[0] for n in replies if n.startswith("engine ")} - {"fp32"}
            n = args.agreement
            res["top1_agreement_with_fp32"] = agree = agreement(
                llm, {"fp32": base, **{d: variant(base, d) for d in sorted(dtypes)}}, chats[:n],
                replies["engine fp32"][:n])
            print(f"next-token agreement with float32 along its greedy replies ({n} problems): "
                  + ", ".join(f"{k} {v:.1%}" for k, v in agree.items()), flush=True)
        res["replies"] = {name: [c.text for c in out] for name, out in replies.items()}
        default = args.default
        if default in replies and args.evolver_tokens > 0:
            chat = evolver_chat(task, problems, [c.text for c in replies[default]])
            res["evolver"] = evolver_rows(args, llm, base, default, chat, threads)
        summarise(res, default, replies)
        llm.close()
        task.close()
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def describe(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    right = f", {r['correct']}/{r['problems']} right" if "correct" in r else ""
    return (f"{r['tokens']:5d} tokens in {r['seconds']:7.1f} s = {r['tokens_per_s']:6.1f} tokens/s, "
            f"{r['s_per_problem']:6.2f} s a problem{right} (load {r['load_before']}→{r['load_after']})")


def same_texts(a: list[Completion], b: list[Completion]) -> int:
    return sum(x.text == y.text for x, y in zip(a, b, strict=False))


def compare_replies(res: dict[str, Any], replies: dict[str, list[Completion]]) -> None:
    """How often two configurations give the same reply: the engine vs one at a time (fp32), a lower precision vs
    float32, and a batched call vs one call of all (a reply should not depend on the chats batched with it)."""
    configs = res["configs"]
    if "baseline" in replies and "engine fp32" in replies:
        n = len(replies["baseline"])
        res["same_greedy_fp32"] = sum(a == b for a, b in zip(replies["baseline"], replies["engine fp32"][:n],
                                                             strict=False))
        res["same_greedy_of"] = n
    for name, out in replies.items():
        if "engine fp32" in replies and name.startswith("engine ") and name != "engine fp32":
            configs[name]["same_text_as_fp32"] = same_texts(out, replies["engine fp32"])
        whole = name.rsplit(" ", 1)[0]
        if name.startswith("engine ") and name.split()[-1].startswith("b") and whole in replies:
            configs[name]["same_text_as_one_call"] = same_texts(out, replies[whole])


def summarise(res: dict[str, Any], default: str, replies: dict[str, list[Completion]]) -> None:
    configs = res["configs"]
    base = configs.get("baseline")
    for r in configs.values():
        if base and "s_per_problem" in r:
            r["speedup"] = round(base["s_per_problem"] / r["s_per_problem"], 2)
    compare_replies(res, replies)
    ev = next((r for k, r in res.get("evolver", {}).items() if k.startswith(default)), None)
    if default in configs and ev:
        res["projected_demo_s"] = round(DEMO_PROBLEMS * configs[default]["s_per_problem"]
                                        + DEMO_EVOLVER_CALLS * ev["seconds"], 1)
    res["target_ratio"] = TARGET_RATIO
    # the target is for the demo model; a random 2-layer stand-in spends its time elsewhere (a 512-token vocabulary)
    judged = res["real_model"] and "speedup" in configs.get(default, {})  # needs the baseline row in this run
    res["pass"] = bool(configs.get(default, {}).get("speedup", 0) >= TARGET_RATIO) or not judged
    print_summary(res, default, judged)


def print_summary(res: dict[str, Any], default: str, judged: bool) -> None:
    configs = res["configs"]
    print()
    print("| configuration | tokens/s | s/problem | vs one at a time | right | load |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in configs.items():
        if "skipped" in r:
            print(f"| {name} | skipped: {r['skipped']} | | | | |")
        else:
            right = f"{r['correct']}/{r['problems']}" if "correct" in r else ""
            print(f"| {name} | {r['tokens_per_s']:.1f} | {r['s_per_problem']:.2f} | {r.get('speedup', 1.0):.1f}× "
                  f"| {right} | {r['load_before']}–{r['load_after']} |")
    if "same_greedy_fp32" in res:
        print("greedy fp32 replies identical, engine vs one at a time: "
              f"{res['same_greedy_fp32']}/{res['same_greedy_of']}")
    for name, r in configs.items():
        if "same_text_as_one_call" in r:
            print(f"{name}: {r['same_text_as_one_call']}/{r['problems']} replies identical to one call of all")
    if res.get("evolver"):
        print("\n| evolver reply (T 0.7, end token ignored) | prompt tokens | new tokens | seconds | tokens/s | load |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, r in res["evolver"].items():
            if "skipped" in r:
                print(f"| {name} | skipped: {r['skipped']} | | | | |")
            else:
                print(f"| {name}{' ' + r['precision'] if 'precision' in r else ''} | {r['prompt_tokens']} | "
                      f"{r['tokens']} | {r['seconds']:.1f} | {r['tokens_per_s']:.1f} | "
                      f"{r['load_before']}–{r['load_after']} |")
    if "projected_demo_s" in res:
        print(f"projected demo generation ({DEMO_PROBLEMS} problems + {DEMO_EVOLVER_CALLS} evolver calls) with "
              f"{default}: {res['projected_demo_s'] / 60:.1f} min")
    verdict = (("PASS" if res["pass"] else "FAIL") if judged else
               "no baseline row in this run" if res["real_model"] else "the target is for the demo model")
    print(f"{default} vs one at a time: {configs.get(default, {}).get('speedup', 0):.1f}× "
          f"(target ≥ {TARGET_RATIO:g}×): {verdict}")


# -- two processes at once ---------------------------------------------------------------------------------------------
PAIR_CHATS, PAIR_TOKENS = 8, 96
THREAD_MODES = ("2", "1", "tuned")  # LSE_THREADS for each process; "tuned": unset, the engine's default


def pair_worker(args: argparse.Namespace) -> int:
    """One process of `--two-processes`: loads the model (int8, threads from LSE_THREADS), says `ready`, waits
    for the parent's go file, generates, prints its result as JSON."""
    from lse_engine.llm.transformers_backend import TransformersLLM

    tmp = Path(tempfile.mkdtemp(prefix="lse-bench-pair-"))
    try:
        task, _, chats = task_chats(tmp, PAIR_CHATS, args.example_values)
        path, gguf, _ = locate(args.model, tmp)
        llm = TransformersLLM(path, gguf_file=gguf, dtype="int8", batch_size=PAIR_CHATS)
        llm.generate(chats[:1], Sampling(max_tokens=2))  # warm up
        llm.prefix_cache.clear()
        print("ready", flush=True)
        go = Path(args.worker)
        while not go.exists():
            time.sleep(0.02)
        t0 = time.perf_counter()
        out = llm.generate(chats, Sampling(max_tokens=PAIR_TOKENS, stop=("</answer>",)))
        secs = time.perf_counter() - t0
        tokens = sum(c.completion_tokens for c in out)
        from lse_engine.llm import cpu_threads

        tuner = cpu_threads._tuner
        print(json.dumps({"seconds": round(secs, 2), "tokens": tokens, "tokens_per_s": round(tokens / secs, 1),
                          "threads_end": llm.threads or (tuner.current if tuner else None)}), flush=True)
        llm.close()
        task.close()
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def two_processes(args: argparse.Namespace) -> dict[str, Any]:
    """Each thread mode alone, then two processes generating at the same moment (both loaded first)."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lse-bench-go-") as tmp:
        for mode in THREAD_MODES:
            env = {k: v for k, v in os.environ.items() if k != "LSE_THREADS"}
            if mode != "tuned":
                env["LSE_THREADS"] = mode
            for n in (1, 2):
                go = Path(tmp) / f"go-{mode}-{n}"
                cmd = [sys.executable, __file__, "--worker", str(go), "--model", args.model,
                       "--example-values", str(args.example_values)]
                procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n)]
                for p in procs:  # wait until each has loaded the model
                    while (line := p.stdout.readline()) and line.strip() != "ready":  # type: ignore[union-attr]
                        pass
                load = load_avg()
                go.touch()
                outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
                key = f"{mode} {'alone' if n == 1 else 'two at once'}"
                results[key] = {"load_before": load, "processes": outs}
                print(f"threads {mode:<6} {'alone' if n == 1 else 'two at once':<12} "
                      + "  ".join(f"{o['tokens_per_s']:6.1f} tokens/s ({o['seconds']:.1f} s, ends at "
                                  f"{o['threads_end']} threads)" for o in outs) + f"  (load {load})", flush=True)
    return results


CONFIGS = ("baseline", "engine fp32", "engine bf16", "engine int8", "engine int8 b8", "llama.cpp", "ctranslate2",
           "onnxruntime-genai")


def engine_config(name: str, problems: int) -> tuple[str, int]:
    """"engine DTYPE" (one batch of all problems) or "engine DTYPE bN" (calls of N chats, as the scorer sends
    with `[model] batch_size = N`): the dtype and the batch."""
    parts = name.split()
    return parts[1], int(parts[2][1:]) if len(parts) > 2 else problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="the random stand-in (unless --model), 4 chats × 32 tokens, baseline on 1, int8 only")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    ap.add_argument("--model", help=f"a model name, directory or .gguf file (default {DEMO_MODEL})")
    ap.add_argument("--configs", help=f"comma-separated, from: {', '.join(CONFIGS)} (default all; any "
                                      "'engine DTYPE bN' too)")
    ap.add_argument("--default", default="engine int8", help="the configuration the target and projection use")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--baseline-problems", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=320)
    ap.add_argument("--evolver-tokens", type=int, default=1024)
    ap.add_argument("--evolver-model", help="model of the evolver rows (default: the task model; the demo's evolver "
                                            "is qwen2.5-coder-1.5b)")
    ap.add_argument("--evolver-engines", help="comma-separated other engines for the evolver rows (default: those "
                                              "in --configs; their batch-16 rows take ~10x the engine's time)")
    ap.add_argument("--ort-precision", default="int8", choices=("int8", "int4"),
                    help="onnxruntime-genai's weights (int4: its 4-bit MatMulNBits)")
    ap.add_argument("--agreement", type=int, default=8,
                    help="problems on which lower precisions are compared with float32 token by token (0: none)")
    ap.add_argument("--example-values", type=int, default=3, help="example values per column in the schema")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for every configuration (0: all cores, or 1 when the machine is busy)")
    ap.add_argument("--two-processes", action="store_true",
                    help=f"instead: {PAIR_CHATS} chats × {PAIR_TOKENS} tokens (int8) alone and in two processes at "
                         f"once, with LSE_THREADS = {', '.join(THREAD_MODES)} (a few minutes)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # one process of --two-processes (its go file)
    args = ap.parse_args(argv)
    if args.worker:
        return pair_worker(args)
    if args.two_processes:
        args.model = args.model or DEMO_MODEL
        res = {"two_processes": two_processes(args), "chats": PAIR_CHATS, "max_tokens": PAIR_TOKENS}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "bench_generation_threads.json").write_text(json.dumps(res, indent=2))
        return 0
    if args.quick:
        args.problems, args.baseline_problems, args.max_tokens, args.evolver_tokens = 4, 1, 32, 32
        args.agreement = 0
        args.configs = args.configs or "baseline,engine int8"
    else:
        args.model = args.model or DEMO_MODEL
    args.configs = [c.strip() for c in (args.configs or ",".join(CONFIGS)).split(",") if c.strip()]
    engine = re.compile(r"engine (fp32|bf16|int8)( b[1-9][0-9]*)?")
    unknown = [c for c in args.configs if c not in CONFIGS and not engine.fullmatch(c)]
    if unknown:
        ap.error(f"unknown configuration(s) {unknown}: use {', '.join(CONFIGS)}")
    res = run(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_generation.json").write_text(json.dumps(res, indent=2))
    return 1 if args.strict and not res["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
