"""The fixed text-to-SQL template, as the reference has it (lse/prompts/bird/instruction_prompt.py).

Only the instructions evolve. The system message is the task overview, the schema and the instructions; the
user message is the question, the instructions again, and the fixed closing line that asks the model to show
its work and give the final query in `<answer>` tags. The answer format therefore lives in the template:
no edit of the instructions can remove it.

`[task] facts = "per-question"` (`sql_facts`) takes the facts block out of the instructions in both messages and
puts the facts a question concerns at the head of its user message, under "Notes for this question:".

`[task] show_work = false` swaps the closing line for one that asks for the query alone (`ANSWER_ONLY`): a 0.5B
model that reasons first invents columns and runs out of tokens (benchmarks/README.md). The answer format stays.
"""

from __future__ import annotations

from collections.abc import Sequence

from lse_engine.llm.base import Chat
from lse_engine.tasks.base import Problem, with_answer_start
from lse_engine.tasks.sql_facts import NOTES_HEADER

SEED_INSTRUCTIONS = "Return only a single valid SQLite SQL statement in <answer>...</answer>."
SCHEMA_HIDDEN = "(the schema is not shown here)"

AGENT_PROMPT = """Task Overview:
You are a data science expert. Below, you are provided with a database schema and
a natural language question. Your task is to understand the schema and generate
a valid SQL query to answer the question.

Database Engine:
SQLite

Database Schema:
{schema}
This schema describes the database's structure, including tables, columns,
primary keys, foreign keys, and any relevant relationships or constraints.

**Instructions**
{instructions}"""

PROBLEM_MESSAGE = """Question:
{question}

**Instructions**
{instructions}

{closing}"""
SHOW_WORK = """Follow the instructions and show your work. When you are ready, return the final
SQL query in tags: <answer> ... </answer>"""
ANSWER_ONLY = "Follow the instructions. Return only the final SQL query in tags: <answer> ... </answer>"


def agent_prompt(schema: str, instructions: str) -> str:
    """The system message: overview, schema, instructions."""
    return AGENT_PROMPT.format(schema=schema, instructions=instructions.strip())


def problem_message(problem: Problem, instructions: str, show_work: bool = True, notes: Sequence[str] = ()) -> str:
    """The user message; BIRD's evidence ("external knowledge") follows the question (the reference's
    `full_question` puts it first; docs/fidelity.md). `notes` (the facts this question concerns) come first."""
    question = problem.question if not problem.evidence else f"{problem.question}\nEvidence: {problem.evidence}"
    message = PROBLEM_MESSAGE.format(question=question, instructions=instructions.strip(),
                                     closing=SHOW_WORK if show_work else ANSWER_ONLY)
    if not notes:
        return message
    return NOTES_HEADER + "\n" + "\n".join(f"- {n}" for n in notes) + "\n\n" + message


def render(schema: str, instructions: str, problem: Problem, show_work: bool = True,
           notes: Sequence[str] = ()) -> Chat:
    """The task model's chat; asked for the query alone, its reply begins inside `<answer>` (`with_answer_start`).
    `notes`: facts shown with this question alone (`[task] facts = "per-question"`; `instructions` then has no
    facts block)."""
    return with_answer_start([{"role": "system", "content": agent_prompt(schema, instructions)},
                              {"role": "user", "content": problem_message(problem, instructions, show_work, notes)}],
                             show_work)
