"""Importers: BIRD, Spider and MMLU-Redux layouts built in tmp dirs with the public file formats."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from lse_engine.errors import LSEError
from lse_engine.files import load_prompt, load_suite
from lse_engine.files.suite_file import suite_text, write_suite
from lse_engine.importers import ImportResult, import_bird, import_mmlu_redux, import_spider
from lse_engine.importers.mmlu_redux import answer_index, parse_choices

SHARED_SPIDER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spider-dev"


def make_db(path: Path, table: str = "t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, score REAL)")
    conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", [(1, "a", 1.5), (2, "b", 2.5)])
    conn.commit()
    conn.close()
    return path


def read_yaml(path: Path) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# -- BIRD ----------------------------------------------------------------------------------------------
BIRD_DEV = [
    {"question_id": 0, "db_id": "california_schools",
     "question": "What is the highest eligible free rate for K-12 students in Alameda County?",
     "evidence": "Eligible free rate for K-12 = `Free Meal Count (K-12)` / `Enrollment (K-12)`",
     "SQL": "SELECT MAX(score) FROM schools WHERE name = 'a'", "difficulty": "simple"},
    {"question_id": 1, "db_id": "california_schools", "question": "List the names.  ",
     "evidence": "", "SQL": "SELECT name\nFROM schools\t\nWHERE score > 1;", "difficulty": "moderate"},
    {"question_id": 7, "db_id": "financial", "question": "How many accounts?",
     "evidence": "account refers to the account table", "SQL": "SELECT COUNT(*) FROM account",
     "difficulty": "challenging"},
    {"question_id": 9, "db_id": "formula_1", "question": "Which driver won?", "evidence": "",
     "SQL": "SELECT 1", "difficulty": "simple"},
]


@pytest.fixture()
def bird_dir(tmp_path: Path) -> Path:
    root = tmp_path / "bird" / "dev_20240627"
    root.mkdir(parents=True)
    (root / "dev.json").write_text(json.dumps(BIRD_DEV, indent=4), encoding="utf-8")
    make_db(root / "dev_databases" / "california_schools" / "california_schools.sqlite", "schools")
    make_db(root / "dev_databases" / "financial" / "financial.sqlite", "account")
    (root / "dev_databases" / "formula_1").mkdir()  # the folder exists, the SQLite file does not
    return root


def test_bird_one_suite_per_database(bird_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "suites"
    res = import_bird(bird_dir, out)
    assert isinstance(res, ImportResult)
    assert [p.name for p in res.suites] == ["california_schools.suite.yaml", "financial.suite.yaml"]
    assert res.problems == 3
    assert "formula_1" in res.skipped and "not found" in res.skipped["formula_1"]

    text = (out / "california_schools.suite.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    assert list(doc) == ["task", "database", "split", "problems"]
    assert doc["task"] == "text-to-sql"
    assert not os.path.isabs(doc["database"]) and doc["database"].startswith("../")
    db = (out / doc["database"]).resolve()
    assert db == (bird_dir / "dev_databases" / "california_schools" / "california_schools.sqlite").resolve()
    first, second = doc["problems"]
    assert first == {"id": "bird-0", "question": BIRD_DEV[0]["question"], "evidence": BIRD_DEV[0]["evidence"],
                     "gold": BIRD_DEV[0]["SQL"], "difficulty": "simple"}
    assert second["id"] == "bird-1" and "evidence" not in second  # empty evidence is left out
    assert second["question"] == "List the names."
    assert second["gold"] == "SELECT name\nFROM schools\nWHERE score > 1"
    assert "gold: |-\n" in text  # multi-line SQL as a literal block

    suite = load_suite(out / "california_schools.suite.yaml")  # valid for the engine, database found
    assert suite.database == db
    assert suite.problems[0].evidence == BIRD_DEV[0]["evidence"]
    assert suite.problems[1].extra["difficulty"] == "moderate"
    prompt = load_prompt(out / "california_schools.prompt.md")
    assert prompt.suite_path == (out / "california_schools.suite.yaml").resolve()
    assert "<answer>" in prompt.instructions


def test_bird_reimport_keeps_edited_prompt_and_filters_dbs(bird_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "suites"
    import_bird(bird_dir / "dev.json", out, dbs=["financial"])  # the JSON file itself also works
    prompt = out / "financial.prompt.md"
    prompt.write_text("---\nsuite: financial.suite.yaml\n---\nmy evolved instructions\n")
    res = import_bird(bird_dir, out, dbs=["financial", "nope"])
    assert [p.name for p in res.suites] == ["financial.suite.yaml"]
    assert "nope" in res.skipped
    assert "my evolved instructions" in prompt.read_text()
    assert not (out / "california_schools.suite.yaml").exists()


def test_bird_train_split_without_question_ids(tmp_path: Path) -> None:
    root = tmp_path / "train"
    rows = [{"db_id": "movie", "question": f"q{i}?", "evidence": "", "SQL": "SELECT 1"} for i in range(3)]
    root.mkdir()
    (root / "train.json").write_text(json.dumps(rows))
    make_db(root / "train_databases" / "movie" / "movie.sqlite")
    res = import_bird(root, tmp_path / "out", split="train")
    doc = read_yaml(res.suites[0])
    assert [p["id"] for p in doc["problems"]] == ["bird-0", "bird-1", "bird-2"]
    with pytest.raises(LSEError, match="dev, train, mini-dev"):
        import_bird(root, tmp_path / "out", split="test")
    # a layout recognised under another split: the error says which --split to use
    with pytest.raises(LSEError) as err:
        import_bird(root, tmp_path / "out")  # dev, the default
    assert str(err.value).endswith(f"It holds BIRD train instead ({root / 'train.json'}): import it with `--split "
                                   "train`")


def bird_rows(db_id: str, n: int = 2) -> list[dict]:
    return [{"question_id": i, "db_id": db_id, "question": f"q{i}?", "evidence": "", "SQL": f"SELECT {i}",
             "difficulty": "simple"} for i in range(n)]


def suite_db(res: ImportResult) -> Path:
    """The database file the first written suite points at."""
    return (res.suites[0].parent / read_yaml(res.suites[0])["database"]).resolve()


@pytest.mark.parametrize("sub", ["", "train", "bird/train"])
def test_bird_train_in_the_layouts_users_have(tmp_path: Path, sub: str) -> None:
    """`train.json` + `train_databases/` at the given folder, in `train/`, or two levels down; next to it the dev
    split, which `--split train` must not pick."""
    root = tmp_path / "data"
    folder = root / sub
    folder.mkdir(parents=True)
    (folder / "train.json").write_text(json.dumps(bird_rows("movie", 3)))
    db = make_db(folder / "train_databases" / "movie" / "movie.sqlite")
    (root / "dev").mkdir(exist_ok=True)
    (root / "dev" / "dev.json").write_text(json.dumps(bird_rows("other")))
    make_db(root / "dev" / "dev_databases" / "other" / "other.sqlite")
    res = import_bird(root, tmp_path / "out", split="train")
    assert [p.name for p in res.suites] == ["movie.suite.yaml"] and res.problems == 3
    assert suite_db(res) == db.resolve()
    assert "Imported from BIRD train (train.json)" in res.suites[0].read_text()
    dev = import_bird(root, tmp_path / "dev-out")
    assert [p.name for p in dev.suites] == ["other.suite.yaml"]


def test_bird_databases_unzipped_into_themselves(tmp_path: Path) -> None:
    """`unzip dev_databases.zip` inside `dev_databases/` gives `dev_databases/dev_databases/<db_id>/`."""
    (tmp_path / "dev.json").write_text(json.dumps(bird_rows("shop")))
    db = make_db(tmp_path / "dev_databases" / "dev_databases" / "shop" / "shop.sqlite")
    (tmp_path / "dev_databases" / "__MACOSX").mkdir()
    res = import_bird(tmp_path / "dev.json", tmp_path / "out")
    assert res.problems == 2 and suite_db(res) == db.resolve()


def test_bird_mini_dev(tmp_path: Path) -> None:
    """minidev.zip unpacks to `minidev/MINIDEV/` with `mini_dev_sqlite.json` (and MySQL/PostgreSQL twins)."""
    folder = tmp_path / "minidev" / "MINIDEV"
    folder.mkdir(parents=True)
    rows = bird_rows("debit_card_specializing", 3)
    (folder / "mini_dev_sqlite.json").write_text(json.dumps(rows))
    (folder / "mini_dev_mysql.json").write_text(json.dumps([{**r, "SQL": "SELECT `x`"} for r in rows]))
    db = make_db(folder / "dev_databases" / "debit_card_specializing" / "debit_card_specializing.sqlite")
    res = import_bird(tmp_path, tmp_path / "out", split="mini-dev")
    assert res.problems == 3 and suite_db(res) == db.resolve()
    assert [p["gold"] for p in read_yaml(res.suites[0])["problems"]] == ["SELECT 0", "SELECT 1", "SELECT 2"]
    assert "Imported from BIRD mini-dev (mini_dev_sqlite.json)" in res.suites[0].read_text()
    default = import_bird(tmp_path, tmp_path / "out2")  # --split dev on a Mini-Dev folder: its only dev set
    assert default.problems == 3


def test_bird_no_layout_fits_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "questions.json").write_text("[]")
    with pytest.raises(LSEError) as exc:
        import_bird(tmp_path, tmp_path / "out", split="train")
    assert str(exc.value) == (f"BIRD train: looked for train.json with train_databases/ or databases/ or database/ "
                              f"beside it in {tmp_path} and its subfolders (two levels); found none")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train.json").write_text(json.dumps(bird_rows("movie")))
    (tmp_path / "train" / "train_databases.zip").write_bytes(b"PK")
    with pytest.raises(LSEError) as exc:
        import_bird(tmp_path, tmp_path / "out", split="train")
    assert str(exc.value) == (f"BIRD train: found {tmp_path / 'train' / 'train.json'} but no train_databases/ or "
                              f"databases/ or database/ folder next to it (unzip "
                              f"{tmp_path / 'train' / 'train_databases.zip'} there first)")
    assert not (tmp_path / "out").exists()


def test_cli_import_bird_split_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lse_engine.cli import main

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train.json").write_text(json.dumps(bird_rows("movie", 4)))
    make_db(tmp_path / "train" / "train_databases" / "movie" / "movie.sqlite")
    out = tmp_path / "suites"
    assert main(["import", "bird", str(tmp_path), "--split", "train", "--out", str(out)]) == 0
    assert " ".join(capsys.readouterr().out.split()) == f"wrote 1 suites with 4 problems to {out}"  # rich wraps
    assert main(["import", "spider", str(tmp_path), "--split", "mini-dev", "--out", str(out)]) == 2
    assert "Spider split must be one of dev, train, test" in capsys.readouterr().err
    assert main(["import", "bird", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.endswith("`--split train`\n") and " ".join(err.split()).startswith("error: BIRD dev: looked for dev.json")


# -- Spider --------------------------------------------------------------------------------------------
def spider_row(db_id: str, question: str, query: str) -> dict:
    """A row with every field of Spider's dev.json."""
    return {"db_id": db_id, "query": query, "query_toks": query.split(),
            "query_toks_no_value": query.lower().split(), "question": question,
            "question_toks": question.split(), "sql": {"select": [False, []], "from": {}}}


