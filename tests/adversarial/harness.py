"""Run attacks and measure what they did: the verdict, wall time, peak memory growth, the database's bytes, the
files next to it. Runs in a child process of its own (`python -m tests.adversarial.harness ...`, one JSON line per
attack), so a crash is seen as a crash and memory is measured without the test runner's.

    python -m tests.adversarial.harness sql DIR [--timeout S] [--quick] [--only NAME ...]
    python -m tests.adversarial.harness files DIR [--quick]

Shared by tests/adversarial/test_*.py and benchmarks/bench_adversarial.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SLACK_S = 0.5  # an attack ends within its deadline plus this
RSS_LIMIT_MB = 200.0  # peak memory growth allowed for one attack
EVIL_PATHS = ("/tmp/lse-evil.sqlite", "/tmp/lse-evil-copy.sqlite", "/tmp/lse-evil")


@dataclass
class Result:
    name: str
    path: str  # predicted | gold | check | api | cli | server
    verdict: str  # the outcome's kind ("ok" when it ran), a diagnostic code, or "crash"
    allowed: bool
    seconds: float
    rss_mb: float
    files_same: bool = True
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- measuring -------------------------------------------------------------------------------------------------
def _status(key: str, pid: int | str = "self") -> float:
    """A /proc/PID/status memory line in MB (0 where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int | str = "self") -> float:
    return _status("VmRSS", pid)


def peak_mb(pid: int | str = "self") -> float:
    return _status("VmHWM", pid)


def reset_peak() -> None:
    """Start measuring the peak again (Linux: writing 5 to clear_refs resets VmHWM to the current RSS)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def tree_state(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a digest of its bytes (the run store's folder `.lse/` aside)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if ".lse" not in p.relative_to(folder).parts and p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@contextlib.contextmanager
def measured(folder: Path) -> Iterator[dict[str, Any]]:
    """Time, peak memory growth and whether `folder` (and the attack's favourite /tmp paths) stayed as it was."""
    before = tree_state(folder)
    reset_peak()
    base = rss_mb()
    got: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        yield got
    finally:
        got["seconds"] = time.perf_counter() - start
        got["rss_mb"] = max(0.0, peak_mb() - base)
        after = tree_state(folder)
        got["files_same"] = after == before and not any(os.path.exists(p) for p in EVIL_PATHS)
        if not got["files_same"]:
            changed = sorted(set(before.items()) ^ set(after.items()))
            got["detail"] = (got.get("detail", "") + f" files changed: {changed[:4]}").strip()


# -- SQL -------------------------------------------------------------------------------------------------------
def run_sql(folder: Path, attacks: list, timeout: float, paths: tuple[str, ...] = ("predicted", "gold", "check")
            ) -> Iterator[Result]:
    """Each attack as predicted SQL (`SQLiteTask.score`), as gold SQL (the task's gold result) and through the
    editor's gold check (`GoldChecker.check`), on the database in `folder`."""
    from lse_engine.tasks.base import Problem
    from lse_engine.tasks.sql_checks import GoldChecker
    from lse_engine.tasks.text_to_sql import SQLiteTask

    db = folder / "attack.sqlite"
    task = SQLiteTask(db, timeout_s=timeout, gold_timeout_s=timeout, workers=2)
    checker = GoldChecker(db, timeout_s=timeout)
    task.score([Problem("warm", "?", "SELECT 1")], ["<answer>SELECT 1</answer>"])
    try:
        for attack in attacks:
            for path in paths:
                if attack.answer is not None and path != "predicted":
                    continue
                yield _one_sql(folder, task, checker, attack, path, timeout, Problem)
    finally:
        task.close()
        checker.close()


def _one_sql(folder: Path, task, checker, attack, path: str, timeout: float, problem_cls) -> Result:
    detail = ""
    with measured(folder) as got:
        try:
            if path == "predicted":
                completion = attack.answer if attack.answer is not None else f"<answer>{attack.sql}</answer>"
                out = task.score([problem_cls("p", "?", "SELECT 1")], [completion])[0]
                verdict = "ok" if out.error_kind in (None, "wrong_result") else out.error_kind
                detail = out.error or ""
            elif path == "gold":
                problem = problem_cls(f"g-{attack.name}", "?", attack.sql)
                task.score([problem], ["<answer>SELECT 1</answer>"])
                res = task.gold_result(problem)
                verdict, detail = (res.error_kind or "ok"), (res.error or "")
            else:
                check = checker.check(attack.sql)
                codes = [code for code, _, severity in check.issues if severity == "error"]
                if "gold-timeout" in codes:
                    verdict = "timeout"
                elif "gold-parse" in codes:
                    verdict = "syntax"
                elif check.result is not None and not check.result.ok:
                    verdict = check.result.error_kind or "runtime"
                else:
                    verdict = "ok"
                detail = "; ".join(message for _, message, _ in check.issues)
        except BaseException as exc:  # noqa: BLE001 - an escape is the finding
            verdict, detail = "crash", f"{type(exc).__name__}: {exc}"
    allowed = verdict in attack.kinds and got["files_same"] and got["seconds"] <= timeout + SLACK_S \
        and got["rss_mb"] <= RSS_LIMIT_MB
    return Result(attack.name, path, verdict, allowed, got["seconds"], got["rss_mb"], got["files_same"],
                  (detail[:300] + " " + got.get("detail", "")).strip())


# -- files: the parse API and the CLI ------------------------------------------------------------------------------
def run_files(folder: Path, attacks: list) -> Iterator[Result]:
    """Each file attack: its diagnostics from the parse API, then `lse eval` on it (in this process, through the
    CLI's `main`): exit code 2 and one `error: …` line, or a clean run, never a traceback."""
    for attack in attacks:
        ws = attack.build(folder / _slug(attack.name))
        yield _api(ws, attack)
        if attack.cli is not None:
            yield _cli(ws, attack)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)[:60]


