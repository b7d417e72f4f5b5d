"""Telling Travel (and satellites, and synchronizers that depend on it) what the tool changed.

SuperOffice's own layers write a traveltransactionlog row for every change; a direct SQL write does
not, so when Travel is on the tool writes them itself: one row per changed record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Insert, Select, func, literal, select

from setup_tool.errors import SetupToolError
from setup_tool.schema import SuperOfficeTables
from setup_tool.sequence import reserve_ids, table_number
from setup_tool.steps import SqlValue, sql_value

INSERTED = 4352
UPDATED = 4608
DELETED = 4864
MASS_OPERATION = 2


def _log_table(tables: SuperOfficeTables):  # type: ignore[no-untyped-def]
    if tables.traveltransactionlog is None:
        raise SetupToolError(
            "Travel is on, but the database has no traveltransactionlog table to record changes in."
        )
    return tables.traveltransactionlog


def log_changes_statement(
    tables: SuperOfficeTables,
    record_ids: Select[tuple[int]],
    *,
    first_id: SqlValue,
    kind: int,
    table_no: int,
    associate_id: int,
    now: SqlValue,
) -> Insert:
    """INSERT ... SELECT one log row per record id, numbered from first_id in record order."""
    log = _log_table(tables)
    ids = record_ids.subquery("changed")
    record = ids.c[0]
    numbered = select(
        (sql_value(first_id) + func.row_number().over(order_by=record) - 1),
        sql_value(now),
        literal(0),
        literal(kind),
        literal(associate_id),
        literal(table_no),
        record,
        literal(MASS_OPERATION),
        literal(0),
    )
    columns = [
        "traveltransactionlog_id",
        "ttime",
        "prev_record_id",
        "type",
        "associate_id",
        "tablenumber",
        "record_id",
        "flags",
        "application_id",
    ]
    insert = log.insert().from_select([log.c[name] for name in columns], numbered)
    logged: Insert = insert.execution_options(preserve_rowcount=True)
    return logged


def log_changes(
    conn: Connection,
    tables: SuperOfficeTables,
    table_name: str,
    record_ids: Select[tuple[int]],
    count: int,
    *,
    kind: int,
    associate_id: int,
    now: datetime,
) -> None:
    if count == 0:
        return
    first_id = reserve_ids(conn, tables, "traveltransactionlog", count)
    statement = log_changes_statement(
        tables,
        record_ids,
        first_id=first_id,
        kind=kind,
        table_no=table_number(conn, tables, table_name),
        associate_id=associate_id,
        now=now,
    )
    inserted = conn.execute(statement).rowcount
    if inserted != count:
        raise SetupToolError(f"Expected {count} travel log rows, wrote {inserted}; rolled back.")
