"""Does `lse train` make the evolver better? Train it on runs over some databases, then evolve on databases it never
trained on with the untrained and the trained evolver, same seeds, and compare (issue 22).

1. Training data: the evolve runs in `--runs` (a `lse bench` output: the protocol's runs on the BIRD train databases
   and on Spider databases; benchmarks/README.md has the commands).
2. Train the CPU evolver (`lse train --workspace RUNS`, LoRA, on-policy, delta reward) until `--train-wall` seconds
   are spent (`[train] max_wall_s`); the checkpoint that does best on held-out runs is kept.
3. Evolve on `--heldout` databases (never in the training runs) with the base evolver and the trained one, same
   seeds and settings (`lse bench --evolver`), and compare per evolver, each with a 95 % bootstrap interval:
   - accepted-edit rate: the share of evolver replies that gave an edit the search kept;
   - mean delta: a child's dev score minus its parent's on the same problems (the paper's reward);
   - seed-vs-winner test gain.

    python benchmarks/bench_train_effect.py --runs DIR [--config lse.toml] [--heldout a,b,c] [--seeds 2]
                                            [--train-wall 3600] [--out DIR]
    python benchmarks/bench_train_effect.py --quick   # the pipeline on a tiny random model (numbers mean nothing)

`--evolver-model qwen2.5-coder-0.5b` trains and compares the 0.5B instead of the config's 1.5B (about 3x the steps an
hour on a CPU); `--trained DIR` compares an evolver trained before, on more `--seeds`, without training again.

Writes benchmarks/results/bench_train_effect.json. Without `--runs` (and not `--quick`) it says what it needs and
exits 0: the full benchmark takes hours on two cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).parent / "results"
SHARED = ROOT.parent / "shared" / "data"
HELDOUT = "student_transcripts_tracking,cre_Doc_Template_Mgt,tvshow"  # Spider dev databases no protocol run used


def evolver_override(model: str | None) -> dict[str, Any]:
    """`--evolver-model`: another evolver for training and for both arms of the comparison (none: the config's)."""
    return {"evolver": {"model": model}} if model else {}


def train_evolver(runs: Path, config: Path | None, name: str, wall_s: float, quick: bool, evolver: str | None = None,
                  learning_rate: float = 1e-5) -> dict[str, Any]:
    """`lse train --workspace RUNS` within a wall-time budget; what it trained on and how it ended."""
    from lse_engine.cli.common import PlainProgress
    from lse_engine.train import train

    overrides: dict[str, Any] = {"train": {
        "name": name, "method": "lora", "reward_on": "batch", "task_model": "model", "states": 4, "samples": 4,
        "data_epochs": 50, "rollout_temperature": 1.0, "checkpoint_every": 2,
        "eval_states": 4, "holdout_by": "suite", "eval_fraction": 0.25, "max_wall_s": wall_s,
        "learning_rate": learning_rate, "rollout_max_tokens": 192}, **evolver_override(evolver)}
    if quick:
        tiny = {"backend": "transformers", "model": "tiny", "sampling": {"max_tokens": 16}}
        overrides.update(model=tiny, evolver={**tiny, "sampling": {"max_tokens": 16, "temperature": 1.0}})
        overrides["train"].update(states=2, samples=2, data_epochs=1, rollout_max_tokens=16, eval_states=1)
    started = time.monotonic()
    result = train(runs, overrides=overrides, config=config, progress=PlainProgress())  # steps as they happen
    return {"status": result.status, "message": result.message, "adapter": str(result.adapter or ""),
            "steps": result.step, "chosen_step": result.chosen_step, "data": result.data,
            "evaluation": result.evaluation, "wall_s": time.monotonic() - started}


def already_trained(adapter: Path) -> dict[str, Any]:
    """`--trained DIR`: an evolver this benchmark trained before (its `lse_meta.json`), to compare on more seeds
    without training again."""
    from lse_engine.train.trainer import META_FILE

    meta = json.loads((adapter / META_FILE).read_text())
    metrics = meta.get("metrics", {})
    return {"status": "done", "message": f"trained before: {adapter}", "adapter": str(adapter),
            "steps": metrics.get("steps"), "chosen_step": metrics.get("chosen_step"), "data": meta.get("data", {}),
            "evaluation": metrics.get("evaluation", {}), "wall_s": None, "reused": True}


def evolve_with_both(adapter: str, config: Path | None, data: Path, heldout: list[str], seeds: list[int], out: Path,
                     quick: bool, evolver: str | None = None) -> Any:
    """`lse bench spider --evolver ADAPTER` on the held-out databases: the base and the trained evolver, same seeds."""
    from lse_engine.bench.protocol import Bench, BenchSpec, bench_config
    from lse_engine.bench.suites import SplitSpec
    from lse_engine.config import load_config

    overrides: dict[str, Any] = evolver_override(evolver)
    if quick:
        tiny = {"backend": "transformers", "model": "tiny", "sampling": {"max_tokens": 16}}
        overrides = {"model": tiny, "evolver": {**tiny, "sampling": {"max_tokens": 16, "temperature": 0.7}},
                     "evolve": {"request": "reference"}}
    cfg = bench_config(load_config(config or ROOT, overrides), max_model_calls=100_000, rounds=1 if quick else 3)
    spec = BenchSpec(benchmark="spider", data=data, out=out, names=heldout, rules=["ucb"], seeds=seeds,
                     evolvers=[adapter], split=SplitSpec(limit=12 if quick else 0))
    return Bench(spec, cfg).run()


def compare(result: Any) -> dict[str, Any]:
    """Per evolver: accepted-edit rate, mean delta, seed-vs-winner test gain, each with a 95 % interval."""
    from lse_engine.bench.report import mean_interval as interval

    out: dict[str, Any] = {}
    runs = [r for s in result.suites for r in s.runs]
    for label in result.evolvers:
        mine = [r for r in runs if r.evolver == label]
        accepted = [1.0] * sum(r.accepted for r in mine) + [0.0] * sum(max(0, r.replies - r.accepted) for r in mine)
        deltas = [d for r in mine for d in r.deltas]
        gains = [r.test_gain[0] for r in mine if r.test_gain]
        out[label] = {"runs": len(mine), "replies": len(accepted), "accepted_rate": interval(accepted),
                      "children": len(deltas), "mean_delta": interval(deltas), "test_gain": interval(gains)}
    if len(result.evolvers) == 2:
        out["trained - base (paired)"] = paired(runs, *result.evolvers)
    return out


def paired(runs: list[Any], base: str, trained: str) -> dict[str, Any]:
    """The trained evolver's run minus the base's on the same database and seed: per pair, the difference in
    accepted-edit rate, in mean delta and in test gain; the mean of each over the pairs with a 95 % interval."""
    from lse_engine.bench.protocol import mean_of
    from lse_engine.bench.report import mean_interval as interval

    trained_runs = {(r.suite, r.seed): r for r in runs if r.evolver == trained}
    diffs: dict[str, list[float]] = {"accepted_rate": [], "mean_delta": [], "test_gain": []}
    pairs = 0
    for b in runs:
        t = trained_runs.get((b.suite, b.seed))
        if b.evolver != base or t is None:
            continue
        pairs += 1
        for key, value in (("accepted_rate", lambda r: r.accepted / r.replies if r.replies else None),
                           ("mean_delta", lambda r: mean_of(r.deltas)),
                           ("test_gain", lambda r: r.test_gain[0] if r.test_gain else None)):
            vb, vt = value(b), value(t)
            if vb is not None and vt is not None:
                diffs[key].append(vt - vb)
    return {"runs": pairs, **{k: interval(v) for k, v in diffs.items()}, "n": {k: len(v) for k, v in diffs.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=Path, action="append", help="a bench output with training runs (its .lse/lse.db); "
                    "several are combined into one store")
    ap.add_argument("--config", type=Path, help="the lse.toml of the runs (default: benchmarks/protocol/lse.toml)")
    ap.add_argument("--data", type=Path, default=SHARED / "spider-dev", help="Spider dev (the held-out databases)")
    ap.add_argument("--heldout", default=HELDOUT, help="comma-separated Spider databases no training run used")
    ap.add_argument("--seeds", default="2", help="N (seeds 0..N-1) or a comma-separated list")
    ap.add_argument("--train-wall", type=float, default=3600.0, help="seconds of training (default: an hour)")
    ap.add_argument("--name", default="cpu-evolver")
    ap.add_argument("--evolver-model", help="train and compare this evolver instead of the config's (e.g. "
                    "qwen2.5-coder-0.5b: about 3x the 1.5B's training steps per hour on a CPU)")
    ap.add_argument("--trained", type=Path, help="an evolver this benchmark trained before (its directory): "
                    "skip training and compare it again, e.g. on more seeds (runs already done are reused)")
    ap.add_argument("--learning-rate", type=float, default=1e-5, help="LoRA learning rate (default 1e-5)")
    ap.add_argument("--out", type=Path, help="where the held-out runs go (default: RUNS/../train-effect)")
    ap.add_argument("--quick", action="store_true", help="the pipeline on a tiny random model (seconds)")
    ap.add_argument("--strict", action="store_true", help="accepted; nothing here has a target to miss")
    args = ap.parse_args()
    seeds = list(range(int(args.seeds))) if "," not in args.seeds else [int(x) for x in args.seeds.split(",")]
    config = args.config or (None if args.quick else ROOT / "benchmarks" / "protocol" / "lse.toml")
    runs = combine(args.runs, args.out or RESULTS / "train-effect") if args.runs else None
    if args.quick:
        runs = quick_runs()
        seeds = [0]
    if runs is None or not (runs / ".lse" / "lse.db").is_file():
        print("bench_train_effect: needs --runs DIR, a bench output holding the training runs (benchmarks/README.md: "
              "the protocol's commands); skipped")
        return 0
    if not args.data.is_dir():
        print(f"bench_train_effect: no Spider data at {args.data}; skipped")
        return 0
    wall = 60.0 if args.quick else args.train_wall
    if args.trained:
        trained = already_trained(args.trained)
    else:
        print(f"training the evolver on the runs in {runs} for at most {wall:g} s …", flush=True)
        trained = train_evolver(runs, config, args.name, wall, args.quick, args.evolver_model, args.learning_rate)
    print(f"  {trained['status']}: {trained['message']}", flush=True)
    if trained["status"] != "done":
        return 1
    out = args.out or runs.parent / "train-effect"
    heldout = [h for h in args.heldout.split(",") if h]
    print(f"evolving on {', '.join(heldout)} with the base and the trained evolver, seeds {seeds} …", flush=True)
    result = evolve_with_both(trained["adapter"], config, args.data, heldout[:1] if args.quick else heldout, seeds,
                              out, args.quick, args.evolver_model)
    table = compare(result)
    from lse_engine.bench.report import write

    print(f"per run: {write(result, out)['markdown']}", flush=True)
    print(f"\n{'evolver':<25} runs  accepted-edit rate [95%]      mean delta on dev [95%]      test gain [95%]")
    for label, row in table.items():
        sign = "+" if label.endswith("(paired)") else ""
        cells = [f"{100 * m:{sign}5.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}]" for m, lo, hi in
                 (row["accepted_rate"], row["mean_delta"], row["test_gain"])]
        print(f"{label:<25} {row['runs']:>4}  {cells[0]:<28} {cells[1]:<28} {cells[2]}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_train_effect.json").write_text(json.dumps(
        {"quick": args.quick, "runs": str(runs), "trained": trained, "heldout": heldout, "seeds": seeds,
         "evolver_model": args.evolver_model, "learning_rate": args.learning_rate,
         "compare": table, "bench": str(out)}, indent=2, default=str))
    return 0


def combine(stores: list[Path], out: Path) -> Path:
    """One workspace whose run store holds the runs (and their nodes, batches, attempts and outcomes) of every bench
    output given; one given alone is used as it is."""
    import sqlite3

    if len(stores) == 1:
        return stores[0]
    dest = out / "training-runs"
    db = dest / ".lse" / "lse.db"
    if db.exists():
        return dest
    db.parent.mkdir(parents=True)
    from lse_engine.store import Store

    Store(db).close()  # the schema
    conn = sqlite3.connect(db)
    for i, store in enumerate(stores):
        conn.execute(f"ATTACH DATABASE ? AS s{i}", (str(store / ".lse" / "lse.db"),))
        for table in ("outcomes", "runs", "nodes", "selections", "batches", "attempts"):
            cols = [r[1] for r in conn.execute(f"PRAGMA s{i}.table_info({table})")]
            mine = {r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")}
            names = ", ".join(c for c in cols if c in mine)
            conn.execute(f"INSERT OR IGNORE INTO main.{table} ({names}) SELECT {names} FROM s{i}.{table}")
        conn.commit()
        conn.execute(f"DETACH DATABASE s{i}")
    conn.close()
    return dest


def quick_runs() -> Path:
    """A tiny workspace with two short evolve runs of the tiny random model, as training data."""
    import tempfile

    from lse_engine.runner import evolve
    from lse_engine.workspace import Workspace
    from tests.conftest import build_skill_workspace

    root = Path(tempfile.mkdtemp(prefix="lse-train-effect-"))
    tiny = {"backend": "transformers", "model": "tiny", "sampling": {"max_tokens": 16}}
    for seed in (0, 1):
        prompt = build_skill_workspace(root / "ws", n_problems=24) if seed == 0 else root / "ws" / "nums.prompt.md"
        ws = Workspace(prompt, {"model": tiny, "evolver": {**tiny, "sampling": {"max_tokens": 16, "temperature": 0.7}},
                                "evolve": {"rounds": 2, "seed": seed, "batch_size": 4, "dev_size": 6}})
        evolve(ws)
        ws.close()
    return root / "ws"


if __name__ == "__main__":
    sys.exit(main())
