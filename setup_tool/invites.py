"""Which appointments are invite appointments, and which of them a run marks (SPEC step 4).

A meeting M is its own row (`appointment_id = M`, a master row `mother_id = M` or a plain
appointment `mother_id = 0`) plus every row `mother_id = M`. External participant rows exist
since long before SuperOffice invites (SDK trace, SUPEROFFICE.md), so a meeting counts as an
invite meeting only when it carries a footprint of the invite system:

- (a) "invitation": an `invitation` row with `appointment_id = M` (SuperOffice dictionary
  "invitation" step 1: "invitations (iCal) leading to appointments");
- (b) "send-email": a row of M with `SendEmail = 1` (where the column exists);
- (c) "email-id": a row of M with `emailId <> 0` registered at or after invites-since; `emailId`
  is older than invites, so before that moment it is no evidence.

A footprint on any occurrence of a recurring meeting (same `recurrenceRuleId <> 0`) makes the whole
series an invite meeting; the series is registered when its earliest occurrence was, and is marked
whole or not at all. An invite meeting is selected when it was registered at or after
invites-since and inside the marking window (while Diary Synchronizer Active was not on). Of a
selected meeting, the rows in an associate's diary, not owned by Outlook/Google and without a
caution warning are marked.

Everything here is SQL built once: the footprint meetings and the flagged invite meetings are
common table expressions that PostgreSQL and SQLite materialize (one scan of the appointment
table), and every row of them is reached from the small meeting set through the primary key, the
`mother_id` index and the (recurrenceRuleId, ...) index that SOD documents for the appointment
table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    CompoundSelect,
    Integer,
    Select,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql import FromClause

from setup_tool.findings import MarkingWindow
from setup_tool.schema import SuperOfficeTables

INVITATION, SEND_EMAIL, EMAIL_ID = "invitation", "send-email", "email-id"
FOOTPRINTS: dict[str, str] = {
    INVITATION: "(a) an invitation row for the meeting",
    SEND_EMAIL: "(b) a row with SendEmail = 1",
    EMAIL_ID: "(c) a row with emailId <> 0 registered at or after invites-since",
}
ALL_FOOTPRINTS = frozenset(FOOTPRINTS)
NOT_IN_SYNC = 1  # AppointmentCautionWarning.NotInSync
EMPTY_DATE_BEFORE = datetime(1901, 1, 1)  # SuperOffice's "empty" 1753/1900 dates are no evidence


@dataclass(frozen=True)
class Selection:
    """What decides which rows a marking marks: the footprints that count, since when invites
    exist, and the window in which the preference was not on."""

    window: MarkingWindow
    invites_since: datetime | None
    footprints: frozenset[str] = ALL_FOOTPRINTS

    @property
    def start(self) -> datetime | None:
        """Meetings registered before this are not marked: the later of the two starts."""
        starts = [s for s in (self.window.start, self.invites_since) if s is not None]
        return max(starts, default=None)

    def usable(self, tables: SuperOfficeTables) -> list[str]:
        """The chosen footprints this database can show, in SPEC order."""
        usable = []
        if INVITATION in self.footprints and tables.invitation is not None:
            usable.append(INVITATION)
        if SEND_EMAIL in self.footprints and "SendEmail" in tables.appointment.c:
            usable.append(SEND_EMAIL)
        if EMAIL_ID in self.footprints and self.invites_since is not None:
            usable.append(EMAIL_ID)
        return usable

    def describe(self) -> str:
        start = self.start
        since = f"{start:%Y-%m-%d %H:%M:%S}" if start else "the beginning"
        return f"registered from {since} until {self.window.until:%Y-%m-%d %H:%M:%S} UTC"


def parse_footprints(text: str) -> frozenset[str]:
    """`invitation,send-email` -> the set; raises ValueError naming the valid choices."""
    chosen = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = sorted(chosen - ALL_FOOTPRINTS)
    if unknown or not chosen:
        raise ValueError(
            f"unknown footprint {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(FOOTPRINTS)}"
        )
    return chosen


# --- the sets, as SQL -------------------------------------------------------------------------


def meeting_of(row: FromClause) -> ColumnElement[Any]:
    """The meeting a row belongs to: its mother, or itself when it is a plain appointment."""
    return case(
        (func.coalesce(row.c.mother_id, 0) == 0, row.c.appointment_id), else_=row.c.mother_id
    )


def is_meeting_row(row: FromClause) -> ColumnElement[bool]:
    """The meeting's own row: a master (`mother_id` = own id) or a plain appointment."""
    return or_(
        row.c.mother_id == row.c.appointment_id,
        row.c.mother_id == 0,
        row.c.mother_id.is_(None),
    )


def series_of(row: FromClause) -> ColumnElement[Any]:
    return func.coalesce(row.c.recurrenceRuleId, 0)


