"""The SQL constructs that differ between SQLite and PostgreSQL: INSERT ... ON CONFLICT, and
reading a JSON array column as rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, cast, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.selectable import NamedFromClause


def insert_for(connection: AsyncConnection, table: Table) -> Any:
    """An INSERT that supports `on_conflict_do_nothing` / `_do_update` on this connection."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def json_elements(connection: AsyncConnection, column: ColumnElement[Any]) -> NamedFromClause:
    """The text elements of a JSON array column, one row each (column `value`), to join to the
    row that holds the column: `json_each` on SQLite, a LATERAL `jsonb_array_elements_text` on
    PostgreSQL."""
    if connection.dialect.name == "postgresql":
        return (
            func.jsonb_array_elements_text(cast(column, postgresql.JSONB))
            .table_valued("value")
            .lateral("elements")
        )
    return func.json_each(column).table_valued("value").alias("elements")
