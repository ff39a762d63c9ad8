"""`request = "facts"`, for the smallest evolvers: one short question per mistake, the facts appended to the
instructions under a header. The evolver writes the content, the engine the shape.

For each wrong answer of the feedback batch the task says what its data and the gold answer show
(`Task.findings`): when the gold query compares a column with a value the wrong one lacks, the question names
that column and shows every value it holds (once per column a round, none about a column the instructions
already describe); otherwise, when the two answers differ in a value, it asks what fact explains that value.
The reply is begun for the model ("Fact: In this database, the column") and read as one sentence that names a
value. Candidate 0 decodes greedily, the others sample; each candidate is one attempt.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from lse_engine.evolve import prompts
from lse_engine.evolve.feedback import findings_of, group_samples, mistakes
from lse_engine.evolve.proposers.base import Candidate, Feedback, ProposerContext, Request
from lse_engine.evolve.replies import normalize
from lse_engine.evolve.tree import Node
from lse_engine.llm.base import Chat, continues_reply
from lse_engine.tasks.base import GOLD_FAILED, ColumnValues, Outcome, Problem
from lse_engine.tasks.sql_facts import FACTS_HEADER, example

FACT_TOKENS = 96  # a fact is one line; a code table of seven codes fits


class FactsProposer:
    kind = "facts"
    nothing_to_ask = "no mistake of the batch got a value wrong"
    noop_error = "every fact is already in the instructions or the tree"

    def feedback(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                 outcomes: Sequence[Outcome], round_: int) -> Feedback:
        return Feedback(mistakes(problems, outcomes, ctx.task_kind, findings=findings_of(ctx.task, problems, outcomes)))

    def request(self, ctx: ProposerContext, node: Node, problems: Sequence[Problem],
                outcomes: Sequence[Outcome], feedback: Feedback) -> Request | None:
        chats: list[Chat] = []
        notes: list[ColumnValues | None] = []  # per chat, how the column it asks about stores its values
        asked = described_columns(node.instructions)  # one question per column a round
        for p, outs in group_samples(problems, outcomes):
            answer = outs[0].answer or ""
            if outs[0].correct or not answer:
                continue
            question = p.question + (f" (evidence: {p.evidence})" if p.evidence else "")
            found = ctx.task.findings(p, outs[0])
            named = next((f for f in found if f.kind in ("quoting", "table")), None)
            if named is not None:  # a query that names what does not exist cannot run: that first, once a round
                if named.kind not in asked:
                    asked.add(named.kind)
                    chats.append(build_shows_fact_chat(question, answer, p.gold, named.text))
                    notes.append(None)
                continue
            values = [f for f in found if f.kind == "value"]
            if values:  # a value compared with a column: ask about the column, showing how it stores its values
                pick = next((f for f in values if f.column.lower() not in asked), None)
                if pick is not None and pick.stored is not None:
                    asked.add(pick.column.lower())
                    chats.append(build_column_fact_chat(question, answer, p.gold, pick.column,
                                                        " and ".join(pick.values), pick.stored.describe()))
                    notes.append(pick.stored)
                continue
            placed = next((f for f in found if f.kind == "column" and f.values), None)
            if placed is not None:  # a column looked up in the wrong table: ask where it lives and how to join
                if placed.column.lower() not in asked:
                    asked.add(placed.column.lower())
                    chats.append(build_where_fact_chat(question, answer, p.gold, placed.column, placed.text))
                    notes.append(None)
                continue
            literal = next((f for f in found if f.kind == "literal"), None)
            if literal is not None:  # a value the model got wrong: knowledge about the data
                chats.append(build_fact_chat(question, answer, p.gold, literal.wrote, literal.should, ctx.task_kind))
                notes.append(None)
        if not chats:
            return None
        sampling = dataclasses.replace(ctx.sampling, stop=("\n",), max_tokens=FACT_TOKENS)
        return Request(self.kind, tuple(chats), sampling, greedy_first=True, notes=tuple(notes),
                       step=f"evolver naming what {len(chats)} mistakes missed",
                       examples=worked_examples(ctx, problems, outcomes))

    def read(self, ctx: ProposerContext, request: Request, texts: Sequence[str], hit_limit: Sequence[bool],
             current: str) -> Candidate:
        written = [fact_text(chat, text) for chat, text in zip(request.chats, texts, strict=True)]
        names = ctx.task.names()
        facts = [f for f, stored in zip((parse_fact(w, names) for w in written), request.notes, strict=True)
                 if f and fits_column(f, stored, ctx.questions)]
        raw = "\n".join(f"Fact: {t}" for t in written)
        if not facts and not request.examples:
            return Candidate(None, raw, "no usable fact in the replies")
        return Candidate(with_facts(current, [*facts, *request.examples]), raw)

    def identity(self, instructions: str) -> str:
        return facts_identity(instructions)


def worked_examples(ctx: ProposerContext, problems: Sequence[Problem],
                    outcomes: Sequence[Outcome]) -> tuple[str, ...]:
    """With `[evolve] examples` (text-to-sql): each problem of the batch answered wrong, as a worked example (its
    question and gold query); none for a gold query that fails."""
    if not ctx.settings.examples or ctx.task_kind != "text-to-sql":
        return ()
    return tuple(example(p.question, p.gold) for p, outs in group_samples(problems, outcomes)
                 if not outs[0].correct and not (outs[0].error or "").startswith(GOLD_FAILED))


def build_fact_chat(question: str, answer: str, gold: str, wrote: str, should: str, task_kind: str) -> Chat:
    """One mistake, one question (`request = "facts"`): what rule explains the value the correct answer has where
    the wrong one has another. The reply is begun with the rule's first words."""
    kind = task_kind if task_kind in prompts.FACT else "text-to-sql"
    user = prompts.FACT[kind].format(question=question, answer=answer, gold=gold, wrote=wrote or "nothing",
                                     should=should or "nothing")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": prompts.FACT_PREFILL[kind]}]


