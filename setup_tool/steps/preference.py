"""Step 3: switch on the global preference Mail/DiarySynchronizerActive, and report (or fix) the
group/individual rows that switch it off for some users."""

from __future__ import annotations

from sqlalchemy import Connection, Insert, Update, func, literal, select, update

from setup_tool.bookkeeping import Bookkeeping, record_previous_values
from setup_tool.clock import NEVER
from setup_tool.errors import SetupToolError
from setup_tool.findings import PreferenceFinding
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
    SqlValue,
    StepContext,
    StepPlan,
    next_updated_count,
    render_sql,
    sql_value,
)
from setup_tool.travel import INSERTED, UPDATED, log_changes

STEP_ID = "preference"
TITLE = "Switch on Diary Synchronizer Active"
OVERRIDES_ID = "overrides"
OVERRIDES_TITLE = "Group and individual rows that switch it off"
TABLE_NAME = "UserPreference"
NO_SYNC = "No synchronizer in use: Diary Synchronizer Active stays as it is."


# --- planning ---------------------------------------------------------------------------------


def plan(ctx: StepContext, conn: Connection) -> StepPlan:
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
    ctx: StepContext, step_id: str, title: str, rows: list[PreferenceRow], what: str
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


def plan_overrides(ctx: StepContext) -> StepPlan:
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


def insert_statement(ctx: StepContext, new_id: SqlValue, now: SqlValue | None = None) -> Insert:
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


def switch_on_statement(ctx: StepContext, ids: list[int], now: SqlValue | None = None) -> Update:
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


# --- applying ---------------------------------------------------------------------------------


def apply(ctx: StepContext, planned: StepPlan) -> StepPlan:
    """One transaction: previous values, the change, the travel log and the run's 'on' time.

    Like a marking batch, it waits at most the lock wait for rows a user holds (tried again after
    a lock timeout or as a deadlock victim) and commits only while the run holds its lock.
    """
    assert ctx.engine is not None and ctx.run_id is not None
    engine = ctx.engine

    def attempt() -> None:
        with engine.begin() as conn:
            bound_lock_waits(conn, ctx.settings.lock_wait_seconds)
            if planned.decision == "change":
                step_row_id = _step_row(ctx, conn, planned)
                if planned.id == STEP_ID and not ctx.findings.preference.system:
                    _insert(ctx, conn, step_row_id)
                else:
                    _switch_on(ctx, conn, step_row_id, planned.sample_ids)
            if planned.id == STEP_ID:
                run = ctx.books.run
                conn.execute(
                    update(run).where(run.c.run_id == ctx.run_id).values(preference_on_at=ctx.now)
                )
            ctx.lock_check()

    retrying_lock_waits(
        attempt,
        seconds=ctx.settings.lock_wait_seconds,
        retries=ctx.settings.lock_wait_retries,
        what=f"the step '{planned.title}'",
        should_stop=ctx.should_stop,
    )
    return planned


def _step_row(ctx: StepContext, conn: Connection, planned: StepPlan) -> int:
    result = conn.execute(
        ctx.books.step.insert().values(
            run_id=ctx.run_id,
            step_key=planned.id,
            status="completed",
            rows_planned=planned.rows,
            rows_changed=planned.rows,
            batches_done=1,
            started_at=ctx.now,
            finished_at=ctx.now,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def _insert(ctx: StepContext, conn: Connection, step_row_id: int) -> None:
    new_id = reserve_ids(conn, ctx.tables, TABLE_NAME, 1)
    conn.execute(insert_statement(ctx, new_id))
    conn.execute(
        ctx.books.previous_value.insert().values(
            step_row_id=step_row_id,
            batch_no=1,
            table_name=TABLE_NAME,
            record_id=new_id,
            inserted=1,
            new_updated_count=0,
        )
    )
    _log(ctx, conn, [new_id], INSERTED)


def _switch_on(ctx: StepContext, conn: Connection, step_row_id: int, ids: list[int]) -> None:
    conn.execute(record_statement(ctx.books, ctx.tables, step_row_id, ids, ctx.now))
    changed = conn.execute(switch_on_statement(ctx, ids)).rowcount
    if changed != len(ids):
        raise SetupToolError(
            f"Expected to switch on {len(ids)} preference rows, found {changed}: "
            "someone changed them meanwhile. Rolled back; run again."
        )
    _log(ctx, conn, ids, UPDATED)


def _log(ctx: StepContext, conn: Connection, ids: list[int], kind: int) -> None:
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
