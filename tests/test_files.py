"""Suite, prompt and config files: positions on errors, splits, atomic write-back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lse_engine.config import load_config
from lse_engine.errors import FileFormatError
from lse_engine.files import load_prompt, load_suite, parse_prompt, parse_suite
from lse_engine.files.prompt_file import write_instructions


def _db(tmp_path: Path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "d.sqlite").execute("CREATE TABLE t (a)").connection.commit()


def test_yaml_error_has_file_line_column(tmp_path: Path) -> None:
    p = tmp_path / "x.suite.yaml"
    p.write_text("task: text-to-sql\ndatabase: d.sqlite\nproblems:\n  - id: a\n    question: [unclosed\n")
    with pytest.raises(FileFormatError) as err:
        load_suite(p)
    assert err.value.path == str(p) and err.value.line >= 5 and err.value.code == "yaml"
    assert str(err.value).startswith(f"{p}:{err.value.line}:{err.value.column}: invalid YAML")


def test_json_suite_error_position(tmp_path: Path) -> None:
    p = tmp_path / "x.suite.json"
    p.write_text('{\n  "task": "text-to-sql",\n  "problems": [\n    {"id": "a",}\n  ]\n}\n')
    with pytest.raises(FileFormatError) as err:
        load_suite(p)
    assert (err.value.line, err.value.code) == (4, "json")


def test_missing_database_unknown_keys_and_duplicates(tmp_path: Path) -> None:
    text = (
        "task: text-to-sql\n"
        "database: nowhere.sqlite\n"
        "colour: blue\n"
        "problems:\n"
        "  - id: a\n"
        "    question: q\n"
        "    gold: SELECT 1\n"
        "    hint: nope\n"
        "  - id: a\n"
        "    question: q2\n"
        "    gold: SELECT 2\n"
    )
    suite, issues = parse_suite(text, tmp_path / "x.suite.yaml")
    by_code = {i.code: i for i in issues}
    assert by_code["missing-database"].span.line == 1 and by_code["missing-database"].span.col == 10
    unknown = [i for i in issues if i.code == "unknown-key"]
    assert [(i.span.line, i.span.col) for i in unknown] == [(2, 0), (7, 4)]
    assert by_code["duplicate-id"].span.line == 8 and "first at line 5" in by_code["duplicate-id"].message
    with pytest.raises(FileFormatError) as err:
        load_suite(_write(tmp_path / "y.suite.yaml", text))
    assert err.value.line == 2 and "more" in str(err.value)


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_json_suite_positions_and_split_determinism(tmp_path: Path) -> None:
    _db(tmp_path)
    problems = [{"id": f"q{i}", "question": f"q{i}?", "gold": f"SELECT {i}"} for i in range(50)]
    p = _write(tmp_path / "s.suite.json", json.dumps({"task": "text-to-sql", "database": "d.sqlite",
                                                      "split": {"dev": 0.3, "test": 0.1, "seed": 1},
                                                      "problems": problems}, indent=2))
    suite = load_suite(p)
    parts = suite.split()
    assert [len(parts[k]) for k in ("train", "dev", "test")] == [30, 15, 5]
    assert suite.split() == parts
    # adding problems keeps earlier assignments mostly stable (hash-ranked)
    assert suite.spans["q3"]["gold"].line > 0
    problems[0]["split"] = "test"
    suite2 = load_suite(_write(tmp_path / "s2.suite.json", json.dumps(
        {"task": "text-to-sql", "database": "d.sqlite", "problems": problems})))
    assert suite2.problems[0] in suite2.split()["test"]


def test_problems_with_the_same_gold_query_share_a_split(tmp_path: Path) -> None:
    _db(tmp_path)
    # Spider's way: every query asked twice, in other words (and other spacing or case)
    problems = [{"id": f"q{i}", "question": f"q{i}?", "gold": f"SELECT {i // 2}" if i % 2 else f"select  {i // 2}"}
                for i in range(40)]
    p = _write(tmp_path / "s.suite.json", json.dumps({"task": "text-to-sql", "database": "d.sqlite",
                                                      "split": {"dev": 0.3, "test": 0.3, "seed": 3},
                                                      "problems": problems}))
    parts = load_suite(p).split()
    where = {p.id: name for name, ps in parts.items() for p in ps}
    assert all(where[f"q{i}"] == where[f"q{i + 1}"] for i in range(0, 40, 2))
    assert [len(parts[k]) for k in ("train", "dev", "test")] == [16, 12, 12]


def test_multiple_choice_suite(tmp_path: Path) -> None:
    text = "task: multiple-choice\nproblems:\n  - id: m1\n    question: 2+2?\n    options: ['3', '4']\n    gold: b\n"
    suite, issues = parse_suite(text, tmp_path / "m.suite.yaml")
    assert not issues and suite.problems[0].gold == "B" and suite.problems[0].options == ["3", "4"]
    bad = text.replace("gold: b", "gold: E")
    _, issues = parse_suite(bad, tmp_path / "m.suite.yaml")
    assert issues[0].code == "gold" and issues[0].span.line == 5


def test_prompt_front_matter_and_atomic_write_back(tmp_path: Path) -> None:
    _db(tmp_path)
    _write(tmp_path / "s.suite.yaml", "task: text-to-sql\ndatabase: d.sqlite\nproblems:\n  - {id: a, question: q, gold: SELECT 1}\n")
    p = _write(tmp_path / "a.prompt.md", "---\nsuite: s.suite.yaml  # the suite\nname: demo\n---\nOld instructions.\n\nSecond line.\n")
    prompt = load_prompt(p)
    assert prompt.instructions == "Old instructions.\n\nSecond line.\n".strip("\n")
    assert prompt.suite_path == (tmp_path / "s.suite.yaml").resolve()
    write_instructions(prompt, "New instructions.")
    assert p.read_text() == "---\nsuite: s.suite.yaml  # the suite\nname: demo\n---\nNew instructions.\n"
    # refuses when the file changed since it was read
    with pytest.raises(FileFormatError, match="changed on disk"):
        write_instructions(prompt, "Again.")
    assert p.read_text().endswith("New instructions.\n")


def test_prompt_without_suite_or_with_bad_front_matter(tmp_path: Path) -> None:
    _, issues = parse_prompt("just text\n", tmp_path / "a.prompt.md")
    assert issues[0].code == "missing-suite"
    _, issues = parse_prompt("---\nsuite: [unclosed\n---\nx\n", tmp_path / "a.prompt.md")
    assert issues[0].code == "front-matter" and issues[0].span.line >= 1
    _, issues = parse_prompt("---\nsuite: x.suite.yaml\n", tmp_path / "a.prompt.md")
    assert issues[0].code == "front-matter"
    with pytest.raises(FileFormatError):
        load_prompt(_write(tmp_path / "b.prompt.md", "---\nsuite: missing.suite.yaml\n---\nx\n"))


def test_evolver_follows_the_task_model_unless_it_names_its_own_weights(tmp_path: Path) -> None:
    openai = "[model]\nbackend = 'openai'\nmodel = 'm'\nbase_url = 'http://h/v1'\ntimeout_s = 9.0\n"
    _write(tmp_path / "lse.toml", openai + "[evolver.sampling]\nmax_tokens = 99\n")
    ev = load_config(tmp_path).evolver
    assert (ev.backend, ev.model, ev.base_url, ev.timeout_s) == ("openai", "m", "http://h/v1", 9.0)
    assert ev.sampling.max_tokens == 99 and ev.sampling.temperature == 0.7
    _write(tmp_path / "lse.toml", openai + "[evolver]\nbackend = 'transformers'\nmodel = '/w/tiny'\n")
    ev = load_config(tmp_path).evolver
    assert (ev.backend, ev.model, ev.base_url) == ("transformers", "/w/tiny", "")  # its own weights
    assert ev.timeout_s == 9.0  # runtime keys still follow [model]
    ev = load_config(tmp_path, {"evolver": {"adapter": "mine"}}).evolver
    assert ev.model == "/w/tiny" and ev.adapter == "mine"


def test_config_defaults_file_and_errors(tmp_path: Path) -> None:
    cfg = load_config(tmp_path)
    assert cfg.evolve.c == 2.0 and cfg.evolve.batch_size == 10 and cfg.evolve.dev_size == 50
    assert cfg.evolve.rule == "ucb" and cfg.sql.timeout_s > 0 and cfg.source is None
    _write(tmp_path / "lse.toml", "[model]\nmodel = 'smollm2'\n[model.sampling]\nmax_tokens = 64\n[evolve]\nrounds = 3\n")
    cfg = load_config(tmp_path / "sub" / "x.prompt.md")
    assert cfg.model.model == "smollm2" and cfg.evolve.rounds == 3 and cfg.root == tmp_path
    assert cfg.evolver.model == "smollm2" and cfg.evolver.sampling.temperature == 0.7  # evolver defaults to the model
    _write(tmp_path / "lse.toml", "[evolve]\nrounds = 3\nbogus = 1\n")
    with pytest.raises(FileFormatError) as err:
        load_config(tmp_path)
    assert err.value.line == 3 and "bogus" in str(err.value)
    _write(tmp_path / "lse.toml", "[evolve]\nrounds = 'many'\n")
    with pytest.raises(FileFormatError, match="must be an integer"):
        load_config(tmp_path)
    (tmp_path / "lse.toml").unlink()
    _write(tmp_path / "pyproject.toml", "[project]\nname='x'\n[tool.lse.evolve]\nrule = 'chain'\n")
    assert load_config(tmp_path).evolve.rule == "chain"


def test_a_named_settings_file_is_read_itself_not_the_lse_toml_beside_it(tmp_path: Path) -> None:
    """`lse bench --config other.toml` (and `lse train --config`) read that file."""
    _write(tmp_path / "lse.toml", "[model.sampling]\nmax_tokens = 256\n")
    _write(tmp_path / "long.toml", "[model.sampling]\nmax_tokens = 640\n")
    assert load_config(tmp_path).model.sampling.max_tokens == 256
    cfg = load_config(tmp_path / "long.toml")
    assert cfg.model.sampling.max_tokens == 640 and cfg.source == tmp_path / "long.toml" and cfg.root == tmp_path
    assert load_config(tmp_path / "x.prompt.md").model.sampling.max_tokens == 256  # a prompt file: its workspace's


@pytest.mark.parametrize(("toml", "where", "says"), [
    ("[model]\ntimeout_s = 5.0\n[sql]\ntimeout_s = nan\n", (4, 1), "[sql] timeout_s must be a finite number above 0; got nan"),
    ("[model]\nbatch_size = 2\n[evolve]\nbatch_size = 0\n", (4, 1), "[evolve] batch_size must be at least 1; got 0"),
    ("[sql]\nrow_cap = -1\n", (2, 1), "[sql] row_cap must be at least 1; got -1"),
    ("sql.gold_timeout_s = inf\n", (1, 1), "[sql] gold_timeout_s must be a finite number above 0; got inf"),
    ("[evolve]\n  rule = 'ucbb'\n", (2, 3), "[evolve] rule must be one of ucb, best, chain, pareto, textgrad; got 'ucbb'"),
    ("[model]\nbackend = 'openi'\n", (2, 1), "[model] backend must be one of auto, transformers, openai, vllm; got"),
    ("[evolver.sampling]\ntop_p = 0\n", (2, 1), "[evolver.sampling] top_p must be in (0, 1]; got 0.0"),
    ("[train]\nadvantage = 'mean'\n", (2, 1), "[train] advantage must be one of delta, grpo; got 'mean'"),
    ("[evolve]\nrounds = 3\nroundz = 4\n", (3, 1), "unknown key [evolve] roundz; valid keys in [evolve]: "),
    ("[sql]\n[sqll]\nx = 1\n", (2, 1), "unknown key sqll; valid keys: evolve, evolver, model, models, sql, task, train"),
    ("evolve = 3\n", (1, 1), "evolve must be a table, got an integer"),
])
def test_settings_are_checked_at_their_file_and_line(tmp_path: Path, toml: str, where: tuple[int, int],
                                                      says: str) -> None:
    _write(tmp_path / "lse.toml", toml)
    with pytest.raises(FileFormatError) as err:
        load_config(tmp_path)
    assert (err.value.line, err.value.column) == where and says in err.value.message, str(err.value)


def test_settings_files_that_are_not_text_or_not_tables(tmp_path: Path) -> None:
    (tmp_path / "lse.toml").write_bytes(b"[evolve]\nrule = \"caf\xe9\"\n")
    with pytest.raises(FileFormatError) as err:
        load_config(tmp_path)
    assert (err.value.line, err.value.column, err.value.code) == (2, 12, "encoding")
    (tmp_path / "lse.toml").unlink()
    _write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n[tool]\nlse = 3\n")
    with pytest.raises(FileFormatError, match=r"pyproject.toml:4:1: \[tool.lse\] must be a table of settings"):
        load_config(tmp_path)
    _write(tmp_path / "pyproject.toml", "[tool.lse.sql]\ntimeout_s = -1\n")
    with pytest.raises(FileFormatError, match=r"pyproject.toml:2:1: \[tool.lse.sql\] timeout_s must be"):
        load_config(tmp_path)
    _write(tmp_path / "pyproject.toml", "[tool.black]\nx = false\n")  # a pyproject without [tool.lse]: not ours
    assert load_config(tmp_path).source is None
    with pytest.raises(FileFormatError, match=r"<settings>:1:1: \[sql\] timeout_s must be a finite number"):
        load_config(tmp_path, {"sql": {"timeout_s": float("nan")}})


def test_hostile_yaml_is_a_diagnostic_in_milliseconds(tmp_path: Path) -> None:
    lol = "x0: &x0 [" + ",".join(['"lol"'] * 10) + "]\n" + "".join(
        f"x{i}: &x{i} [" + ",".join([f"*x{i - 1}"] * 10) + "]\n" for i in range(1, 9))
    text = "task: text-to-sql\ndatabase: d.sqlite\n" + lol + "problems:\n  - id: q\n    question: *x8\n    gold: x\n"
    start = time.perf_counter()
    suite, issues = parse_suite(text, tmp_path / "x.suite.yaml")
    assert time.perf_counter() - start < 0.5
    assert suite is None and [(i.code, i.span.line) for i in issues] == [("alias-expansion", 7)]  # x5: 10**6
    _, issues = parse_suite("a: &a [*a]\n", tmp_path / "x.suite.yaml")
    assert [i.code for i in issues] == ["alias-expansion"]
    _, issues = parse_suite("[" * 100_000 + "]" * 100_000, tmp_path / "x.suite.json")
    assert [(i.code, i.span.col) for i in issues] == [("too-deep", 64)]
    _, issues = parse_suite("task: text-to-sql\nq: a\x07b\n", tmp_path / "x.suite.yaml")
    assert [(i.code, i.span.line, i.span.col) for i in issues] == [("control-character", 1, 4)]
    (tmp_path / "bad.suite.yaml").write_bytes(b"task: text-to-sql\nq: caf\xe9\n")
    with pytest.raises(FileFormatError) as err:
        load_suite(tmp_path / "bad.suite.yaml")
    assert (err.value.line, err.value.column, err.value.code) == (2, 7, "encoding")