def test_spider_skips_missing_database(tmp_path: Path) -> None:
    root = tmp_path / "spider"
    rows = [spider_row("concert_singer", "How many singers do we have?", "SELECT count(*) FROM singer"),
            spider_row("wta_1", "How many players?", "SELECT count(*) FROM players"),
            spider_row("pets_1", "Names of pets?", "SELECT name FROM pets"),
            spider_row("concert_singer", "Names?", "SELECT name FROM singer")]
    root.mkdir()
    (root / "dev.json").write_text(json.dumps(rows, indent=4))
    make_db(root / "database" / "concert_singer" / "concert_singer.sqlite", "singer")
    make_db(root / "database" / "pets_1" / "pets_1.sqlite", "pets")
    (root / "database" / "wta_1").mkdir()
    out = tmp_path / "out"
    res = import_spider(root, out)
    assert sorted(p.name for p in res.suites) == ["concert_singer.suite.yaml", "pets_1.suite.yaml"]
    assert res.problems == 3
    assert list(res.skipped) == ["wta_1"] and "1 questions skipped" in res.skipped["wta_1"]
    doc = read_yaml(out / "concert_singer.suite.yaml")
    assert [p["id"] for p in doc["problems"]] == ["spider-0", "spider-3"]
    assert doc["database"] == "../spider/database/concert_singer/concert_singer.sqlite"
    suite = load_suite(out / "concert_singer.suite.yaml")
    assert [p.gold for p in suite.problems] == ["SELECT count(*) FROM singer", "SELECT name FROM singer"]
    assert (out / "pets_1.prompt.md").is_file()

    res = import_spider(root, tmp_path / "only", dbs=["pets_1"])
    assert [p.name for p in res.suites] == ["pets_1.suite.yaml"] and not res.skipped


