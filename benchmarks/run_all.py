"""Run every `benchmarks/bench_*.py` in turn (found by glob) and summarise how each one ended.

    python benchmarks/run_all.py [--quick] [--strict] [-k SUBSTRING] [--timeout SECONDS]

`--quick` and `--strict` are passed through to each benchmark. Each one prints its own report and writes
`benchmarks/results/<name>.json`. Exits 1 when any benchmark exits non-zero or runs past the timeout.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TIMEOUT = 600.0
# full runs that take longer: bench_generation loads the 0.5B demo model and runs its one-at-a-time baseline
# (~15 minutes on 2 busy cores; more with the CTranslate2 / onnxruntime-genai rows, which convert the model once);
# bench_memory loads both demo models in a fresh process per workload, along both paths (~30 minutes)
TIMEOUTS = {"bench_generation": 3600.0, "bench_memory": 3600.0}


def discover(pattern: str = "") -> list[Path]:
    """The benchmark scripts, in name order, optionally only those whose name contains `pattern`."""
    return [p for p in sorted(HERE.glob("bench_*.py")) if pattern in p.stem]


def run_one(script: Path, flags: list[str], timeout: float) -> str:
    """Run one benchmark in its own process group (so a timeout also ends the processes it started)."""
    proc = subprocess.Popen([sys.executable, str(script), *flags], cwd=HERE.parent, start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return f"timeout after {timeout:g} s"
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return "ok" if rc == 0 else f"exit {rc}"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick (each benchmark under ~40 s)")
    ap.add_argument("--strict", action="store_true", help="pass --strict (a missed target exits non-zero)")
    ap.add_argument("-k", default="", metavar="SUBSTRING", help="only benchmarks whose name contains this")
    ap.add_argument("--timeout", type=float, help=f"seconds allowed per benchmark (default {DEFAULT_TIMEOUT:g}; "
                    f"longer for {', '.join(TIMEOUTS)})")
    args = ap.parse_args()
    flags = [f for f, on in (("--quick", args.quick), ("--strict", args.strict)) if on]
    scripts = discover(args.k)
    if not scripts:
        print(f"no benchmarks match {args.k!r} in {HERE}")
        return 1
    summary: list[tuple[str, str, float]] = []
    for script in scripts:
        print(f"\n=== {script.stem} {' '.join(flags)}".rstrip() + " ===", flush=True)
        t0 = time.perf_counter()
        limit = args.timeout or (DEFAULT_TIMEOUT if args.quick else TIMEOUTS.get(script.stem, DEFAULT_TIMEOUT))
        status = run_one(script, flags, limit)
        summary.append((script.stem, status, time.perf_counter() - t0))
    print("\n=== summary ===")
    for name, status, secs in summary:
        print(f"  {name:<28} {status:<24} {secs:7.1f} s")
    return 0 if all(status == "ok" for _, status, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
