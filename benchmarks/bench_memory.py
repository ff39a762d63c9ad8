"""Peak memory of the demo's models on a CPU: the engine's int8 GGUF loader against the path before it, each
workload in a fresh process, both measured in the same run.

Paths:
  old   transformers' GGUF loader (every tensor de-quantised to float32 into a state dict, loaded into a float32
        model), then `cpu_quant.quantize_int8`, with the transposed second copy each int8 weight had before (added
        back after loading): the engine before issue 21
  new   `gguf_load.load_int8`: the model built without weights, the file read one tensor at a time, each block of
        rows quantised to int8 and freed; one int8 layout; a quantised embedding kept in its GGUF blocks

Workloads (models int8, as `[model] dtype = "auto"` loads them on a CPU):
  task load / evolver load   the 0.5B task model / the 1.5B evolver loaded, nothing else
  task round                 the task model scores the shop suite's first 16 chats in one call (greedy, stop
                             `</answer>`, at most 320 tokens), as the scorer sends them
  evolver round              the evolver writes one reply to an evolver-sized request (~2.9k prompt tokens) at T 0.7
  demo                       both loaded; the task model scores, the evolver replies, the task model scores again
  bird                       the same with BIRD-sized prompts: the shop schema grown with extra tables to ~3,000
                             tokens a chat
  reload                     (new path only) the task model loaded, released (`TransformersLLM.release`) and loaded
                             again: what releasing a model that is not needed costs

Each worker reports its peak RSS (VmHWM, reset between phases through /proc/self/clear_refs) for each phase, the
RSS after it and its seconds, the bytes its prefix cache holds at the end, and the load average.
`--quick` runs two tiny random Qwen2 GGUFs written on the spot through the task round, the demo and the reload
(~40 s, mostly starting processes; numbers for the code path only).

    python benchmarks/bench_memory.py [--quick] [--strict] [--workloads a,b] [--evolver-tokens N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

RESULTS = Path(__file__).parent / "results"
TASK_MODEL, EVOLVER_MODEL = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
TARGETS_GB = {"demo": 4.0, "bird": 5.0}  # issue 21: peak RSS of the demo, and of a BIRD-sized run
WORKLOADS = {  # models loaded (in order), then the steps
    "task load": (["task"], []),
    "task round": (["task"], ["score"]),
    "evolver load": (["evolver"], []),
    "evolver round": (["evolver"], ["evolve"]),
    "demo": (["task", "evolver"], ["score", "evolve", "score"]),
    "bird": (["task", "evolver"], ["score", "evolve", "score"]),
    "reload": (["task"], ["release", "score"]),
}
BIRD_TOKENS = 3000  # prompt tokens a chat of the bird workload reaches (about)


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


# -- inside a worker -------------------------------------------------------------------------------------------------
def status_kb(field: str) -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


def bird_sized(db: Path, tokens: int) -> None:
    """Grow the shop database with tables of plausible columns and a few rows each, so that its schema (with
    example values) comes to about `tokens` tokens (~3.5 characters a token): BIRD's larger databases."""
    conn = sqlite3.connect(db)
    kinds = [("code", "TEXT", lambda i: f"'C{i % 7}'"), ("amount_cents", "INTEGER", lambda i: str(i * 137 % 9000)),
             ("label", "TEXT", lambda i: f"'label {i % 5}'"), ("day", "INTEGER", lambda i: str(20240101 + i % 28)),
             ("flag", "TEXT", lambda i: "'Y'" if i % 2 else "'N'"), ("score", "REAL", lambda i: str(i * 0.37))]
    n = 0
    while sum(len(r[0] or "") for r in conn.execute("SELECT sql FROM sqlite_master")) * 2.2 < tokens * 3.5:
        n += 1
        cols = [f"{name}_{j}" for j, (name, _, _) in enumerate(kinds)]
        conn.execute(f"CREATE TABLE ledger_{n:02d} (entry_id INTEGER PRIMARY KEY, "
                     + ", ".join(f"{c} {t}" for c, (_, t, _) in zip(cols, kinds, strict=True)) + ")")
        for i in range(5):
            conn.execute(f"INSERT INTO ledger_{n:02d} VALUES ({i}, " + ", ".join(v(i + n) for _, _, v in kinds) + ")")
    conn.commit()
    conn.close()