def test_spider_train_joins_both_files_below_the_given_folder(tmp_path: Path) -> None:
    root = tmp_path / "spider_data" / "spider"
    root.mkdir(parents=True)
    (root / "train_spider.json").write_text(json.dumps([spider_row("pets_1", "Names?", "SELECT name FROM pets")]))
    (root / "train_others.json").write_text(json.dumps([spider_row("pets_1", "How many?", "SELECT count(*) FROM pets")]))
    (root / "dev.json").write_text(json.dumps([spider_row("pets_1", "Dev?", "SELECT 1")]))
    make_db(root / "database" / "pets_1" / "pets_1.sqlite", "pets")
    res = import_spider(tmp_path, tmp_path / "out", split="train")
    assert [p["gold"] for p in read_yaml(res.suites[0])["problems"]] == ["SELECT name FROM pets",
                                                                         "SELECT count(*) FROM pets"]
    assert "Spider train (train_spider.json, train_others.json)" in res.suites[0].read_text()


@pytest.mark.skipif(not (SHARED_SPIDER / "dev.json").is_file(), reason="Spider dev not in ../shared/data")
def test_real_spider_dev_from_its_parent_folder(tmp_path: Path) -> None:
    res = import_spider(SHARED_SPIDER.parent, tmp_path / "out", dbs=["pets_1", "concert_singer"])
    assert [p.name for p in res.suites] == ["pets_1.suite.yaml", "concert_singer.suite.yaml"]
    assert suite_db(res) == (SHARED_SPIDER / "database" / "pets_1" / "pets_1.sqlite").resolve()
    assert len(load_suite(res.suites[1]).problems) == 45


