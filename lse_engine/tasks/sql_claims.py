"""What an edit's new text states about the database that the database contradicts. Only checkable claims are
checked, each against the data (read-only), never against a word list:
- `table.column` written together, where the table has no such column;
- a column said to be in a table ("X in the T table", "the T table has X", "X is a column of T") where it is not;
- a column whose values are few enough to list (`sql_values`) said to hold quoted values none of which it holds,
  when the sentence names that one column and no other (SQLite compares text case-sensitively: 'male' ≠ 'Male';
  a sentence that quotes one real value is explaining codes: "'D' for 'Delivered'").
A claim about a name the database does not have is not checked (it may be an alias or a word of the question)."""

from __future__ import annotations

import re
from collections.abc import Callable

from lse_engine.tasks.base import ColumnValues
from lse_engine.tasks.sql_schema import Schema

ValuesOf = Callable[[str, str], ColumnValues | None]  # (table, column) → how the column stores its values

_WORD = r"[`\"']?([A-Za-z_]\w*)[`\"']?"  # a name without spaces (names with spaces are not checked)
_DOTTED = re.compile(r"[`\"]?\b([A-Za-z_]\w*)[`\"]?\.[`\"]?([A-Za-z_]\w*)\b[`\"]?")
_IN_TABLE = [
    # "is found in" / "can be found in" / "is located in" are how the demo's 1.5B evolver places a column; it hedges
    # too ("is likely found in the Owners table", dog_kennels: abandoned_yn is in Dogs)
    re.compile(rf"(?:the )?(?:column )?{_WORD} (?:column )?"
               r"(?:(?:is|are|can be) (?:likely |probably |usually |typically |also |only |always )?"
               r"(?:stored |found |located |kept )?|(?:likely |probably |usually )?(?:lives|appears|belongs) )?"
               r"(?:in|of|from) "
               rf"(?:the )?(?:table )?{_WORD}(?: table)?\b", re.IGNORECASE),
    re.compile(rf"(?:the )?(?:table )?{_WORD} (?:table )?(?:has|contains|holds|stores) (?:a |an |the )?"
               rf"(?:column )?{_WORD}(?: column)?\b", re.IGNORECASE),
]
_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n")


def contradictions(schema: Schema, values_of: ValuesOf, text: str) -> list[str]:
    """Each statement of `text` the database contradicts, said plainly ([] when none)."""
    found: list[str] = []
    for sentence in filter(None, (s.strip() for s in _SENTENCES.split(text))):
        found += _dotted(schema, sentence) + _placed(schema, sentence) + _values(schema, values_of, sentence)
    return list(dict.fromkeys(found))


def _dotted(schema: Schema, sentence: str) -> list[str]:
    out = []
    for table_word, column_word in _DOTTED.findall(_QUOTED.sub("''", sentence)):
        table = schema.table(table_word)
        if table and schema.column(table, column_word) is None and schema.tables_with(column_word):
            out.append(_not_in(schema, column_word, table))
    return out


def _placed(schema: Schema, sentence: str) -> list[str]:
    out = []
    for i, pattern in enumerate(_IN_TABLE):
        for m in pattern.finditer(sentence):
            column_word, table_word = (m.group(1), m.group(2)) if i == 0 else (m.group(2), m.group(1))
            table = schema.table(table_word)
            holders = schema.tables_with(column_word)
            if table and holders and table not in holders:
                out.append(_not_in(schema, column_word, table))
    return out


def _values(schema: Schema, values_of: ValuesOf, sentence: str) -> list[str]:
    quoted = [v.replace("''", "'") for v in _QUOTED.findall(sentence)]
    if not quoted:
        return []
    bare = _QUOTED.sub(" ", sentence)
    named = {(t, c) for t, cols in schema.columns.items() for c in cols
             if re.search(rf"(?<![\w.]){re.escape(c)}(?!\w)", bare, re.IGNORECASE)}
    if len({c.lower() for _, c in named}) != 1:
        return []
    stored = [values_of(table, column) for table, column in sorted(named)]
    if any(s is None or s.kind != "listed" for s in stored):
        return []  # some column of that name is not listed whole: nothing to check against
    held = {v for s in stored if s is not None for v in s.codes()}
    if any(v in held for v in quoted):
        return []
    table, column = sorted(named)[0]
    listed = ", ".join(v for s in stored if s is not None for v in s.values)
    return [f"{table}.{column} holds no {', '.join(repr(v) for v in quoted)} (its values: {listed})"]


def _not_in(schema: Schema, column: str, table: str) -> str:
    holders = schema.tables_with(column)
    return f"{table} has no column {column} (it is a column of {', '.join(holders)})"
