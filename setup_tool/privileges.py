"""Before the first write: does this login have every right the plan needs? Say which is missing.

A login with only SELECT rights must be stopped before anything changes, with a message a DBA can
act on, rather than fail half-way with a driver error.
"""

from __future__ import annotations

import os

from sqlalchemy import Connection, Table, text

from setup_tool.database import Database
from setup_tool.dialects import DatabaseDialect, dialect_of
from setup_tool.errors import BlockedError

Need = tuple[Table, str]  # (table, "SELECT" | "INSERT" | "UPDATE" | "DELETE")


def _qualified(table: Table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


def missing_rights(
    db: Database, conn: Connection, needs: list[Need], create_tables: bool
) -> list[str]:
    """The rights the login lacks, as 'UPDATE on crm7.appointment' phrases."""
    dialect = dialect_of(db.engine)
    if dialect.is_file:  # a file has no logins: the right to write it is all there is
        path = dialect.database_file(db.url)
        writable = path is None or os.access(path, os.W_OK)
        return [] if writable else [f"write access to the file {path}"]
    missing = [
        f"{right} on {_qualified(table)}"
        for table, right in needs
        if not _has(conn, dialect, _qualified(table), right)
    ]
    if create_tables and not _can_create(conn, dialect, db.schema):
        where = f"schema {db.schema}" if db.schema else "the database"
        missing.append(f"CREATE TABLE in {where} (for setup-tool's own setup_tool_* tables)")
    return missing


def _has(conn: Connection, dialect: DatabaseDialect, table: str, right: str) -> bool:
    if dialect.table_right_sql is None:
        return True  # unknown engine: let the database itself answer at the first write
    query = text(dialect.table_right_sql)
    return bool(conn.execute(query, {"table": table, "right": right}).scalar())


def _can_create(conn: Connection, dialect: DatabaseDialect, schema: str | None) -> bool:
    asked = dialect.create_table_query(schema)
    if asked is None:
        return True
    query, params = asked
    return bool(conn.execute(text(query), params).scalar())


def require_rights(db: Database, conn: Connection, needs: list[Need], create_tables: bool) -> None:
    missing = missing_rights(db, conn, needs, create_tables)
    if missing:
        raise BlockedError(
            f"The login cannot make this upgrade's changes; it lacks: {'; '.join(missing)}. "
            "Nothing was changed.",
            "Run as a login with these rights (e.g. the SuperOffice database owner), or ask "
            "the DBA to grant them. A dry run (--dry-run) works with read rights only.",
        )
