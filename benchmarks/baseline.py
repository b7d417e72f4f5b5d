"""The job done by hand: unbatched SQL in one transaction, as a DBA would write it.

Names are unquoted, so the same text runs on SQLite (case-insensitive names) and on PostgreSQL
tables created by a DBA script (names folded to lower case). Previous values go into the tool's
own `setup_tool_previous_value` table (installed before the clock starts), so both sides write
the same rows into the same table with the same indexes.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Integer, bindparam, text
from sqlalchemy.sql.elements import TextClause

NOT_IN_SYNC = 1
UPDATED = 4608  # traveltransactionlog.type of an update
MASS_OPERATION = 2  # traveltransactionlog.flags
UPDATED_COUNT_CAP = 65535


def _invite_rows(p: str) -> str:
    """Rows of meetings with an external participant, registered before :until, unwarned."""
    return f"""
        mother_id <> 0
        AND (cautionWarning = 0 OR cautionWarning IS NULL)
        AND registered < :until
        AND mother_id IN (SELECT x.mother_id FROM {p}appointment x
                          WHERE x.mother_id <> 0 AND x.associate_id = 0
                            AND x.invitedPersonId <> 0)"""


def _next_count(column: str) -> str:
    return (
        f"CASE WHEN {column} >= {UPDATED_COUNT_CAP} THEN {UPDATED_COUNT_CAP} ELSE {column} + 1 END"
    )


def _sql(statement: str, **types: Any) -> TextClause:
    return text(statement).bindparams(
        *(bindparam(name, type_=kind) for name, kind in types.items())
    )


def count_statement(p: str) -> TextClause:
    """The bare COUNT the dry run is compared with."""
    return _sql(f"SELECT COUNT(*) FROM {p}appointment WHERE {_invite_rows(p)}", until=DateTime())


def record_statement(p: str) -> TextClause:
    return _sql(
        f"""INSERT INTO {p}setup_tool_previous_value
              (step_row_id, batch_no, table_name, record_id, inserted, caution_warning, updated,
               updated_associate_id, updated_count, new_updated_count, new_updated)
            SELECT 0, 1, 'appointment', appointment_id, 0, cautionWarning, updated,
                   updated_associate_id, updatedCount, {_next_count("updatedCount")}, :now
            FROM {p}appointment WHERE {_invite_rows(p)}""",
        until=DateTime(),
        now=DateTime(),
    )


def mark_statement(p: str) -> TextClause:
    return _sql(
        f"""UPDATE {p}appointment
            SET cautionWarning = {NOT_IN_SYNC}, updated = :now, updated_associate_id = 0,
                updatedCount = {_next_count("updatedCount")}
            WHERE {_invite_rows(p)}""",
        until=DateTime(),
        now=DateTime(),
    )


def _reserve_statement(p: str) -> TextClause:
    return _sql(
        f"UPDATE {p}sequence SET next_id = next_id + :n "
        f"WHERE lower(TableName) = 'traveltransactionlog'",
        n=Integer(),
    )


def _sequence_statement(p: str) -> TextClause:
    return text(
        f"SELECT s.next_id, (SELECT t.TableNumber FROM {p}sequence t "
        f"WHERE lower(t.TableName) = 'appointment') "
        f"FROM {p}sequence s WHERE lower(s.TableName) = 'traveltransactionlog'"
    )


def _log_statement(p: str) -> TextClause:
    return _sql(
        f"""INSERT INTO {p}traveltransactionlog
              (traveltransactionlog_id, ttime, prev_record_id, type, associate_id, tablenumber,
               record_id, flags, application_id)
            SELECT :first + ROW_NUMBER() OVER (ORDER BY record_id) - 1, :now, 0, {UPDATED}, 0,
                   :table_no, record_id, {MASS_OPERATION}, 0
            FROM {p}setup_tool_previous_value WHERE step_row_id = 0""",
        first=Integer(),
        now=DateTime(),
        table_no=Integer(),
    )


def mark_by_hand(conn: Connection, prefix: str | None, now: datetime, travel: bool) -> int:
    """Record previous values, mark, and (Travel on) log: one transaction; returns rows marked.

    The caller opened the transaction (`engine.begin()`); the commit is part of the job.
    """
    p = f"{prefix}." if prefix else ""
    recorded = conn.execute(record_statement(p), {"until": now, "now": now}).rowcount
    marked = conn.execute(mark_statement(p), {"until": now, "now": now}).rowcount
    if marked != recorded:
        raise RuntimeError(f"baseline recorded {recorded} rows but marked {marked}")
    if travel and marked:
        conn.execute(_reserve_statement(p), {"n": marked})
        next_id, table_no = conn.execute(_sequence_statement(p)).one()
        params = {"first": int(next_id) - marked, "now": now, "table_no": int(table_no)}
        logged = conn.execute(_log_statement(p), params).rowcount
        if logged != marked:
            raise RuntimeError(f"baseline logged {logged} travel rows for {marked} marked")
    return int(marked)


def count_by_hand(conn: Connection, prefix: str | None, until: datetime) -> int:
    p = f"{prefix}." if prefix else ""
    return int(conn.execute(count_statement(p), {"until": until}).scalar_one())


# --- correctness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a run left behind, reduced to comparable fingerprints (sha256 of sorted ids)."""

    marked: int  # rows whose previous value was recorded (= rows changed)
    marked_ids: str
    not_in_sync: int  # rows at cautionWarning = 1 afterwards (marked + already marked)
    not_in_sync_ids: str
    travel_rows: int  # travel log rows about appointments
    travel_ids: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ids(conn: Connection, statement: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    for (record_id,) in conn.execute(text(statement)):
        digest.update(b"%d," % record_id)
        count += 1
    return count, digest.hexdigest()[:16]


def outcome(conn: Connection, prefix: str | None) -> Outcome:
    p = f"{prefix}." if prefix else ""
    marked = _ids(
        conn,
        f"SELECT record_id FROM {p}setup_tool_previous_value "
        f"WHERE table_name = 'appointment' ORDER BY record_id",
    )
    not_in_sync = _ids(
        conn,
        f"SELECT appointment_id FROM {p}appointment "
        f"WHERE cautionWarning = {NOT_IN_SYNC} ORDER BY appointment_id",
    )
    travel = _ids(
        conn,
        f"SELECT record_id FROM {p}traveltransactionlog WHERE type = {UPDATED} "
        f"AND tablenumber = (SELECT TableNumber FROM {p}sequence "
        f"WHERE lower(TableName) = 'appointment') ORDER BY record_id",
    )
    return Outcome(*marked, *not_in_sync, *travel)
