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
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    literal_column,
    select,
    update,
)

from setup_tool.bookkeeping import Bookkeeping, record_previous_values
from setup_tool.clock import is_real_date
from setup_tool.errors import InterruptedRun, SetupToolError
from setup_tool.findings import (
    EXTERNAL_ROWS,
    EXTERNALLY_OWNED_ROWS,
    OTHER_WARNINGS,
    OUTSIDE_WINDOW,
    Evidence,
    FootprintCount,
    HistoryFinding,
    InviteCounts,
    InvitesSince,
    MarkingWindow,
    PreferenceFinding,
    UnfinishedMarking,
)
from setup_tool.invites import (
    EMAIL_ID,
    FOOTPRINTS,
    INVITATION,
    NOT_IN_SYNC,
    SEND_EMAIL,
    InviteSets,
    Selection,
    in_a_diary,
    invite_sets,
    markable,
    not_externally_owned,
    rows_of,
    to_mark,
)
from setup_tool.lock_waits import bound_lock_waits, retrying_lock_waits
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
SAMPLE_SIZE = 10
ASSUMED_ROWS_PER_SECOND = 20_000  # for the estimate only; the benchmark measures the real rate
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
    """Every invite figure in two statements, each one scan of the appointment table."""
    if selection is None:
        return InviteCounts([], 0, 0, 0, 0, 0, 0, {}, None, _no_sync_evidence())
    sets = invite_sets(tables, selection)
    footprints, meetings, selected = _count_meetings(conn, tables, sets, selection, since)
    rows, groups = _classify_rows(conn, tables, sets, now)
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
            f"{meetings:,} invite meetings ({rows:,} rows), {selected:,} of them "
            f"{selection.describe()}: {to_mark_rows:,} rows to mark "
            f"({groups.get('in_range', 0):,} inside the synchronizer's default sync range, "
            "30 days back to 120 ahead)",
        )
    )
    counts = InviteCounts(
        footprints=footprints,
        meetings=meetings,
        rows=rows,
        selected_meetings=selected,
        to_mark=to_mark_rows,
        in_sync_range=groups.get("in_range", 0),
        already_marked=groups.get("marked", 0),
        left_out=left_out,
        selection=selection,
        evidence=evidence,
    )
    return _with_reason(counts)


def _no_sync_evidence() -> list[Evidence]:
    return [Evidence("appointment", "not counted: no synchronizer in use, nothing is marked")]


def _count_meetings(
    conn: Connection,
    tables: SuperOfficeTables,
    sets: InviteSets,
    selection: Selection,
    since: InvitesSince,
) -> tuple[list[FootprintCount], int, int]:
    """Per footprint its meetings and rows, then all invite meetings and the selected ones: one
    statement, so the footprint scan is shared."""
    a = tables.appointment
    usable = selection.usable(tables)

    def count(query: Select[Any]) -> ColumnElement[int]:
        return select(func.count()).select_from(query.subquery()).scalar_subquery()

    columns = []
    for kind in FOOTPRINTS:
        columns.append(count(sets.footprint_meetings(kind)) if kind in usable else literal(0))
        rows = select(a.c.appointment_id).where(rows_of(a, sets.footprint_meetings(kind)))
        columns.append(count(rows) if kind in usable else literal(0))
    columns += [count(sets.meetings(within=False)), count(sets.meetings(within=True))]
    values = [int(v or 0) for v in conn.execute(select(*columns)).one()]
    footprints = []
    for index, kind in enumerate(FOOTPRINTS):
        note = _footprint_note(kind, tables, selection, since)
        footprints.append(
            FootprintCount(
                kind,
                FOOTPRINTS[kind],
                values[2 * index],
                values[2 * index + 1],
                kind in usable,
                note,
            )
        )
    return footprints, values[-2], values[-1]


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


def _classify_rows(
    conn: Connection, tables: SuperOfficeTables, sets: InviteSets, now: datetime
) -> tuple[int, dict[str, int]]:
    """Rows of every invite meeting, grouped by what happens to them (one scan, shared)."""
    a = tables.appointment
    selected = rows_of(a, sets.meetings(within=True))
    outcome = case(
        (~in_a_diary(a), "external"),
        (~not_externally_owned(a), "owned"),
        (~selected, "outside"),
        (a.c.cautionWarning == NOT_IN_SYNC, "marked"),
        (a.c.cautionWarning > NOT_IN_SYNC, "other"),
        else_="to_mark",
    ).label("outcome")
    in_range = case(
        (
            and_(
                a.c.activeDate >= now - SYNC_RANGE_BACK,
                a.c.activeDate < now + SYNC_RANGE_AHEAD,
            ),
            1,
        ),
        else_=0,
    ).label("in_range")
    inner = (
        select(outcome, in_range)
        .where(rows_of(a, sets.meetings(within=False)))
        .subquery("invite_rows")
    )
    query = select(inner.c.outcome, inner.c.in_range, func.count()).group_by(
        inner.c.outcome, inner.c.in_range
    )
    groups: dict[str, int] = {}
    total = 0
    for name, ranged, rows in conn.execute(query):
        total += rows
        groups[name] = groups.get(name, 0) + rows
        if name == "to_mark" and ranged:
            groups["in_range"] = groups.get("in_range", 0) + rows
    return total, groups


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


