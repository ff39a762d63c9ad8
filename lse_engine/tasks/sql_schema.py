"""A database's tables, columns and keys, read once (read-only), and the join paths between tables: what the
feedback on a wrong query and the check of an edit's claims are computed from."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from lse_engine.tasks.sqlite_exec import ReadOnlyDatabase, quote_ident


@dataclass(frozen=True)
class Link:
    """Two tables joined on a column each (`kind`: a declared foreign key, or columns that share a key's name)."""

    left: str
    left_column: str
    right: str
    right_column: str
    kind: str  # foreign key | same name

    def sql(self) -> str:
        return f"{self.left}.{self.left_column} = {self.right}.{self.right_column}"


@dataclass
class Schema:
    """Tables (as written) with their columns (as written), primary keys and foreign keys."""

    columns: dict[str, list[str]] = field(default_factory=dict)
    keys: dict[str, list[str]] = field(default_factory=dict)  # table → primary key columns
    foreign: list[Link] = field(default_factory=list)

    @classmethod
    def read(cls, db: ReadOnlyDatabase) -> Schema:
        schema = cls()
        found = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                           "ORDER BY rowid")
        for (name,) in found.rows or []:
            table = str(name)
            info = db.execute(f"PRAGMA table_info({quote_ident(table)})").rows or []
            schema.columns[table] = [str(row[1]) for row in info]
            schema.keys[table] = [str(row[1]) for row in sorted(info, key=lambda r: r[5]) if row[5]]
            for fk in db.execute(f"PRAGMA foreign_key_list({quote_ident(table)})").rows or []:
                target = str(fk[2])
                target_column = str(fk[4]) if fk[4] else None
                schema.foreign.append(Link(table, str(fk[3]), target, target_column or "", "foreign key"))
        schema.foreign = [  # a key given without its column names the target's primary key
            link if link.right_column else
            Link(link.left, link.left_column, link.right, (schema.keys.get(link.right) or ["rowid"])[0], link.kind)
            for link in schema.foreign]
        return schema

    def table(self, name: str) -> str | None:
        """The table called `name` (any case), as written in the schema."""
        return next((t for t in self.columns if t.lower() == name.lower()), None)

    def tables_with(self, column: str) -> list[str]:
        """The tables that have a column called `column` (any case)."""
        return [t for t, cols in self.columns.items() if any(c.lower() == column.lower() for c in cols)]

    def column(self, table: str, name: str) -> str | None:
        """`table`'s column called `name` (any case), as written."""
        return next((c for c in self.columns.get(table, []) if c.lower() == name.lower()), None)

    def names_as_written(self) -> set[str]:
        """Every table and column name as the schema writes it."""
        return {n for t, cols in self.columns.items() for n in (t, *cols)}

    def names(self) -> set[str]:
        """Every table and column name, lower-cased."""
        return {n.lower() for t, cols in self.columns.items() for n in (t, *cols)}

    def links(self) -> list[Link]:
        """Declared foreign keys; without any, columns that share the name of a table's one-column key when no
        other table's key has that name (`customer_id` in two tables, one of which has it as its primary key; not
        `id`), both ways."""
        links = list(self.foreign)
        if not links:
            named = [key[0] for key in self.keys.values() if len(key) == 1]
            for table, key in self.keys.items():  # a key's name that is no other table's key: `customer_id`, not `id`
                if len(key) != 1 or named.count(key[0]) != 1:
                    continue
                for other, cols in self.columns.items():
                    if other != table and key[0] in cols:
                        links.append(Link(other, key[0], table, key[0], "same name"))
        return links + [Link(x.right, x.right_column, x.left, x.left_column, x.kind) for x in links]

    def join_path(self, start: list[str], target: str) -> list[Link] | None:
        """The shortest chain of joins from any table of `start` to `target` ([] when `target` is in `start`;
        None when none connects them)."""
        if target in start:
            return []
        edges: dict[str, list[Link]] = {}
        for link in self.links():
            edges.setdefault(link.left, []).append(link)
        queue: deque[tuple[str, list[Link]]] = deque((table, []) for table in start if table in self.columns)
        seen = set(start)
        while queue:
            table, path = queue.popleft()
            for link in edges.get(table, []):
                if link.right in seen:
                    continue
                if link.right == target:
                    return [*path, link]
                seen.add(link.right)
                queue.append((link.right, [*path, link]))
        return None
