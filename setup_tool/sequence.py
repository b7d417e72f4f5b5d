"""New SuperOffice row ids, taken from the `sequence` table the way SuperOffice itself does."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Update, func, select, update

from setup_tool.errors import BlockedError
from setup_tool.schema import SuperOfficeTables

REPAIR_HINT = (
    "SuperOffice hands out the ids of new rows from its sequence table, one row per table "
    "(TableName, next_id, TableNumber); setup-tool never adds or removes such rows. Ask "
    "SuperOffice support to repair the sequence table, then run again."
)


class SequenceRowError(BlockedError):
    """SuperOffice's sequence table lacks the row for a table (or has it more than once)."""

    def __init__(self, table_name: str, rows: int, purpose: str) -> None:
        super().__init__(sequence_problem(table_name, rows, purpose), REPAIR_HINT)
        self.table_name = table_name
        self.rows = rows


def sequence_problem(table_name: str, rows: int, purpose: str) -> str:
    """One sentence: what is wrong with `table_name`'s row in `sequence`, and what it is for."""
    if rows == 0:
        found = f"SuperOffice's sequence table lacks a row for the table {table_name}"
    else:
        found = (
            f"SuperOffice's sequence table has {rows} rows for the table {table_name} "
            "instead of exactly one"
        )
    return f"{found} (TableName = '{table_name}'), so {purpose}."


def sequence_rows(conn: Connection, tables: SuperOfficeTables, table_name: str) -> int:
    """How many rows `sequence` has for `table_name` (matched case-insensitively, as ever)."""
    seq = tables.sequence
    count = conn.execute(
        select(func.count()).where(func.lower(seq.c.TableName) == table_name.lower())
    ).scalar_one()
    return int(count)


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
        raise SequenceRowError(
            table_name,
            result.rowcount,
            f"new {table_name} rows cannot get ids SuperOffice will respect; the change in "
            "progress was rolled back",
        )
    return int(conn.execute(first_reserved_id_query(tables, table_name, count)).scalar_one())


def first_reserved_id_query(
    tables: SuperOfficeTables, table_name: str, count: int | ColumnElement[int]
) -> Select[Any]:
    """After `reserve_ids_statement` in the same transaction: the first of the `count` ids it
    reserved (next_id has moved past them)."""
    seq = tables.sequence
    return select(seq.c.next_id - count).where(func.lower(seq.c.TableName) == table_name.lower())


def table_number(conn: Connection, tables: SuperOfficeTables, table_name: str) -> int:
    seq = tables.sequence
    number = conn.execute(
        select(seq.c.TableNumber).where(func.lower(seq.c.TableName) == table_name.lower())
    ).scalar()
    if number is None:
        raise SequenceRowError(
            table_name,
            0,
            f"the travel transaction log cannot say which table ({table_name}) a change was "
            "made in",
        )
    return int(number)
