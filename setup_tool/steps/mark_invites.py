"""Step 4: mark pre-existing invite appointments so the synchronizer does not duplicate them.

An invite appointment is any row (master or participant) of a meeting with at least one external
participant row (associate_id = 0, invitedPersonId <> 0). Rows registered while Diary Synchronizer
Active was off get cautionWarning = 1 (NotInSync), only where it is 0 or NULL.

How it stays fast and safe on millions of rows:
- the meetings are resolved once: the rows to mark are staged in setup_tool_candidate;
- then keyset batches walk appointment_id ranges (lo, hi] holding at most batch_size candidates;
  each batch is one transaction that records previous values, updates, writes the travel log
  and moves the checkpoint, so a crash or Ctrl-C loses at most the batch in flight;
- every statement names `mother_id <> 0`, so planners never visit the plain appointments.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Exists,
    Insert,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.sql import FromClause

from setup_tool.bookkeeping import Bookkeeping, record_previous_values
from setup_tool.clock import is_real_date
from setup_tool.errors import InterruptedRun, SetupToolError
from setup_tool.findings import (
    Evidence,
    HistoryFinding,
    InviteCounts,
    MarkingWindow,
    PreferenceFinding,
    UnfinishedMarking,
)
from setup_tool.schema import SuperOfficeTables
from setup_tool.steps import (
    SqlValue,
    StepContext,
    StepPlan,
    next_updated_count,
    render_sql,
    sql_value,
)
from setup_tool.travel import UPDATED, log_changes

STEP_ID = "mark_invites"
TITLE = "Mark pre-existing invite appointments"
NOT_IN_SYNC = 1
SAMPLE_SIZE = 10
ASSUMED_ROWS_PER_SECOND = 20_000  # for the estimate only; the benchmark measures the real rate


# --- which rows -------------------------------------------------------------------------------


def invite_meeting(tables: SuperOfficeTables, row: Table) -> ColumnElement[bool]:
    """`row` is in a meeting that has an external participant row.

    Written as `mother_id IN (the few meetings with an external participant)`, not as a
    correlated EXISTS: SQLite without statistics answered the EXISTS through the associate_id
    index, scanning every external row once per meeting row (hours at a million rows); the IN set
    is resolved once and then drives seeks on the mother_id index (milliseconds).
    """
    participant = tables.appointment.alias("participant")
    meetings = select(participant.c.mother_id).where(
        in_a_meeting(participant),
        participant.c.associate_id == 0,
        participant.c.invitedPersonId.op("<>")(0),
    )
    return row.c.mother_id.in_(meetings)


def in_a_meeting(row: FromClause) -> ColumnElement[bool]:
    # Explicit, so every planner skips the plain appointments (mother_id = 0) up front.
    return row.c.mother_id.op("<>")(0)  # type: ignore[no-any-return]


def unwarned(row: Table) -> ColumnElement[bool]:
    return or_(row.c.cautionWarning == 0, row.c.cautionWarning.is_(None))


def in_window(row: Table, window: MarkingWindow) -> ColumnElement[bool]:
    until = window.until if window.until_sql is None else window.until_sql
    condition = row.c.registered < until
    if window.start is not None:
        condition = and_(row.c.registered >= window.start, condition)
    return condition


def needs_marking(tables: SuperOfficeTables, window: MarkingWindow) -> ColumnElement[bool]:
    a = tables.appointment
    return and_(in_a_meeting(a), unwarned(a), in_window(a, window), invite_meeting(tables, a))


# --- the window -------------------------------------------------------------------------------


def marking_window(
    history: HistoryFinding, preference: PreferenceFinding, now: datetime
) -> MarkingWindow | None:
    """When were appointments registered while Diary Synchronizer Active was not on?

    First run: everything before now, or before the preference was switched on if a system row
    already says on (its `updated`, else `registered`, date). Later runs: nothing new while the
    preference stayed on since the last run; from the last run on when it was switched off since
    (from the row's change date if SuperOffice stamped one after the last run).
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
    conn: Connection, tables: SuperOfficeTables, window: MarkingWindow | None
) -> InviteCounts:
    """All invite figures in one pass over the meetings' rows."""
    a = tables.appointment
    cw = a.c.cautionWarning

    def flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    to_mark = and_(unwarned(a), in_window(a, window)) if window else literal(False)
    query = select(
        func.count(func.distinct(a.c.mother_id)),
        func.count(),
        flag(cw == NOT_IN_SYNC),
        flag(cw > NOT_IN_SYNC),
        flag(to_mark),
    ).where(in_a_meeting(a), invite_meeting(tables, a))
    meetings, rows, marked, other, pending = conn.execute(query).one()
    evidence = [
        Evidence(
            "appointment",
            f"{meetings} meetings with an external participant "
            f"(associate_id = 0, invitedPersonId <> 0), {rows} rows in them",
        )
    ]
    if window:
        evidence.append(
            Evidence(
                "appointment", f"{pending} rows with cautionWarning 0 or NULL {window.describe()}"
            )
        )
    return InviteCounts(
        int(meetings), int(rows), int(marked), int(other), int(pending), window, evidence
    )