@dataclass(frozen=True)
class InviteSets:
    """The invite meetings of one database under one selection, as composable SELECTs."""

    tables: SuperOfficeTables
    selection: Selection
    footprints: CTE  # (meeting_id, by_invitation, by_send_email, by_email_id)

    @property
    def has_series(self) -> bool:
        return "recurrenceRuleId" in self.tables.appointment.c

    def footprint_meetings(self) -> Select[Any]:
        return select(self.footprints.c.meeting_id)

    def _own_rows(self, name: str) -> FromClause:
        return self.tables.appointment.alias(name)

    def footprint_series(self) -> Select[Any]:
        """Recurrence rules with a footprint on any occurrence."""
        m = self._own_rows("fp_master")
        return select(m.c.recurrenceRuleId).where(
            m.c.appointment_id.in_(self.footprint_meetings()),
            is_meeting_row(m),
            m.c.recurrenceRuleId != 0,
        )

    def flagged_meetings(self) -> CTE:
        """Every invite meeting once, with whether the selection marks it and the footprints
        it carries itself: (meeting_id, selected, by_invitation, by_send_email, by_email_id).

        A meeting on its own is selected by its registration time; every meeting of a series
        by its series' first registration time (whole or not at all). Driven by the footprint
        set, so each meeting row is a seek on the primary key."""
        fp = self.footprints
        flags = [fp.c[column] for column in FLAG_COLUMNS.values()]
        m = self._own_rows("single")
        single = (
            select(
                m.c.appointment_id.label("meeting_id"),
                _selected(self._registered_in_window(m.c.registered)),
                *flags,
            )
            .select_from(fp.join(m, m.c.appointment_id == fp.c.meeting_id))
            .where(is_meeting_row(m))
        )
        if not self.has_series:
            return materialized(single.cte("flagged_meetings"))
        single = single.where(series_of(m) == 0)
        return materialized(union_all(single, self._series_meetings()).cte("flagged_meetings"))

    def _series_meetings(self) -> Select[Any]:
        """Every meeting of a series with a footprint: the series' selection, its own flags."""
        fp = self.footprints
        first = self._own_rows("series_first")
        series = (
            select(
                first.c.recurrenceRuleId,
                _selected(self._registered_in_window(func.min(first.c.registered))),
            )
            .where(first.c.recurrenceRuleId.in_(self.footprint_series()), is_meeting_row(first))
            .group_by(first.c.recurrenceRuleId)
            .subquery("flagged_series")
        )
        o = self._own_rows("occurrence")
        no_flags = [literal(0, Integer).label(name) for name in FLAG_COLUMNS.values()]
        occurrences = (
            select(o.c.appointment_id.label("meeting_id"), series.c.selected, *no_flags)
            .select_from(o.join(series, o.c.recurrenceRuleId == series.c.recurrenceRuleId))
            # Said again although the join implies it: PostgreSQL then leaves the most common
            # value (0, no series) out of its estimate and seeks the few series' meetings.
            .where(is_meeting_row(o), o.c.recurrenceRuleId != 0)
        )
        # The flags of the series' meetings that carry a footprint themselves, found from the
        # footprint side (no lookup into a CTE, which SQLite cannot index).
        f = self._own_rows("flagged_occurrence")
        carried = (
            select(
                f.c.appointment_id.label("meeting_id"),
                literal(0, Integer).label("selected"),
                *[fp.c[column] for column in FLAG_COLUMNS.values()],
            )
            .select_from(fp.join(f, f.c.appointment_id == fp.c.meeting_id))
            .where(is_meeting_row(f), f.c.recurrenceRuleId != 0)
        )
        both = union_all(occurrences, carried).subquery("series_meetings")
        return select(
            both.c.meeting_id,
            func.max(both.c.selected).label("selected"),
            *[func.max(both.c[name]).label(name) for name in FLAG_COLUMNS.values()],
        ).group_by(both.c.meeting_id)

    def _registered_in_window(self, registered: ColumnElement[Any]) -> ColumnElement[bool]:
        window = self.selection.window
        until = window.until if window.until_sql is None else window.until_sql
        condition = registered < until
        start = self.selection.start
        if start is not None:
            condition = and_(registered >= start, condition)
        return condition


# footprint kind -> its column in InviteSets.footprints
FLAG_COLUMNS = {INVITATION: "by_invitation", SEND_EMAIL: "by_send_email", EMAIL_ID: "by_email_id"}


def _selected(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0).label("selected")


def materialized(cte: CTE) -> CTE:
    """Computed once per statement however often it is referenced (SQLite, PostgreSQL)."""
    return cte.prefix_with("MATERIALIZED", dialect="postgresql").prefix_with(
        "MATERIALIZED", dialect="sqlite"
    )


def invite_sets(tables: SuperOfficeTables, selection: Selection) -> InviteSets:
    return InviteSets(tables, selection, _footprint_cte(tables, selection))


