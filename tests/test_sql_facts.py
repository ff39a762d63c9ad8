"""`[task] facts`: an evolved prompt's facts are shown with the questions they concern, in the user turn, and the
system turn stays the same for every question (tasks/sql_facts.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lse_engine.config import check_setting, load_config
from lse_engine.evolve.proposers.facts import with_facts
from lse_engine.tasks import sql_template
from lse_engine.tasks.base import Problem
from lse_engine.tasks.sql_facts import FACTS_HEADER, NOTES_HEADER, fact_terms, notes_for, split_facts, words
from lse_engine.tasks.text_to_sql import SQLiteTask

SEED = "Write one SQLite query that answers the question."
FACTS = [
    "The column Model is found in the table model_list.",
    "The column Year is found in the cars_data table.",
    "The column status_code holds 'D' for delivered.",
]
QUESTIONS = {
    "horsepower": "What is the average horsepower of the cars made before 1980?",
    "model": "Which model has the most versions?",
    "delivered": "How many orders were delivered?",
    "nothing": "How many makers are there?",
}


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "cars.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE model_list (ModelId INTEGER PRIMARY KEY, Maker INTEGER, Model TEXT);
        CREATE TABLE cars_data (Id INTEGER PRIMARY KEY, Horsepower INTEGER, Year INTEGER);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, status_code TEXT);
        CREATE TABLE car_makers (Id INTEGER PRIMARY KEY, Maker TEXT);
        INSERT INTO model_list VALUES (1, 1, 'amc');
        INSERT INTO cars_data VALUES (1, 130, 1970);
        INSERT INTO orders VALUES (1, 'D');
    """)
    conn.commit()
    conn.close()
    return path


def _chats(task: SQLiteTask, instructions: str) -> dict[str, list[str]]:
    return {k: [m["content"] for m in task.render(instructions, Problem(k, q, "SELECT 1"))]
            for k, q in QUESTIONS.items()}


def test_a_fact_is_shown_with_the_questions_it_concerns_and_not_with_others(db: Path) -> None:
    task = SQLiteTask(db, facts="per-question")
    chats = _chats(task, with_facts(SEED, FACTS))
    notes = {k: user.split("\n\nQuestion:", 1)[0] for k, (_, user, *_) in chats.items()}
    assert notes["model"] == f"{NOTES_HEADER}\n- {FACTS[0]}"  # "model" names the column Model
    # "cars" names the table cars_data, but the fact is about the column Year: not shown (the 0.5B answered this
    # question from model_list once "The column Model is found in the table model_list" was in its instructions)
    assert chats["horsepower"][1].startswith("Question:\n")
    assert notes["delivered"] == f"{NOTES_HEADER}\n- {FACTS[2]}"  # what the code 'D' means: delivered
    assert chats["nothing"][1].startswith("Question:\n")
    for system, user, *_ in chats.values():
        assert FACTS_HEADER not in system and FACTS_HEADER not in user
        assert user.rstrip().endswith("</answer>")
    task.close()


def test_the_system_turn_is_the_same_for_every_question(db: Path) -> None:
    task = SQLiteTask(db, facts="per-question")
    systems = {system for system, *_ in _chats(task, with_facts(SEED, FACTS)).values()}
    assert systems == {sql_template.agent_prompt(task.schema, SEED)}
    task.close()


def test_a_prompt_without_facts_renders_exactly_as_before(db: Path) -> None:
    per_question, always = SQLiteTask(db, facts="per-question"), SQLiteTask(db, facts="always")
    for instructions in (SEED, "", "Say 'D' means delivered.\n- a bullet of the user's own"):
        for k, q in QUESTIONS.items():
            problem = Problem(k, q, "SELECT 1", evidence="cars are vehicles" if k == "model" else None)
            before = sql_template.render(per_question.schema, instructions, problem, True)
            assert per_question.render(instructions, problem) == before == always.render(instructions, problem)
    # facts = "always": the facts block stays in the instructions, in both turns, for every question
    with_block = with_facts(SEED, FACTS)
    system, user = (m["content"] for m in always.render(with_block, Problem("q", QUESTIONS["nothing"], "SELECT 1")))
    assert system.endswith(with_block) and FACTS[0] in user and NOTES_HEADER not in user
    per_question.close()
    always.close()