def sample_ids(conn: Connection, tables: SuperOfficeTables, selection: Selection) -> list[int]:
    a = tables.appointment
    query = (
        select(a.c.appointment_id)
        .where(to_mark(tables, selection))
        .order_by(a.c.appointment_id)
        .limit(SAMPLE_SIZE)
    )
    return [int(i) for i in conn.execute(query).scalars()]


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
    a = tables.appointment
    c = books.candidate
    rows = select(sql_value(step_row_id), a.c.appointment_id).where(to_mark(tables, selection))
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
        markable(a),
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
    invites = findings.invites
    selection = invites.selection
    started = time.perf_counter()
    resumed = remaining_of_unfinished(conn, ctx.tables, ctx.books, unfinished) if unfinished else 0
    rows = resumed + invites.to_mark
    samples = sample_ids(conn, ctx.tables, selection) if selection and invites.to_mark else []
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
            2 * (time.perf_counter() - started) + rows / ASSUMED_ROWS_PER_SECOND, 1
        ),
    )
    if invites.other_warnings:
        step.warnings.append(
            f"{invites.other_warnings:,} invite rows carry another caution "
            "warning (2-5); they are kept as they are."
        )
    return step


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def marking_sql(ctx: StepContext, selection: Selection) -> list[str]:
    """The statements one batch runs, as the target database receives them."""
    books, tables = ctx.books, ctx.tables
    step_row_id = 0  # the real step row id is allocated when the run starts
    mssql = ctx.dialect.name == "mssql"
    lo: ColumnElement[int] = literal_column("@lo" if mssql else ":lo")
    hi: ColumnElement[int] = literal_column("@hi" if mssql else ":hi")
    batch: ColumnElement[int] = literal_column("@batch_no" if mssql else ":batch_no")
    statements = [
        stage_candidates_statement(tables, books, step_row_id, selection),
        record_batch_statement(tables, books, step_row_id, lo, hi, batch, ctx.now),
        mark_batch_statement(
            tables, books, step_row_id, lo, hi, batch, ctx.settings.acting_associate_id, ctx.now
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
        done += _resume_or_run(ctx, unfinished.step_row_id, unfinished.selection, done, total)
    selection = ctx.findings.invites.selection
    if selection is not None:
        step_row_id = _open_step(ctx, selection)
        done += _resume_or_run(ctx, step_row_id, selection, done, total)
    planned.rows = done
    planned.duration_seconds = round(time.perf_counter() - started, 3)
    return planned


def _open_step(ctx: StepContext, selection: Selection) -> int:
    assert ctx.engine is not None
    with ctx.engine.begin() as conn:
        result = conn.execute(
            ctx.books.step.insert().values(
                run_id=ctx.run_id,
                step_key=STEP_ID,
                status="staging",
                rows_planned=0,
                rows_changed=0,
                window_from=selection.window.start,
                window_until=selection.window.until,
                invites_since=selection.invites_since,
                footprints=",".join(sorted(selection.footprints)),
                batches_done=0,
                started_at=ctx.now,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def _resume_or_run(
    ctx: StepContext, step_row_id: int, selection: Selection, done_before: int, total: int
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
        _stage(ctx, step_row_id, selection)
    done = _run_batches(ctx, step_row_id, checkpoint, batches, done_before, total)
    _complete(ctx, step_row_id)
    return done


def _stage(ctx: StepContext, step_row_id: int, selection: Selection) -> None:
    assert ctx.engine is not None
    s = ctx.books.step
    c = ctx.books.candidate
    with ctx.engine.begin() as conn:  # the tool's own table: one transaction is fine
        conn.execute(stage_candidates_statement(ctx.tables, ctx.books, step_row_id, selection))
        # Counted, not taken from the rowcount: sqlite3 reports -1 for a statement that starts
        # with WITH, and the staging INSERT does (its footprint CTE).
        staged = conn.execute(
            select(func.count()).where(c.c.step_row_id == step_row_id)
        ).scalar_one()
        conn.execute(
            update(s)
            .where(s.c.step_row_id == step_row_id)
            .values(status="marking", rows_planned=staged)
        )


def _run_batches(
    ctx: StepContext,
    step_row_id: int,
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
        done += _run_batch(ctx, step_row_id, lo, int(hi), batch_no)
        lo = int(hi)
        if ctx.progress:
            ctx.progress(done_before + done, total)
        if ctx.should_stop():
            raise InterruptedRun(
                f"Stopped after batch {batch_no}; {done_before + done:,} rows marked so far.",
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


def _run_batch(ctx: StepContext, step_row_id: int, lo: int, hi: int, batch_no: int) -> int:
    """One batch, one transaction: previous values first, then the change, log and checkpoint.

    It waits at most the lock wait for rows another session holds, is tried again after a lock
    timeout or as a deadlock victim (setup_tool.lock_waits), and commits only while the run
    still holds its lock (ctx.lock_check).
    """
    assert ctx.engine is not None
    engine, tables, books = ctx.engine, ctx.tables, ctx.books
    bounds = (literal(lo), literal(hi), literal(batch_no))

    def attempt() -> int:
        with engine.begin() as conn:
            bound_lock_waits(conn, ctx.settings.lock_wait_seconds)
            recorded = conn.execute(
                record_batch_statement(tables, books, step_row_id, *bounds, ctx.now)
            ).rowcount
            changed = conn.execute(
                mark_batch_statement(
                    tables, books, step_row_id, *bounds, ctx.settings.acting_associate_id, ctx.now
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
                    associate_id=ctx.settings.acting_associate_id,
                    now=ctx.now,
                )
            conn.execute(checkpoint_statement(books, step_row_id), {"hi": hi, "n": changed})
            ctx.lock_check()  # the last word before the commit: is the run lock still ours?
        return int(changed)

    return retrying_lock_waits(
        attempt,
        seconds=ctx.settings.lock_wait_seconds,
        retries=ctx.settings.lock_wait_retries,
        what=f"batch {batch_no} (appointment_id {lo + 1}..{hi})",
        should_stop=ctx.should_stop,
    )


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
