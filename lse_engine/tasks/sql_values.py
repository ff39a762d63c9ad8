"""What a wrong query missed about the data: the gold query's comparisons of a column with a value the wrong query
does not have, and how that column stores its values (read from the database, read-only).

The facts request (`request = "facts"`) shows these to the evolver: "the correct query compares category_code
with 'BK'; products.category_code holds only these values: 'EL', 'BK', 'HK', 'SP', 'TY', 'CL', 'BT'" lets a small
evolver write the whole code table, not the one code of the question (a small task model copies a single example
code into questions it does not fit).
"""

from __future__ import annotations

from dataclasses import dataclass

from lse_engine.tasks.sqlite_exec import ReadOnlyDatabase

CODE_LIST_MAX = 15  # a text column with at most this many distinct values is listed whole
_NAMING = ("name", "title", "label")
_COMPARISONS = ("EQ", "NEQ", "GT", "GTE", "LT", "LTE", "Like", "ILike", "In", "Between", "Glob")


@dataclass(frozen=True)
class MissedValue:
    """A gold comparison the wrong query lacks: `column` (in `table` when known) against `values` as written."""

    column: str
    table: str | None
    values: tuple[str, ...]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
    return [str(row[1]) for row in db.execute(f"PRAGMA table_info({_quote(table)})").rows or []]


def _table_of(db: ReadOnlyDatabase, column: str) -> str | None:
    """The one table that has `column` (None when none or several do)."""
    tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    having = [str(name) for (name,) in tables.rows or [] if column in _columns(db, str(name))]
    return having[0] if len(having) == 1 else None


def describe_values(db: ReadOnlyDatabase, table: str | None, column: str) -> str | None:
    """How `table.column` stores its values, as a clause: "holds only these values: 'D', 'S', 'C'" for a column
    of a few distinct values (most frequent first), "holds values such as 'NEW YORK', 'OSLO'" for other text,
    "holds numbers from 499 to 29900" for numbers; None when the column cannot be read."""
    table = table or _table_of(db, column)
    if not table or column not in _columns(db, table):  # (SQLite would read an unknown "name" as a string)
        return None
    t, c = _quote(table), _quote(column)
    counted = db.execute(f"SELECT {c}, COUNT(*) FROM {t} WHERE {c} IS NOT NULL GROUP BY {c} ORDER BY COUNT(*) DESC, "
                         f"{c} LIMIT {CODE_LIST_MAX + 1}")
    if not counted.ok or not counted.rows:
        return None
    values = [row[0] for row in counted.rows]
    where = f"{table}.{column}"
    if len(values) <= CODE_LIST_MAX and (all(isinstance(v, str) for v in values) or len(values) <= 3):
        named = _name_column(db, table, column)
        shown = [_literal(v) + _example_name(db, t, c, named, v) for v in values]
        return f"{where} holds only these values: " + ", ".join(shown)
    if all(isinstance(v, str) for v in values):
        return f"{where} holds values such as " + ", ".join(_literal(v) for v in values[:4])
    span = db.execute(f"SELECT MIN({c}), MAX({c}) FROM {t}")
    if not span.ok or not span.rows or span.rows[0][0] is None:
        return None
    low, high = span.rows[0]
    return f"{where} holds numbers from {_literal(low)} to {_literal(high)}"


def _name_column(db: ReadOnlyDatabase, table: str, column: str) -> str | None:
    """The table's column that names its rows (`name`, `title`, `product_name` in `products`), if it has one (a
    person's `first_name` names no category)."""
    names = [name for name in _columns(db, table) if name != column]
    stem = table.lower().removesuffix("s")
    wanted = {*_NAMING, *(f"{stem}_{n}" for n in _NAMING)}
    return next((n for n in names if n.lower() in wanted), None)


def _example_name(db: ReadOnlyDatabase, t: str, c: str, named: str | None, value: object) -> str:
    """` (e.g. 'Wireless Mouse')`: one row's name for a code, so a reader can tell what the code stands for."""
    if not named:
        return ""
    row = db.execute(f"SELECT {_quote(named)} FROM {t} WHERE {c} = {_literal(value)} AND {_quote(named)} IS NOT NULL "
                     "LIMIT 1")
    return f" (e.g. {_literal(row.rows[0][0])})" if row.ok and row.rows else ""


def _literal(value: object) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return "'" + text.replace("'", "''") + "'"
    return repr(value)
