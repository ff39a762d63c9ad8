"""Text-to-SQL scoring on real SQLite files: adversarial SQL, BIRD comparison, answer extraction."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from lse_engine.tasks.base import Problem
from lse_engine.tasks.text_to_sql import SQLiteTask, check_query, extract_sql, render_schema, results_match


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "people.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, city TEXT, score REAL);
        CREATE TABLE pet (id INTEGER PRIMARY KEY, owner_id INTEGER REFERENCES person(id), kind TEXT);
        """
    )
    conn.executemany("INSERT INTO person VALUES (?,?,?,?,?)",
                     [(i, f"p{i}", 20 + i % 30, ["Oslo", "Rome", None][i % 3], i / 7) for i in range(1, 301)])
    conn.executemany("INSERT INTO pet VALUES (?,?,?)", [(i, i % 300 + 1, ["cat", "dog"][i % 2]) for i in range(500)])
    conn.execute("INSERT INTO person VALUES (1000, CAST(x'fffe41' AS TEXT), 1, 'Bad', 0)")
    conn.commit()
    conn.close()
    return path


@pytest.fixture()
def task(db: Path):
    t = SQLiteTask(db, timeout_s=1.0, row_cap=10_000)
    yield t
    t.close()


def _score(task: SQLiteTask, sql: str, gold: str = "SELECT COUNT(*) FROM person"):
    return task.score([Problem("q", "?", gold)], [f"<answer>{sql}</answer>"])[0]


ADVERSARIAL = {
    "drop": ("DROP TABLE person", {"not_a_query"}),
    "delete": ("DELETE FROM person", {"not_a_query"}),
    "update": ("UPDATE person SET age = 0", {"not_a_query"}),
    "insert": ("INSERT INTO person (name) VALUES ('x')", {"not_a_query"}),
    "two statements": ("SELECT 1; DROP TABLE person", {"not_a_query"}),
    "attach": ("ATTACH DATABASE '/tmp/evil.sqlite' AS evil", {"not_a_query"}),
    "writable_schema": ("PRAGMA writable_schema = 1", {"not_a_query"}),
    "load_extension": ("SELECT load_extension('/tmp/evil.so')", {"not_a_query", "runtime"}),
    "vacuum into": ("VACUUM INTO '/tmp/lse-copy.sqlite'", {"not_a_query"}),
    "recursive cte": ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                      {"timeout"}),
    "endless rows": ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
                     {"too_many_rows"}),
    "cross join": ("SELECT count(*) FROM pet a, pet b, pet c, pet d", {"timeout"}),
    "million rows": ("SELECT a.id FROM pet a, pet b, pet c LIMIT 1000000", {"too_many_rows"}),
    "syntax": ("SELEC name FROM person", {"syntax"}),
    "no such table": ("SELECT * FROM people", {"no_such_table"}),
    "no such column": ("SELECT nam FROM person", {"no_such_column"}),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_sql_is_a_scored_failure_and_db_unchanged(db: Path, task: SQLiteTask, name: str) -> None:
    sql, kinds = ADVERSARIAL[name]
    before = _sha(db)
    start = time.perf_counter()
    out = _score(task, sql)
    assert not out.correct
    assert out.error_kind in kinds, (out.error_kind, out.error)
    assert out.error
    assert time.perf_counter() - start < 5
    assert _sha(db) == before
    assert not Path("/tmp/lse-copy.sqlite").exists()
    # the connection still works afterwards
    assert _score(task, "SELECT COUNT(*) FROM person").correct


def test_non_utf8_text_does_not_crash(task: SQLiteTask) -> None:
    out = _score(task, "SELECT name FROM person WHERE id = 1000", gold="SELECT name FROM person WHERE id = 1000")
    assert out.correct


def test_empty_answer_is_wrong_even_when_gold_is_empty(task: SQLiteTask) -> None:
    gold = "SELECT name FROM person WHERE age > 1000"
    empty = task.score([Problem("q", "?", gold)], ["<answer></answer>"])[0]
    missing = task.score([Problem("q", "?", gold)], ["I don't know"])[0]
    assert not empty.correct and empty.error_kind == "no_answer"
    assert not missing.correct and missing.error_kind == "no_answer"
    # a real query with an empty result matches an empty gold result, as in BIRD
    assert _score(task, "SELECT name FROM person WHERE age < 0", gold=gold).correct


def test_bird_comparison_semantics() -> None:
    assert results_match([(1, "a"), (2, "b")], [(2, "b"), (1, "a")])  # order-insensitive
    assert results_match([(1,), (1,), (2,)], [(2,), (1,)])  # duplicates ignored (set semantics)
    assert results_match([(None,)], [(None,)])  # NULLs equal
    assert results_match([(1.0,)], [(1,)])  # 1.0 == 1 in Python, as in BIRD
    assert not results_match([(0.1 + 0.2,)], [(0.3,)])  # floats compared exactly, as in BIRD
    assert not results_match([(1, 2)], [(2, 1)])  # column order matters
    assert not results_match([(1,)], [])