def build_column_fact_chat(question: str, answer: str, gold: str, column: str, values: str, stored: str) -> Chat:
    """One SQL mistake where the correct query compares `column` with `values` (`request = "facts"`): the request
    shows how the column stores its values (`stored`) and the reply begins with the column's name."""
    user = prompts.FACT_COLUMN.format(question=question, answer=answer, gold=gold, column=column, values=values,
                                      stored=stored)
    return [{"role": "user", "content": user},
            {"role": "assistant", "content": prompts.FACT_COLUMN_PREFILL.format(column=column)}]


def build_where_fact_chat(question: str, answer: str, gold: str, column: str, shows: str) -> Chat:
    """One SQL mistake where the query looked a column up in the wrong table (`request = "facts"`): the request
    says what the database shows (the table that has it, the join) and the reply begins with the column's name."""
    user = prompts.FACT_WHERE.format(question=question, answer=answer, gold=gold, column=column, shows=shows)
    return [{"role": "user", "content": user},
            {"role": "assistant", "content": prompts.FACT_COLUMN_PREFILL.format(column=column)}]


def build_shows_fact_chat(question: str, answer: str, gold: str, shows: str) -> Chat:
    """One SQL mistake about the database's names (quoting, a table that does not exist): the request says what
    the database shows and the reply begins "Fact: In this database,"."""
    user = prompts.FACT_SHOWS.format(question=question, answer=answer, gold=gold, shows=shows)
    return [{"role": "user", "content": user}, {"role": "assistant", "content": "Fact: In this database,"}]


def fact_text(chat: Chat, completion: str) -> str:
    """The fact as written: the prefill's words after `Fact:` or `Rule:`, then the completion."""
    start = chat[-1]["content"] if continues_reply(chat) else ""
    start = start.removeprefix("Fact:").removeprefix("Rule:").strip()
    return (start + " " + completion.strip()).strip()


_FACT_LEADS = ("the correct query knows that ", "the correct query knows ", "the correct answer knows that ",
               "fact:", "rule:", "the fact is that ", "in this database,")
FACT_CHARS = (12, 400)  # a code table of seven codes fits


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# a value, or how values are stored: a quoted literal, a number, a code in capitals, units and case words
_VALUE = re.compile(r"'[^']+'|\d|\b[A-Z]{2,}\b|\"(?![a-z_]+\")[^\"\s]+\"")
# SQL's own words in capitals are not codes: "use WHERE to filter" names no value
_SQL_WORDS = re.compile(r"\b(?:SQLite|SQL|SELECT|FROM|WHERE|AND|OR|NOT|IN|IS|NULL|LIKE|BETWEEN|GROUP|BY|ORDER|"
                        r"HAVING|LIMIT|JOIN|ON|AS|DISTINCT|COUNT|SUM|AVG|MIN|MAX|CASE|WHEN|THEN|ELSE|END|UNION|"
                        r"ASC|DESC|CAST|INTEGER|TEXT|REAL)\b")