def sample_ids(conn: Connection, tables: SuperOfficeTables, window: MarkingWindow) -> list[int]:
    a = tables.appointment
    query = (
        select(a.c.appointment_id)
        .where(needs_marking(tables, window))
        .order_by(a.c.appointment_id)
        .limit(SAMPLE_SIZE)
    )
    return [int(i) for i in conn.execute(query).scalars()]


def remaining_of_unfinished(
    conn: Connection, tables: SuperOfficeTables, books: Bookkeeping, unfinished: UnfinishedMarking
) -> int:
    a = tables.appointment
    query = select(func.count()).where(
        a.c.appointment_id > (unfinished.checkpoint_key or 0)
        if unfinished.checkpoint_key
        else literal(True),
        in_a_meeting(a),
        unwarned(a),
        in_window(a, unfinished.window),
        _staged(books, unfinished.step_row_id, a),
    )
    staged = conn.execute(
        select(func.count()).where(books.candidate.c.step_row_id == unfinished.step_row_id)
    ).scalar_one()
    if staged == 0:  # it stopped before staging: the whole window is still to do
        return int(
            conn.execute(
                select(func.count()).where(needs_marking(tables, unfinished.window))
            ).scalar_one()
        )
    return int(conn.execute(query).scalar_one())


def _staged(books: Bookkeeping, step_row_id: SqlValue, row: Table) -> Exists:
    c = books.candidate
    return exists().where(
        c.c.step_row_id == step_row_id, c.c.appointment_id == row.c.appointment_id
    )


# --- the statements ---------------------------------------------------------------------------


def stage_candidates_statement(
    tables: SuperOfficeTables, books: Bookkeeping, step_row_id: SqlValue, window: MarkingWindow
) -> Insert:
    a = tables.appointment
    c = books.candidate
    rows = select(sql_value(step_row_id), a.c.appointment_id).where(needs_marking(tables, window))
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


def record_batch_statement(
    tables: SuperOfficeTables,
    books: Bookkeeping,
    window: MarkingWindow,
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
        literal("appointment"),
        a.c.appointment_id,
        literal(0),
        a.c.cautionWarning,
        a.c.updated,
        a.c.updated_associate_id,
        a.c.updatedCount,
        next_updated_count(a.c.updatedCount),
        sql_value(now),
    ).where(
        _in_range(a, lo, hi),
        in_a_meeting(a),
        unwarned(a),
        in_window(a, window),
        _staged_in_range(books, step_row_id, a, lo, hi),
    )
    return record_previous_values(books, rows, "caution_warning")


def recorded_ids(
    books: Bookkeeping, step_row_id: SqlValue, batch_no: ColumnElement[int]
) -> Select[tuple[int]]:
    pv = books.previous_value
    return select(pv.c.record_id).where(pv.c.step_row_id == step_row_id, pv.c.batch_no == batch_no)


def mark_batch_statement(
    tables: SuperOfficeTables,
    books: Bookkeeping,
    window: MarkingWindow,
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
        .where(
            _in_range(a, lo, hi),
            in_a_meeting(a),
            unwarned(a),
            in_window(a, window),
            a.c.appointment_id.in_(recorded_ids(books, step_row_id, batch_no)),
        )
        .values(
            cautionWarning=NOT_IN_SYNC,
            updated=now,
            updated_associate_id=acting_associate_id,
            updatedCount=next_updated_count(a.c.updatedCount),
        )
    )


def checkpoint_statement(books: Bookkeeping, step_row_id: int) -> Update:
    s = books.step
    return (
        update(s)
        .where(s.c.step_row_id == step_row_id)
        .values(
            checkpoint_key=bindparam("hi"),
            rows_changed=s.c.rows_changed + bindparam("n"),
            batches_done=s.c.batches_done + 1,
        )
    )


