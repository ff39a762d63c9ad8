"""What a wrong SQL answer got wrong, computed from the database and the gold query (nothing fitted to one
database): a column looked up in the wrong table (which table holds it, and the join path from the tables the
query used), a table that does not exist (the ones that do), and a result of the wrong shape (rows and columns
against the gold result's, with what the gold query does that the wrong one does not: aggregate, group, order,
limit, distinct). `SQLiteTask.findings` puts these beside the value findings of `sql_values`."""

from __future__ import annotations

import difflib
import re

from lse_engine.tasks.base import Finding, Outcome
from lse_engine.tasks.sql_schema import Schema

_NO_SUCH = re.compile(r"no such (column|table): ([^\s,;)]+)", re.IGNORECASE)
_AGGREGATES = ("Count", "Sum", "Avg", "Min", "Max")


def query_tables(schema: Schema, sql: str) -> list[str]:
    """The schema's tables a query reads (as written in the schema), in the order it names them."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except Exception:
        words = re.findall(r"(?:from|join)\s+[`\"\[]?(\w+)", sql, re.IGNORECASE)
        return list(dict.fromkeys(t for t in (schema.table(w) for w in words) if t))
    return list(dict.fromkeys(t for t in (schema.table(x.name) for x in tree.find_all(exp.Table)) if t))


def misplaced(schema: Schema, outcome: Outcome, gold: str) -> Finding | None:
    """For "no such column" / "no such table": where the name really is (or what exists), computed."""
    m = _NO_SUCH.search(outcome.error or "")
    if not m or not outcome.answer:
        return None
    what, name = m.group(1).lower(), m.group(2).strip("`\"[]'")
    if what == "table":
        close = difflib.get_close_matches(name, list(schema.columns), n=3, cutoff=0.0)
        return Finding("table", f"there is no table {name}; the closest tables are {', '.join(close)}",
                       column=name)
    column = name.rsplit(".", 1)[-1]
    used = query_tables(schema, outcome.answer)
    holders = schema.tables_with(column)
    if not holders:
        every = [c for cols in schema.columns.values() for c in cols]
        close = difflib.get_close_matches(column, every, n=3, cutoff=0.5)
        hint = f"; columns with similar names: {', '.join(dict.fromkeys(close))}" if close else ""
        return Finding("column", f"no table has a column named {column}{hint}", column=column)
    in_gold = [t for t in holders if t in query_tables(schema, gold)]
    target = (in_gold or [t for t in holders if t not in used] or holders)[0]
    real = schema.column(target, column) or column
    path = schema.join_path(used, target) if used else None
    where = f"the query reads {', '.join(used)}" if used else "the query names no table"
    if path:
        joins = " and ".join(link.sql() for link in path)
        text = f"{real} is a column of {target}, not of the tables the query used ({where}); join {joins}"
    elif path == []:
        text = f"{real} is a column of {target} (the query reads it, under another name or alias)"
    else:
        text = f"{real} is a column of {target} ({where}; no key links them)"
    return Finding("column", text, column=real, values=(target,))


def unquoted(schema: Schema, outcome: Outcome) -> Finding | None:
    """Names of the database that need quoting (spaces, punctuation: `Sales Orders`) written bare in a query that
    failed: how the schema writes them."""
    if outcome.error_kind not in ("syntax", "no_such_table", "no_such_column") or not outcome.answer:
        return None
    sql = outcome.answer
    bare = []
    for name in sorted(schema.names_as_written(), key=len, reverse=True):
        if _PLAIN.fullmatch(name):
            continue
        for m in re.finditer(re.escape(name), sql, re.IGNORECASE):
            before = sql[m.start() - 1] if m.start() else ""
            if before not in "`\"[":
                bare.append(name)
                break
    if not bare:
        return None
    shown = ", ".join(f"`{n}`" for n in dict.fromkeys(bare))
    return Finding("quoting", f"names with spaces or punctuation must be quoted as the schema quotes them: {shown}")


_PLAIN = re.compile(r"[A-Za-z_]\w*")


def result_shape(outcome: Outcome, gold: str) -> Finding | None:
    """For a wrong result: its shape against the gold result's, and what the gold query does that the wrong
    one does not (aggregation, grouping, ordering, a limit, distinct rows)."""
    if outcome.error_kind != "wrong_result" or outcome.result_rows is None or outcome.expected_rows is None:
        return None
    got = _shape(outcome.result_rows, outcome.result_cols)
    want = _shape(outcome.expected_rows, outcome.expected_cols)
    differs = _structure(outcome.answer or "", gold)
    if got == want and not differs:
        return None
    text = f"the correct result has {want}" + (f", the model's {got}" if got != want else ", as the model's")
    if differs:
        text += "; the correct query " + ", ".join(differs) + " where the wrong one does not"
    return Finding("shape", text)


def _shape(rows: int, cols: int | None) -> str:
    return f"{rows} row{'s' * (rows != 1)}" + (f" × {cols} column{'s' * (cols != 1)}" if cols is not None else "")


def _structure(predicted: str, gold: str) -> list[str]:
    """What the gold query's top-level SELECT does that the predicted one does not."""
    import sqlglot
    from sqlglot import exp

    try:
        g, p = sqlglot.parse_one(gold, read="sqlite"), sqlglot.parse_one(predicted, read="sqlite")
    except Exception:
        return []

    def aggregates(tree: exp.Expr) -> set[str]:
        return {type(a).__name__.upper() for a in tree.find_all(*(getattr(exp, n) for n in _AGGREGATES))}

    out = []
    missing = sorted(aggregates(g) - aggregates(p))
    if missing:
        out.append(f"aggregates with {', '.join(missing)}")
    for key, words in (("group", "groups rows (GROUP BY)"), ("order", "orders rows (ORDER BY)"),
                       ("limit", "limits rows (LIMIT)"), ("distinct", "keeps distinct rows (DISTINCT)")):
        if g.args.get(key) and not p.args.get(key):
            out.append(words)
    return out