# how a column stores its values: "stored in kilograms", "stores regions in capital letters", "written as integers"
# (a verb of storage, then in/as and a word; the word must not be one of the database's own names)
_STORED_AS = re.compile(r"\b(?:stor(?:e|es|ed)|record(?:s|ed)?|measur(?:e|es|ed)|express(?:es|ed)?|writ(?:es|ten)|"
                        r"kept|keeps|given|encod(?:e|es|ed))\b[^.;]*?\b(?:in|as)\s+(?!(?:the|a|an)\b)([A-Za-z]\w*)",
                        re.IGNORECASE)
# a sentence about the one mistake ("the correct query uses price_cents > 20000 to ...") is no fact about the data
_ABOUT_THE_MISTAKE = re.compile(r"\b(?:correct|wrong) (?:query|answer)\b|\bthe question\b", re.IGNORECASE)


def parse_fact(text: str, names: set[str] | frozenset[str] = frozenset()) -> str | None:
    """The fact in a reply: its first sentence that says something the schema does not, without the lead-in the
    request invites (and with the first sentence before it when that one says which column: "The column
    status_code stores the status of each order. Its values are 'D' for delivered, ..."); None when unusable.

    A sentence says something the schema does not when it names a value (a quoted literal, a number, a code in
    capitals), relates two of the database's columns (`names`: a formula, a join), or says how values are stored
    ("stored in kilograms", "stored as M or F") in words that are not the database's names. One that only restates
    the schema ("customers are stored in a table named customers")
    tells the task model nothing new."""
    fact = (text or "").strip().split("\n", 1)[0].strip().strip('"').strip()
    for lead in _FACT_LEADS:
        if fact.lower().startswith(lead):
            fact = fact[len(lead):].strip()
    sentences = [s.strip() for s in _SENTENCE_END.split(fact)]
    at = next((i for i, s in enumerate(sentences) if not _ABOUT_THE_MISTAKE.search(s)
               and _says_more_than_the_schema(s, names)), None)
    fact = "" if at is None else sentences[at]
    if at and sentences[0].lower().startswith("the column ") and not _ABOUT_THE_MISTAKE.search(sentences[0]):
        fact = sentences[0] + " " + fact
    fact = _COLUMN_NAMED.sub(r"\1\2", fact)  # "the column `price_cents`" and "the column price_cents" are one column
    if not FACT_CHARS[0] <= len(fact) <= FACT_CHARS[1]:
        return None
    return fact[0].upper() + fact[1:]


