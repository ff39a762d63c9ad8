"""MMLU-Redux (Gema et al., 2024) and MMLU -> one multiple-choice suite per subject.

Reads a file or a directory of: CSV (one per subject; `,`/`;`/tab separated, any column order, labels in
any case, UTF-8 or a legacy encoding; also MMLU's header-less `question,A,B,C,D,answer` files), JSON,
JSONL, Parquet and Arrow (the Hugging Face formats; fields question, choices, answer, subject).
With `use_corrections`, MMLU-Redux's annotations are applied: a row flagged "wrong groundtruth" takes
its `correct_answer`, and rows flagged as having no or several correct answers are left out.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
import tokenize
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lse_engine.errors import LSEError
from lse_engine.files.suite_file import write_suite
from lse_engine.importers.write import (
    MC_INSTRUCTIONS,
    ImportResult,
    clean_text,
    safe_name,
    write_prompt,
)

LETTERS = "ABCDEFGHIJ"
EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".arrow")
_QUESTION_KEYS = ("question", "prompt", "input")
_CHOICE_KEYS = ("choices", "options")
_ANSWER_KEYS = ("answer", "label", "target", "gold")
_SHARD = re.compile(r"^(test|validation|val|dev|train|auxiliary_train|data)([-_]\d+([-_]of[-_]\d+)?)?$", re.I)
_NO_SINGLE_ANSWER = {"no correct answer", "multiple correct answers"}


def _norm_key(label: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(label).strip().lower()).strip("_")


def _decode(raw: bytes) -> str:
    """UTF-8 (with or without BOM); otherwise Mac Roman or Windows-1252, whichever the bytes suggest."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        mac = sum(raw.count(bytes([b])) for b in range(0xD0, 0xD6))  # Mac Roman quotes and dashes
        win = sum(raw.count(bytes([b])) for b in range(0x91, 0x98))  # cp1252 quotes and dashes
        return raw.decode("mac_roman" if mac > win else "cp1252", errors="replace")


def _subject_of(path: Path) -> str:
    """`mmlu_abstract_algebra.csv`, `abstract_algebra_test.csv`, `abstract_algebra/test-0000-of-0001.parquet`."""
    stem = path.name.split(".")[0]
    if _SHARD.match(stem):
        stem = path.parent.name
    stem = re.sub(r"^(mmlu[_-]redux[_-]?(2\.0[_-])?|mmlu[_-])", "", stem, flags=re.I)
    stem = re.sub(r"[_-](test|dev|val|validation)$", "", stem, flags=re.I)
    return stem or "mmlu"


def _read_csv(path: Path) -> Iterator[dict[str, Any]]:
    text = _decode(path.read_bytes())
    first = text.split("\n", 1)[0]
    if "question" in first.lower():
        delimiter = max(",;\t|", key=first.count)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = [_norm_key(h) for h in next(reader, [])]
        for row in reader:
            if any(cell.strip() for cell in row):
                yield {k: v for k, v in zip(header, row, strict=False) if k}
        return
    try:  # MMLU's own header-less files: question, option A, B, C, D, answer letter
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    for row in csv.reader(io.StringIO(text, newline=""), dialect):
        if len(row) >= 4:
            yield {"question": row[0], "choices": row[1:-1], "answer": row[-1]}