# --- planning ---------------------------------------------------------------------------------


def plan(ctx: StepContext, conn: Connection) -> StepPlan:
    findings = ctx.findings
    if findings.synchronizer.in_use is not True:
        return StepPlan(
            STEP_ID,
            TITLE,
            "skip",
            "No synchronizer in use: nothing would duplicate invites, so no appointment is marked.",
        )
    unfinished = findings.history.unfinished
    window = findings.invites.window
    started = time.perf_counter()
    resumed = remaining_of_unfinished(conn, ctx.tables, ctx.books, unfinished) if unfinished else 0
    rows = resumed + findings.invites.to_mark
    samples = sample_ids(conn, ctx.tables, window) if window and findings.invites.to_mark else []
    reasons = []
    if unfinished:
        reasons.append(
            f"resumes run {unfinished.run_id}'s marking: {resumed} rows left "
            f"({unfinished.window.describe()})"
        )
    if window:
        reasons.append(
            f"{findings.invites.to_mark} rows of meetings with external participants "
            f"{window.describe()} have cautionWarning 0 or NULL"
        )
    else:
        reasons.append("Diary Synchronizer Active stayed on since the last run: no new rows")
    # An unfinished marking is resumed even with no row left: a stop after its last batch left
    # the step open, and only applying it completes the step and clears its candidates.
    step = StepPlan(
        STEP_ID,
        TITLE,
        "change" if rows or unfinished else "done",
        _sentence("; ".join(reasons)),
        rows=rows,
        sample_ids=samples,
        sql=marking_sql(ctx, window or MarkingWindow(None, ctx.now)),
        estimate_seconds=round(
            2 * (time.perf_counter() - started) + rows / ASSUMED_ROWS_PER_SECOND, 1
        ),
    )
    if findings.invites.other_warnings:
        step.warnings.append(
            f"{findings.invites.other_warnings} invite rows carry another caution "
            "warning (2-5); they are kept as they are."
        )
    return step


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def marking_sql(ctx: StepContext, window: MarkingWindow) -> list[str]:
    """The statements one batch runs, as the target database receives them."""
    books, tables = ctx.books, ctx.tables
    step_row_id = 0  # the real step row id is allocated when the run starts
    mssql = ctx.dialect.name == "mssql"
    lo: ColumnElement[int] = literal_column("@lo" if mssql else ":lo")
    hi: ColumnElement[int] = literal_column("@hi" if mssql else ":hi")
    batch: ColumnElement[int] = literal_column("@batch_no" if mssql else ":batch_no")
    statements = [
        stage_candidates_statement(tables, books, step_row_id, window),
        record_batch_statement(tables, books, window, step_row_id, lo, hi, batch, ctx.now),
        mark_batch_statement(
            tables,
            books,
            window,
            step_row_id,
            lo,
            hi,
            batch,
            ctx.settings.acting_associate_id,
            ctx.now,
        ),
    ]
    return [render_sql(statement, ctx.dialect) for statement in statements]


# --- applying ---------------------------------------------------------------------------------


def apply(ctx: StepContext, planned: StepPlan) -> StepPlan:
    assert ctx.engine is not None and ctx.run_id is not None
    started = time.perf_counter()
    done = 0
    total = planned.rows
    unfinished = ctx.findings.history.unfinished
    if unfinished:
        done += _resume_or_run(ctx, unfinished.step_row_id, unfinished.window, done, total)
    window = ctx.findings.invites.window
    if window is not None:
        step_row_id = _open_step(ctx, window)
        done += _resume_or_run(ctx, step_row_id, window, done, total)
    planned.rows = done
    planned.duration_seconds = round(time.perf_counter() - started, 3)
    return planned