def _says_more_than_the_schema(sentence: str, names: set[str] | frozenset[str]) -> bool:
    if _VALUE.search(_SQL_WORDS.sub("", sentence)):
        return True
    lowered = sentence.lower()
    named = {n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", lowered)}
    if len(named) >= 2:
        return True
    return any(word.lower() not in names for word in _STORED_AS.findall(sentence))


def fits_column(fact: str, stored: ColumnValues | None, questions: Sequence[str] = ()) -> bool:
    """Whether a fact about a column, given how the column stores its values (`stored`, read from the data; None
    when unknown), tells a small task model something it can use. Which of its values are *codes* follows from
    the data: a column none of whose values a question of the suite names (`questions`: 'D' for delivered, 'EL'
    for electronics) holds codes. About a column of codes a fact must say what one of them means
    (`explains_codes`); about a column whose values the questions name (cities, regions: 'OSLO' for "Oslo") it
    must quote none of them: they need no explaining,
    only their format, and an example gets copied (with "'TOKYO' is represented by 'TOKYO'" in its instructions the
    0.5B answered questions about Paris and Berlin with 'TOKYO'; benchmarks/README.md)."""
    if stored is None or stored.kind == "numbers":
        return True
    if stored.kind == "text":
        return not _QUOTED_VALUE.search(fact)
    values = stored.codes()
    if any(named_in(v, questions) for v in values):  # the questions speak the column's language: words
        return not _QUOTED_VALUE.search(fact)
    return explains_codes(fact, values)


def named_in(value: str, questions: Sequence[str]) -> bool:
    """Whether some question names `value` as a word (any case): "Oslo" names 'OSLO'; nothing names 'D'."""
    pattern = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", re.IGNORECASE)
    return any(pattern.search(q) for q in questions)


_QUOTED_VALUE = re.compile(r"(?<!\w)(['\"])[^'\"]+\1(?!\w)")  # 'OSLO' or "Oslo", not the apostrophe in order's


def explains_codes(fact: str, codes: list[str]) -> bool:
    """Whether a fact says what at least one of a column's `codes` means ("'D' for 'Delivered'", "'N' stands for
    not a member", "books ('BK')"). The column request asks exactly that; a reply that lists the codes and no
    meaning ("the values 'EL', 'BK', ... each represent a category") tells the task model nothing new, and a 0.5B
    task model copies the listed codes into questions they do not fit."""
    for code in codes:
        quoted = rf"['\"`]{re.escape(code)}['\"`]"
        if re.search(quoted + _MEANING_AFTER, fact, re.IGNORECASE) or re.search(_MEANING_BEFORE + quoted, fact):
            return True
    return not codes


_GENERIC = r"(?:each|one|some|any|specific|different|unique|certain|particular|value|values|code|codes)\b"
# after a code: "for", "stands for", "means", "=", ":" and then a word that is not generic ("'D' for delivered")
_MEANING_AFTER = (r"\s*\)?,?\s*(?:for|stands?\s+for|means?|represents?|denotes?|indicates?|is|=|:|->|→)\s+"
                  rf"(?!(?:an?|the)\s+{_GENERIC})(?:an?\s+|the\s+)?['\"]?(?!{_GENERIC})[A-Za-z]")
# before a code: "books ('BK')", "Delivered = 'D'" (not "such as 'EL'", "values 'D'")
_MEANING_BEFORE = r"\b(?!(?:as|like|are|include|includes|and|or|is|values?|codes?)\b)[A-Za-z]{3,}['\"]?\s*(?:\(|=|:)\s*"


_COLUMN_NAMED = re.compile(r"^(the column )[`'\"]?(\w+)[`'\"]?", re.IGNORECASE)


def fact_column(fact: str) -> str | None:
    """The column a fact is about when it begins "The column NAME" (the column request's replies), lower-cased."""
    m = _COLUMN_NAMED.match(fact.lstrip("- "))
    return m.group(2).lower() if m else None


def described_columns(instructions: str) -> set[str]:
    """The columns the instructions' facts describe (lines that begin "The column NAME"), lower-cased."""
    return {c for c in map(fact_column, instructions.splitlines()) if c}


def with_facts(instructions: str, facts: list[str]) -> str:
    """The instructions with each new fact appended as a bullet under `FACTS_HEADER` (added with the first fact;
    facts already there, repeated, or about a column a fact already describes are skipped)."""
    have = _fact_key(instructions)
    described = described_columns(instructions)
    new: list[str] = []
    for fact in facts:
        key, column = _fact_key(fact), fact_column(fact)
        if key and key not in have and key not in (_fact_key(f) for f in new) and column not in described:
            new.append(fact)
            if column:  # one fact per column: the first one stays
                described.add(column)
    if not new:
        return instructions
    header = "" if FACTS_HEADER in instructions else "\n" + FACTS_HEADER
    return instructions.rstrip() + header + "\n" + "\n".join(f"- {f}" for f in new)


def facts_identity(instructions: str) -> str:
    """What makes two sets of instructions the same edit in the facts request: the text before the facts and
    the facts as a set (the same facts appended in another order are no new edit)."""
    base, header, facts = instructions.partition(FACTS_HEADER)
    if not header:
        return normalize(instructions)
    bullets = sorted({_fact_key(line.lstrip("- ")) for line in facts.splitlines() if line.strip()})
    return normalize(base) + "\n" + "\n".join(bullets)


def _fact_key(text: str) -> str:
    """What makes two facts the same: case, spacing and the quotes around names do not."""
    return normalize(re.sub(r"[`\"]", "'", text)).lower()



