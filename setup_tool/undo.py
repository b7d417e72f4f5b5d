"""Undo: put back exactly what setup-tool changed, newest run first.

Every changed row's previous values were recorded before the change. A row is restored only while
it still holds what the tool wrote (same updatedCount); a row someone changed since is left alone
and reported, so undo never overwrites another person's work. Undo is idempotent: a row that
already holds its previous values counts as restored, so an interrupted undo simply runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    and_,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)

from setup_tool.bookkeeping import (
    Bookkeeping,
    finish_run,
    install_bookkeeping,
    installed_revision,
    lock_holder,
    start_run,
)
from setup_tool.clock import utc_now
from setup_tool.database import Database
from setup_tool.detect import detect_travel
from setup_tool.errors import ExitCode, InterruptedRun, UsageError
from setup_tool.locking import run_lock
from setup_tool.schema import SuperOfficeTables
from setup_tool.travel import DELETED, UPDATED, log_changes

BATCH = 2000


@dataclass
class UndoResult:
    undone_runs: list[int] = field(default_factory=list)
    restored: int = 0
    removed: int = 0
    conflicts: list[str] = field(default_factory=list)
    undo_run_id: int | None = None

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.ACTION_REQUIRED if self.conflicts else ExitCode.DONE


@dataclass
class _Undo:
    db: Database
    travel: bool
    acting_associate_id: int
    result: UndoResult
    progress: Callable[[int, int], None] | None


def undo(
    db: Database,
    *,
    run_ids: list[int] | None = None,
    acting_associate_id: int = 0,
    lock_timeout: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> UndoResult:
    result = UndoResult()
    with run_lock(
        db.engine,
        timeout_seconds=lock_timeout,
        describe_holder=lambda: lock_holder(db.engine, db.books),
    ):
        with db.engine.connect() as conn:
            if installed_revision(conn, db.schema) is None:
                return result
            targets = _targets(conn, db.books, run_ids)
            travel = detect_travel(conn, db.tables).enabled
        if not targets:
            return result
        with db.engine.begin() as conn:
            install_bookkeeping(conn, db.schema)
            result.undo_run_id = start_run(
                conn,
                db.books,
                mode="undo",
                started_at=utc_now(),
                acting_associate_id=acting_associate_id,
                superoffice_version=None,
                synchronizer_version=None,
            )
        job = _Undo(db, travel, acting_associate_id, result, progress)
        try:
            for run_id in targets:
                _undo_run(job, run_id)
        except BaseException as error:
            _record_failure(db, result.undo_run_id, error)
            raise
        with db.engine.begin() as conn:
            finish_run(
                conn,
                db.books,
                result.undo_run_id,
                status="completed",
                outcome="action_required" if result.conflicts else "done",
                exit_code=int(result.exit_code),
                finished_at=utc_now(),
            )
    return result


def _record_failure(db: Database, undo_run_id: int, error: BaseException) -> None:
    """The undo run stops being 'running': failed, or interrupted (Ctrl-C). Undo is idempotent,
    so running it again finishes the job."""
    interrupted = isinstance(error, (KeyboardInterrupt, InterruptedRun))
    outcome, code = (
        ("interrupted", ExitCode.INTERRUPTED) if interrupted else ("failed", ExitCode.FAILED)
    )
    try:  # a fresh transaction: the failed one is gone, the record of it must not be
        with db.engine.begin() as conn:
            finish_run(
                conn,
                db.books,
                undo_run_id,
                status=outcome,
                outcome=outcome,
                exit_code=int(code),
                finished_at=utc_now(),
            )
    except Exception:  # the connection may be what failed; the original error matters more
        pass


def _targets(conn: Connection, books: Bookkeeping, run_ids: list[int] | None) -> list[int]:
    run = books.run
    query = select(run.c.run_id).where(run.c.mode == "upgrade", run.c.undone_by_run_id.is_(None))
    active = [int(i) for i in conn.execute(query.order_by(run.c.run_id.desc())).scalars()]
    if run_ids is None:
        return active
    unknown = sorted(set(run_ids) - set(active))
    if unknown:
        raise UsageError(
            f"Run(s) {', '.join(map(str, unknown))} cannot be undone: no such upgrade run, or "
            "it was undone already.",
            "See 'setup-tool history' for the runs this database has.",
        )
    return [i for i in active if i in run_ids]


def _undo_run(job: _Undo, run_id: int) -> None:
    books = job.db.books
    with job.db.engine.connect() as conn:
        steps = [
            int(i)
            for i in conn.execute(
                select(books.step.c.step_row_id)
                .where(books.step.c.run_id == run_id)
                .order_by(books.step.c.step_row_id.desc())
            ).scalars()
        ]
    for step_row_id in steps:
        _undo_appointments(job, step_row_id)
        _undo_preferences(job, step_row_id)
    with job.db.engine.begin() as conn:
        conn.execute(delete(books.candidate).where(books.candidate.c.step_row_id.in_(steps)))
        conn.execute(
            update(books.run)
            .where(books.run.c.run_id == run_id)
            .values(undone_by_run_id=job.result.undo_run_id)
        )
    job.result.undone_runs.append(run_id)


# --- appointments: set-based, in batches of recorded rows ----------------------------------------


def _same(a: ColumnElement[object], b: ColumnElement[object]) -> ColumnElement[bool]:
    return or_(a == b, and_(a.is_(None), b.is_(None)))


def _undo_appointments(job: _Undo, step_row_id: int) -> None:
    pv = job.db.books.previous_value
    mine = and_(pv.c.step_row_id == step_row_id, pv.c.table_name == "appointment")
    with job.db.engine.connect() as conn:
        low, high, total = conn.execute(
            select(
                func.min(pv.c.previous_value_id), func.max(pv.c.previous_value_id), func.count()
            ).where(mine)
        ).one()
    if not total:
        return
    done = 0
    for start in range(int(low), int(high) + 1, BATCH):
        in_batch = and_(mine, pv.c.previous_value_id.between(start, start + BATCH - 1))
        with job.db.engine.begin() as conn:
            done += _restore_batch(job, conn, in_batch)
        if job.progress:
            job.progress(done, int(total))


def _restore_batch(job: _Undo, conn: Connection, in_batch: ColumnElement[bool]) -> int:
    tables, pv = job.db.tables, job.db.books.previous_value
    a = tables.appointment
    joined = a.c.appointment_id == pv.c.record_id
    ours = and_(
        a.c.cautionWarning == 1,
        a.c.updatedCount == pv.c.new_updated_count,
        or_(pv.c.new_updated.is_(None), a.c.updated == pv.c.new_updated),
    )
    restored = conn.execute(
        update(a)
        .where(joined, in_batch, ours)
        .values(
            cautionWarning=pv.c.caution_warning,
            updated=pv.c.updated,
            updated_associate_id=pv.c.updated_associate_id,
            updatedCount=pv.c.updated_count,
        )
    ).rowcount
    as_before = and_(
        _same(a.c.cautionWarning, pv.c.caution_warning), a.c.updatedCount == pv.c.updated_count
    )
    conflicts = (
        conn.execute(
            select(pv.c.record_id)
            .select_from(pv.outerjoin(a, joined))
            .where(in_batch, or_(a.c.appointment_id.is_(None), ~as_before))
            .order_by(pv.c.record_id)
        )
        .scalars()
        .all()
    )
    job.result.conflicts += [f"appointment {i}" for i in conflicts]
    if job.travel and restored:
        ids = select(pv.c.record_id).select_from(pv.join(a, joined)).where(in_batch, as_before)
        count = conn.execute(select(func.count()).select_from(ids.subquery())).scalar_one()
        log_changes(
            conn,
            tables,
            "appointment",
            ids,
            int(count),
            kind=UPDATED,
            associate_id=job.acting_associate_id,
            now=utc_now(),
        )
    job.result.restored += restored
    return int(restored)


# --- preference rows: few, one by one ---------------------------------------------------------


def _undo_preferences(job: _Undo, step_row_id: int) -> None:
    pv = job.db.books.previous_value
    with job.db.engine.begin() as conn:
        recorded = (
            conn.execute(
                select(pv).where(
                    pv.c.step_row_id == step_row_id, pv.c.table_name == "UserPreference"
                )
            )
            .mappings()
            .all()
        )
        for row in recorded:
            _undo_preference(job, conn, dict(row))


def _undo_preference(job: _Undo, conn: Connection, recorded: dict[str, object]) -> None:
    tables = job.db.tables
    up = tables.userpreference
    record_id = recorded["record_id"]
    current = conn.execute(
        select(up.c.prefvalue, up.c.updatedCount, up.c.updated).where(
            up.c.userpreference_id == record_id
        )
    ).first()
    ours = (
        current is not None
        and current.updatedCount == recorded["new_updated_count"]
        and recorded["new_updated"] in (None, current.updated)
    )
    if recorded["inserted"]:
        if current is None:
            return  # already removed
        if not ours:
            job.result.conflicts.append(f"UserPreference {record_id} (changed since it was added)")
            return
        _log(job, conn, tables, record_id, DELETED)
        conn.execute(delete(up).where(up.c.userpreference_id == record_id))
        job.result.removed += 1
        return
    if current is None or not ours:
        if current is None or current.updatedCount != recorded["updated_count"]:
            job.result.conflicts.append(f"UserPreference {record_id} (changed since)")
        return
    conn.execute(
        update(up)
        .where(up.c.userpreference_id == record_id)
        .values(
            prefvalue=recorded["prefvalue"],
            updated=recorded["updated"],
            updated_associate_id=recorded["updated_associate_id"],
            updatedCount=recorded["updated_count"],
        )
    )
    _log(job, conn, tables, record_id, UPDATED)
    job.result.restored += 1


def _log(
    job: _Undo, conn: Connection, tables: SuperOfficeTables, record_id: object, kind: int
) -> None:
    if job.travel:
        ids: Select[tuple[int]] = select(literal(record_id, Integer).label("record_id"))
        log_changes(
            conn,
            tables,
            "UserPreference",
            ids,
            1,
            kind=kind,
            associate_id=job.acting_associate_id,
            now=utc_now(),
        )