def workload_chats(spec: dict[str, Any], tmp: Path) -> tuple[Any, list[Any], list[Any]]:
    """(task, problems, chats) of a workload: the demo's shop database, or for "bird" one grown to BIRD's size."""
    from bench_generation import task_chats

    task, problems, chats = task_chats(tmp, spec["chats"], 3)
    if spec["workload"] == "bird":
        task.close()
        from examples.shop.build_db import build
        from lse_engine.tasks.text_to_sql import SQLiteTask

        db = build(tmp / "bird.sqlite")
        bird_sized(db, spec["bird_tokens"])
        task = SQLiteTask(db, example_values=3)
        chats = [task.render("Return one SQLite query.", p) for p in problems]
    return task, problems, chats


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the models a workload names along `spec["path"]` and run its steps; peaks and RSS in MB."""
    import gc

    from bench_generation import evolver_chat, worked_replies

    from lse_engine.bench import peak
    from lse_engine.llm import gguf_load, memory
    from lse_engine.llm.base import Sampling
    from lse_engine.llm.transformers_backend import TransformersLLM

    out: dict[str, Any] = {"path": spec["path"], "load_before": load_avg(), "phases": []}
    tmp = Path(tempfile.mkdtemp(prefix="lse-bench-mem-"))
    try:
        task, problems, chats = workload_chats(spec, tmp)
        out["rss_imports_mb"] = mb(status_kb("VmRSS"))
        if spec["path"] == "old":  # transformers' loader, then quantize_int8: what the engine did before
            gguf_load._processor = lambda *a: (_ for _ in ()).throw(gguf_load.Unsupported("baseline"))
        llms: dict[str, Any] = {}

        def phase(name: str, run: Any) -> None:
            gc.collect()
            memory.give_back_free_heap()
            peak.reset()
            t0 = time.perf_counter()
            extra = run()
            secs = time.perf_counter() - t0
            out["phases"].append({"phase": name, "seconds": round(secs, 1), "peak_mb": mb(status_kb("VmHWM")),
                                  "rss_after_mb": mb(status_kb("VmRSS")), **(extra or {})})

        for role in spec["models"]:
            def load(role: str = role) -> dict[str, Any]:
                llm = TransformersLLM(spec[role], dtype="int8", batch_size=spec["chats"], threads=spec["threads"])
                if spec["path"] == "old":
                    for m in llm.model.modules():  # the transposed copy each int8 weight had before
                        if type(m).__name__ in ("Int8Linear", "Int8Fused"):
                            m.register_buffer("weight_t", m.weight.t().contiguous())
                llms[role] = llm
                return {"weights_mb": round(sum(t.nelement() * t.element_size() for t in
                                                [*llm.model.buffers(), *llm.model.parameters()]) / 2**20, 1)}
            phase(f"load {role}", load)
        greedy = Sampling(max_tokens=spec["task_tokens"], stop=("</answer>",))
        for step in spec["steps"]:
            if step == "score":
                def score() -> dict[str, Any]:
                    done = llms["task"].generate(chats, greedy)
                    return {"prompt_tokens_mean": round(sum(c.prompt_tokens for c in done) / len(done)),
                            "generated": sum(c.completion_tokens for c in done)}
                phase("task scores", score)
            elif step == "evolve":
                def evolve() -> dict[str, Any]:
                    chat = evolver_chat(task, problems, worked_replies(problems))  # ~2.9k tokens
                    c = llms["evolver"].generate([chat], Sampling(max_tokens=spec["evolver_tokens"], temperature=0.7,
                                                                  seed=0))[0]
                    return {"prompt_tokens": c.prompt_tokens, "generated": c.completion_tokens}
                phase("evolver replies", evolve)
            elif step == "release":
                phase("release task", lambda: llms["task"].release())
                phase("load task again", lambda: llms["task"]._ensure_loaded())
        out["prefix_cache_mb"] = {r: round(llm.prefix_cache._bytes / 2**20, 1) for r, llm in llms.items()}
        out["tokens_per_s"] = {r: round(llm.tokens_per_s, 1) for r, llm in llms.items() if llm.tokens_per_s}
        out["peak_mb"] = max(p["peak_mb"] for p in out["phases"])
        out["load_after"] = load_avg()
        task.close()
        for llm in llms.values():
            llm.close()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- the run -----------------------------------------------------------------------------------------------------------
def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"path": spec["path"], "error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(lines[-1])


def models(args: argparse.Namespace, tmp: Path) -> tuple[str, str, bool]:
    """(task model, evolver) to load: the demo's, or two tiny random GGUFs with --quick."""
    if args.quick:
        from lse_engine.llm.tiny_gguf import build_tiny_gguf

        return (build_tiny_gguf(tmp / "task", seed=1, hidden=128, layers=2, intermediate=256),
                build_tiny_gguf(tmp / "evolver", seed=2, hidden=256, layers=2, intermediate=512), False)
    from lse_engine.llm import resolve_weights

    task, evolver = (os.path.join(*resolve_weights(m)) for m in (TASK_MODEL, EVOLVER_MODEL))  # type: ignore[arg-type]
    return task, evolver, True