def _api(ws, attack) -> Result:
    codes: list[str] = []
    detail = ""
    with measured(ws.root) as got:
        try:
            codes, detail = attack.check(ws)
        except BaseException as exc:  # noqa: BLE001
            codes, detail = ["crash"], f"{type(exc).__name__}: {exc}"
    verdict = ",".join(codes) or "ok"
    allowed = bool(set(codes) & attack.codes) if attack.codes else not codes
    allowed = allowed and got["files_same"] and got["seconds"] <= attack.seconds and got["rss_mb"] <= RSS_LIMIT_MB
    return Result(attack.name, "api", verdict, allowed, got["seconds"], got["rss_mb"], got["files_same"],
                  detail[:300])


def _cli(ws, attack) -> Result:
    from lse_engine.cli import main

    out, err = io.StringIO(), io.StringIO()
    with measured(ws.root) as got:
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(["eval", str(ws.prompt), "--quiet", *attack.cli_args])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:  # noqa: BLE001
            rc, err = -1, io.StringIO(f"{type(exc).__name__}: {exc}")
    text = err.getvalue().strip()
    lines = [line for line in text.splitlines() if line.strip()]
    one_line = rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in text
    verdict = "error-line" if one_line else ("ran" if rc == 0 else f"rc={rc}")
    allowed = verdict in attack.cli and got["files_same"] and got["seconds"] <= attack.seconds \
        and got["rss_mb"] <= RSS_LIMIT_MB
    return Result(attack.name, "cli", verdict, allowed, got["seconds"], got["rss_mb"], got["files_same"],
                  text[-300:])


# -- running a harness in a child process ------------------------------------------------------------------------
def run_child(kind: str, folder: Path, *args: str, timeout: float = 900) -> tuple[list[Result], int]:
    """Run `kind` (sql | files) in a fresh Python process; its results and its exit code (0: it survived)."""
    proc = subprocess.run([sys.executable, "-m", "tests.adversarial.harness", kind, str(folder), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    results = [Result(**json.loads(line)) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
    return results, proc.returncode


def failures(results: list[Result]) -> list[str]:
    return [f"{r.name} [{r.path}]: {r.verdict} in {r.seconds:.2f} s, +{r.rss_mb:.0f} MB, files same: {r.files_same}"
            f" — {r.detail}" for r in results if not r.allowed]


def _emit(result: Result) -> None:
    print(json.dumps(asdict(result)), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("kind", choices=["sql", "files"])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--timeout", type=float, default=0.5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    each: Callable[[], Iterator[Result]]
    if args.kind == "sql":
        from tests.adversarial import sql_corpus

        if not (args.folder / "attack.sqlite").exists():
            sql_corpus.build_attack_db(args.folder / "attack.sqlite")
        attacks = sql_corpus.quick() if args.quick else [*sql_corpus.CORPUS, *sql_corpus.ANSWERS]
        if args.only:
            attacks = [a for a in attacks if a.name in args.only]
        each = lambda: run_sql(args.folder, attacks, args.timeout)  # noqa: E731
    else:
        from tests.adversarial import file_corpus

        attacks = file_corpus.quick() if args.quick else file_corpus.CORPUS
        if args.only:
            attacks = [a for a in attacks if a.name in args.only]
        each = lambda: run_files(args.folder, attacks)  # noqa: E731
    for result in each():
        _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