def _read_arrow_like(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise LSEError(f"{path}: reading {path.suffix} files needs pyarrow (pip install pyarrow)") from exc
    rows: list[dict[str, Any]]
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        return rows
    with open(path, "rb") as fh:  # datasets' cache files are IPC streams; plain Arrow files also work
        try:
            rows = pa.ipc.open_stream(fh).read_all().to_pylist()
        except pa.ArrowInvalid:
            fh.seek(0)
            rows = pa.ipc.open_file(fh).read_all().to_pylist()
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    text = _decode(path.read_bytes())
    if path.suffix == ".jsonl":
        data: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        data = json.loads(text)
    if isinstance(data, dict):  # {"rows": [...]}, {"test": [...]}, or the datasets-server {"rows": [{"row": ...}]}
        data = next((v for v in data.values() if isinstance(v, list)), [])
    rows = [r.get("row", r) if isinstance(r, dict) else None for r in data]
    return [r for r in rows if isinstance(r, dict)]


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of one file with normalised keys, each with a `subject`."""
    default_subject = _subject_of(path)
    if path.suffix in (".csv", ".tsv"):
        rows: Any = _read_csv(path)
    elif path.suffix in (".json", ".jsonl"):
        rows = _read_json(path)
    else:
        rows = _read_arrow_like(path)
    for row in rows:
        norm = {_norm_key(k): v for k, v in row.items()}
        norm["subject"] = str(norm.get("subject") or default_subject)
        yield norm


def parse_choices(value: Any) -> list[str] | None:
    """Options from a list, a JSON/Python list literal, or numpy's `['a' 'b' 'c']` rendering."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        s = value.strip()
        items = []
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(s)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(parsed, (list, tuple)):
                items = list(parsed)
                break
        if len(items) < 2 and s.startswith("["):  # adjacent literals, as numpy prints string arrays
            try:
                toks = tokenize.generate_tokens(io.StringIO(s).readline)
                items = [ast.literal_eval(t.string) for t in toks if t.type == tokenize.STRING]
            except (tokenize.TokenError, ValueError, SyntaxError, IndentationError):
                items = []
    else:
        return None
    options = [clean_text(o) for o in items if o is not None]
    return options if len(options) >= 2 else None


def answer_index(value: Any, options: list[str]) -> int | None:
    """A 0-based option index from an int, a digit string, a letter (`B`, `(b)`) or the option's text."""
    n = len(options)
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value if 0 <= value < n else None
    s = str(value).strip().strip("()[]'\". ").strip()
    if re.fullmatch(r"\d+(\.0+)?", s):
        i = int(float(s))
        return i if 0 <= i < n else None
    if len(s) == 1 and s.upper() in LETTERS[:n]:
        return LETTERS.index(s.upper())
    lowered = [o.lower() for o in options]
    target = clean_text(value).lower()
    return lowered.index(target) if target and lowered.count(target) == 1 else None


def _gold(row: dict[str, Any], options: list[str], use_corrections: bool) -> tuple[int | None, str]:
    """The gold option index, or None with the reason the row is left out."""
    answer = next((row[k] for k in _ANSWER_KEYS if k in row), None)
    if use_corrections:
        flag = " ".join(_norm_key(row.get("error_type") or "").split("_"))
        if flag in _NO_SINGLE_ANSWER:
            return None, "flagged by MMLU-Redux as having no single correct answer"
        if flag == "wrong groundtruth":
            fixed = answer_index(row.get("correct_answer"), options)
            if fixed is None:
                return None, "flagged wrong ground truth without a usable correction"
            return fixed, ""
    index = answer_index(answer, options)
    return (index, "") if index is not None else (None, "answer not interpretable as one of the options")


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise LSEError(f"MMLU-Redux: {path} is neither a file nor a directory")
    found = sorted(p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()
                   and not p.name.startswith("."))
    if not found:
        raise LSEError(f"MMLU-Redux: no {', '.join(EXTENSIONS)} files under {path}")
    return found


def import_mmlu_redux(path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                      subjects: list[str] | None = None, use_corrections: bool = True) -> ImportResult:
    """Write `<subject>.suite.yaml` + `<subject>.prompt.md` per subject; ids are `mmlu-<subject>-<row>`.

    Rows whose choices or answer cannot be read are skipped and counted (`rows_skipped`, and one entry
    per subject in `skipped`).
    """
    wanted = {_subject_key(s) for s in subjects} if subjects else None
    by_subject: dict[str, list[dict[str, Any]]] = {}
    reasons: dict[str, Counter[str]] = {}
    seen: Counter[str] = Counter()
    for file in _files(Path(path)):
        for row in read_rows(file):
            subject = _subject_key(row["subject"])
            if wanted is not None and subject not in wanted:
                continue
            index = seen[subject]
            seen[subject] += 1
            problem, why = _problem(row, use_corrections)
            if problem is None:
                reasons.setdefault(subject, Counter())[why] += 1
                continue
            problem["id"] = f"mmlu-{subject}-{index}"
            by_subject.setdefault(subject, []).append(problem)
    out = Path(out_dir)
    result = ImportResult()
    for subject in sorted(by_subject):
        problems = by_subject[subject]
        suite_path = out / f"{subject}.suite.yaml"
        comment = f"Imported from MMLU-Redux ({Path(path).name}): subject {subject}, {len(problems)} questions."
        write_suite(suite_path, "multiple-choice", problems, comment=comment)
        write_prompt(out / f"{subject}.prompt.md", suite_path, MC_INSTRUCTIONS)
        result.suites.append(suite_path)
        result.problems += len(problems)
    for subject, counts in sorted(reasons.items()):
        n = sum(counts.values())
        result.rows_skipped += n
        why_skipped = "; ".join(f"{c} {why}" for why, c in counts.most_common())
        result.skipped[f"{subject} ({n} row{'s' if n != 1 else ''})"] = why_skipped
    for subject in sorted((wanted or set()) - set(seen)):
        result.skipped[subject] = "subject not found"
    return result


def _subject_key(name: str) -> str:
    key = re.sub(r"^mmlu_(redux_)?", "", _norm_key(name))
    return safe_name(key) if key else "mmlu"


def _problem(row: dict[str, Any], use_corrections: bool) -> tuple[dict[str, Any] | None, str]:
    """A suite problem (without id) from a normalised row, or None and why not."""
    question = next((row[k] for k in _QUESTION_KEYS if row.get(k) not in (None, "")), None)
    if question is None:
        return None, "no question"
    options = parse_choices(next((row[k] for k in _CHOICE_KEYS if k in row), None))
    if options is None and all(k in row for k in ("a", "b", "c", "d")):
        options = [clean_text(row[k]) for k in "abcd"]
    if options is None or len(options) > len(LETTERS):
        return None, "choices not readable as a list of 2 to 10 options"
    gold, why = _gold(row, options, use_corrections)
    if gold is None:
        return None, why
    return {"question": clean_text(question), "options": options, "gold": LETTERS[gold]}, ""
