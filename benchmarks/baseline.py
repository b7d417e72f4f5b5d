"""The job done by hand: unbatched SQL in one transaction, as a DBA would write it.

The selection is SPEC step 4, written here as plain SQL text, independently of the tool's query
builders (`setup_tool.invites` is not imported):

- a meeting M is its own row (`appointment_id = M`: a master row, `mother_id = M`, or a plain
  appointment, `mother_id = 0`) plus every row `mother_id = M`;
- M carries a footprint of the invite system when (a) an `invitation` row has
  `appointment_id = M`, (b) a row of M has `SendEmail = 1`, or (c) a row of M has `emailId <> 0`
  and was registered at or after invites-since;
- a meeting whose own row has `recurrenceRuleId = R <> 0` belongs to series R: a footprint on
  any occurrence selects the whole series, registered when its earliest meeting row was, or
  none of it;
- a meeting or series is selected when it was registered in [invites-since, until);
- of the selected meetings the rows with `associate_id <> 0`, `owned_externally` 0 or NULL and
  `cautionWarning` 0 or NULL are marked.

How a DBA makes that fast: one scan of the appointment table finds the footprint meetings (no
index covers `SendEmail` or `emailId`); everything else is a seek. The meetings' own rows are
found on the primary key, a series' occurrences on the index SuperOffice documents on
(recurrenceRuleId, activeDate, ...), and the participant rows on the `mother_id` index. The rows
recorded in `setup_tool_previous_value` are the set the UPDATE and the travel log then work on,
so the selection is computed once.

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

from sqlalchemy import Connection, DateTime, Integer, bindparam, inspect, text
from sqlalchemy.sql.elements import TextClause

from setup_tool.versions import load_known_builds, try_parse_superoffice_version

NOT_IN_SYNC = 1
UPDATED = 4608  # traveltransactionlog.type of an update
MASS_OPERATION = 2  # traveltransactionlog.flags
UPDATED_COUNT_CAP = 65535
FIRST_REAL_DATE = datetime(1901, 1, 1)  # SuperOffice's "empty" dates (1753, 1900) say nothing
BASELINE_STEP = 0  # setup_tool_previous_value.step_row_id of the baseline's rows
_ON = {"1", "true", "yes"}


# --- what the SQL needs to know, read before the clock starts ---------------------------------


@dataclass(frozen=True)
class Shape:
    """One database as the hand-written SQL sees it: optional columns and tables, and the
    window (invites-since and the end of the marking window)."""

    prefix: str | None
    send_email: bool  # appointment.SendEmail exists
    owned_externally: bool  # appointment.owned_externally exists
    recurrence: bool  # appointment.recurrenceRuleId exists
    invitation: bool  # the invitation table exists
    invites_since: datetime | None  # None: undetermined, footprint (c) is not used
    until: datetime

    @property
    def p(self) -> str:
        return f"{self.prefix}." if self.prefix else ""

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"until": self.until}
        if self.invites_since is not None:
            params["since"] = self.invites_since
        return params


def read_shape(conn: Connection, prefix: str | None, now: datetime) -> Shape:
    """The columns and tables there are, invites-since and the window's end (a first run)."""
    inspector = inspect(conn)
    tables = {name.lower() for name in inspector.get_table_names(schema=prefix)}
    columns = {c["name"].lower() for c in inspector.get_columns("appointment", schema=prefix)}
    p = f"{prefix}." if prefix else ""
    invitation = "invitation" in tables
    return Shape(
        prefix=prefix,
        send_email="sendemail" in columns,
        owned_externally="owned_externally" in columns,
        recurrence="recurrenceruleid" in columns,
        invitation=invitation,
        invites_since=_invites_since(conn, p, "productversion" in tables, invitation),
        until=_until(conn, p, now),
    )


def _invites_since(conn: Connection, p: str, versions: bool, invitation: bool) -> datetime | None:
    """The earliest real `registered` of a SuperOffice ProductVersion row at 8.5 R10 or newer,
    or of an invitation row."""
    moments: list[datetime] = []
    if versions:
        known_builds = load_known_builds()
        rows = conn.execute(
            text(
                f"SELECT version, registered FROM {p}productversion "
                f"WHERE lower(ownerName) LIKE '%superoffice%' AND registered >= :real"
            ).columns(registered=DateTime()),
            {"real": FIRST_REAL_DATE},
        )
        for version, registered in rows:
            parsed = try_parse_superoffice_version(version or "", known_builds)
            if parsed is not None and parsed.supports_invites() is True:
                moments.append(registered)
    if invitation:
        first = conn.execute(
            text(
                f"SELECT MIN(registered) AS first FROM {p}invitation WHERE registered >= :real"
            ).columns(first=DateTime()),
            {"real": FIRST_REAL_DATE},
        ).scalar()
        if first is not None:
            moments.append(first)
    return min(moments, default=None)


