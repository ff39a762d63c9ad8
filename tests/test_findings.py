"""Feedback computed from the database and the gold query (issue 20): where a misplaced column really is and the
join to it, a table that does not exist, a result of the wrong shape; claims an edit makes that the database
contradicts. A real SQLite database; the search runs with scripted replies at the model boundary."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from lse_engine.evolve.proposers.facts import parse_fact
from lse_engine.runner import evolve
from lse_engine.tasks.base import Problem
from lse_engine.tasks.text_to_sql import SQLiteTask
from lse_engine.workspace import Workspace
from tests.scripted import ScriptedLLM, current_of, question_of


def _shop(path: Path, foreign_keys: bool = True) -> Path:
    conn = sqlite3.connect(path)
    fk = " REFERENCES customers(id)" if foreign_keys else ""
    conn.executescript(f"""
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER{fk}, status TEXT, total INTEGER);
        CREATE TABLE items (id INTEGER PRIMARY KEY, order_id INTEGER, sku TEXT, name TEXT);
        INSERT INTO customers VALUES (1, 'Ann', 'OSLO'), (2, 'Bo', 'PARIS'), (3, 'Cy', 'OSLO');
        INSERT INTO orders VALUES (10, 1, 'D', 500), (11, 2, 'C', 700), (12, 3, 'D', 900), (13, 1, 'D', 100);
        INSERT INTO items VALUES (100, 10, 'A1', 'pen'), (101, 11, 'B2', 'ink');
    """)
    conn.commit()
    conn.close()
    return path


@pytest.fixture()
def task(tmp_path: Path) -> SQLiteTask:
    t = SQLiteTask(_shop(tmp_path / "shop.sqlite"))
    yield t
    t.close()


def _outcome(task: SQLiteTask, sql: str, gold: str):
    problem = Problem("q", "?", gold)
    return problem, task.score([problem], [f"<answer>{sql}</answer>"])[0]


def test_a_column_looked_up_in_the_wrong_table_gets_its_table_and_the_join(task: SQLiteTask) -> None:
    problem, out = _outcome(task, "SELECT city FROM orders WHERE status = 'D'",
                            "SELECT c.city FROM orders o JOIN customers c ON o.customer_id = c.id WHERE o.status = 'D'")
    assert out.error_kind == "no_such_column"
    (found,) = [f for f in task.findings(problem, out) if f.kind == "column"]
    assert found.text == ("city is a column of customers, not of the tables the query used (the query reads "
                          "orders); join orders.customer_id = customers.id")
    # a column several tables have: the one the gold query reads is named
    problem, out = _outcome(task, "SELECT name FROM orders", "SELECT i.name FROM items i JOIN orders o ON "
                                                             "i.order_id = o.id")
    (found,) = [f for f in task.findings(problem, out) if f.kind == "column"]
    assert found.text.startswith("name is a column of items") and found.values == ("items",)


def test_without_foreign_keys_key_names_link_the_tables(tmp_path: Path) -> None:
    task = SQLiteTask(_shop(tmp_path / "nofk.sqlite", foreign_keys=False))
    problem, out = _outcome(task, "SELECT sku FROM orders", "SELECT sku FROM items")
    (found,) = [f for f in task.findings(problem, out) if f.kind == "column"]
    assert "sku is a column of items" in found.text  # order_id names no key of orders: no link to show
    assert "no key links them" in found.text
    problem, out = _outcome(task, "SELECT nothing_like_it FROM orders", "SELECT 1")
    assert [f.text for f in task.findings(problem, out)][0] == "no table has a column named nothing_like_it"
    task.close()


def test_a_missing_table_and_a_result_of_the_wrong_shape(task: SQLiteTask) -> None:
    problem, out = _outcome(task, "SELECT * FROM client", "SELECT name FROM customers")
    assert task.findings(problem, out)[0].text.startswith("there is no table client; the closest tables are ")
    problem, out = _outcome(task, "SELECT status, total FROM orders", "SELECT COUNT(*) FROM orders WHERE status = 'D'")
    assert out.error_kind == "wrong_result" and (out.result_rows, out.result_cols) == (4, 2)
    shape = next(f for f in task.findings(problem, out) if f.kind == "shape")
    assert shape.text == ("the correct result has 1 row × 1 column, the model's 4 rows × 2 columns; the correct "
                          "query aggregates with COUNT where the wrong one does not")


def test_bad_input_gives_no_findings_and_no_crash(task: SQLiteTask) -> None:
    problem, out = _outcome(task, "SELECT city FROM orders", "SELECT broken FROM nowhere")  # the gold query fails
    assert all(f.kind in ("column", "literal") for f in task.findings(problem, out))
    problem, out = _outcome(task, "SELECT 1", "not even ( sql")
    assert task.findings(problem, out) == [] or all(f.text for f in task.findings(problem, out))


def test_claims_the_database_contradicts(task: SQLiteTask) -> None:
    assert task.contradictions("The column city is in the orders table.") == [
        "orders has no column city (it is a column of customers)"]
    assert task.contradictions("Use orders.city for the city.") == ["orders has no column city (it is a column of "
                                                                    "customers)"]
    assert task.contradictions("The orders table has a city column.")
    for placed in ("The column city is found in the orders table.", "The column city can be found in the orders "
                   "table.", "The column city is located in the orders table.", "The column city appears in orders.",
                   "The column city is likely found in the orders table.", "The column city is probably in orders.",
                   "The column city probably lives in the orders table."):
        assert task.contradictions(placed) == ["orders has no column city (it is a column of customers)"], placed
    assert task.contradictions("The column city is found in the customers table.") == []
    assert task.contradictions("The column status stores 'delivered' or 'cancelled'.") == [
        "orders.status holds no 'delivered', 'cancelled' (its values: 'D', 'C')"]
    # true, or not checkable: kept
    for fine in ("The column status stores 'D' for delivered and 'C' for cancelled.", "customers.city holds cities.",
                 "Join orders.customer_id = customers.id.", "Prices are in cents.", "The city column of customers.",
                 "The column name is in the items table."):
        assert task.contradictions(fine) == [], fine


def test_a_fact_says_more_than_the_schema() -> None:
    names = {"customers", "orders", "weight", "gender", "free meal count", "enrollment", "rate"}
    assert parse_fact("In this database, weights are stored in kilograms.", names) == "Weights are stored in kilograms."
    assert parse_fact("In this database, gender is stored as M or F.", names) == "Gender is stored as M or F."
    assert parse_fact("The rate is the free meal count divided by the enrollment.", names)
    assert parse_fact("Customers are stored in a table named customers.", names) is None
    assert parse_fact("The column gender stores the gender of each customer.", names) is None


def _claims_workspace(root: Path) -> Path:
    root.mkdir(parents=True)
    _shop(root / "shop.sqlite")
    problems = [{"id": f"q{i}", "question": f"Which city is order {10 + i % 4} from?",
                 "gold": f"SELECT c.city FROM orders o JOIN customers c ON o.customer_id = c.id WHERE o.id = {10 + i % 4}"}
                for i in range(24)]
    (root / "shop.suite.yaml").write_text(yaml.safe_dump({"task": "text-to-sql", "database": "shop.sqlite",
                                                          "split": {"dev": 0.5, "seed": 0}, "problems": problems}))
    (root / "shop.prompt.md").write_text("---\nsuite: shop.suite.yaml\n---\nAnswer in SQL.\n")
    (root / "lse.toml").write_text("[evolve]\nrounds = 1\nbatch_size = 6\n")
    return root / "shop.prompt.md"


def test_an_edit_the_database_contradicts_is_not_kept(tmp_path: Path) -> None:
    def task_reply(chat) -> str:
        order = question_of(chat).split("order ")[1].split()[0]
        if "customers" in next(m["content"] for m in chat if m["role"] == "system").split("**Instructions**")[-1]:
            return (f"<answer>SELECT c.city FROM orders o JOIN customers c ON o.customer_id = c.id "
                    f"WHERE o.id = {order}</answer>")
        return f"<answer>SELECT city FROM orders WHERE id = {order}</answer>"

    replies = iter(["<prompt>{cur}\nThe city column is in the orders table.</prompt>",
                    "<prompt>{cur}\nThe city is a column of customers: join orders.customer_id = customers.id."
                    "</prompt>"])
    seen_feedback: list[str] = []

    def evolver(chat) -> str:
        seen_feedback.append(chat[-1]["content"])
        return next(replies).format(cur=current_of(chat))

    ws = Workspace(_claims_workspace(tmp_path / "ws"), llms={"model": ScriptedLLM(task_reply, "task"),
                                                             "evolver": ScriptedLLM(evolver, "evolver")})
    result = evolve(ws)
    # the paper's request shows what the database says about the misplaced column
    assert ("What the database and the correct query show: city is a column of customers, not of the tables the "
            "query used (the query reads orders); join orders.customer_id = customers.id") in seen_feedback[0]
    first, second = ws.store.get_attempts(result.run_id)
    assert first["verdict"] == "false" and "orders has no column city" in first["error"]
    assert second["verdict"] == "ok" and result.tree.nodes[1].instructions.endswith("customers.id.")
    assert ws.store.get_run(result.run_id)["result"]["false_replies"] == 1
    ws.close()


def test_names_that_need_quoting_written_bare(tmp_path: Path) -> None:
    db = tmp_path / "spaces.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript('CREATE TABLE "Sales Orders" (id INTEGER PRIMARY KEY, "Order Date" TEXT);'
                       "INSERT INTO \"Sales Orders\" VALUES (1, '2020-01-01');")
    conn.close()
    task = SQLiteTask(db)
    problem, out = _outcome(task, "SELECT Order Date FROM Sales Orders", 'SELECT "Order Date" FROM "Sales Orders"')
    assert out.error_kind in ("syntax", "no_such_table", "no_such_column")
    assert task.findings(problem, out)[0].text == ("names with spaces or punctuation must be quoted as the schema "
                                                   "quotes them: `Sales Orders`, `Order Date`")
    problem, out = _outcome(task, 'SELECT "Order Date" FROM `Sales Orders` WHERE id = 2', 'SELECT 1')
    assert all(f.kind != "quoting" for f in task.findings(problem, out))  # quoted: nothing to say
    task.close()
