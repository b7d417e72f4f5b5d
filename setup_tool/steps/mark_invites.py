"""Step 4: mark pre-existing invite appointments so the synchronizer does not duplicate them.

Which rows: setup_tool.invites (SPEC step 4): rows in an associate's diary, not owned by
Outlook/Google, without a caution warning, of meetings that carry a footprint of SuperOffice's
invite system and were registered from invites-since until Diary Synchronizer Active went on.
They get cautionWarning = 1 (NotInSync).

How it stays fast and safe on millions of rows:
- the meetings are resolved once: the rows to mark are staged in setup_tool_candidate;
- then keyset batches walk appointment_id ranges (lo, hi] holding at most batch_size candidates;
  each batch is one transaction that records previous values, updates, writes the travel log
  and moves the checkpoint, so a crash or Ctrl-C loses at most the batch in flight;
- each batch checks the row-level conditions again (someone may have set a warning meanwhile);
  which meetings qualify was decided once, when the candidates were staged.

The step row opens (status "staging", with its selection) in the transaction that switches the
preference on (`MarkInvites.with_preference_switch`): that moment ends the window, and a run
stopped right after it leaves a marking the next run resumes. Its inverse (undo) is at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    Delete,
    Insert,
    Integer,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    cast,
    delete,
    extract,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.sql.dml import UpdateBase

from setup_tool.bookkeeping import (
    COMPLETED,
    Bookkeeping,
    record_batch_timing,
    record_previous_values,
)
from setup_tool.clock import is_real_date, utc_now
from setup_tool.dialects import dialect_of
from setup_tool.errors import InterruptedRun, SetupToolError
from setup_tool.findings import (
    EXTERNAL_ROWS,
    EXTERNALLY_OWNED_ROWS,
    OTHER_WARNINGS,
    OUTSIDE_WINDOW,
    Evidence,
    Findings,
    FootprintCount,
    HistoryFinding,
    InviteCounts,
    InvitesSince,
    MarkingWindow,
    PreferenceFinding,
    UnfinishedMarking,
)
from setup_tool.invites import (
    ALL_FOOTPRINTS,
    EMAIL_ID,
    FLAG_COLUMNS,
    FOOTPRINTS,
    INVITATION,
    NOT_IN_SYNC,
    SEND_EMAIL,
    InviteSets,
    Selection,
    in_a_diary,
    invite_sets,
    markable,
    materialized,
    not_externally_owned,
    rows_of_meetings,
    selected_and_markable,
    to_mark,
)
from setup_tool.lock_waits import (
    LOCK_TIMEOUT,
    bound_lock_waits,
    holding_lock_wait,
    lock_wait_failure,
    pause_unless_stopped,
    retrying_lock_waits,
    yield_deadlocks,
)
from setup_tool.schema import SuperOfficeTables
from setup_tool.steps import (
    ApplyContext,
    BatchFigures,
    PlanContext,
    ProgressCallback,
    SqlValue,
    Step,
    StepOutcome,
    StepPlan,
    StepStopped,
    UndoJob,
    next_updated_count,
    render_sql,
    same,
    sql_value,
)
from setup_tool.travel import UPDATED, log_changes

if TYPE_CHECKING:
    from setup_tool.privileges import Need

log = logging.getLogger(__name__)

STEP_ID = "mark_invites"
TITLE = "Mark pre-existing invite appointments"
TABLE_NAME = "appointment"  # the table it changes (previous values' table_name, the travel log)
SAMPLE_SIZE = 10
ASSUMED_ROWS_PER_SECOND = 20_000  # for the estimate only; the benchmark measures the real rate
# SQL Server takes page or row locks as it sees fit and escalates to a table lock once one
# statement holds 5,000 locks on a table (SQL Server documentation, "Lock escalation"): ROWLOCK
# keeps users on the same page free, and a batch stays under the threshold (mssql_batch_size).
# UPDLOCK makes the batch's first read take the update locks its UPDATE needs, so that nobody
# changes a row between its previous value being recorded and the change.
MSSQL_LOCK_ROWS = "WITH (UPDLOCK, ROWLOCK)"
# READPAST skips rows another session holds. Only the search for those busy rows uses it: a batch
# that skipped a row would leave it unmarked behind its checkpoint, so no batch ever reads so.
MSSQL_FIND_FREE_ROWS = "WITH (UPDLOCK, ROWLOCK, READPAST)"
MSSQL_ROW_LOCKS = "WITH (ROWLOCK)"
MSSQL_MAX_BATCH_ROWS = 4000  # each statement of a batch locks one key per row: below 5,000
MAX_BUSY_ROWS = 100  # rows another session holds that the next try waits for alone
# The synchronizer's default sync range (kb.infobridge.com article 203736391): marks outside it
# change nothing the synchronizer does today, but stay as a precaution.
SYNC_RANGE_BACK, SYNC_RANGE_AHEAD = timedelta(days=30), timedelta(days=120)


# --- the window -------------------------------------------------------------------------------


def marking_window(
    history: HistoryFinding, preference: PreferenceFinding, now: datetime
) -> MarkingWindow | None:
    """When were appointments registered while Diary Synchronizer Active was not on?

    First run: everything before now, or before the preference was switched on if a system row
    already says on (its `updated`, else `registered`, date). Later runs: nothing new while the
    preference stayed on since the last run; from the last run on when it was switched off since
    (from the row's change date if SuperOffice stamped one after the last run). invites-since
    (setup_tool.invites.Selection) narrows the start further.
    """
    last_on = history.last_preference_on_at
    newest = max(preference.system, key=lambda r: r.id, default=None)
    changed_at = None
    if newest is not None:
        changed_at = newest.updated if is_real_date(newest.updated) else newest.registered
        changed_at = changed_at if is_real_date(changed_at) else None
    if last_on is None:
        if preference.effective is True and changed_at is not None and changed_at < now:
            return MarkingWindow(None, changed_at)
        return MarkingWindow(None, now)
    changed_since = changed_at is not None and changed_at > last_on
    if preference.effective is True:
        return MarkingWindow(last_on, changed_at) if changed_since and changed_at else None
    return MarkingWindow(changed_at if changed_since else last_on, now)


# --- counting (detection and the dry run) ------------------------------------------------------


def count_invites(
    conn: Connection,
    tables: SuperOfficeTables,
    selection: Selection | None,
    since: InvitesSince,
    now: datetime,
) -> InviteCounts:
    """Every invite figure and the sample ids in one statement: one scan of the appointment
    table for the footprints, then seeks for the invite meetings' rows (see `_survey`)."""
    if selection is None:
        return InviteCounts([], 0, 0, 0, 0, 0, 0, {}, None, _no_sync_evidence())
    survey = _survey(conn, tables, invite_sets(tables, selection), now)
    groups = survey.groups
    footprints = [
        FootprintCount(
            kind,
            FOOTPRINTS[kind],
            survey.footprint_meetings.get(kind, 0),
            survey.footprint_rows.get(kind, 0),
            kind in selection.usable(tables),
            _footprint_note(kind, tables, selection, since),
        )
        for kind in FOOTPRINTS
    ]
    to_mark_rows = groups.get("to_mark", 0)
    left_out = {
        EXTERNAL_ROWS: groups.get("external", 0),
        EXTERNALLY_OWNED_ROWS: groups.get("owned", 0),
        OTHER_WARNINGS: groups.get("other", 0),
        OUTSIDE_WINDOW: groups.get("outside", 0),
    }
    evidence = [
        Evidence(
            "appointment",
            f"{f.label}: {f.meetings:,} meetings, {f.rows:,} rows"
            + (f" (not counted: {f.note})" if not f.counted else ""),
        )
        for f in footprints
    ]
    evidence.append(
        Evidence(
            "appointment",
            f"{survey.meetings:,} invite meetings ({survey.rows:,} rows), "
            f"{survey.selected_meetings:,} of them {selection.describe()}: {to_mark_rows:,} rows "
            f"to mark ({survey.in_sync_range:,} inside the synchronizer's default sync range, "
            "30 days back to 120 ahead)",
        )
    )
    counts = InviteCounts(
        footprints=footprints,
        meetings=survey.meetings,
        rows=survey.rows,
        selected_meetings=survey.selected_meetings,
        to_mark=to_mark_rows,
        in_sync_range=survey.in_sync_range,
        already_marked=groups.get("marked", 0),
        left_out=left_out,
        selection=selection,
        evidence=evidence,
        sample_ids=survey.sample_ids,
        by_year_and_associate=survey.by_year_and_associate,
    )
    return _with_reason(counts)


def _no_sync_evidence() -> list[Evidence]:
    return [Evidence("appointment", "not counted: no synchronizer in use, nothing is marked")]


def _footprint_note(
    kind: str, tables: SuperOfficeTables, selection: Selection, since: InvitesSince
) -> str:
    if kind not in selection.footprints:
        return "left out by --footprints"
    if kind == INVITATION and tables.invitation is None:
        return "this database has no invitation table (it came after 8.5 R10)"
    if kind == SEND_EMAIL and "SendEmail" not in tables.appointment.c:
        return "this database has no appointment.SendEmail column (it came after 8.5 R10)"
    if kind == EMAIL_ID and selection.invites_since is None:
        rows = "rows with emailId <> 0 exist" if since.email_id_rows_exist else "no emailId rows"
        return f"invites-since is undetermined ({rows}); give --invites-since to use it"
    return ""


@dataclasses.dataclass
class _Survey:
    """What the counting statement returns, summed up."""

    groups: dict[str, int] = dataclasses.field(default_factory=dict)  # outcome -> rows
    footprint_meetings: dict[str, int] = dataclasses.field(default_factory=dict)
    footprint_rows: dict[str, int] = dataclasses.field(default_factory=dict)
    meetings: int = 0
    selected_meetings: int = 0
    rows: int = 0
    in_sync_range: int = 0
    sample_ids: list[int] = dataclasses.field(default_factory=list)
    by_year_and_associate: list[tuple[int | None, int, int]] = dataclasses.field(
        default_factory=list
    )


# The parts of the counting statement's result, told apart by its first column.
_ROWS, _FOOTPRINT_ROWS = "rows", "footprint_rows"
_MEETINGS, _FOOTPRINTS, _SAMPLE, _FIGURES = "meetings", "footprints", "sample", "figures"


def _survey(
    conn: Connection, tables: SuperOfficeTables, sets: InviteSets, now: datetime
) -> _Survey:
    """Rows of every invite meeting grouped by what happens to them, the meetings, each
    footprint's meetings and rows, and the first ids to mark: one statement, so the footprint
    scan and the series are resolved once (the dry run must stay within 2 x a bare COUNT + 1 s).

    A footprint's rows are the rows of the invite meetings that carry it; an invitation row that
    points at a participant's row rather than a meeting counts for the footprint's meetings only.
    """
    survey = _Survey()
    kinds = list(FOOTPRINTS)
    for part, outcome, flag, *by_kind, n in conn.execute(_survey_statement(tables, sets, now)):
        n = int(n)
        if part == _SAMPLE:
            survey.sample_ids.append(n)
        elif part == _FIGURES:
            year, associate_id = flag, by_kind[0]
            survey.by_year_and_associate.append((year, int(associate_id or 0), n))
        elif part == _MEETINGS:
            survey.meetings += n
            survey.selected_meetings += n if flag else 0
        elif part == _FOOTPRINTS:
            for kind, carries in zip(kinds, by_kind, strict=True):
                if carries:
                    survey.footprint_meetings[kind] = survey.footprint_meetings.get(kind, 0) + n
        elif part == _FOOTPRINT_ROWS:
            for kind, carries in zip(kinds, by_kind, strict=True):
                if carries:
                    survey.footprint_rows[kind] = survey.footprint_rows.get(kind, 0) + n
        else:
            survey.rows += n
            survey.groups[outcome] = survey.groups.get(outcome, 0) + n
            survey.in_sync_range += n if flag and outcome == "to_mark" else 0
    survey.sample_ids.sort()
    return survey


def _survey_statement(
    tables: SuperOfficeTables, sets: InviteSets, now: datetime
) -> CompoundSelect[Any]:
    meetings, fp = sets.flagged_meetings(), sets.footprints
    none: ColumnElement[Any] = literal_column("NULL")
    zero: list[ColumnElement[Any]] = [literal_column("0")] * len(FLAG_COLUMNS)
    invite_rows = materialized(
        rows_of_meetings(
            tables,
            meetings,
            lambda row: [
                row.c.appointment_id,
                _outcome(row, meetings.c.selected),
                _in_sync_range(row, now),
                cast(extract("year", row.c.registered), Integer).label("year"),
                row.c.associate_id,
                *[meetings.c[column] for column in FLAG_COLUMNS.values()],
            ],
        ).cte("invite_rows")
    )
    per_outcome = select(
        _part(_ROWS), invite_rows.c.outcome, invite_rows.c.in_range, *zero, func.count()
    ).group_by(invite_rows.c.outcome, invite_rows.c.in_range)
    flags: list[ColumnElement[Any]] = [fp.c[column] for column in FLAG_COLUMNS.values()]
    row_flags = [invite_rows.c[column] for column in FLAG_COLUMNS.values()]
    per_footprint_rows = select(
        _part(_FOOTPRINT_ROWS), none, literal_column("0"), *row_flags, func.count()
    ).group_by(*row_flags)
    per_meeting = select(_part(_MEETINGS), none, meetings.c.selected, *zero, func.count())
    per_footprint = select(_part(_FOOTPRINTS), none, literal_column("0"), *flags, func.count())
    first = (
        select(invite_rows.c.appointment_id)
        .where(invite_rows.c.outcome == "to_mark")
        .order_by(invite_rows.c.appointment_id)
        .limit(SAMPLE_SIZE)
        .subquery("first_to_mark")
    )
    samples = select(_part(_SAMPLE), none, literal_column("0"), *zero, first.c.appointment_id)
    # The report's figures: rows to mark per (registration year, associate).
    figures = (
        select(
            _part(_FIGURES),
            none,
            invite_rows.c.year,
            invite_rows.c.associate_id,
            *zero[1:],
            func.count(),
        )
        .where(invite_rows.c.outcome == "to_mark")
        .group_by(invite_rows.c.year, invite_rows.c.associate_id)
    )
    return union_all(
        per_outcome,
        per_footprint_rows,
        per_meeting.group_by(meetings.c.selected),
        per_footprint.group_by(*flags),
        samples,
        figures,
    )


def _part(name: str) -> ColumnElement[str]:
    return literal_column(f"'{name}'")


def _outcome(row: Any, selected: ColumnElement[int]) -> ColumnElement[str]:
    """What happens to a row of an invite meeting, in the order the report explains it."""
    return case(
        (~in_a_diary(row), "external"),
        (~not_externally_owned(row), "owned"),
        (selected == 0, "outside"),
        (row.c.cautionWarning == NOT_IN_SYNC, "marked"),
        (row.c.cautionWarning > NOT_IN_SYNC, "other"),
        else_="to_mark",
    ).label("outcome")


def _in_sync_range(row: Any, now: datetime) -> ColumnElement[int]:
    return case(
        (
            and_(
                row.c.activeDate >= now - SYNC_RANGE_BACK,
                row.c.activeDate < now + SYNC_RANGE_AHEAD,
            ),
            1,
        ),
        else_=0,
    ).label("in_range")


def _with_reason(counts: InviteCounts) -> InviteCounts:
    """One sentence for the report when nothing is marked."""
    selection = counts.selection
    assert selection is not None
    reason = None
    start, until = selection.start, selection.window.until
    if counts.to_mark:
        return counts
    if start is not None and until <= start:
        reason = (
            f"Diary Synchronizer Active has been on since {until:%Y-%m-%d %H:%M} UTC, before "
            f"invites arrived ({start:%Y-%m-%d %H:%M} UTC): no invite appointment was made while "
            "it was off (SuperOffice's own upgrade switches it on for existing synchronizer "
            "customers), so nothing is marked."
        )
    elif counts.meetings == 0 and selection.invites_since is None and _email_id_waits(counts):
        reason = (
            "No appointment carries an invitation row or SendEmail = 1, and e-mailed invitations "
            "(emailId) cannot count while invites-since is undetermined, so nothing is marked; "
            "give --invites-since DATE (the day of the upgrade to 8.5 R10) to count them."
        )
    elif counts.meetings == 0:
        reason = (
            "No appointment carries a footprint of SuperOffice's invite system (an invitation "
            "row, SendEmail = 1, or emailId after invites-since), so nothing is marked."
        )
    elif counts.selected_meetings == 0:
        reason = (
            f"No invite meeting was {selection.describe()} (while Diary Synchronizer Active was "
            "off), so nothing is marked."
        )
    else:
        reason = (
            "Every row of the invite meetings in the window is already marked, external, owned "
            "by Outlook/Google or carries another warning, so nothing is left to mark."
        )
    return dataclasses.replace(counts, nothing_to_mark_because=reason)


def _email_id_waits(counts: InviteCounts) -> bool:
    """Footprint (c) was chosen, but waits for an invites-since that nothing gave."""
    return any(
        f.kind == EMAIL_ID and not f.counted and "undetermined" in f.note for f in counts.footprints
    )


def remaining_of_unfinished(
    conn: Connection, tables: SuperOfficeTables, books: Bookkeeping, unfinished: UnfinishedMarking
) -> int:
    a, c = tables.appointment, books.candidate
    staged = conn.execute(
        select(func.count()).where(c.c.step_row_id == unfinished.step_row_id)
    ).scalar_one()
    if staged == 0:  # it stopped before staging: its whole selection is still to do
        return int(
            conn.execute(
                select(func.count()).where(to_mark(tables, unfinished.selection))
            ).scalar_one()
        )
    left = select(c.c.appointment_id).where(
        c.c.step_row_id == unfinished.step_row_id,
        c.c.appointment_id > (unfinished.checkpoint_key or -(2**31)),
    )
    query = select(func.count()).where(a.c.appointment_id.in_(left), markable(a))
    return int(conn.execute(query).scalar_one())


# --- the statements ---------------------------------------------------------------------------


def stage_candidates_statement(
    tables: SuperOfficeTables, books: Bookkeeping, step_row_id: SqlValue, selection: Selection
) -> Insert:
    c = books.candidate
    rows = rows_of_meetings(
        tables,
        invite_sets(tables, selection).flagged_meetings(),
        lambda row: [sql_value(step_row_id), row.c.appointment_id],
        selected_and_markable,
    )
    return (
        c.insert()
        .from_select([c.c.step_row_id, c.c.appointment_id], rows)
        .execution_options(
            preserve_rowcount=True  # INSERT ... SELECT rowcounts are only kept on request
        )
    )


def next_boundary_statement(
    books: Bookkeeping, step_row_id: SqlValue, batch_size: int, lo: SqlValue | None = None
) -> Select[Any]:
    """The highest candidate id of the next batch: a seek on the staging table's key."""
    c = books.candidate
    batch = (
        select(c.c.appointment_id)
        .where(
            c.c.step_row_id == step_row_id,
            c.c.appointment_id > (bindparam("lo") if lo is None else lo),
        )
        .order_by(c.c.appointment_id)
        .limit(batch_size)
        .subquery("next_batch")
    )
    return select(func.max(batch.c.appointment_id))


def _in_range(row: Table, lo: ColumnElement[int], hi: ColumnElement[int]) -> ColumnElement[bool]:
    return and_(row.c.appointment_id > lo, row.c.appointment_id <= hi)


def _staged_in_range(
    books: Bookkeeping,
    step_row_id: SqlValue,
    row: Table,
    lo: ColumnElement[int],
    hi: ColumnElement[int],
) -> ColumnElement[bool]:
    """`row` is one of the batch's staged candidates.

    As an IN list of the batch's ids (a range seek on the staging table's key) rather than an
    EXISTS per row: planners then seek each candidate on the primary key instead of reading
    every row of the id range, of which only a few percent are candidates.
    """
    c = books.candidate
    batch = select(c.c.appointment_id).where(c.c.step_row_id == step_row_id, _in_range(c, lo, hi))
    return row.c.appointment_id.in_(batch)


def _batch_row(
    books: Bookkeeping,
    step_row_id: SqlValue,
    row: Table,
    lo: ColumnElement[int],
    hi: ColumnElement[int],
) -> ColumnElement[bool]:
    """`row` is one of the batch's rows to mark: in its key range, staged, and still markable."""
    return and_(
        _in_range(row, lo, hi), markable(row), _staged_in_range(books, step_row_id, row, lo, hi)
    )


def lock_batch_statement(
    tables: SuperOfficeTables,
    books: Bookkeeping,
    step_row_id: SqlValue,
    lo: ColumnElement[int],
    hi: ColumnElement[int],
) -> Select[Any]:
    """Lock the batch's rows before anything is read or changed, in primary-key order.

    Every batch and every user who saves a meeting row by row then takes its locks in one order,
    which rules out deadlocks between them; and since nobody can change a locked row, the
    previous values recorded are exactly the values the UPDATE replaces. A row a user gave
    another warning first is no longer markable and is not taken. PostgreSQL: FOR UPDATE OF the
    appointment only; SQL Server: update locks, row by row (MSSQL_LOCK_ROWS); SQLite has no row
    locks and does not run it."""
    a = tables.appointment
    return (
        batch_rows_statement(tables, books, step_row_id, lo, hi)
        .with_hint(a, MSSQL_LOCK_ROWS, "mssql")
        .with_for_update(of=a)
    )


def free_rows_statement(
    tables: SuperOfficeTables,
    books: Bookkeeping,
    step_row_id: SqlValue,
    lo: ColumnElement[int],
    hi: ColumnElement[int],
) -> Select[Any]:
    """The batch's rows that nobody else holds, locked without waiting (PostgreSQL SKIP LOCKED,
    SQL Server READPAST): set against all of them, this finds the rows another session holds.
    Its transaction is rolled back at once; no batch decides anything from it."""
    return (
        lock_batch_statement(tables, books, step_row_id, lo, hi)
        .with_for_update(of=tables.appointment, skip_locked=True)
        .with_hint(tables.appointment, MSSQL_FIND_FREE_ROWS, "mssql")
    )


def batch_rows_statement(
    tables: SuperOfficeTables,
    books: Bookkeeping,
    step_row_id: SqlValue,
    lo: ColumnElement[int],
    hi: ColumnElement[int],
) -> Select[Any]:
    """The batch's rows to mark, read without locks."""
    a = tables.appointment
    return (
        select(a.c.appointment_id)
        .where(_batch_row(books, step_row_id, a, lo, hi))
        .order_by(a.c.appointment_id)
    )


def lock_rows_statement(tables: SuperOfficeTables, ids: list[int]) -> Select[Any]:
    """Lock just `ids` (rows another session held when the last try gave up), in primary-key
    order: the batch waits for them holding nothing else."""
    a = tables.appointment
    return (
        select(a.c.appointment_id)
        .with_hint(a, MSSQL_LOCK_ROWS, "mssql")
        .where(a.c.appointment_id.in_(ids), markable(a))
        .order_by(a.c.appointment_id)
        .with_for_update(of=a)
    )


def record_batch_statement(
    tables: SuperOfficeTables,
    books: Bookkeeping,
    step_row_id: SqlValue,
    lo: ColumnElement[int],
    hi: ColumnElement[int],
    batch_no: ColumnElement[int],
    now: SqlValue,
) -> Insert:
    """Previous values of the batch's rows, written before anything changes."""
    a = tables.appointment
    rows = select(
        sql_value(step_row_id),
        batch_no,
        literal(TABLE_NAME),
        a.c.appointment_id,
        literal(0),
        a.c.cautionWarning,
        a.c.updated,
        a.c.updated_associate_id,
        a.c.updatedCount,
        next_updated_count(a.c.updatedCount),
        sql_value(now),
    ).where(_batch_row(books, step_row_id, a, lo, hi))
    return record_previous_values(books, rows, "caution_warning")


def recorded_ids(
    books: Bookkeeping, step_row_id: SqlValue, batch_no: ColumnElement[int]
) -> Select[tuple[int]]:
    pv = books.previous_value
    return select(pv.c.record_id).where(pv.c.step_row_id == step_row_id, pv.c.batch_no == batch_no)


def mark_batch_statement(
    tables: SuperOfficeTables,
    books: Bookkeeping,
    step_row_id: SqlValue,
    lo: ColumnElement[int],
    hi: ColumnElement[int],
    batch_no: ColumnElement[int],
    acting_associate_id: int,
    now: SqlValue,
) -> Update:
    a = tables.appointment
    return (
        update(a)
        .with_hint(MSSQL_ROW_LOCKS, dialect_name="mssql")
        .where(
            _in_range(a, lo, hi),
            markable(a),
            a.c.appointment_id.in_(recorded_ids(books, step_row_id, batch_no)),
        )
        .values(
            cautionWarning=NOT_IN_SYNC,
            updated=now,
            updated_associate_id=acting_associate_id,
            updatedCount=next_updated_count(a.c.updatedCount),
        )
    )


def checkpoint_statement(
    books: Bookkeeping,
    step_row_id: SqlValue,
    hi: SqlValue | None = None,
    changed: SqlValue | None = None,
) -> Update:
    """A batch's last word: the checkpoint moves to `hi` and `changed` rows are added (bound as
    :hi and :n when not given)."""
    s = books.step
    return (
        update(s)
        .where(s.c.step_row_id == sql_value(step_row_id))
        .values(
            checkpoint_key=bindparam("hi") if hi is None else sql_value(hi),
            rows_changed=s.c.rows_changed
            + (bindparam("n") if changed is None else sql_value(changed)),
            batches_done=s.c.batches_done + 1,
        )
    )


# --- the step row: opened, staged, completed ----------------------------------------------------


def open_step_statement(
    books: Bookkeeping, run_id: SqlValue, selection: Selection, now: SqlValue
) -> Insert:
    """The marking's step row, status "staging", with everything that decides its rows: a
    resumed step selects the same rows, whatever the next run finds or is told."""
    window = selection.window
    return books.step.insert().values(
        run_id=sql_value(run_id),
        step_key=STEP_ID,
        status="staging",
        rows_planned=0,
        rows_changed=0,
        window_from=window.start,
        window_until=window.until if window.until_sql is None else window.until_sql,
        invites_since=selection.invites_since,
        footprints=",".join(sorted(selection.footprints)),
        batches_done=0,
        started_at=sql_value(now),
    )


def staged_statement(books: Bookkeeping, step_row_id: SqlValue) -> Update:
    """The candidates are staged: the step marks next, planning as many rows as were staged
    (counted, not taken from a rowcount: sqlite3 reports -1 for a statement that starts with
    WITH, and the staging INSERT does)."""
    s, c = books.step, books.candidate
    staged = select(func.count()).where(c.c.step_row_id == sql_value(step_row_id))
    return (
        update(s)
        .where(s.c.step_row_id == sql_value(step_row_id))
        .values(status="marking", rows_planned=staged.scalar_subquery())
    )


def complete_statement(
    books: Bookkeeping,
    step_row_id: SqlValue,
    now: SqlValue,
    finished_by_run_id: SqlValue | None = None,
) -> Update:
    s = books.step
    values: dict[str, Any] = {"status": COMPLETED, "finished_at": sql_value(now)}
    if finished_by_run_id is not None:
        values["finished_by_run_id"] = sql_value(finished_by_run_id)
    return update(s).where(s.c.step_row_id == sql_value(step_row_id)).values(**values)


def clear_candidates_statement(books: Bookkeeping, step_row_id: SqlValue) -> Delete:
    c = books.candidate
    return delete(c).where(c.c.step_row_id == sql_value(step_row_id))


def open_markings_query(books: Bookkeeping) -> Select[Any]:
    """Marking steps not completed, of upgrade runs no undo has claimed, oldest first: what a
    run resumes. A step without a window predates the recorded selection and is left alone."""
    s, run = books.step, books.run
    return (
        select(s)
        .join(run, run.c.run_id == s.c.run_id)
        .where(
            s.c.step_key == STEP_ID,
            s.c.status != COMPLETED,
            s.c.window_until.is_not(None),
            run.c.mode == "upgrade",
            run.c.undone_by_run_id.is_(None),
        )
        .order_by(s.c.step_row_id)
    )


def recorded_selection(row: Any) -> Selection:
    """The selection a step row recorded when it opened."""
    return Selection(
        MarkingWindow(row["window_from"], row["window_until"]),
        row["invites_since"],
        frozenset((row["footprints"] or ",".join(ALL_FOOTPRINTS)).split(",")),
    )


def unfinished_marking(conn: Connection, books: Bookkeeping) -> UnfinishedMarking | None:
    """The oldest marking an earlier run left unfinished (for detection and the report); a run
    resumes every one there is (`apply`)."""
    row = conn.execute(open_markings_query(books).limit(1)).mappings().first()
    if row is None:
        return None
    return UnfinishedMarking(
        step_row_id=row["step_row_id"],
        run_id=row["run_id"],
        selection=recorded_selection(row),
        checkpoint_key=row["checkpoint_key"],
        rows_changed=row["rows_changed"],
        batches_done=row["batches_done"],
    )


# --- planning ---------------------------------------------------------------------------------


def plan(ctx: PlanContext, conn: Connection) -> StepPlan:
    findings = ctx.findings
    if findings.synchronizer.in_use is not True:
        return StepPlan(
            STEP_ID,
            TITLE,
            "skip",
            "No synchronizer in use: nothing would duplicate invites, so no appointment is marked.",
        )
    unfinished = findings.history.unfinished
    invites = findings.invites
    selection = invites.selection
    started = time.perf_counter()
    resumed = remaining_of_unfinished(conn, ctx.tables, ctx.books, unfinished) if unfinished else 0
    rows = resumed + invites.to_mark
    samples = invites.sample_ids
    reasons = []
    if unfinished:
        reasons.append(
            f"resumes run {unfinished.run_id}'s marking: {resumed:,} rows left "
            f"({unfinished.selection.describe()})"
        )
    if selection and invites.to_mark:
        reasons.append(
            f"{invites.to_mark:,} rows of {invites.selected_meetings:,} invite meetings "
            f"{selection.describe()} are in a diary, not owned by Outlook/Google and have "
            "cautionWarning 0 or NULL"
        )
    elif selection:
        reasons.append(invites.nothing_to_mark_because or "nothing to mark")
    else:
        reasons.append("Diary Synchronizer Active stayed on since the last run: no new rows")
    pace = planned_batches(ctx, rows)
    # An unfinished marking is resumed even with no row left: a stop after its last batch left
    # the step open, and only applying it completes the step and clears its candidates.
    step = StepPlan(
        STEP_ID,
        TITLE,
        "change" if rows or unfinished else "done",
        _sentence("; ".join(r.rstrip(".") for r in reasons)),
        rows=rows,
        sample_ids=samples,
        sql=marking_sql(ctx, selection or Selection(MarkingWindow(None, ctx.now), None)),
        estimate_seconds=round(
            2 * (time.perf_counter() - started)
            + rows / ASSUMED_ROWS_PER_SECOND
            + pace.pause_seconds * max(0, pace.planned - 1),
            1,
        ),
        batches=pace if rows or unfinished else None,
    )
    if pace.size < ctx.settings.batch_size:
        step.warnings.append(
            f"Batches of {pace.size:,} rows, not {ctx.settings.batch_size:,}: on SQL Server one "
            "statement that locks 5,000 rows of a table escalates to a lock on the whole table, "
            "which would make every user wait for the batch."
        )
    if invites.other_warnings:
        step.warnings.append(
            f"{invites.other_warnings:,} invite rows carry another caution "
            "warning (2-5); they are kept as they are."
        )
    return step


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def batch_size(dialect_name: str, asked: int) -> int:
    """Rows per batch: as asked, but on SQL Server under 5,000 (MSSQL_MAX_BATCH_ROWS), so that
    no statement of a batch escalates to a table lock."""
    return min(asked, MSSQL_MAX_BATCH_ROWS) if dialect_name == "mssql" else asked


def planned_batches(ctx: PlanContext, rows: int) -> BatchFigures:
    """The marking's pace: rows per batch, the pause between batches, and how many batches."""
    size = batch_size(ctx.dialect.name, ctx.settings.batch_size)
    return BatchFigures(size, ctx.settings.pause_between_batches, math.ceil(rows / size))


def marking_sql(ctx: PlanContext, selection: Selection) -> list[str]:
    """The statements one batch runs, as the target database receives them."""
    books, tables = ctx.books, ctx.tables
    step_row_id = 0  # the real step row id is allocated when the run starts
    mssql = ctx.dialect.name == "mssql"
    lo: ColumnElement[int] = literal_column("@lo" if mssql else ":lo")
    hi: ColumnElement[int] = literal_column("@hi" if mssql else ":hi")
    batch: ColumnElement[int] = literal_column("@batch_no" if mssql else ":batch_no")
    statements = [
        stage_candidates_statement(tables, books, step_row_id, selection),
        *(
            [lock_batch_statement(tables, books, step_row_id, lo, hi)]
            if ctx.dialect.name != "sqlite"
            else []
        ),
        record_batch_statement(tables, books, step_row_id, lo, hi, batch, ctx.now),
        mark_batch_statement(
            tables, books, step_row_id, lo, hi, batch, ctx.settings.acting_associate_id, ctx.now
        ),
    ]
    return [render_sql(statement, ctx.dialect) for statement in statements]


# --- applying ---------------------------------------------------------------------------------


def apply(ctx: ApplyContext, planned: StepPlan) -> StepOutcome:
    """Every open marking, oldest first: an earlier run's, then this run's own (opened with the
    preference switch), each from its checkpoint. A stop between batches raises StepStopped
    with what was done so far."""
    total = planned.rows
    pace = planned.batches or planned_batches(ctx, total)
    # Filled in as the batches commit: an interrupted run reports them. A fresh object: the plan
    # stays what was planned.
    figures = BatchFigures(pace.size, pace.pause_seconds, pace.planned)
    seen = _RowsSeen(ctx.progress)
    ctx = dataclasses.replace(ctx, progress=seen)
    ctx.progress(0, total)  # the marking starts now: so does its clock
    done = 0
    try:
        for step_row_id, selection in _open_markings(ctx):
            done += _resume_or_run(ctx, step_row_id, selection, done, total, figures)
    except InterruptedRun as stopped:  # between batches: whole batches only
        raise StepStopped(stopped, StepOutcome(seen.done, figures)) from None
    _log_batches(figures)
    return StepOutcome(done, figures)


class _RowsSeen:
    """The progress callback, remembering how many rows are marked so far."""

    def __init__(self, progress: ProgressCallback) -> None:
        self.progress = progress
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        self.progress(done, total)


def _open_markings(ctx: ApplyContext) -> list[tuple[int, Selection]]:
    """The markings to finish, oldest first. This run's own step row was opened with the
    preference switch; were it not (the preference step did not run), it opens here."""
    selection = ctx.findings.invites.selection
    s = ctx.books.step
    with ctx.engine.begin() as conn:
        if selection is not None:
            ours = conn.execute(
                select(s.c.step_row_id).where(s.c.run_id == ctx.run_id, s.c.step_key == STEP_ID)
            ).first()
            if ours is None:
                conn.execute(open_step_statement(ctx.books, ctx.run_id, selection, ctx.now))
        rows = conn.execute(open_markings_query(ctx.books)).mappings().all()
    return [(int(row["step_row_id"]), recorded_selection(row)) for row in rows]


def _resume_or_run(
    ctx: ApplyContext,
    step_row_id: int,
    selection: Selection,
    done_before: int,
    total: int,
    figures: BatchFigures,
) -> int:
    s = ctx.books.step
    with ctx.engine.connect() as conn:
        status, checkpoint, batches = conn.execute(
            select(s.c.status, s.c.checkpoint_key, s.c.batches_done).where(
                s.c.step_row_id == step_row_id
            )
        ).one()
    if status == "staging":
        _stage(ctx, step_row_id, selection)
    done = _run_batches(ctx, step_row_id, checkpoint, batches, done_before, total, figures)
    _complete(ctx, step_row_id)
    return done


def _stage(ctx: ApplyContext, step_row_id: int, selection: Selection) -> None:
    with ctx.engine.begin() as conn:  # the tool's own table: one transaction is fine
        conn.execute(stage_candidates_statement(ctx.tables, ctx.books, step_row_id, selection))
        conn.execute(staged_statement(ctx.books, step_row_id))


def _run_batches(
    ctx: ApplyContext,
    step_row_id: int,
    checkpoint: int | None,
    batch_no: int,
    done_before: int,
    total: int,
    figures: BatchFigures,
) -> int:
    """The keyset batches from the checkpoint on, resting --pause-between-batches between two."""
    lo = checkpoint if checkpoint is not None else -(2**31)
    boundary = next_boundary_statement(ctx.books, step_row_id, figures.size)
    _analyze_candidates(ctx)
    done = 0
    while True:
        with ctx.engine.connect() as conn:
            hi = conn.execute(boundary, {"lo": lo}).scalar()
        if hi is None:
            return done
        if done and not _rest(ctx, figures):
            raise _stopped(batch_no, done_before + done)
        batch_no += 1
        done += _run_batch(ctx, step_row_id, lo, int(hi), batch_no, figures)
        lo = int(hi)
        ctx.progress(done_before + done, total)
        if ctx.should_stop():
            raise _stopped(batch_no, done_before + done)


def _stopped(batch_no: int, done: int) -> InterruptedRun:
    return InterruptedRun(
        f"Stopped after batch {batch_no}; {done:,} rows marked so far.",
        "Run the same command again to resume from the checkpoint.",
    )


def _rest(ctx: ApplyContext, figures: BatchFigures) -> bool:
    """The pause between two batches (holding no lock); False when a stop was asked for."""
    if figures.pause_seconds <= 0:
        return True
    started = time.perf_counter()
    rested = pause_unless_stopped(figures.pause_seconds, ctx.should_stop)
    figures.paused_seconds += time.perf_counter() - started
    return rested


def _analyze_candidates(ctx: ApplyContext) -> None:
    """Statistics for the freshly staged candidates (PostgreSQL; the others keep them current).

    Without them the planner takes the table for a few rows and finds each batch boundary by
    sorting every remaining candidate: time grows with the square of the rows. Only the table's
    owner may analyze it; anyone else gets a warning, not an error.
    """
    table = ctx.engine.dialect.identifier_preparer.format_table(ctx.books.candidate)
    statement = dialect_of(ctx.engine).analyze_sql(table)
    if statement is not None:
        with ctx.engine.begin() as conn:
            conn.exec_driver_sql(statement)


def _run_batch(
    ctx: ApplyContext, step_row_id: int, lo: int, hi: int, batch_no: int, figures: BatchFigures
) -> int:
    """One batch, one transaction: its rows locked in key order, previous values recorded, then
    the change, the travel log and the checkpoint.

    It waits the lock wait only for rows another session held when its last try gave up, holding
    nothing else; with rows of its own locked it waits at most HOLDING_LOCK_WAIT_SECONDS, so
    users never queue long behind it (setup_tool.lock_waits). It is tried again after a lock
    timeout or as a deadlock victim, and commits only while the run still holds its lock
    (ctx.lock_check).
    """
    engine, tables, books, settings = ctx.engine, ctx.tables, ctx.books, ctx.settings
    lo_, hi_ = literal(lo), literal(hi)
    bounds = (lo_, hi_, literal(batch_no))
    row_locks = engine.dialect.name != "sqlite"  # SQLite locks the whole database for a writer
    holding = holding_lock_wait(engine.dialect.name, settings.lock_wait_seconds)
    busy: list[int] = []  # rows another session held when the last try gave up
    wait = [holding]  # how long the current wait of the current try may last
    started = time.perf_counter()
    lock_seconds: list[float] = []

    def attempt() -> int:
        with engine.begin() as conn:
            yield_deadlocks(conn)
            locking = time.perf_counter()
            if busy:  # holding nothing yet: wait for them the whole lock wait
                wait[0] = settings.lock_wait_seconds
                bound_lock_waits(conn, wait[0])
                conn.execute(lock_rows_statement(tables, busy)).all()
            wait[0] = holding
            bound_lock_waits(conn, holding)
            if row_locks:
                conn.execute(lock_batch_statement(tables, books, step_row_id, lo_, hi_)).all()
            lock_seconds.append(time.perf_counter() - locking)
            recorded = conn.execute(
                record_batch_statement(tables, books, step_row_id, *bounds, ctx.now)
            ).rowcount
            changed = conn.execute(
                mark_batch_statement(
                    tables, books, step_row_id, *bounds, settings.acting_associate_id, ctx.now
                )
            ).rowcount
            if changed != recorded:
                raise SetupToolError(
                    f"Batch {batch_no} (appointment_id {lo + 1}..{hi}) changed {changed} rows "
                    f"but recorded {recorded}: another session changed them meanwhile. "
                    "Rolled back.",
                    "Run the upgrade again; it resumes from the last complete batch.",
                )
            if ctx.findings.travel.enabled:
                log_changes(
                    conn,
                    tables,
                    "appointment",
                    recorded_ids(books, step_row_id, literal(batch_no)),
                    changed,
                    kind=UPDATED,
                    associate_id=settings.acting_associate_id,
                    now=ctx.now,
                )
            conn.execute(checkpoint_statement(books, step_row_id), {"hi": hi, "n": changed})
            # Commits with the batch or not at all (retries included in its time).
            record_batch_timing(
                conn,
                books,
                ctx.run_id,
                step_row_id,
                batch_no,
                lo,
                hi,
                int(changed),
                time.perf_counter() - started,
            )
            ctx.lock_check()  # the last word before the commit: is the run lock still ours?
        return int(changed)

    def wait_alone(kind: str) -> bool:
        """After a short wait while holding ran out: the rows to wait for, alone, next."""
        if kind != LOCK_TIMEOUT or wait[0] != holding or not row_locks:
            return False
        busy[:] = _busy_rows(ctx, step_row_id, lo_, hi_)
        return bool(busy)

    changed = retrying_lock_waits(
        attempt,
        seconds=settings.lock_wait_seconds,
        retries=settings.lock_wait_retries,
        what=f"batch {batch_no} (appointment_id {lo + 1}..{hi})",
        should_stop=ctx.should_stop,
        tally=figures.lock_waits,
        waited=lambda: wait[0],
        wait_alone=wait_alone,
    )
    figures.record(batch_no, time.perf_counter() - started, lock_seconds[-1])
    return changed


def _busy_rows(
    ctx: ApplyContext, step_row_id: int, lo: ColumnElement[int], hi: ColumnElement[int]
) -> list[int]:
    """The batch's rows another session holds now (at most MAX_BUSY_ROWS): all its rows less
    those that can be locked without waiting. Rolled back at once; [] when that cannot tell."""
    from sqlalchemy.exc import DBAPIError

    tables, books = ctx.tables, ctx.books
    try:
        with ctx.engine.connect() as conn:
            bound_lock_waits(
                conn, holding_lock_wait(conn.dialect.name, ctx.settings.lock_wait_seconds)
            )
            every = conn.execute(batch_rows_statement(tables, books, step_row_id, lo, hi))
            wanted = [int(row[0]) for row in every]
            free = conn.execute(free_rows_statement(tables, books, step_row_id, lo, hi))
            unheld = {int(row[0]) for row in free}
            conn.rollback()
    except DBAPIError as error:
        if lock_wait_failure(error) is None:
            raise
        return []
    return [row for row in wanted if row not in unheld][:MAX_BUSY_ROWS]


def _log_batches(figures: BatchFigures) -> None:
    """What the batches met, for support: the report shows the same figures."""
    waits = figures.lock_waits
    log.info(
        "marking: %d batches of up to %d rows, longest %.3f s (batch %s), longest row locking "
        "%.3f s; lock waits given up %d, deadlocks %d, retries %d; paused %.1f s between batches",
        figures.done,
        figures.size,
        figures.longest_seconds or 0.0,
        figures.longest_batch,
        figures.longest_lock_seconds or 0.0,
        waits.timeouts,
        waits.deadlocks,
        waits.retries,
        figures.paused_seconds,
    )


def _complete(ctx: ApplyContext, step_row_id: int) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(complete_statement(ctx.books, step_row_id, ctx.now))
        conn.execute(clear_candidates_statement(ctx.books, step_row_id))


# --- the inverse: undo puts the rows back -----------------------------------------------------
#
# Set-based, in batches of recorded rows, each one transaction. A row comes back only while it
# still holds what the tool wrote: cautionWarning NOT_IN_SYNC, the updatedCount it wrote and
# the `updated` stamp where one was recorded (setup_tool.undo).


def _recorded_here(job_books: Bookkeeping, step_row_ids: list[int]) -> ColumnElement[bool]:
    pv = job_books.previous_value
    return and_(pv.c.step_row_id.in_(step_row_ids), pv.c.table_name == TABLE_NAME)


def _still_ours(a: Table, pv: Table) -> ColumnElement[bool]:
    return and_(
        a.c.cautionWarning == NOT_IN_SYNC,
        same(a.c.updatedCount, pv.c.new_updated_count),
        or_(pv.c.new_updated.is_(None), same(a.c.updated, pv.c.new_updated)),
    )


def _as_before(a: Table, pv: Table) -> ColumnElement[bool]:
    return and_(
        same(a.c.cautionWarning, pv.c.caution_warning),
        same(a.c.updated, pv.c.updated),
        same(a.c.updated_associate_id, pv.c.updated_associate_id),
        same(a.c.updatedCount, pv.c.updated_count),
    )


def undo(job: UndoJob, step_row_id: int) -> None:
    pv = job.books.previous_value
    mine = _recorded_here(job.books, [step_row_id])
    with job.engine.connect() as conn:
        low, high, total = conn.execute(
            select(
                func.min(pv.c.previous_value_id), func.max(pv.c.previous_value_id), func.count()
            ).where(mine)
        ).one()
    if not total:
        return
    done = 0
    for start in range(int(low), int(high) + 1, job.batch_size):
        in_batch = and_(mine, pv.c.previous_value_id.between(start, start + job.batch_size - 1))
        with job.engine.begin() as conn:
            done += _restore_batch(job, conn, in_batch)
        job.batches += 1
        if job.progress:
            job.progress(done, int(total))
        job.stop_if_asked()


def _restore_batch(job: UndoJob, conn: Connection, in_batch: ColumnElement[bool]) -> int:
    """One batch, one transaction: restore the rows that still hold what the tool wrote, tell
    Travel of exactly those, and list the rows that hold neither that nor their old values."""
    tables, pv = job.tables, job.books.previous_value
    a = tables.appointment
    joined = a.c.appointment_id == pv.c.record_id
    ours = _still_ours(a, pv)
    to_restore = 0
    if job.travel:  # logged first, while the rows still say they are the tool's
        ids = select(pv.c.record_id).select_from(pv.join(a, joined)).where(in_batch, ours)
        to_restore = conn.execute(select(func.count()).select_from(ids.subquery())).scalar_one()
        log_changes(
            conn,
            tables,
            TABLE_NAME,
            ids,
            int(to_restore),
            kind=UPDATED,
            associate_id=job.acting_associate_id,
            now=utc_now(),
        )
    restored = int(
        conn.execute(
            update(a)
            .where(joined, in_batch, ours)
            .values(
                cautionWarning=pv.c.caution_warning,
                updated=pv.c.updated,
                updated_associate_id=pv.c.updated_associate_id,
                updatedCount=pv.c.updated_count,
            )
        ).rowcount
    )
    if job.travel and restored != to_restore:
        raise SetupToolError(
            f"Undo found {to_restore} rows to restore but restored {restored}: another session "
            "changed them meanwhile. Rolled back.",
            "Run undo again; it goes on from where it stopped.",
        )
    conflicts = (
        conn.execute(
            select(pv.c.record_id)
            .select_from(pv.outerjoin(a, joined))
            .where(in_batch, or_(a.c.appointment_id.is_(None), ~_as_before(a, pv)))
            .order_by(pv.c.record_id)
        )
        .scalars()
        .all()
    )
    job.check_lock()
    job.result.conflicts += [f"{TABLE_NAME} {i}" for i in conflicts]
    job.result.restored += restored
    return restored


@dataclasses.dataclass
class AppointmentsBack:
    """What undo would do to the marked rows of some step rows (undo --dry-run)."""

    restore: int = 0  # rows restored to their previous values
    sample_ids: list[int] = dataclasses.field(default_factory=list)
    already_back: int = 0  # rows already at their previous values (an earlier undo)
    conflicts: int = 0  # rows someone changed since: left alone
    conflict_ids: list[int] = dataclasses.field(default_factory=list)


def plan_undo(
    conn: Connection, tables: SuperOfficeTables, books: Bookkeeping, step_row_ids: list[int]
) -> AppointmentsBack:
    """Read-only, with the conditions `undo` uses: how many rows come back, how many are back
    already, how many someone changed since, with the first ids of each."""
    back = AppointmentsBack()
    if not step_row_ids:
        return back
    a, pv = tables.appointment, books.previous_value
    joined = a.c.appointment_id == pv.c.record_id
    state = case(
        (_still_ours(a, pv), "restore"), (_as_before(a, pv), "back"), else_="conflict"
    ).label("state")
    rows = (
        select(pv.c.record_id, state)
        .select_from(pv.outerjoin(a, joined))
        .where(_recorded_here(books, step_row_ids))
        .subquery()
    )
    counts: dict[str, int] = {
        str(state): int(n)
        for state, n in conn.execute(
            select(rows.c.state, func.count()).group_by(rows.c.state)
        ).all()
    }
    back.restore = int(counts.get("restore", 0))
    back.already_back = int(counts.get("back", 0))
    back.conflicts = int(counts.get("conflict", 0))

    def first(which: str) -> list[int]:
        query = (
            select(rows.c.record_id)
            .where(rows.c.state == which)
            .order_by(rows.c.record_id)
            .limit(SAMPLE_SIZE)
        )
        return [int(i) for i in conn.execute(query).scalars()]

    back.sample_ids = first("restore") if back.restore else []
    back.conflict_ids = first("conflict") if back.conflicts else []
    return back


# --- the step ---------------------------------------------------------------------------------


class MarkInvites(Step):
    id = STEP_ID
    title = TITLE
    recorded_table = TABLE_NAME

    def plan(self, ctx: PlanContext, conn: Connection) -> StepPlan:
        return plan(ctx, conn)

    def rights(self, tables: SuperOfficeTables, findings: Findings) -> list[Need]:
        needs: list[Need] = [(tables.appointment, "UPDATE")]
        if findings.travel.enabled and tables.traveltransactionlog is not None:
            needs += [(tables.traveltransactionlog, "INSERT"), (tables.sequence, "UPDATE")]
        return needs

    def with_preference_switch(
        self, ctx: PlanContext, planned: StepPlan, run_id: SqlValue, now: SqlValue
    ) -> list[UpdateBase]:
        """The new marking's step row opens with the switch that ends its window."""
        selection = ctx.findings.invites.selection
        if planned.decision != "change" or selection is None:
            return []
        return [open_step_statement(ctx.books, run_id, selection, now)]

    def apply(self, ctx: ApplyContext, planned: StepPlan) -> StepOutcome:
        return apply(ctx, planned)

    def undo(self, job: UndoJob, step_row_id: int) -> None:
        undo(job, step_row_id)


MARK_INVITES = MarkInvites()