def _open_step(ctx: StepContext, window: MarkingWindow) -> int:
    assert ctx.engine is not None
    with ctx.engine.begin() as conn:
        result = conn.execute(
            ctx.books.step.insert().values(
                run_id=ctx.run_id,
                step_key=STEP_ID,
                status="staging",
                rows_planned=0,
                rows_changed=0,
                window_from=window.start,
                window_until=window.until,
                batches_done=0,
                started_at=ctx.now,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def _resume_or_run(
    ctx: StepContext, step_row_id: int, window: MarkingWindow, done_before: int, total: int
) -> int:
    assert ctx.engine is not None
    s = ctx.books.step
    with ctx.engine.connect() as conn:
        status, checkpoint, batches = conn.execute(
            select(s.c.status, s.c.checkpoint_key, s.c.batches_done).where(
                s.c.step_row_id == step_row_id
            )
        ).one()
    if status == "staging":
        _stage(ctx, step_row_id, window)
    done = _run_batches(ctx, step_row_id, window, checkpoint, batches, done_before, total)
    _complete(ctx, step_row_id)
    return done


def _stage(ctx: StepContext, step_row_id: int, window: MarkingWindow) -> None:
    assert ctx.engine is not None
    s = ctx.books.step
    with ctx.engine.begin() as conn:  # the tool's own table: one transaction is fine
        staged = conn.execute(
            stage_candidates_statement(ctx.tables, ctx.books, step_row_id, window)
        ).rowcount
        conn.execute(
            update(s)
            .where(s.c.step_row_id == step_row_id)
            .values(status="marking", rows_planned=staged)
        )


def _run_batches(
    ctx: StepContext,
    step_row_id: int,
    window: MarkingWindow,
    checkpoint: int | None,
    batch_no: int,
    done_before: int,
    total: int,
) -> int:
    assert ctx.engine is not None
    lo = checkpoint if checkpoint is not None else -(2**31)
    boundary = next_boundary_statement(ctx.books, step_row_id, ctx.settings.batch_size)
    _analyze_candidates(ctx)
    done = 0
    while True:
        with ctx.engine.connect() as conn:
            hi = conn.execute(boundary, {"lo": lo}).scalar()
        if hi is None:
            return done
        batch_no += 1
        done += _run_batch(ctx, step_row_id, window, lo, int(hi), batch_no)
        lo = int(hi)
        if ctx.progress:
            ctx.progress(done_before + done, total)
        if ctx.should_stop():
            raise InterruptedRun(
                f"Stopped after batch {batch_no}; {done_before + done} rows marked so far.",
                "Run the same command again to resume from the checkpoint.",
            )


def _analyze_candidates(ctx: StepContext) -> None:
    """Statistics for the freshly staged candidates (PostgreSQL; the others keep them current).

    Without them the planner takes the table for a few rows and finds each batch boundary by
    sorting every remaining candidate: time grows with the square of the rows. Only the table's
    owner may analyze it; anyone else gets a warning, not an error.
    """
    assert ctx.engine is not None
    if ctx.engine.dialect.name == "postgresql":
        table = ctx.engine.dialect.identifier_preparer.format_table(ctx.books.candidate)
        with ctx.engine.begin() as conn:
            conn.exec_driver_sql(f"ANALYZE {table}")


def _run_batch(
    ctx: StepContext, step_row_id: int, window: MarkingWindow, lo: int, hi: int, batch_no: int
) -> int:
    """One batch, one transaction: previous values first, then the change, log and checkpoint."""
    assert ctx.engine is not None
    tables, books = ctx.tables, ctx.books
    bounds = (literal(lo), literal(hi), literal(batch_no))
    with ctx.engine.begin() as conn:
        recorded = conn.execute(
            record_batch_statement(tables, books, window, step_row_id, *bounds, ctx.now)
        ).rowcount
        changed = conn.execute(
            mark_batch_statement(
                tables,
                books,
                window,
                step_row_id,
                *bounds,
                ctx.settings.acting_associate_id,
                ctx.now,
            )
        ).rowcount
        if changed != recorded:
            raise SetupToolError(
                f"Batch {batch_no} (appointment_id {lo + 1}..{hi}) changed {changed} rows but "
                f"recorded {recorded}: another session changed them meanwhile. Rolled back.",
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
                associate_id=ctx.settings.acting_associate_id,
                now=ctx.now,
            )
        conn.execute(checkpoint_statement(books, step_row_id), {"hi": hi, "n": changed})
    return changed


def _complete(ctx: StepContext, step_row_id: int) -> None:
    assert ctx.engine is not None
    s, c = ctx.books.step, ctx.books.candidate
    with ctx.engine.begin() as conn:
        conn.execute(
            update(s)
            .where(s.c.step_row_id == step_row_id)
            .values(status="completed", finished_at=ctx.now)
        )
        conn.execute(delete(c).where(c.c.step_row_id == step_row_id))
