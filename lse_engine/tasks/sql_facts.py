"""Which facts of an evolved prompt a question is shown (`[task] facts`).

The facts request (`request = "facts"`) appends facts under `FACTS_HEADER` to the instructions, and the
instructions are the task model's system prompt for every question. A 0.5B task model copies the tables and
columns a fact names into questions the fact is not about: with "The column Model is found in the table
model_list" in its instructions it answered "average horsepower before 1980" from `model_list` (no `Year` there).
On the protocol's 24 runs (benchmarks/README.md), 170 of 219 answers that went from right under the seed to wrong
under a child used a table or column a fact of the child names and neither the seed's answer nor the gold query used.

`facts = "per-question"` keeps the block in the instructions file (the prompt stays readable, and the evolver
still sees every fact) but renders it differently: the system prompt holds the instructions without the block, so
it is the same for every question (the prefix the engine caches across a batch), and each question's user turn
begins with the facts it concerns under `NOTES_HEADER`. A fact concerns a question when the question names
something the fact is about, decided from the database's names and the question's text alone (`fact_terms`,
`notes_for`): every word of a column the fact names (of a table, when it names no column; snake_case and
CamelCase split), of a value it quotes or of what it says a quoted code means is a word of the question or its
evidence (lower-cased, a plural s stripped, English function words left out). "How many countries are in Asia?"
does not name CountryCode; "the country code of Aruba" does. A fact that
names nothing the database has and quotes no value is shown with every question (nothing says what it is about).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Sequence

# the block the facts go in: a small task model applies every rule it reads to every question ("use BETWEEN for
# dates" on a question about Germany), so the header says a fact is for the questions it is about
FACTS_HEADER = "Facts about this database (use a fact only for a question it is about):"
NOTES_HEADER = "Notes for this question:"
# a worked example (a train question the prompt failed, with its gold query) is a fact that begins so; per question,
# only the few whose questions are closest are shown (a 0.5B given every example of a database answers nothing)
EXAMPLE_PREFIX = "Example:"
EXAMPLES_PER_QUESTION = 2

_BULLET = re.compile(r"^\s*[-*]\s+")
_CAMEL = (re.compile(r"([a-z0-9])([A-Z])"), re.compile(r"([A-Z]+)([A-Z][a-z])"))
_TOKEN = re.compile(r"[A-Za-z0-9]+")
_QUOTED = re.compile(r"'([^'\n]+)'|\"([^\"\n]+)\"|`([^`\n]+)`")
# what a quoted code means: the words after it ("'D' for delivered", "'BK' stands for books", "'C' cancelled") or
# before it ("books ('BK')", "Delivered = 'D'"); a question names the meaning, not the code
_MEANS_AFTER = re.compile(r"['\"`][^'\"`\n]+['\"`]\s*\)?,?\s*(?:(?:for|means?|stands?\s+for|represents?|denotes?|"
                          r"indicates?|is|=|:|->|→)\s*)?['\"]?([A-Za-z][\w-]*(?:\s+[A-Za-z][\w-]*){0,2})")
_MEANS_BEFORE = re.compile(r"([A-Za-z][\w-]*)['\"]?\s*(?:\(|=|:)\s*['\"`][^'\"`\n]+['\"`]")
# English function words: a question and a fact that share only these share no subject
_FUNCTION_WORDS = frozenset({
    "a", "about", "above", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been",
    "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "each",
    "every", "few", "for", "from", "had", "has", "have", "how", "if", "in", "into", "is", "it", "its", "more",
    "most", "no", "nor", "not", "of", "off", "on", "once", "only", "or", "other", "our", "out", "over", "own",
    "same", "should", "so", "some", "such", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were",
    "what", "when", "where", "which", "while", "who", "whom", "whose", "why", "will", "with", "would", "you",
    "your"
})


def split_facts(instructions: str) -> tuple[str, list[str]]:
    """The instructions without their facts block, and the block's facts (bullets, without the bullet).

    The block is `FACTS_HEADER` and the bullet lines right after it; text after the bullets stays in the
    instructions. Without the header: the instructions as they are and no facts."""
    before, header, after = instructions.partition(FACTS_HEADER)
    if not header:
        return instructions, []
    lines = after.split("\n")
    facts: list[str] = []
    i = 1 if lines and not lines[0].strip() else 0  # the rest of the header's line
    while i < len(lines) and (not lines[i].strip() or _BULLET.match(lines[i])):
        if lines[i].strip():
            facts.append(unbulleted(lines[i]))
        i += 1
    rest = "\n".join(lines[i:]).strip()
    base = before.rstrip()
    return (base + "\n" + rest if base and rest else base or rest), facts


def words(text: str) -> set[str]:
    """The content words of `text`: names split at `_`, spaces and CamelCase, lower-cased, a plural s stripped
    ("countries" → country, "cars" → car, "class" stays), English function words left out."""
    for camel in _CAMEL:
        text = camel.sub(r"\1 \2", text)
    out = set()
    for token in _TOKEN.findall(text):
        word = _singular(token.lower())
        if word not in _FUNCTION_WORDS and (len(word) > 1 or word.isdigit()):
            out.add(word)
    return out


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@functools.lru_cache(maxsize=4096)
def fact_terms(fact: str, tables: frozenset[str], columns: frozenset[str]) -> frozenset[frozenset[str]] | None:
    """What `fact` is about, each thing as the set of its words: the columns of the database it names
    (`columns`, as the schema writes them, matched in any case; a name that is also a table's counts as a table),
    else the tables it names (`tables`); the values it quotes and what a quoted code is said to mean ("'BK' for
    books": a question says "books", not 'BK'). None when it names no column, table or value (then it concerns
    every question).

    A fact about a column names the table it lives in as well ("The column Year is found in the cars_data table"):
    the column says which questions it concerns, the table is where to look."""
    lowered = fact.lower()
    named = [n for n in tables | columns if re.search(rf"(?<![\w.]){re.escape(n.lower())}(?!\w)", lowered)]
    values = [next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(fact)]
    table_names = {t.lower() for t in tables}
    about = [n for n in named if n.lower() not in table_names] or named
    if not about and not values:
        return None
    meanings = [*_MEANS_AFTER.findall(fact), *_MEANS_BEFORE.findall(fact)] if values else []
    return frozenset(group for text in (*about, *values, *meanings) if (group := frozenset(words(text))))


def notes_for(facts: Iterable[str], question: str, tables: Collection[str], columns: Collection[str]) -> list[str]:
    """The facts that concern `question` (its text and evidence), in their order: those the question names
    something of (every word of one of its `fact_terms`: "the last name" names last_name, "name" alone does
    not), and those that name nothing; then the worked examples (`is_example`) whose questions share the most
    content words with it, at most `EXAMPLES_PER_QUESTION`."""
    asked = words(question)
    frozen = frozenset(tables), frozenset(columns)  # as the schema writes them: "LifeExpectancy" splits in two
    facts = list(facts)
    notes = [f for f in facts if not is_example(f)
             and ((terms := fact_terms(f, *frozen)) is None or any(t <= asked for t in terms))]
    return notes + closest_examples([f for f in facts if is_example(f)], asked)


def example(question: str, gold: str) -> str:
    """A worked example as one fact: the question and its query on one line."""
    return f'{EXAMPLE_PREFIX} "{" ".join(question.split())}" is answered by: {" ".join(gold.split())}'


def is_example(fact: str) -> bool:
    return fact.startswith(EXAMPLE_PREFIX)


def unbulleted(line: str) -> str:
    return _BULLET.sub("", line).strip()


def closest_examples(examples: Sequence[str], asked: set[str]) -> list[str]:
    """The examples whose questions share the most content words with `asked` (at least one), at most
    `EXAMPLES_PER_QUESTION`, most shared first (the earlier on a tie)."""
    shared = [(len(words(_example_question(e)) & asked), i) for i, e in enumerate(examples)]
    best = sorted((s for s in shared if s[0] > 0), key=lambda s: (-s[0], s[1]))[:EXAMPLES_PER_QUESTION]
    return [examples[i] for _, i in best]


def _example_question(fact: str) -> str:
    m = re.match(rf'{re.escape(EXAMPLE_PREFIX)}\s*"(.*)" is answered by:', fact)
    return m.group(1) if m else fact