def test_which_facts_a_question_sees_follows_from_the_names() -> None:
    tables, columns = {"cars_data", "countries", "orders"}, {"LifeExpectancy", "CountryName", "Year", "status"}
    # CamelCase and snake_case split, plurals stripped, both ways
    assert notes_for(["The column LifeExpectancy is in countries."], "Which country has the longest life "
                     "expectancy?", tables, columns) == ["The column LifeExpectancy is in countries."]
    assert notes_for(["The column CountryName is found in the countries table."], "List the names of the countries.",
                     tables, columns) == ["The column CountryName is found in the countries table."]
    # a question names a column when it has every word of the column's name
    code = ["The column CountryCode is found in the city table."]
    assert notes_for(code, "How many countries are in Asia?", tables, {*columns, "CountryCode"}) == []
    assert notes_for(code, "What is the country code of Aruba?", tables, {*columns, "CountryCode"}) == code
    # a fact that names only a table concerns the questions that name the table
    assert notes_for(["Rows of cars_data are per car."], "Which data do we hold on cars?", tables, columns) == \
        ["Rows of cars_data are per car."]
    assert notes_for(["Rows of cars_data are per car."], "How many cars?", tables, columns) == []
    # a quoted value concerns the questions that name it; a fact that names nothing concerns every question
    assert notes_for(["Status 'Shipped' is written 'S'."], "How many were shipped?", tables, columns)
    assert notes_for(["The column status holds 'BK' for books."], "List all books.", tables, columns)
    assert not notes_for(["The column status holds 'BK' for books."], "List all toys.", tables, columns)
    listed = ["The column status holds the state: 'D' is delivered, 'C' cancelled, 'P' pending."]
    assert notes_for(listed, "Which orders were cancelled?", tables, columns) == listed
    assert notes_for(["Dates are written as yyyymmdd."], "How many orders?", tables, columns)
    assert fact_terms("Dates are written as yyyymmdd.", frozenset(tables), frozenset(columns)) is None
    # function words never make a fact concern a question
    assert notes_for(["The column status is in the orders table."], "What is the total of all the years?",
                     tables, columns) == []
    assert words("The ModelId of car_makers' Countries") == {"model", "id", "car", "maker", "country"}


def test_the_facts_block_splits_from_the_instructions() -> None:
    text = with_facts(SEED, FACTS[:2])
    assert split_facts(text) == (SEED, FACTS[:2])
    assert split_facts(text + "\n\nAlways alias tables.") == (SEED + "\nAlways alias tables.", FACTS[:2])
    assert split_facts(SEED) == (SEED, [])


def test_the_setting_is_checked_and_defaults_to_per_question(tmp_path: Path) -> None:
    assert load_config(tmp_path).task.facts == "per-question"
    assert check_setting("task.facts", "always") is None and check_setting("task.facts", "per-question") is None
    assert check_setting("task.facts", "sometimes") is not None


def test_a_question_sees_the_two_examples_whose_questions_share_most_of_its_words(db: Path) -> None:
    from lse_engine.tasks.sql_facts import example

    examples = [example("How many makers are there?", "SELECT count(*) FROM car_makers"),
                example("What is the  average horsepower of all cars?", "SELECT avg(Horsepower)\n FROM cars_data"),
                example("What is the maximum horsepower of the cars made in 1970?",
                        "SELECT max(T1.Horsepower) FROM cars_data AS T1 JOIN model_list AS T2 ON T1.Id = T2.ModelId "
                        "WHERE T1.Year = 1970"),
                example("Which model has the fewest versions?", "SELECT Model FROM model_list LIMIT 1")]
    assert examples[1] == ('Example: "What is the average horsepower of all cars?" is answered by: '
                           "SELECT avg(Horsepower) FROM cars_data")
    tables, columns = ["cars_data", "model_list"], ["Horsepower", "Year", "Model"]
    # three words shared each ("average horsepower ... cars" / "horsepower ... cars made"): the earlier first
    assert notes_for([*examples, FACTS[1]], QUESTIONS["horsepower"], tables, columns) == [examples[1], examples[2]]
    # the facts a question names come first; only one example shares a word with it
    assert notes_for([*examples, FACTS[0]], QUESTIONS["model"], tables, columns) == [FACTS[0], examples[3]]
    assert notes_for(examples, "How are you?", tables, columns) == []  # nothing shared: no example
    # the gold query of an example states nothing the claim checker reads: "T2.Make FROM cars_data" is no claim
    task = SQLiteTask(db, facts="per-question")
    wrong = "SELECT T2.Maker FROM cars_data AS T1 JOIN car_makers AS T2 ON T1.Id = T2.Id"
    assert task.contradictions(f"- The column Maker is in the cars_data table.\n- {example('Q?', wrong)}")
    assert task.contradictions(f"- {example('Q?', wrong)}") == []
