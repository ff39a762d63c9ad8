"""Hostile SQL: 100+ attack kinds against the scorer (predicted SQL), the gold path and the editor's gold check.

Each attack names the outcomes it may end in (an `ExecResult`/`Outcome` error kind, or "ok" when the query is
allowed to finish). What every attack must also satisfy (database bytes unchanged, no new files, the time
and memory bounds, the process alive) is checked by the harness, not listed here.

The database they run against (`build_attack_db`): `person` (300 rows), `pet` (500), `big` (2,000 rows with a
1 kB text each), `blobs` (text that is not UTF-8, a 1 MB blob), `nums` (1..1000).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

WRITES = frozenset({"not_a_query", "syntax", "runtime"})  # refused before or while running
SLOW = frozenset({"timeout"})
HEAVY = frozenset({"timeout", "runtime", "too_many_rows"})  # stopped: by the deadline, a limit or the row cap
LIMIT = frozenset({"runtime", "syntax"})  # a limit of SQLite's or ours says no
OK = frozenset({"ok"})


@dataclass(frozen=True)
class Attack:
    name: str
    family: str
    sql: str
    kinds: frozenset[str]
    answer: str | None = None  # the whole completion, for answer-format attacks (predicted SQL only)


def build_attack_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, city TEXT);
        CREATE TABLE pet (id INTEGER PRIMARY KEY, owner_id INTEGER REFERENCES person(id), kind TEXT);
        CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT);
        CREATE TABLE blobs (id INTEGER PRIMARY KEY, t TEXT, b BLOB);
        CREATE TABLE nums (n INTEGER PRIMARY KEY);
        CREATE VIEW adults AS SELECT * FROM person WHERE age >= 18;
        """
    )
    conn.executemany("INSERT INTO person VALUES (?,?,?,?)",
                     [(i, f"p{i}", 10 + i % 60, ["Oslo", "Rome", None][i % 3]) for i in range(1, 301)])
    conn.executemany("INSERT INTO pet VALUES (?,?,?)", [(i, i % 300 + 1, ["cat", "dog"][i % 2]) for i in range(500)])
    conn.executemany("INSERT INTO big VALUES (?,?)", [(i, f"row {i} " * 120) for i in range(2000)])
    conn.execute("INSERT INTO blobs VALUES (1, CAST(x'fffe41' AS TEXT), zeroblob(1000000))")
    conn.executemany("INSERT INTO nums VALUES (?)", [(i,) for i in range(1, 1001)])
    conn.commit()
    conn.close()
    return path


def _nested(depth: int) -> str:
    return "SELECT " + "(" * depth + "1" + ")" * depth


def _a(name: str, family: str, sql: str, kinds: frozenset[str] | set[str]) -> Attack:
    return Attack(name, family, sql, frozenset(kinds))