def _footprint_cte(tables: SuperOfficeTables, selection: Selection) -> CTE:
    """One row per (meeting, footprint source): a single scan of the appointment table plus the
    invitation table. Materialized where the engine supports it, so every use shares the scan."""
    a = tables.appointment.alias("footprint")
    usable = selection.usable(tables)
    conditions: dict[str, ColumnElement[bool]] = {}
    if SEND_EMAIL in usable:
        conditions[SEND_EMAIL] = a.c.SendEmail == 1
    if EMAIL_ID in usable:
        conditions[EMAIL_ID] = and_(a.c.emailId != 0, a.c.registered >= selection.invites_since)

    def flag(kind: str) -> ColumnElement[int]:
        if kind not in conditions:
            return literal(0, Integer)
        return case((conditions[kind], 1), else_=0)

    parts: list[Any] = []
    if conditions:
        by_row = [flag(kind) for kind in (SEND_EMAIL, EMAIL_ID)]
        parts.append(_footprint_row(meeting_of(a), 0, *by_row).where(or_(*conditions.values())))
    if tables.invitation is not None and INVITATION in usable:
        parts.append(_footprint_row(tables.invitation.c.appointment_id, 1, 0, 0))
    if not parts:  # no footprint can be shown here: the set is empty
        parts.append(_footprint_row(literal(0, Integer), 0, 0, 0).where(literal(False)))
    source: Any = parts[0] if len(parts) == 1 else union_all(*parts)
    rows = source.subquery("footprint_rows")
    grouped = select(
        rows.c.meeting_id,
        *(func.max(rows.c[name]).label(name) for name in FLAG_COLUMNS.values()),
    ).group_by(rows.c.meeting_id)
    return materialized(grouped.cte("invite_footprints"))


def _footprint_row(meeting: ColumnElement[Any], *flags: ColumnElement[int] | int) -> Select[Any]:
    values = [f if isinstance(f, ColumnElement) else literal(f, Integer) for f in flags]
    labelled = [
        value.label(name) for value, name in zip(values, FLAG_COLUMNS.values(), strict=True)
    ]
    return select(meeting.label("meeting_id"), *labelled)


# --- rows -------------------------------------------------------------------------------------


def in_a_diary(row: FromClause) -> ColumnElement[bool]:
    # External participants' rows (associate_id = 0) are in nobody's diary: never synchronized.
    return row.c.associate_id != 0


def not_externally_owned(row: FromClause) -> ColumnElement[bool]:
    if "owned_externally" not in row.c:
        return literal(True)
    return or_(row.c.owned_externally == 0, row.c.owned_externally.is_(None))


def unwarned(row: FromClause) -> ColumnElement[bool]:
    return or_(row.c.cautionWarning == 0, row.c.cautionWarning.is_(None))


def markable(row: FromClause) -> ColumnElement[bool]:
    """Row-level conditions, checked again in every batch (someone may have changed the row)."""
    return and_(in_a_diary(row), not_externally_owned(row), unwarned(row))


def rows_of_meetings(
    tables: SuperOfficeTables,
    meetings: Any,
    columns: Callable[[Any], list[ColumnElement[Any]]],
    where: Callable[[Any, Any], ColumnElement[bool]] | None = None,
) -> CompoundSelect[Any]:
    """`columns` of the rows of `meetings` (a set with a meeting_id column) that pass `where`
    (row, meetings): each meeting's own row (master or plain appointment) and its participants'
    rows, as joins driven by the small meeting set, so every row is a seek on the primary key or
    the mother_id index (SQLite builds no index on a materialized CTE: a join the other way
    round compares every pair)."""
    own, participant = tables.appointment.alias("own_row"), tables.appointment.alias("participant")

    def rows(row: Any, on: ColumnElement[bool]) -> Select[Any]:
        query = select(*columns(row)).select_from(meetings.join(row, on))
        return query if where is None else query.where(where(row, meetings))

    return union_all(
        rows(own, and_(own.c.appointment_id == meetings.c.meeting_id, is_meeting_row(own))),
        rows(
            participant,
            and_(
                participant.c.mother_id == meetings.c.meeting_id,
                participant.c.mother_id != participant.c.appointment_id,
            ),
        ),
    )


def selected_and_markable(row: Any, meetings: Any) -> ColumnElement[bool]:
    return and_(meetings.c.selected == 1, markable(row))


def rows_to_mark(tables: SuperOfficeTables, selection: Selection) -> CompoundSelect[Any]:
    """The ids of the rows a marking with `selection` changes."""
    meetings = invite_sets(tables, selection).flagged_meetings()
    return rows_of_meetings(
        tables, meetings, lambda row: [row.c.appointment_id], selected_and_markable
    )


def to_mark(tables: SuperOfficeTables, selection: Selection) -> ColumnElement[bool]:
    """The appointment table's row is one a marking with `selection` changes."""
    return tables.appointment.c.appointment_id.in_(rows_to_mark(tables, selection))
