"""What a wrong query missed about the data: the gold query's comparisons of a column with a value the wrong query
does not have, and how that column stores its values (read from the database, read-only).

The facts request (`request = "facts"`) shows these to the evolver: "the correct query compares category_code
with 'BK'; products.category_code holds only these values: 'EL', 'BK', 'HK', 'SP', 'TY', 'CL', 'BT'" lets a small
evolver write the whole code table, not the one code of the question (a small task model copies a single example
code into questions it does not fit).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from lse_engine.tasks.base import ColumnValues
from lse_engine.tasks.sqlite_exec import ReadOnlyDatabase, quote_ident

CODE_LIST_MAX = 15  # a text column with at most this many distinct values is listed whole
_NAMING = ("name", "title", "label")
_COMPARISONS = ("EQ", "NEQ", "GT", "GTE", "LT", "LTE", "Like", "ILike", "In", "Between", "Glob")


@dataclass(frozen=True)
class MissedValue:
    """A gold comparison the wrong query lacks: `column` (in `table` when known) against `values` as written."""

    column: str
    table: str | None
    values: tuple[str, ...]


def missed_values(predicted: str, gold: str) -> list[MissedValue]:
    """The gold query's column-against-literal comparisons whose literals the predicted query does not write
    (compared as SQL tokens: `'BK'` is not in `'Books'`); one entry per column, in the gold query's order."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(gold, read="sqlite")
        pred_tokens = {t.text for t in sqlglot.tokenize(predicted, read="sqlite")}
    except Exception:
        return []
    aliases = {t.alias_or_name: t.name for t in tree.find_all(exp.Table)}
    kinds = tuple(getattr(exp, k) for k in _COMPARISONS)
    out: dict[str, MissedValue] = {}
    for node in tree.find_all(*kinds):
        columns = [c for c in node.find_all(exp.Column) if c.parent is node or isinstance(c.parent, exp.Paren)]
        literals = [lit for lit in node.find_all(exp.Literal) if lit.find_ancestor(*kinds) is node]
        if len(columns) != 1 or not literals:
            continue
        column = columns[0]
        missing = tuple(lit.sql(dialect="sqlite") for lit in literals if lit.this not in pred_tokens)
        if not missing or column.name in out:
            continue
        table = aliases.get(column.table) if column.table else (next(iter(aliases.values())) if len(aliases) == 1
                                                                else None)
        out[column.name] = MissedValue(column.name, table, missing)
    return list(out.values())


def _columns(db: ReadOnlyDatabase, table: str) -> list[str]:
    return [str(row[1]) for row in db.execute(f"PRAGMA table_info({quote_ident(table)})").rows or []]


def _table_of(db: ReadOnlyDatabase, column: str) -> str | None:
    """The one table that has `column` (None when none or several do)."""
    tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    having = [str(name) for (name,) in tables.rows or [] if column in _columns(db, str(name))]
    return having[0] if len(having) == 1 else None


def describe_values(db: ReadOnlyDatabase, table: str | None, column: str) -> str | None:
    """How `table.column` stores its values, as the clause the evolver reads (`ColumnValues.describe`); None when
    the column cannot be read."""
    found = column_values(db, table, column)
    return found.describe() if found else None


def column_values(db: ReadOnlyDatabase, table: str | None, column: str) -> ColumnValues | None:
    """How `table.column` stores its values: every distinct value of a column of a few (most frequent first; each
    with one row's name when the table names its rows: `'EL' (e.g. 'Wireless Mouse')`), examples of other text,
    or the range of numbers; None when the column cannot be read."""
    table = table or _table_of(db, column)
    columns = _columns(db, table) if table else []
    if not table or column not in columns:  # (SQLite would read an unknown "name" as a string)
        return None
    t, c = quote_ident(table), quote_ident(column)
    named = _name_column(table, [name for name in columns if name != column])
    example = (f", (SELECT x.{quote_ident(named)} FROM {t} AS x WHERE x.{c} = g.{c} AND x.{quote_ident(named)} "
               "IS NOT NULL LIMIT 1)") if named else ""
    counted = db.execute(f"SELECT g.{c}, COUNT(*){example} FROM {t} AS g WHERE g.{c} IS NOT NULL GROUP BY g.{c} "
                         f"ORDER BY COUNT(*) DESC, g.{c} LIMIT {CODE_LIST_MAX + 1}")
    if not counted.ok or not counted.rows:
        return None
    values = [row[0] for row in counted.rows]
    where = f"{table}.{column}"
    if len(values) <= CODE_LIST_MAX and (all(isinstance(v, str) for v in values) or len(values) <= 3):
        examples = tuple(_literal(row[2]) if named and row[2] is not None else "" for row in counted.rows)
        return ColumnValues(where, "listed", tuple(_literal(v) for v in values), examples)
    if all(isinstance(v, str) for v in values):
        return ColumnValues(where, "text", tuple(_literal(v) for v in values[:4]))
    span = db.execute(f"SELECT MIN({c}), MAX({c}) FROM {t}")
    if not span.ok or not span.rows or span.rows[0][0] is None:
        return None
    low, high = span.rows[0]
    return ColumnValues(where, "numbers", (_literal(low), _literal(high)))


def _name_column(table: str, others: list[str]) -> str | None:
    """Among a table's other columns, the one that names its rows (`name`, `title`, `product_name` in
    `products`), if any (a person's `first_name` names no category)."""
    stem = table.lower().removesuffix("s")
    wanted = {*_NAMING, *(f"{stem}_{n}" for n in _NAMING)}
    return next((n for n in others if n.lower() in wanted), None)


def _literal(value: object) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return "'" + text.replace("'", "''") + "'"
    return repr(value)


def _sql_tokens(sql: str) -> list[str]:
    """SQL tokens for comparing two queries: strings quoted and kept as written, the rest upper-cased."""
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.tokens import TokenType

    try:
        tokens = Dialect.get_or_raise("sqlite").tokenizer().tokenize(sql)
    except Exception:
        return sql.upper().split()
    return [f"'{t.text}'" if t.token_type is TokenType.STRING else t.text.upper() for t in tokens]


def query_edits(predicted: str, gold: str) -> list[tuple[str, str]]:
    """Where a wrong query differs from the correct one, as (wrote, should write) pairs ("" for nothing), the
    ones with a value first: `('10', '1000')` (money in cents), `("'Paris'", "'PARIS'")` (capitals) carry
    knowledge about the data; `('CUSTOMER_ID', '*')` is only style."""
    a, b = _sql_tokens(predicted), _sql_tokens(gold)
    edits = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            edits.append((" ".join(a[i1:i2])[:80], " ".join(b[j1:j2])[:80]))
    return sorted(edits, key=lambda e: not has_literal(e[1]))


def has_literal(sql: str) -> bool:
    """True when a piece of SQL holds a string or number literal."""
    return "'" in sql or any(ch.isdigit() for ch in sql)