A = "a" * 1000
CORPUS: list[Attack] = [
    # -- writes and escapes: refused, the file untouched ------------------------------------------------------
    _a("drop table", "write", "DROP TABLE person", WRITES),
    _a("delete", "write", "DELETE FROM person", WRITES),
    _a("update", "write", "UPDATE person SET age = 0", WRITES),
    _a("insert", "write", "INSERT INTO person (name) VALUES ('x')", WRITES),
    _a("replace into", "write", "REPLACE INTO person (id, name) VALUES (1, 'x')", WRITES),
    _a("upsert", "write", "INSERT INTO nums VALUES (1) ON CONFLICT(n) DO UPDATE SET n = 0", WRITES),
    _a("create table", "write", "CREATE TABLE evil (x)", WRITES),
    _a("create table as", "write", "CREATE TABLE evil AS SELECT * FROM person", WRITES),
    _a("create index", "write", "CREATE INDEX evil ON person(name)", WRITES),
    _a("create view", "write", "CREATE VIEW evil AS SELECT 1", WRITES),
    _a("create trigger", "write", "CREATE TRIGGER evil AFTER INSERT ON person BEGIN DELETE FROM pet; END", WRITES),
    _a("create temp table", "write", "CREATE TEMP TABLE evil (x)", WRITES),
    _a("create virtual table", "write", "CREATE VIRTUAL TABLE evil USING fts5(x)", WRITES),
    _a("alter table", "write", "ALTER TABLE person ADD COLUMN evil TEXT", WRITES),
    _a("attach file", "write", "ATTACH DATABASE '/tmp/lse-evil.sqlite' AS evil", WRITES),
    _a("attach memory", "write", "ATTACH DATABASE ':memory:' AS evil", WRITES),
    _a("detach", "write", "DETACH DATABASE main", WRITES),
    _a("vacuum", "write", "VACUUM", WRITES),
    _a("vacuum into", "write", "VACUUM INTO '/tmp/lse-evil-copy.sqlite'", WRITES),
    _a("reindex", "write", "REINDEX", WRITES | OK),  # with nothing to rebuild on a read-only file: a no-op
    _a("analyze", "write", "ANALYZE", WRITES),
    _a("begin", "write", "BEGIN IMMEDIATE", WRITES),
    _a("savepoint", "write", "SAVEPOINT x", WRITES),
    _a("pragma writable_schema", "write", "PRAGMA writable_schema = 1", WRITES),
    _a("pragma query_only off", "write", "PRAGMA query_only = OFF", WRITES),
    _a("pragma journal_mode", "write", "PRAGMA journal_mode = DELETE", WRITES),
    _a("pragma heap limit off", "write", "PRAGMA hard_heap_limit = 0", WRITES),
    _a("pragma in a select", "write", "SELECT * FROM pragma_journal_mode('delete')", WRITES | OK),
    _a("load_extension", "write", "SELECT load_extension('/tmp/evil.so')", WRITES),
    _a("readfile", "write", "SELECT readfile('/etc/passwd')", WRITES),
    _a("writefile", "write", "SELECT writefile('/tmp/lse-evil', 'x')", WRITES),
    _a("fts3_tokenizer", "write", "SELECT fts3_tokenizer('simple')", WRITES),
    _a("two statements", "write", "SELECT 1; DROP TABLE person", WRITES),
    _a("with delete", "write", "WITH a AS (SELECT 1) DELETE FROM person", WRITES),
    _a("with insert", "write", "WITH a AS (SELECT 1) INSERT INTO nums SELECT * FROM a", WRITES),
    _a("explain", "write", "EXPLAIN SELECT 1", WRITES | OK),
    # -- endless or huge work: stopped at the deadline -------------------------------------------------------
    _a("recursive count", "time", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
       "SELECT count(*) FROM c", SLOW),
    _a("recursive union distinct", "time", "WITH RECURSIVE c(x) AS (SELECT 1 UNION SELECT x + 1 FROM c) "
       "SELECT max(x) FROM c", SLOW),
    _a("recursive filtered to nothing", "time", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
       "SELECT x FROM c WHERE x < 0", SLOW),
    _a("recursive order by", "time", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
       "SELECT x FROM c ORDER BY x DESC LIMIT 1", HEAVY),
    _a("recursive self join", "time", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
       "SELECT count(*) FROM c a JOIN c b ON a.x = b.x", SLOW),
    _a("cartesian 4", "time", "SELECT count(*) FROM pet a, pet b, pet c, pet d", SLOW),
    _a("cartesian 6", "time", "SELECT count(*) FROM nums a, nums b, nums c, nums d, nums e, nums f", SLOW),
    _a("cartesian group by", "time", "SELECT a.kind, count(*) FROM pet a, pet b, pet c GROUP BY a.kind", SLOW),
    _a("cartesian distinct", "time", "SELECT count(DISTINCT a.id * 1000000 + b.id * 1000 + c.id) "
       "FROM pet a, pet b, pet c", SLOW),
    _a("cartesian order by random", "time", "SELECT a.id FROM pet a, pet b, pet c ORDER BY random() LIMIT 1", SLOW),
    _a("cartesian window", "time", "SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY a.n, b.n) AS r "
       "FROM nums a, nums b, nums c)", SLOW),
    _a("cartesian like", "time", "SELECT count(*) FROM big a, big b WHERE a.body || b.body LIKE '%zz%'", SLOW),
    _a("correlated subqueries", "time", "SELECT count(*) FROM nums a WHERE (SELECT count(*) FROM nums b, nums c "
       "WHERE b.n + c.n > a.n) > 0", SLOW),
    _a("nested exists", "time", "SELECT count(*) FROM nums a WHERE EXISTS (SELECT 1 FROM nums b WHERE EXISTS "
       "(SELECT 1 FROM nums c, nums d WHERE c.n * d.n = a.n * b.n + 1000001))", SLOW),
    _a("cartesian randomblob", "time", "SELECT count(*) FROM pet a, pet b, pet c WHERE length(randomblob(a.id + b.id)) "
       "> c.id", SLOW),
    _a("recursive fibonacci", "time", "WITH RECURSIVE f(a, b) AS (SELECT 0, 1 UNION ALL SELECT b, a + b FROM f) "
       "SELECT count(*) FROM f", HEAVY),
    _a("dbstat scan", "time", "SELECT count(*) FROM dbstat a, dbstat b, dbstat c", HEAVY | WRITES),
    _a("json_each cartesian", "time", "SELECT count(*) FROM json_each('[1,2,3,4,5,6,7,8,9,10]') a, nums b, nums c",
       SLOW | OK | {"runtime"}),  # table-valued functions may be refused
    # -- memory: refused by a limit or stopped by the result budget --------------------------------------------
    _a("randomblob 1e9", "memory", "SELECT randomblob(1000000000)", LIMIT),
    _a("zeroblob 9e8", "memory", "SELECT zeroblob(900000000)", LIMIT),
    _a("randomblob 2e8 per row", "memory", "SELECT randomblob(200000000) FROM pet", LIMIT),
    _a("randomblob 4e6 per row", "memory", "SELECT randomblob(4000000) FROM pet", HEAVY),
    _a("zeroblob 100 columns", "memory", "SELECT " + ", ".join(["zeroblob(4000000)"] * 100), HEAVY | LIMIT),
    _a("randomblob 13 columns per row", "memory", "SELECT " + ", ".join(["randomblob(4000000)"] * 13) + " FROM pet",
       HEAVY),
    _a("hex of a big blob", "memory", "SELECT hex(randomblob(3000000))", LIMIT),
    _a("string doubling", "memory", "WITH RECURSIVE r(s) AS (SELECT 'a' UNION ALL SELECT s || s FROM r) "
       "SELECT length(s) FROM r", HEAVY),
    _a("replace doubling", "memory", "WITH RECURSIVE r(s) AS (SELECT 'ab' UNION ALL SELECT replace(s, 'a', 'aa') "
       "FROM r) SELECT max(length(s)) FROM r", HEAVY),
    _a("nested replace", "memory", "SELECT length(replace(replace(replace(hex(zeroblob(1000)), '0', "
       "hex(zeroblob(500))), '0', hex(zeroblob(500))), '0', 'xx'))", LIMIT),
    _a("group_concat big blobs", "memory", "SELECT length(group_concat(randomblob(1000000))) FROM pet", HEAVY),
    _a("group_concat cartesian", "memory", "SELECT length(group_concat(a.body)) FROM big a, big b", HEAVY),
    _a("json_group_array cartesian", "memory", "SELECT length(json_group_array(a.body)) FROM big a, big b", HEAVY),
    _a("printf huge repeat", "memory", "SELECT printf('%.*c', 1000000000, 'x')", LIMIT),
    _a("printf huge literal repeat", "memory", "SELECT printf('%.2000000000c', 'x')", LIMIT),
    _a("printf huge width", "memory", "SELECT length(printf('%900000000d', 1))", LIMIT | OK),
    _a("substr of a big blob", "memory", "SELECT length(substr(zeroblob(4000000), 1, 4000000))", OK),
    _a("upper of big text", "memory", "SELECT length(upper(hex(zeroblob(2400000))))", OK),
    _a("quote of a big blob", "memory", "SELECT length(quote(randomblob(3000000)))", LIMIT),
    _a("order by big blobs", "memory", "SELECT length(x) FROM (SELECT randomblob(3000000) AS x FROM pet ORDER BY x)",
       HEAVY),
    _a("distinct big blobs", "memory", "SELECT count(*) FROM (SELECT DISTINCT randomblob(1000000) FROM pet)", HEAVY),
    _a("recursive big strings", "memory", "WITH RECURSIVE r(i, s) AS (SELECT 1, hex(zeroblob(2000000)) UNION ALL "
       "SELECT i + 1, s FROM r) SELECT s FROM r", HEAVY),
    _a("window group_concat", "memory", "SELECT length(group_concat(body) OVER (ORDER BY id)) FROM big", HEAVY | OK),
    _a("all rows of a cartesian", "memory", "SELECT a.*, b.* FROM big a, big b", HEAVY),
    _a("many columns", "memory", "SELECT " + ", ".join(f"{i}" for i in range(1500)), LIMIT),
    _a("wide star join", "memory", "SELECT * FROM big a, big b, big c, big d", HEAVY),
    _a("big stored blob many times", "memory", "SELECT b FROM blobs, nums", HEAVY),
    # -- parser and limits -----------------------------------------------------------------------------------
    _a("5,000 nested parentheses", "parser", _nested(5000), LIMIT),
    _a("1,000 nested parentheses", "parser", _nested(1000), LIMIT),
    _a("600 nested subqueries", "parser", "SELECT " + "(SELECT " * 600 + "1" + ")" * 600, LIMIT),
    _a("600 union all", "parser", "SELECT 1" + " UNION ALL SELECT 1" * 600, LIMIT),
    _a("10,000 or terms", "parser", "SELECT count(*) FROM nums WHERE " + " OR ".join(f"n = {i}" for i in range(10000)),
       LIMIT),
    _a("sql of 200 kB", "parser", "SELECT '" + "x" * 200_000 + "'", LIMIT),
    _a("in list of 8,000", "parser", "SELECT count(*) FROM nums WHERE n IN (" + ",".join(map(str, range(8000))) + ")",
       OK | LIMIT),
    _a("deep case", "parser", "SELECT " + "CASE WHEN 1 THEN " * 800 + "1" + " END" * 800, LIMIT),
    _a("200 function arguments", "parser", "SELECT max(" + ",".join(["1"] * 200) + ")", LIMIT),
    _a("like pattern of 1,000", "parser", f"SELECT count(*) FROM big WHERE body LIKE '%{A}%'", LIMIT),
    _a("glob pattern of 1,000", "parser", f"SELECT count(*) FROM big WHERE body GLOB '*{A}*'", LIMIT),
    _a("bound parameters", "parser", "SELECT ?, ?, ?", LIMIT),
    _a("parameter 999999", "parser", "SELECT ?999999", LIMIT),
    _a("named parameter", "parser", "SELECT :evil", LIMIT),
    _a("very long identifier", "parser", "SELECT " + "x" * 50_000 + " FROM person", LIMIT | {"no_such_column"}),
    _a("unterminated string", "parser", "SELECT 'abc", LIMIT),
    _a("nul byte in sql", "parser", "SELECT 1\x00; DROP TABLE person", LIMIT | WRITES | OK),
    _a("json path of 10,000 steps", "parser", "SELECT json_extract('[1]', '$' || replace(hex(zeroblob(10000)), "
       "'00', '[0]'))", OK | LIMIT),
    _a("deep json", "parser", "SELECT json_valid('" + "[" * 5000 + "]" * 5000 + "')", OK | LIMIT),
    # -- one function call that would outlast the deadline -----------------------------------------------------
    _a("instr with a big needle", "cpu", "SELECT instr(replace(hex(zeroblob(1200000)), '0', 'a'), "
       "replace(hex(zeroblob(600000)), '0', 'a') || 'b')", OK),
    _a("replace with a big needle", "cpu", "SELECT length(replace(replace(hex(zeroblob(1200000)), '0', 'a'), "
       "replace(hex(zeroblob(600000)), '0', 'a') || 'b', ''))", OK),
    _a("trim with a big set", "cpu", "SELECT length(trim(replace(hex(zeroblob(1000000)), '0', 'z'), "
       "(SELECT group_concat(char(256 + n), '') FROM nums) || 'z'))", OK),
    _a("like worst case", "cpu", "SELECT replace(hex(zeroblob(2000000)), '0', 'a') LIKE '%" + "a" * 46 + "b%'", OK),
    _a("glob worst case", "cpu", "SELECT replace(hex(zeroblob(2000000)), '0', 'a') GLOB '*" + "a" * 46 + "b*'", OK),
    _a("like per row", "cpu", "SELECT count(*) FROM big a, big b WHERE b.body LIKE '%row ' || a.id || ' row " + "row " * 8
       + "x%'", SLOW),
    _a("instr per row", "cpu", "SELECT count(*) FROM big a, big b WHERE instr(a.body, b.body) > 0", SLOW),
    _a("printf many small repeats", "cpu", "SELECT length(group_concat(printf('%.*c', 10000, 'x'))) FROM big a, "
       "big b", HEAVY),
    # -- odd but valid: run to a result ------------------------------------------------------------------------
    _a("text that is not utf-8", "valid", "SELECT t FROM blobs", OK),
    _a("a 1 MB stored blob", "valid", "SELECT length(b) FROM blobs", OK),
    _a("division by zero", "valid", "SELECT 1 / 0", OK),
    _a("huge float", "valid", "SELECT 1e999, -1e999", OK),
    _a("huge integer", "valid", "SELECT 9223372036854775807 + 1", OK),
    _a("nul blob", "valid", "SELECT x'00', CAST(x'00' AS TEXT)", OK),
    _a("schema read", "valid", "SELECT name, sql FROM sqlite_master", OK),
    _a("version", "valid", "SELECT sqlite_version(), sqlite_source_id()", OK),
    _a("a view", "valid", "SELECT count(*) FROM adults", OK),
    _a("empty result", "valid", "SELECT * FROM person WHERE 0", OK),
    _a("no such table", "valid", "SELECT * FROM people", {"no_such_table"}),
    _a("no such column", "valid", "SELECT nam FROM person", {"no_such_column"}),
    _a("syntax error", "valid", "SELEC name FROM person", {"syntax"}),
    _a("row cap", "valid", "SELECT a.n FROM nums a, nums b", {"too_many_rows"}),
    _a("interrupt then query", "valid", "SELECT count(*) FROM nums", OK),
]