def _until(conn: Connection, p: str, now: datetime) -> datetime:
    """A first run marks what was registered before the system row said Diary Synchronizer
    Active is on (its `updated` date, else `registered`), else before the run."""
    newest = conn.execute(
        text(
            f"SELECT prefvalue, registered, updated FROM {p}userpreference "
            f"WHERE prefsection = 'Mail' AND prefkey = 'DiarySynchronizerActive' "
            f"AND deflevel = 2 AND owner_id = 0 ORDER BY userpreference_id DESC"
        ).columns(registered=DateTime(), updated=DateTime())
    ).first()
    if newest is None or (newest.prefvalue or "").strip().lower() not in _ON:
        return now
    for moment in (newest.updated, newest.registered):
        if moment is not None and moment >= FIRST_REAL_DATE:
            return moment if moment < now else now
    return now


# --- the selection, as SQL text ---------------------------------------------------------------


def _meeting_row(a: str) -> str:
    """`a` is a meeting's own row: a master row or a plain appointment."""
    return f"({a}.mother_id = {a}.appointment_id OR {a}.mother_id = 0 OR {a}.mother_id IS NULL)"


def _in_window(column: str, shape: Shape) -> str:
    since = f"{column} >= :since AND " if shape.invites_since is not None else ""
    return f"{since}{column} < :until"


def _markable(a: str, shape: Shape) -> str:
    owned = (
        f" AND ({a}.owned_externally = 0 OR {a}.owned_externally IS NULL)"
        if shape.owned_externally
        else ""
    )
    return (
        f"{a}.associate_id <> 0{owned} AND ({a}.cautionWarning = 0 OR {a}.cautionWarning IS NULL)"
    )


def _selected_meetings(shape: Shape) -> str:
    """`WITH` clauses ending in `selected (meeting_id)`: the meetings to mark, one scan."""
    p = shape.p
    by_row = []
    if shape.send_email:
        by_row.append("f.SendEmail = 1")
    if shape.invites_since is not None:
        by_row.append("(f.emailId <> 0 AND f.registered >= :since)")
    sources = []
    if by_row:
        sources.append(
            "SELECT CASE WHEN f.mother_id = 0 OR f.mother_id IS NULL THEN f.appointment_id "
            f"ELSE f.mother_id END FROM {p}appointment f WHERE {' OR '.join(by_row)}"
        )
    if shape.invitation:
        sources.append(f"SELECT i.appointment_id FROM {p}invitation i")
    if not sources:
        sources.append(f"SELECT f.appointment_id FROM {p}appointment f WHERE 1 = 0")
    footprint = "\n            UNION\n            ".join(sources)
    if not shape.recurrence:
        return f"""
        WITH footprint (meeting_id) AS (
            {footprint}
        ),
        selected (meeting_id) AS (
            SELECT m.appointment_id FROM {p}appointment m
            WHERE m.appointment_id IN (SELECT meeting_id FROM footprint)
              AND {_meeting_row("m")} AND {_in_window("m.registered", shape)}
        )"""
    return f"""
        WITH footprint (meeting_id) AS (
            {footprint}
        ),
        meeting AS MATERIALIZED (
            SELECT m.appointment_id, m.recurrenceRuleId, m.registered FROM {p}appointment m
            WHERE m.appointment_id IN (SELECT meeting_id FROM footprint) AND {_meeting_row("m")}
        ),
        series_meeting AS MATERIALIZED (
            SELECT o.appointment_id, o.recurrenceRuleId, o.registered FROM {p}appointment o
            WHERE o.recurrenceRuleId IN (SELECT recurrenceRuleId FROM meeting
                                         WHERE recurrenceRuleId <> 0)
              AND {_meeting_row("o")}
        ),
        selected (meeting_id) AS MATERIALIZED (
            SELECT appointment_id FROM meeting
            WHERE (recurrenceRuleId = 0 OR recurrenceRuleId IS NULL)
              AND {_in_window("registered", shape)}
            UNION ALL
            SELECT appointment_id FROM series_meeting
            WHERE recurrenceRuleId IN (SELECT recurrenceRuleId FROM series_meeting
                                       GROUP BY recurrenceRuleId
                                       HAVING {_in_window("MIN(registered)", shape)})
        )"""


