"""Step 3: switch on the global preference Mail/DiarySynchronizerActive, and report (or fix) the
group/individual rows that switch it off for some users. Its inverse (undo) is at the end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Insert,
    Integer,
    Select,
    Update,
    delete,
    func,
    literal,
    select,
    update,
)

from setup_tool.bookkeeping import Bookkeeping, completed_step_statement, record_previous_values
from setup_tool.clock import NEVER, utc_now
from setup_tool.errors import SetupToolError
from setup_tool.findings import Findings, PreferenceFinding
from setup_tool.lock_waits import bound_lock_waits, retrying_lock_waits
from setup_tool.preferences import (
    DIARY_SYNC,
    SYSTEM_LEVEL,
    OverrideLimit,
    PreferenceRow,
    inserted_maxlevel,
    owner,
)
from setup_tool.schema import SuperOfficeTables
from setup_tool.sequence import SequenceRowError, reserve_ids, reserve_ids_statement
from setup_tool.steps import (
    ApplyContext,
    PlanContext,
    SqlValue,
    Step,
    StepOutcome,
    StepPlan,
    UndoJob,
    holds,
    next_updated_count,
    render_sql,
    sql_value,
)
from setup_tool.travel import DELETED, INSERTED, UPDATED, log_changes

if TYPE_CHECKING:
    from setup_tool.privileges import Need

STEP_ID = "preference"
TITLE = "Switch on Diary Synchronizer Active"
OVERRIDES_ID = "overrides"
OVERRIDES_TITLE = "Group and individual rows that switch it off"
TABLE_NAME = "UserPreference"
NO_SYNC = "No synchronizer in use: Diary Synchronizer Active stays as it is."


# --- when the preference went on ---------------------------------------------------------------


def records_on_time(findings: Findings) -> bool:
    """A run notes when it made sure the preference is on (setup_tool_run.preference_on_at, the
    end of the next run's marking window) whenever a synchronizer is in use: when it switches it
    on, and when it finds it on already."""
    return findings.synchronizer.in_use is True


def needs_first_on_time(findings: Findings) -> bool:
    """No run has noted yet since when it is on: a run is recorded for that alone."""
    return records_on_time(findings) and findings.history.last_preference_on_at is None


def on_time_statement(books: Bookkeeping, run_id: SqlValue, now: SqlValue) -> Update:
    """Note that the preference is on since `now`; it commits with the switch itself."""
    run = books.run
    return update(run).where(run.c.run_id == sql_value(run_id)).values(preference_on_at=now)


# --- planning ---------------------------------------------------------------------------------


def plan(ctx: PlanContext, conn: Connection) -> StepPlan:
    pref = ctx.findings.preference
    if ctx.findings.synchronizer.in_use is not True:
        return StepPlan(STEP_ID, TITLE, "skip", NO_SYNC)
    if not pref.system:
        next_id = _next_id(conn, ctx.tables)
        return StepPlan(
            STEP_ID,
            TITLE,
            "change",
            "No system-wide row exists: insert one (deflevel 2, owner 0) saying "
            f"{pref.encoding.on!r}, with maxlevel {inserted_maxlevel(pref.rows)} "
            f"({_maxlevel_reason(pref)}).",
            rows=1,
            sample_ids=[next_id],
            sql=[
                render_sql(reserve_ids_statement(ctx.tables, TABLE_NAME, 1), ctx.dialect),
                render_sql(insert_statement(ctx, next_id), ctx.dialect),
            ],
        )
    off = [r for r in pref.system if r.on is not True]
    step = _switch_on_plan(ctx, STEP_ID, TITLE, off, "the system-wide row")
    if len(pref.system) > 1:
        step.warnings.append(
            f"{len(pref.system)} system-wide rows exist for this preference "
            "(the index is not unique); all of them are kept on."
        )
    return step


def _switch_on_plan(
    ctx: PlanContext, step_id: str, title: str, rows: list[PreferenceRow], what: str
) -> StepPlan:
    if not rows:
        return StepPlan(step_id, title, "done", f"Already on in {what}.")
    ids = [r.id for r in rows]
    values = ", ".join(f"row {r.id} = {r.value!r}" for r in rows)
    return StepPlan(
        step_id,
        title,
        "change",
        f"Set {what} to {ctx.findings.preference.encoding.on!r} ({values}).",
        rows=len(rows),
        sample_ids=ids,
        sql=[render_sql(switch_on_statement(ctx, ids), ctx.dialect)],
    )


def plan_overrides(ctx: PlanContext) -> StepPlan:
    """The level 3-5 rows that switch it off and that SuperOffice honours once this run is done
    (maxlevel, setup_tool.preferences); rows it does not honour are reported, never exit 4."""
    pref = ctx.findings.preference
    if ctx.findings.synchronizer.in_use is not True:
        return StepPlan(OVERRIDES_ID, OVERRIDES_TITLE, "skip", NO_SYNC)
    limit = limit_after_run(pref)
    off = [r for r in pref.overrides if r.on is not True and limit.allows(r)]
    ignored = [r for r in pref.overrides if r.on is not True and not limit.allows(r)]
    if not off and ignored:
        return StepPlan(
            OVERRIDES_ID,
            OVERRIDES_TITLE,
            "done",
            f"No row SuperOffice honours switches it off: {len(ignored)} row(s) that would are "
            f"present but not honoured once this run is done (maxlevel {limit.maxlevel} of "
            f"{limit.source}, or their own), and are left as they are.",
            warnings=_not_honoured_warning(pref, limit, ignored),
        )
    if not off or ctx.settings.fix_overrides:
        step = _switch_on_plan(
            ctx, OVERRIDES_ID, OVERRIDES_TITLE, off, "the database, group and individual rows"
        )
        step.warnings += _not_honoured_warning(pref, limit, ignored)
        return step
    return StepPlan(
        OVERRIDES_ID,
        OVERRIDES_TITLE,
        "skip",
        f"{len(off)} row(s) switch Diary Synchronizer Active off for some users and are left as "
        "they are; run again with --fix-overrides to switch them on.",
        sample_ids=[r.id for r in off],
        warnings=[f"Left off: {_listed(pref, off)}.", *_not_honoured_warning(pref, limit, ignored)],
        action_required=True,
    )


def limit_after_run(pref: PreferenceFinding) -> OverrideLimit:
    """The maxlevel that governs once the run is done: the system row's, or the inserted one's."""
    if pref.system:
        return pref.limit
    return OverrideLimit(inserted_maxlevel(pref.rows), None, "the system-wide row this run inserts")


def _maxlevel_reason(pref: PreferenceFinding) -> str:
    if pref.limit.maxlevel is not None:
        return (
            f"as {pref.limit.source} allows today, so the run changes which overrides "
            "SuperOffice honours in no way"
        )
    return "Diary Synchronizer Active is a Global preference, set at the system level only"


def _listed(pref: PreferenceFinding, rows: list[PreferenceRow]) -> str:
    names = pref.owner_names
    return "; ".join(
        f"row {r.id} ({r.level_name}, {owner(r, names.get(r.id))}) = {r.value!r}" for r in rows
    )


def _not_honoured_warning(
    pref: PreferenceFinding, limit: OverrideLimit, rows: list[PreferenceRow]
) -> list[str]:
    if not rows:
        return []
    readings = "; ".join(f"row {r.id}: {limit.reading(r)}" for r in rows)
    return [
        f"Present but not honoured, left as they are: {_listed(pref, rows)} ({readings}). "
        'SuperOffice applies a level 3-5 row only within maxlevel, the "highest override '
        'level allowed" (SOD tables/userpreference.md; how NetServer applies it is inferred).'
    ]


def _next_id(conn: Connection, tables: SuperOfficeTables) -> int:
    seq = tables.sequence
    value = conn.execute(
        select(seq.c.next_id).where(func.lower(seq.c.TableName) == TABLE_NAME.lower())
    ).scalar()
    if value is None:
        raise SequenceRowError(
            TABLE_NAME,
            0,
            "the missing system-wide preference row cannot get an id SuperOffice will respect",
        )
    return int(value)


# --- statements -------------------------------------------------------------------------------


def insert_statement(ctx: PlanContext, new_id: SqlValue, now: SqlValue | None = None) -> Insert:
    up = ctx.tables.userpreference
    pref = ctx.findings.preference
    return up.insert().values(
        userpreference_id=new_id,
        deflevel=SYSTEM_LEVEL,
        maxlevel=inserted_maxlevel(pref.rows),
        owner_id=0,
        prefsection=DIARY_SYNC[0],
        prefkey=DIARY_SYNC[1],
        prefvalue=pref.encoding.on,
        registered=ctx.now if now is None else now,
        registered_associate_id=ctx.settings.acting_associate_id,
        updated=NEVER,
        updated_associate_id=0,
        updatedCount=0,
    )


def switch_on_statement(ctx: PlanContext, ids: list[int], now: SqlValue | None = None) -> Update:
    up = ctx.tables.userpreference
    return (
        update(up)
        .where(up.c.userpreference_id.in_(ids))
        .values(
            prefvalue=ctx.findings.preference.encoding.on,
            updated=ctx.now if now is None else now,
            updated_associate_id=ctx.settings.acting_associate_id,
            updatedCount=next_updated_count(up.c.updatedCount),
        )
    )


def record_statement(
    books: Bookkeeping,
    tables: SuperOfficeTables,
    step_row_id: SqlValue,
    ids: list[int],
    now: SqlValue,
) -> Insert:
    up = tables.userpreference
    rows = select(
        sql_value(step_row_id),
        literal(1),
        literal(TABLE_NAME),
        up.c.userpreference_id,
        literal(0),
        up.c.prefvalue,
        up.c.updated,
        up.c.updated_associate_id,
        up.c.updatedCount,
        next_updated_count(up.c.updatedCount),
        sql_value(now),
    ).where(up.c.userpreference_id.in_(ids))
    return record_previous_values(books, rows, "prefvalue")


def inserted_record_statement(
    books: Bookkeeping, step_row_id: SqlValue, new_id: SqlValue
) -> Insert:
    """The record of a row the tool inserted: undo deletes it instead of restoring values."""
    return books.previous_value.insert().values(
        step_row_id=sql_value(step_row_id),
        batch_no=1,
        table_name=TABLE_NAME,
        record_id=sql_value(new_id),
        inserted=1,
        new_updated_count=0,
    )


# --- applying ---------------------------------------------------------------------------------


def apply(ctx: ApplyContext, planned: StepPlan) -> StepOutcome:
    """One transaction: previous values, the change, the travel log and the run's 'on' time,
    and what other steps open with it (ctx.with_preference: the marking's step row, whose
    window this moment ends).

    Like a marking batch, it waits at most the lock wait for rows a user holds (tried again after
    a lock timeout or as a deadlock victim) and commits only while the run holds its lock.
    """

    def attempt() -> None:
        with ctx.engine.begin() as conn:
            bound_lock_waits(conn, ctx.settings.lock_wait_seconds)
            if planned.decision == "change":
                step_row_id = _step_row(ctx, conn, planned)
                if planned.id == STEP_ID and not ctx.findings.preference.system:
                    _insert(ctx, conn, step_row_id)
                else:
                    _switch_on(ctx, conn, step_row_id, planned.sample_ids)
            if planned.id == STEP_ID and records_on_time(ctx.findings):
                conn.execute(on_time_statement(ctx.books, ctx.run_id, ctx.now))
                for statement in ctx.with_preference:
                    conn.execute(statement)
            ctx.lock_check()

    retrying_lock_waits(
        attempt,
        seconds=ctx.settings.lock_wait_seconds,
        retries=ctx.settings.lock_wait_retries,
        what=f"the step '{planned.title}'",
        should_stop=ctx.should_stop,
    )
    return StepOutcome(planned.rows if planned.decision == "change" else 0)


def _step_row(ctx: ApplyContext, conn: Connection, planned: StepPlan) -> int:
    result = conn.execute(
        completed_step_statement(ctx.books, ctx.run_id, planned.id, planned.rows, ctx.now)
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def _insert(ctx: ApplyContext, conn: Connection, step_row_id: int) -> None:
    new_id = reserve_ids(conn, ctx.tables, TABLE_NAME, 1)
    conn.execute(insert_statement(ctx, new_id))
    conn.execute(inserted_record_statement(ctx.books, step_row_id, new_id))
    _log(ctx, conn, [new_id], INSERTED)


def _switch_on(ctx: ApplyContext, conn: Connection, step_row_id: int, ids: list[int]) -> None:
    conn.execute(record_statement(ctx.books, ctx.tables, step_row_id, ids, ctx.now))
    changed = conn.execute(switch_on_statement(ctx, ids)).rowcount
    if changed != len(ids):
        raise SetupToolError(
            f"Expected to switch on {len(ids)} preference rows, found {changed}: "
            "someone changed them meanwhile. Rolled back; run again."
        )
    _log(ctx, conn, ids, UPDATED)


def _log(ctx: ApplyContext, conn: Connection, ids: list[int], kind: int) -> None:
    if not ctx.findings.travel.enabled:
        return
    up = ctx.tables.userpreference
    record_ids = select(up.c.userpreference_id).where(up.c.userpreference_id.in_(ids))
    log_changes(
        conn,
        ctx.tables,
        TABLE_NAME,
        record_ids,
        len(ids),
        kind=kind,
        associate_id=ctx.settings.acting_associate_id,
        now=ctx.now,
    )


# --- the inverse: undo puts the rows back -----------------------------------------------------
#
# A row comes back only while it still holds what the tool wrote (its updatedCount, and the
# `updated` stamp where one was recorded); a row someone changed since is left alone and
# reported (setup_tool.undo). The rows are few: one by one, in one transaction per step row.


def _recorded(job_books: Bookkeeping, step_row_ids: list[int]) -> Select[Any]:
    pv = job_books.previous_value
    return (
        select(pv)
        .where(pv.c.step_row_id.in_(step_row_ids), pv.c.table_name == TABLE_NAME)
        .order_by(pv.c.previous_value_id)
    )


def _current(conn: Connection, tables: SuperOfficeTables, record_id: object) -> Any:
    up = tables.userpreference
    return conn.execute(
        select(up.c.prefvalue, up.c.updated, up.c.updated_associate_id, up.c.updatedCount).where(
            up.c.userpreference_id == record_id
        )
    ).first()


def _still_ours(current: Any, recorded: Any) -> bool:
    return holds(current, {"updatedCount": recorded["new_updated_count"]}) and (
        recorded["new_updated"] is None or holds(current, {"updated": recorded["new_updated"]})
    )


def _previous(recorded: Any) -> dict[str, Any]:
    return {
        "prefvalue": recorded["prefvalue"],
        "updated": recorded["updated"],
        "updated_associate_id": recorded["updated_associate_id"],
        "updatedCount": recorded["updated_count"],
    }


def undo(job: UndoJob, step_row_id: int) -> None:
    with job.engine.begin() as conn:
        for row in conn.execute(_recorded(job.books, [step_row_id])).mappings().all():
            _undo_row(job, conn, dict(row))
        job.check_lock()


def _undo_row(job: UndoJob, conn: Connection, recorded: dict[str, Any]) -> None:
    up = job.tables.userpreference
    record_id = recorded["record_id"]
    current = _current(conn, job.tables, record_id)
    ours = _still_ours(current, recorded)
    if recorded["inserted"]:
        if current is None:
            return  # already removed
        if not ours:
            job.result.conflicts.append(f"{TABLE_NAME} {record_id} (changed since it was added)")
            return
        _log_undo(job, conn, record_id, DELETED)
        conn.execute(delete(up).where(up.c.userpreference_id == record_id))
        job.result.removed += 1
        return
    previous = _previous(recorded)
    if not ours:
        if not holds(current, previous):  # already back (an undo that ran before) is fine
            job.result.conflicts.append(f"{TABLE_NAME} {record_id} (changed since)")
        return
    conn.execute(update(up).where(up.c.userpreference_id == record_id).values(**previous))
    _log_undo(job, conn, record_id, UPDATED)
    job.result.restored += 1


def _log_undo(job: UndoJob, conn: Connection, record_id: object, kind: int) -> None:
    if job.travel:
        ids: Select[tuple[int]] = select(literal(record_id, Integer).label("record_id"))
        log_changes(
            conn,
            job.tables,
            TABLE_NAME,
            ids,
            1,
            kind=kind,
            associate_id=job.acting_associate_id,
            now=utc_now(),
        )


@dataclass
class PreferenceBack:
    """One preference row undo puts back: its value now and the value it gets (None with
    `remove`: the tool inserted it, undo deletes it)."""

    record_id: int
    now: str | None
    back_to: str | None
    remove: bool
    conflict: bool  # changed by someone since: left as it is

    def describe(self) -> str:
        now = "NULL" if self.now is None else repr(self.now)
        if self.conflict:
            return f"{TABLE_NAME} {self.record_id} = {now}: changed since, left as it is"
        if self.remove:
            return f"{TABLE_NAME} {self.record_id} = {now}: removed (setup-tool inserted it)"
        back = "NULL" if self.back_to is None else repr(self.back_to)
        return f"{TABLE_NAME} {self.record_id}: {now} -> {back}"


def plan_undo(
    conn: Connection, tables: SuperOfficeTables, books: Bookkeeping, step_row_ids: list[int]
) -> list[PreferenceBack]:
    """What `undo` would do to the preference rows of these step rows, read-only, with the same
    conditions."""
    if not step_row_ids:
        return []
    planned = []
    for row in conn.execute(_recorded(books, step_row_ids)).mappings():
        current = _current(conn, tables, row["record_id"])
        ours = _still_ours(current, row)
        if row["inserted"] and current is None:
            continue  # already removed
        if not ours and not row["inserted"] and holds(current, _previous(row)):
            continue  # already back
        planned.append(
            PreferenceBack(
                int(row["record_id"]),
                current.prefvalue if current is not None else None,
                None if row["inserted"] else row["prefvalue"],
                bool(row["inserted"]),
                conflict=not ours,
            )
        )
    return planned


# --- the steps --------------------------------------------------------------------------------


class _PreferenceRows(Step):
    """A step that changes UserPreference rows: the rights, the change and its inverse."""

    recorded_table = TABLE_NAME

    def rights(self, tables: SuperOfficeTables, findings: Findings) -> list[Need]:
        needs: list[Need] = [
            (tables.userpreference, "UPDATE"),
            (tables.userpreference, "INSERT"),
            (tables.sequence, "UPDATE"),  # the id of an inserted system row
        ]
        if findings.travel.enabled and tables.traveltransactionlog is not None:
            needs += [(tables.traveltransactionlog, "INSERT"), (tables.sequence, "UPDATE")]
        return needs

    def apply(self, ctx: ApplyContext, planned: StepPlan) -> StepOutcome:
        return apply(ctx, planned)

    def undo(self, job: UndoJob, step_row_id: int) -> None:
        undo(job, step_row_id)


class PreferenceStep(_PreferenceRows):
    id = STEP_ID
    title = TITLE

    def plan(self, ctx: PlanContext, conn: Connection) -> StepPlan:
        return plan(ctx, conn)

    def applies(self, planned: StepPlan, findings: Findings) -> bool:
        # Also when it is on already: the run notes since when (records_on_time).
        return planned.decision == "change" or records_on_time(findings)


class OverridesStep(_PreferenceRows):
    id = OVERRIDES_ID
    title = OVERRIDES_TITLE

    def plan(self, ctx: PlanContext, conn: Connection) -> StepPlan:
        return plan_overrides(ctx)


PREFERENCE = PreferenceStep()
OVERRIDES = OverridesStep()