# -- MMLU-Redux ----------------------------------------------------------------------------------------
def test_mmlu_csv_irregular(tmp_path: Path) -> None:
    data = tmp_path / "mmlu-redux"
    data.mkdir()
    # `;`-separated, labels in mixed case, CRLF line ends, a multi-line question.
    anatomy = (
        "Question;Choices;ANSWER;Error_Type;Source;correct_answer;Potential_Reason\r\n"
        "Which bone is longest?;['Femur', 'Tibia', 'Ulna', 'Rib'];0;OK;src;;\r\n"
        "\"Read this:\r\nWhich one?\";['a', 'b', 'c', 'd'];2;ok;src;;\r\n"
        "Bad answer?;['a', 'b', 'c', 'd'];banana;OK;src;;\r\n"
        "Fixed?;['a', 'b', 'c', 'd'];1;Wrong Groundtruth;src;3;reason\r\n"
        "None right?;['a', 'b', 'c', 'd'];1;no_correct_answer;src;;\r\n"
    )
    (data / "mmlu_anatomy.csv").write_text(anatomy, encoding="utf-8", newline="")
    # `,`-separated, another column order, trailing empty columns, a legacy (Mac Roman) byte.
    astronomy = (
        b"question,answer,choices,correct_answer,error_type,source,potential_reason,,\n"
        b"The sun\xd5s age?,B,\"['1 Gyr', '4.6 Gyr', '10 Gyr', '13.8 Gyr']\",,Ok,src,,,\n"
        b"Numpy choices?,3,['w' 'x' 'y' 'z'],,OK,src,,,\n"
    )
    (data / "mmlu_astronomy.csv").write_bytes(astronomy)
    (data / "LICENSE").write_text("CC BY 4.0")
    out = tmp_path / "out"
    res = import_mmlu_redux(data, out)
    assert sorted(p.name for p in res.suites) == ["anatomy.suite.yaml", "astronomy.suite.yaml"]
    assert res.problems == 5 and res.rows_skipped == 2
    (key, why), = res.skipped.items()
    assert key.startswith("anatomy") and "not interpretable" in why and "no single correct answer" in why

    doc = read_yaml(out / "anatomy.suite.yaml")
    assert list(doc) == ["task", "split", "problems"] and doc["task"] == "multiple-choice"
    probs = {p["id"]: p for p in doc["problems"]}
    assert probs["mmlu-anatomy-0"] == {"id": "mmlu-anatomy-0", "question": "Which bone is longest?",
                                       "options": ["Femur", "Tibia", "Ulna", "Rib"], "gold": "A"}
    assert probs["mmlu-anatomy-1"]["question"] == "Read this:\nWhich one?"
    assert probs["mmlu-anatomy-1"]["gold"] == "C"
    assert probs["mmlu-anatomy-3"]["gold"] == "D"  # corrected by MMLU-Redux's annotation
    suite = load_suite(out / "astronomy.suite.yaml")
    assert suite.task == "multiple-choice"
    assert suite.problems[0].question == "The sun\u2019s age?" and suite.problems[0].gold == "B"
    assert suite.problems[1].options == ["w", "x", "y", "z"] and suite.problems[1].gold == "D"
    assert load_prompt(out / "astronomy.prompt.md").suite_path == (out / "astronomy.suite.yaml").resolve()

    raw = import_mmlu_redux(data, tmp_path / "raw", subjects=["anatomy", "mmlu_virology"], use_corrections=False)
    assert [p.name for p in raw.suites] == ["anatomy.suite.yaml"] and "virology" in raw.skipped
    raw_probs = {p["id"]: p for p in read_yaml(raw.suites[0])["problems"]}
    assert raw_probs["mmlu-anatomy-3"]["gold"] == "B" and "mmlu-anatomy-4" in raw_probs


