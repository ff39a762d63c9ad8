"""The texts the evolver reads. `EVOLVE` follows the reference's SELF_EVOLVE_PROMPT per task kind
(lse/prompts/{bird,mmlu}/instruction_prompt.py); we add one thing, the `<current>` block that repeats the
instructions on their own, so that even a small model sees exactly which part it rewrites.
The TextGrad-style baseline's texts are ours, modelled on TextGrad's critic and optimizer roles."""

from __future__ import annotations

CURRENT_OPEN, CURRENT_CLOSE = "<current>", "</current>"
PROMPT_PREFILL = "<prompt>\n"  # with `evolver_prefill`, the evolver's reply starts here

EVOLVE = {
    "text-to-sql": """You are an expert at designing text-to-SQL agents. The agent is running on a
fixed database schema.
Below is the current agent prompt and a summary of recent performance.
Rewrite ONLY the instructions to improve execution accuracy while maintaining
strict output format.

Current prompt:
{agent_prompt}

The current instructions, the part you rewrite:
<current>
{instructions}
</current>

Evaluation summary over {n_problems} problems and the agent's full thinking process:
{summary}

**How to write Instructions**
- The agent will continue to receive different user queries, so do not make the
  instructions too specific to a single question.
- Keep it concise and practical.
- You may include rules, heuristics, knowledge about the database, low-level
  instructions/examples, high-level ideas/strategies, pitfalls, and any other
  information that can make the agent better.
- Organize however you like (bullets, headings, checklists).
- Do not change the output format; the agent should still return the final SQL
  query in tags: <answer> ... </answer>.

Think step by step and reason about the history of the model's behavior across
iterations.

When you are ready, put your revised Instructions within
<prompt>[your new instructions]</prompt> tags.""",
    "multiple-choice": """You are an expert at designing agents for solving multiple-choice questions that involve both factual knowledge and reasoning.
Below is the current agent prompt and a summary of recent performance on a set of problems.
Rewrite ONLY the instructions to improve accuracy while maintaining strict output format.

Current prompt:
{agent_prompt}

The current instructions, the part you rewrite:
<current>
{instructions}
</current>

Evaluation summary over {n_problems} problems and the agent's full thinking process:
{summary}

**How to write Instructions**
- The agent will continue to receive different questions from the same subjects. Don't make the instructions too specific to a single question.
- Keep it concise and practical.
- You may include rules, heuristics, strategies for multiple choice questions (e.g., elimination, careful reading), knowledge about the subjects (e.g., common misconceptions, important facts, etc.), and any information that you think can make the agent better.
- Organize however you like (bullets, headings, checklists).
- Be creative and think about the agent's behavior across iterations. Don't be confined by what I told you.
- Don't change the output format, the agent should still return the final answer letter in tags: <answer> ... </answer>.

Think step by step and show your work. Reason about the history of the model's behavior across iterations.

When you are ready, put your revised Instructions within <prompt>[your new instructions]</prompt> tags.""",
}

# -- TextGrad-style baseline: one critique per failure ("textual gradients"), then one aggregated edit ----------
CRITIC_SYSTEM = (
    "You are part of an optimization system that improves the instructions given to an AI model. You see the "
    "instructions and one problem the model got wrong with them. Criticise the instructions: say briefly what "
    "in them (or missing from them) led to this failure and how they should change. Do not answer the problem "
    "and do not rewrite the instructions."
)
CRITIC_USER = """Current instructions:
<current>
{instructions}
</current>

A problem the model got wrong with these instructions:
{failure}

In at most three sentences, inside <critique></critique> tags, say how the instructions should change."""
OPTIMIZER_SYSTEM = (
    "You are part of an optimization system that improves the instructions given to an AI model. You receive "
    "critiques of the current instructions, one per failed problem; they may be noisy or contradict each "
    "other. Use what they agree on to write improved instructions."
)
OPTIMIZER_USER = """Current instructions:
<current>
{instructions}
</current>

{critiques}

Write the complete improved instructions inside <prompt></prompt> tags. The answer format is fixed by the
task's template; the instructions need not repeat it."""

