"""New SuperOffice row ids, taken from the `sequence` table the way SuperOffice itself does."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, Update, func, select, update

from setup_tool.errors import SetupToolError
from setup_tool.schema import SuperOfficeTables


def reserve_ids_statement(
    tables: SuperOfficeTables, table_name: str, count: int | ColumnElement[int]
) -> Update:
    seq = tables.sequence
    return (
        update(seq)
        .where(func.lower(seq.c.TableName) == table_name.lower())
        .values(next_id=seq.c.next_id + count)
    )


def reserve_ids(conn: Connection, tables: SuperOfficeTables, table_name: str, count: int) -> int:
    """Reserve `count` ids for `table_name` inside the caller's transaction; returns the first.

    Update first, then select: the update's row lock makes the reservation ours alone. The row is
    found by TableName, never by a hard-coded id, and is never inserted or deleted.
    """
    result = conn.execute(reserve_ids_statement(tables, table_name, count))
    if result.rowcount != 1:
        raise SetupToolError(
            f"The sequence table has {result.rowcount} rows for table {table_name!r}; "
            "expected exactly one.",
            "This database's id bookkeeping is damaged; ask SuperOffice support before going on.",
        )
    seq = tables.sequence
    next_id = conn.execute(
        select(seq.c.next_id).where(func.lower(seq.c.TableName) == table_name.lower())
    ).scalar_one()
    return int(next_id) - count


def table_number(conn: Connection, tables: SuperOfficeTables, table_name: str) -> int:
    seq = tables.sequence
    number = conn.execute(
        select(seq.c.TableNumber).where(func.lower(seq.c.TableName) == table_name.lower())
    ).scalar()
    if number is None:
        raise SetupToolError(
            f"The sequence table has no row for {table_name!r}, so its table number for the "
            "travel transaction log is unknown."
        )
    return int(number)