def test_scores_correct_and_wrong_results(task: SQLiteTask) -> None:
    gold = "SELECT name FROM person WHERE city = 'Oslo' ORDER BY id"
    right = _score(task, "SELECT p.name FROM person AS p WHERE p.city = 'Oslo'", gold)
    wrong = _score(task, "SELECT name FROM person WHERE city = 'Rome'", gold)
    assert right.correct and right.result_preview
    assert not wrong.correct and wrong.error_kind == "wrong_result" and wrong.expected_preview


def test_gold_results_are_computed_once(task: SQLiteTask) -> None:
    gold = "SELECT COUNT(*) FROM pet"
    problems = [Problem(f"q{i}", "?", gold) for i in range(5)]
    task.score(problems, ["<answer>SELECT 1</answer>"] * 5)
    assert list(task._gold) == [gold]


def test_extract_sql_prefers_answer_tag_then_fence() -> None:
    assert extract_sql("think <answer>SELECT 1</answer> then <answer> SELECT 2 </answer>") == "SELECT 2"
    assert extract_sql("```sql\nSELECT 3\n```") == "SELECT 3"
    assert extract_sql("<answer>```sql\nSELECT 4;\n```</answer>") == "SELECT 4;"
    assert extract_sql("no sql here") is None
    assert extract_sql("<answer>   </answer>") is None


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "select 1 union select 2;",
    "WITH a AS (SELECT 1) SELECT * FROM a",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 3) SELECT x FROM c",
    "(SELECT 1) UNION (SELECT 2)",
    "-- the answer\nSELECT 1 /* ; */; -- done",
    "SELECT 'a; DROP TABLE person' AS s;  ",
    "SELECT replace(name, 'p', 'q') FROM person",
])
def test_check_query_accepts_one_read_query(sql: str) -> None:
    assert check_query(sql) is None


@pytest.mark.parametrize(("sql", "kind", "says"), [
    ("SELECT 1; SELECT 2", "not_a_query", "exactly one statement, got 2"),
    ("SELECT 1; DROP TABLE person", "not_a_query", "got 2"),
    (";", "not_a_query", "got 0"),
    ("WITH a AS (SELECT 1) DELETE FROM person", "not_a_query", "DELETE"),
    ("WITH a AS (SELECT 1) INSERT INTO person (name) SELECT * FROM a", "not_a_query", "INSERT"),
    ("REPLACE INTO person (id) VALUES (1)", "not_a_query", "REPLACE"),
    ("VALUES (1)", "not_a_query", "VALUES"),
    ("EXPLAIN SELECT 1", "not_a_query", "EXPLAIN"),
    ("PRAGMA query_only = OFF", "not_a_query", "PRAGMA"),
    ("WITH a AS (SELECT 1)", "syntax", "no statement"),
    ("SELEC name FROM person", "syntax", "SELEC"),
    ("SELECT 'unterminated", "syntax", "tokeniz"),
])
def test_check_query_refuses_with_a_reason(sql: str, kind: str, says: str) -> None:
    found = check_query(sql)
    assert found is not None and found[0] == kind and says in found[1], found


def test_light_problems_stay_in_one_thread_and_heavy_ones_use_the_pool(db: Path) -> None:
    light = [Problem(f"l{i}", "?", f"SELECT name FROM person WHERE id = {i}") for i in range(1, 41)]
    heavy_sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 300000) SELECT count(*) FROM c"
    heavy = [Problem(f"h{i}", "?", heavy_sql) for i in range(6)]
    task = SQLiteTask(db, workers=2)
    try:
        one_heavy = [*light[:20], Problem("h", "?", heavy_sql), *light[20:]]  # one slow problem among light ones
        outs = task.score(one_heavy, [f"<answer>{p.gold}</answer>" for p in one_heavy])
        assert all(o.correct for o in outs) and task._pool is None  # threads would cost more than the queries
        outs = task.score(heavy, [f"<answer>{heavy_sql}</answer>"] * len(heavy))
        assert all(o.correct for o in outs) and task._pool is not None  # SQLite runs without the GIL: threads pay
        assert [o.problem_id for o in outs] == [p.id for p in heavy]  # in order all the same
    finally:
        task.close()
    one = SQLiteTask(db, workers=1)
    try:
        one.score(heavy, [f"<answer>{heavy_sql}</answer>"] * len(heavy))
        assert one._pool is None
    finally:
        one.close()


def test_text_that_is_not_utf8_is_decoded_leniently_and_the_connection_recovers(task: SQLiteTask) -> None:
    bad = task.db.execute("SELECT name FROM person WHERE id = 1000")
    assert bad.ok and bad.rows[0][0].endswith("A") and "\ufffd" in bad.rows[0][0]
    good = task.db.execute("SELECT name FROM person WHERE id = 1")
    assert good.ok and good.rows == [("p1",)]
    assert task.db._guarded().conn.text_factory is str  # back to decoding in C