# answer-format attacks: what the model's whole reply is (predicted path only)
ANSWERS: list[Attack] = [
    Attack("no answer", "answer", "", frozenset({"no_answer"}), answer="I refuse."),
    Attack("empty answer tag", "answer", "", frozenset({"no_answer"}), answer="<answer></answer>"),
    Attack("answer of 2 MB", "answer", "", frozenset({"runtime", "syntax"}),
           answer="<answer>SELECT '" + "x" * 2_000_000 + "'</answer>"),
    Attack("10,000 answer tags", "answer", "", frozenset({"ok"}), answer="<answer>SELECT 1</answer>" * 10_000),
    Attack("nested answer tags", "answer", "", frozenset({"ok", "syntax", "no_answer", "not_a_query"}),
           answer="<answer><answer>SELECT 1</answer></answer>"),
    Attack("nul bytes in the reply", "answer", "", WRITES | OK, answer="<answer>SELECT\x00 1</answer>\x00"),
    Attack("fence bomb", "answer", "", frozenset({"ok", "no_answer", "syntax"}), answer="```" * 50_000),
]


def by_name() -> dict[str, Attack]:
    return {a.name: a for a in [*CORPUS, *ANSWERS]}


def quick() -> list[Attack]:
    """One attack from each family: the part of the corpus that runs in the quick test suite."""
    picked: dict[str, Attack] = {}
    for attack in [*CORPUS, *ANSWERS]:
        picked.setdefault(attack.family, attack)
    extra = by_name()
    return [*picked.values(), extra["randomblob 1e9"], extra["5,000 nested parentheses"],
            extra["instr with a big needle"], extra["string doubling"]]