# -- the compact request, for small evolvers (`[evolve] request = "compact"`) ---------------------------------
# A 0.5B-1.5B model given the reference's 3,000-token request mostly copies it back. This one is short and
# structured: the current instructions, then each mistake as question / the model's query / the correct query,
# and one concrete ask. With `evolver_prefill` the reply is begun with the current instructions and a new
# bullet, so the model only has to continue a list of rules.
COMPACT = {
    "text-to-sql": """You improve the instructions of an assistant that writes SQLite queries for one database.
Below are its current instructions and questions it got wrong, each with its query and the correct query.

Current instructions:
<current>
{instructions}
</current>

Mistakes:
{mistakes}

Compare each wrong query with the correct one. Write down what the assistant did not know about this database
(how values are stored, coded or named) as short general rules that also help with other questions. Keep the
useful current instructions. Write the complete new instructions inside <prompt></prompt>.""",
    "multiple-choice": """You improve the instructions of an assistant that answers multiple-choice questions.
Below are its current instructions and questions it got wrong, each with its answer and the correct one.

Current instructions:
<current>
{instructions}
</current>

Mistakes:
{mistakes}

Write short general rules or facts that would have led to the correct answers and also help with other
questions. Keep the useful current instructions. Write the complete new instructions inside <prompt></prompt>.""",
}

# -- one fact per mistake, for the smallest evolvers (`[evolve] request = "facts"`) ------------------------------
# Asked to rewrite instructions, a 0.5B-1.5B model echoes its input. Asked, for one mistake at a time, to explain
# the value the correct query writes where the wrong one wrote another, a 1.5B model often states a rule. Rules
# ("use 100 as the multiplier for dollars") are applied by a 0.5B task model to every question; facts about how a
# column stores its values are not, so the request asks for one and begins the reply at "the column", and the
# engine appends the facts to the instructions under a header.
# Measured in benchmarks/README.md.
FACT = {
    "text-to-sql": """You are reviewing a mistake of a text-to-SQL assistant on one SQLite database.
Question: {question}
Wrong query: {answer}
Correct query: {gold}
The correct query writes {should} where the wrong one wrote {wrote}.
Write one fact about how this database stores its data that explains this difference: a column and what its values mean (a code and what it stands for, a unit, a format). Keep it under 20 words.""",
    "multiple-choice": """You are reviewing a mistake on a multiple-choice test.
Question: {question}
Wrong answer: {wrote}
Correct answer: {should}
Write one general fact or rule that leads to the correct answer and also helps with other questions. Keep it under 20 words.""",
}
FACT_PREFILL = {"text-to-sql": "Fact: In this database, the column", "multiple-choice": "Rule:"}
# The same question when the mistake is a value compared with a column: the request names the column and shows how
# it stores its values (read from the database), and the reply begins with the column's name. Shown only the one
# code of the question ("'GB' stands for the United Kingdom"), a 1.5B evolver writes a fact a 0.5B task model then
# copies into questions about Germany; shown every code with one row it names, it writes the code table.
FACT_COLUMN = """You are reviewing a mistake of a text-to-SQL assistant on one SQLite database.
Question: {question}
Wrong query: {answer}
Correct query: {gold}
The correct query compares {column} with {values}; the wrong query does not.
In the database, {stored}.
Write one fact about how the column {column} stores its data that explains the correct query: what its values mean (for codes: what each code stands for), its unit or its format. Keep it under 40 words."""
FACT_COLUMN_PREFILL = "Fact: In this database, the column {column}"
# The same when the query looked a column up in a table that does not have it: the request says which table does
# and how to join to it (computed from the database), and the reply begins with the column's name.
FACT_WHERE = """You are reviewing a mistake of a text-to-SQL assistant on one SQLite database.
Question: {question}
Wrong query: {answer}
Correct query: {gold}
The wrong query looks up {column} in a table that does not have it. The database shows: {shows}.
Write one fact about which table holds the column {column} and how to join to it. Keep it under 40 words."""
# The same when the query wrote the database's names wrong (unquoted names with spaces, a table that does not exist):
# the request says what the database shows, and the reply begins "Fact: In this database,".
FACT_SHOWS = """You are reviewing a mistake of a text-to-SQL assistant on one SQLite database.
Question: {question}
Wrong query: {answer}
Correct query: {gold}
The database shows: {shows}.
Write one fact about this database that would have avoided this mistake in other questions too. Keep it under 40 words."""