def test_schema_has_create_statements_and_example_values(db: Path) -> None:
    schema = render_schema(db)
    assert 'CREATE TABLE "person"' in schema and 'CREATE TABLE "pet"' in schema
    assert "examples: 'Rome', 'Oslo'" in schema
    assert 'FOREIGN KEY ("owner_id") REFERENCES "person"("id")' in schema


def test_gold_sql_has_its_own_time_limit(db: Path) -> None:
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 2000000) SELECT count(*) FROM c"
    task = SQLiteTask(db, timeout_s=0.02, gold_timeout_s=30.0)
    try:
        out = task.score([Problem("q", "?", slow)], [f"<answer>{slow}</answer>"])[0]
        assert task.gold_result(Problem("q", "?", slow)).rows == [(2000000,)]  # the gold ran to the end
        assert (out.correct, out.error_kind, out.error) == (False, "timeout", "timed out after 0.02 s")
    finally:
        task.close()


def test_values_over_a_megabyte_run_again_with_rows_measured(tmp_path: Path) -> None:
    path = tmp_path / "blobs.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE f (id INTEGER PRIMARY KEY, body BLOB)")
    conn.execute("INSERT INTO f VALUES (1, zeroblob(3000000)), (2, zeroblob(10))")
    conn.commit()
    conn.close()
    task = SQLiteTask(path)
    try:
        big = task.db.execute("SELECT id, length(body), body FROM f ORDER BY id")
        assert big.ok and [(r[0], r[1], len(r[2])) for r in big.rows] == [(1, 3000000, 3000000), (2, 10, 10)]
        assert task.db.execute("SELECT id FROM f").rows == [(1,), (2,)]  # a stored row over 1 MB is readable
        huge = task.db.execute("SELECT zeroblob(6000000)")
        assert (huge.error_kind, huge.error) == ("runtime", "string or blob too big (values are limited to 5 MB)")
        out = task.score([Problem("q", "?", "SELECT body FROM f WHERE id = 1")],
                         ["<answer>SELECT body FROM f WHERE id = 1</answer>"])[0]
        assert out.correct and len(out.result_preview) <= 401 and len(out.expected_preview) <= 401
    finally:
        task.close()


def test_one_slow_function_call_cannot_outlast_the_deadline(task: SQLiteTask) -> None:
    """replace/instr/trim/printf would each take minutes in one call here; their stand-ins take milliseconds."""
    a = "replace(hex(zeroblob(200000)), '0', 'a')"
    needle = "replace(hex(zeroblob(100000)), '0', 'a') || 'b'"
    cases = {
        f"SELECT instr({a}, {needle})": [(0,)],
        f"SELECT length(replace({a}, {needle}, ''))": [(400000,)],
        f"SELECT length(trim({a}, (SELECT group_concat(char(256 + id), '') FROM pet) || 'a'))": [(0,)],
        "SELECT replace('abc', 'b', NULL), replace(5, '', 1), instr(12345, 3), rtrim('xxayy', 'y')":
            [(None, 5, 3, "xxa")],
    }
    for sql, rows in cases.items():
        start = time.perf_counter()
        assert task.db.execute(sql).rows == rows, sql
        assert time.perf_counter() - start < 0.5
    refused = task.db.execute("SELECT printf('%.*c', 2000000000, 'x')")
    assert refused.error_kind == "runtime" and "%c repeated 2,000,000,000 times" in refused.error


@pytest.mark.parametrize(("content", "says"), [
    (b"", "the database file is empty"),
    (b"not a database at all" * 10, "not an SQLite database"),
    (b"SQLite format 3\x00" + b"\x10\x00" + b"\x00" * 82, "cannot read the database"),
])
def test_a_file_that_is_not_a_whole_database_is_one_line(tmp_path: Path, content: bytes, says: str) -> None:
    from lse_engine.errors import DatabaseOpenError

    path = tmp_path / "x.sqlite"
    path.write_bytes(content)
    with pytest.raises(DatabaseOpenError) as err:
        SQLiteTask(path)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_truncated_database_and_bad_paths_are_one_line(db: Path, tmp_path: Path) -> None:
    from lse_engine.errors import DatabaseOpenError

    cut = tmp_path / "cut.sqlite"
    cut.write_bytes(db.read_bytes()[:8192])
    for path, says in ((cut, "the database file is truncated"), (tmp_path / "a\x00b.sqlite", "database not found"),
                       (tmp_path / ("x" * 5000), "File name too long")):
        with pytest.raises(DatabaseOpenError) as err:
            SQLiteTask(path)
        assert says in str(err.value) and "\x00" not in str(err.value), str(err.value)