def _rows_to_mark(shape: Shape, columns: str) -> str:
    """`columns` of the rows to mark: the selected meetings' own rows (primary key), then their
    participant rows (`mother_id` index)."""
    p = shape.p
    return f"""
        SELECT {columns} FROM {p}appointment a
        WHERE a.appointment_id IN (SELECT meeting_id FROM selected) AND {_markable("a", shape)}
        UNION ALL
        SELECT {columns} FROM {p}appointment a
        WHERE a.mother_id IN (SELECT meeting_id FROM selected)
          AND a.mother_id <> a.appointment_id AND {_markable("a", shape)}"""


def _next_count(column: str) -> str:
    return (
        f"CASE WHEN {column} >= {UPDATED_COUNT_CAP} THEN {UPDATED_COUNT_CAP} ELSE {column} + 1 END"
    )


def _sql(statement: str, shape: Shape | None = None, **types: Any) -> TextClause:
    if shape is not None:
        types["until"] = DateTime()
        if shape.invites_since is not None:
            types["since"] = DateTime()
    return text(statement).bindparams(
        *(bindparam(name, type_=kind) for name, kind in types.items())
    )


def count_statement(shape: Shape) -> TextClause:
    """The bare COUNT the dry run is compared with: the rows a run would mark."""
    return _sql(
        f"{_selected_meetings(shape)}\n        SELECT COUNT(*) FROM ("
        f"{_rows_to_mark(shape, 'a.appointment_id')}) rows_to_mark",
        shape,
    )


def ids_statement(shape: Shape) -> TextClause:
    """The ids of the rows to mark, for checking the baseline itself."""
    return _sql(f"{_selected_meetings(shape)}{_rows_to_mark(shape, 'a.appointment_id')}", shape)


def record_statement(shape: Shape) -> TextClause:
    """Previous values of every row to mark; they are the set the UPDATE then changes."""
    columns = (
        f"{BASELINE_STEP}, 1, 'appointment', a.appointment_id, 0, a.cautionWarning, a.updated, "
        f"a.updated_associate_id, a.updatedCount, {_next_count('a.updatedCount')}, :now"
    )
    return _sql(
        f"""INSERT INTO {shape.p}setup_tool_previous_value
              (step_row_id, batch_no, table_name, record_id, inserted, caution_warning, updated,
               updated_associate_id, updated_count, new_updated_count, new_updated)
        {_selected_meetings(shape)}
        {_rows_to_mark(shape, columns)}""",
        shape,
        now=DateTime(),
    )


def mark_statement(shape: Shape) -> TextClause:
    """The recorded rows, sought on the primary key (the row conditions kept as a guard)."""
    p = shape.p
    return _sql(
        f"""UPDATE {p}appointment
            SET cautionWarning = {NOT_IN_SYNC}, updated = :now, updated_associate_id = 0,
                updatedCount = {_next_count("updatedCount")}
            WHERE appointment_id IN (SELECT record_id FROM {p}setup_tool_previous_value
                                     WHERE step_row_id = {BASELINE_STEP}
                                       AND table_name = 'appointment')
              AND (cautionWarning = 0 OR cautionWarning IS NULL)""",
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
            FROM {p}setup_tool_previous_value WHERE step_row_id = {BASELINE_STEP}""",
        first=Integer(),
        now=DateTime(),
        table_no=Integer(),
    )


def mark_by_hand(conn: Connection, shape: Shape, now: datetime, travel: bool) -> int:
    """Record previous values, mark, and (Travel on) log: one transaction; returns rows marked.

    The caller opened the transaction (`engine.begin()`); the commit is part of the job.
    """
    p = shape.p
    recorded = conn.execute(record_statement(shape), {**shape.params(), "now": now}).rowcount
    marked = conn.execute(mark_statement(shape), {"now": now}).rowcount
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


def count_by_hand(conn: Connection, shape: Shape) -> int:
    return int(conn.execute(count_statement(shape), shape.params()).scalar_one())


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