def test_mmlu_jsonl_and_json(tmp_path: Path) -> None:
    rows = [
        {"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "elementary_mathematics"},
        {"question": "Capital of France?", "choices": ["Paris", "Rome", "Oslo", "Bern"], "answer": "A",
         "subject": "global_facts"},
        {"question": "Broken", "choices": ["x", "y"], "answer": 7, "subject": "global_facts"},
        {"question": "yes or no?", "choices": ["yes", "no", "null", "1.0"], "answer": 3, "subject": "global_facts"},
    ]
    path = tmp_path / "mmlu.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = import_mmlu_redux(path, tmp_path / "out")
    assert sorted(p.name for p in res.suites) == ["elementary_mathematics.suite.yaml", "global_facts.suite.yaml"]
    assert res.problems == 3 and res.rows_skipped == 1
    facts = load_suite(tmp_path / "out" / "global_facts.suite.yaml")
    assert [p.gold for p in facts.problems] == ["A", "D"]
    assert facts.problems[1].options == ["yes", "no", "null", "1.0"]  # YAML-special strings survive
    assert [p.id for p in facts.problems] == ["mmlu-global_facts-0", "mmlu-global_facts-2"]

    (tmp_path / "hf.json").write_text(json.dumps({"rows": [{"row_idx": 0, "row": rows[0]}]}))
    res = import_mmlu_redux(tmp_path / "hf.json", tmp_path / "out2")
    assert res.problems == 1 and read_yaml(res.suites[0])["problems"][0]["gold"] == "B"


def test_mmlu_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "virology"
    folder.mkdir()
    table = pa.table({"question": ["Which virus?"], "choices": [["HIV", "HPV", "HBV", "HCV"]], "answer": [2],
                      "error_type": ["ok"], "source": [""], "correct_answer": [None], "potential_reason": [None]})
    pq.write_table(table, folder / "test-00000-of-00001.parquet")
    res = import_mmlu_redux(tmp_path, tmp_path / "out")
    assert [p.name for p in res.suites] == ["virology.suite.yaml"]
    assert load_suite(res.suites[0]).problems[0].gold == "C"


def test_answer_and_choice_parsing() -> None:
    opts = ["a", "b", "c", "d"]
    assert [answer_index(v, opts) for v in (0, 3.0, "2", " (B) ", "d", "c", 4, "E", True, None, "2 and 3")] == [
        0, 3, 2, 1, 3, 2, None, None, None, None, None]
    assert parse_choices('["x", "y"]') == ["x", "y"]
    assert parse_choices("not a list") is None


# -- writing -------------------------------------------------------------------------------------------
def test_large_suite_written_fast_and_round_trips(tmp_path: Path) -> None:
    problems = [{"id": f"q{i}", "question": f"Question {i}: what is 'x'? #{i}",
                 "evidence": "e: 1" if i % 3 else None,
                 "gold": f"SELECT *\nFROM t\nWHERE id = {i}" if i % 2 else f"SELECT {i}"} for i in range(10_000)]
    started = time.perf_counter()
    path = write_suite(tmp_path / "big.suite.yaml", "text-to-sql", problems, "db.sqlite", {"dev": 0.2, "seed": 3})
    elapsed = time.perf_counter() - started
    assert elapsed < 3, f"writing 10,000 problems took {elapsed:.1f} s"
    doc = read_yaml(path)
    assert doc["split"] == {"dev": 0.2, "seed": 3} and len(doc["problems"]) == 10_000
    assert doc["problems"][1]["gold"] == "SELECT *\nFROM t\nWHERE id = 1"
    assert doc["problems"][1]["evidence"] == "e: 1" and "evidence" not in doc["problems"][0]
    assert suite_text("multiple-choice", [], comment="a\nb").startswith("# a\n# b\ntask: multiple-choice\n")