def describe(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['path']}: error: {r['error']}"
    return f"{r['path']}: peak {r['peak_mb']:7.0f} MB  " + "  ".join(
        f"{p['phase']} {p['peak_mb']:.0f}→{p['rss_after_mb']:.0f} MB {p['seconds']:.0f} s" for p in r["phases"]) + (
        f"  (load {r['load_before']}→{r['load_after']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two tiny random GGUFs, 4 chats, 16 tokens (seconds)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--workloads", help=f"comma-separated, from: {', '.join(WORKLOADS)} (default all)")
    ap.add_argument("--chats", type=int, default=16)
    ap.add_argument("--task-tokens", type=int, default=320)
    ap.add_argument("--evolver-tokens", type=int, default=256,
                    help="tokens of the evolver's reply (its prompt's prefill is what peaks; default 256)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the engine's default)")
    ap.add_argument("--baseline", default="task load,task round,evolver load,evolver round,demo",
                    help="workloads also run along the old path ('' for none; 'bird' takes ~10 GB and 8 minutes)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    if args.quick:
        args.chats, args.task_tokens, args.evolver_tokens = 4, 16, 16
        args.workloads = args.workloads or "task round,demo,reload"
    names = [w.strip() for w in (args.workloads or ",".join(WORKLOADS)).split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}: use {', '.join(WORKLOADS)}")
    baseline = {w.strip() for w in args.baseline.split(",")}
    tmp = Path(tempfile.mkdtemp(prefix="lse-bench-mem-models-"))
    try:
        task, evolver, real = models(args, tmp)
        res: dict[str, Any] = {"real_models": real, "task": task, "evolver": evolver, "workloads": {},
                               "evolver_tokens": args.evolver_tokens, "chats": args.chats}
        print(f"task model {task}\nevolver    {evolver}\n", flush=True)
        for name in names:
            loaded, steps = WORKLOADS[name]
            paths = ["old", "new"] if name in baseline and name != "reload" else ["new"]
            res["workloads"][name] = rows = {}
            for path in paths:
                spec = {"path": path, "workload": name, "models": loaded, "steps": steps, "task": task,
                        "evolver": evolver, "chats": args.chats, "task_tokens": args.task_tokens,
                        "evolver_tokens": args.evolver_tokens, "threads": args.threads,
                        "bird_tokens": BIRD_TOKENS if real else 600}
                rows[path] = run_worker(spec)
                print(f"{name:<14} {describe(rows[path])}", flush=True)
            if "peak_mb" in rows.get("old", {}) and "peak_mb" in rows.get("new", {}):
                rows["ratio"] = round(rows["new"]["peak_mb"] / rows["old"]["peak_mb"], 3)
        summarise(res)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "bench_memory.json").write_text(json.dumps(res, indent=2))
        return 1 if args.strict and not res["pass"] else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarise(res: dict[str, Any]) -> None:
    print("\n| workload | old peak | new peak | new / old | old load | new load | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ok = True
    for name, rows in res["workloads"].items():
        def cell(path: str, key: str, rows: dict[str, Any] = rows) -> str:
            r = rows.get(path, {})
            if "error" in r:
                return "error"
            if key == "peak":
                return f"{r['peak_mb'] / 1024:.2f} GB" if "peak_mb" in r else ""
            loads = [p["seconds"] for p in r.get("phases", []) if p["phase"].startswith("load")]
            return f"{sum(loads):.0f} s" if loads else ""
        ratio = f"{rows['ratio']:.2f}×" if "ratio" in rows else ""
        avg = "; ".join(f"{r['load_before']}–{r['load_after']}" for r in rows.values()
                        if isinstance(r, dict) and "load_before" in r)
        print(f"| {name} | {cell('old', 'peak')} | {cell('new', 'peak')} | {ratio} | {cell('old', 'load')} | "
              f"{cell('new', 'load')} | {avg} |")
        target = TARGETS_GB.get(name)
        new = rows.get("new", {})
        if target and res["real_models"]:
            met = "peak_mb" in new and new["peak_mb"] / 1024 <= target
            ok &= met
            print(f"  target {name}: peak ≤ {target:g} GB: {'met' if met else 'MISSED'}")
    res["pass"] = ok


if __name__ == "__main__":
    sys.exit(main())
