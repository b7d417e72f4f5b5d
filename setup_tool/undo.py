"""Undo: put back exactly what setup-tool changed, newest run first.

Every changed row's previous values were recorded before the change. A row is restored only while
it still holds what the tool wrote (same updatedCount and `updated` stamp); a row someone changed
since is left alone and reported, so undo never overwrites another person's work. NULL is a value
like any other here: a NULL the tool found comes back as NULL, and every "is it still as the tool
left it / as it was before" test compares NULL with NULL as equal (`_same`), on every engine.

Undo records its progress, so an interruption (Ctrl-C, a kill, a lost connection) never leaves
rows half-restored behind the tool's back:

- the undo is a run of its own (mode 'undo'), 'running' until it completes;
- before the first row of an upgrade run comes back, that run is claimed for the undo
  (`undone_by_run_id`, committed on its own). From then on it no longer protects anything:
  `detect_history` leaves it out, so the next `upgrade` marks again whatever the undo had put
  back, exactly as a first run would;
- a run counts as undone only once the undo run that claimed it completed. Until then `undo`
  takes it up again and finishes it. Restoring is idempotent (a row already back at its
  previous values is skipped, and Travel is told only of rows this undo really changes), so
  a resumed undo simply walks the run's previous values again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    and_,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)

from setup_tool.bookkeeping import (
    Bookkeeping,
    close_dead_runs,
    finish_run,
    install_bookkeeping,
    installed_revision,
    lock_holder,
    start_run,
)
from setup_tool.clock import utc_now
from setup_tool.database import Database
from setup_tool.detect import detect_travel
from setup_tool.errors import ExitCode, InterruptedRun, SetupToolError, UsageError
from setup_tool.invites import NOT_IN_SYNC
from setup_tool.locking import run_lock
from setup_tool.schema import SuperOfficeTables
from setup_tool.travel import DELETED, UPDATED, log_changes

BATCH = 2000
COMPLETED = "completed"  # the status of a run that finished (an undo run: every target undone)


@dataclass
class UndoResult:
    undone_runs: list[int] = field(default_factory=list)
    restored: int = 0
    removed: int = 0
    conflicts: list[str] = field(default_factory=list)
    undo_run_id: int | None = None
    # Runs an earlier undo had started and not finished (interrupted, killed, failed): resumed.
    resumed_runs: list[int] = field(default_factory=list)

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
    should_stop: Callable[[], bool]
    batch_size: int
    # Called inside each transaction just before it commits: raises once the run lock is lost.
    check_lock: Callable[[], None]
    batches: int = 0

    @property
    def undo_run_id(self) -> int:
        assert self.result.undo_run_id is not None
        return self.result.undo_run_id

    def stop_if_asked(self) -> None:
        """Between batches (each one transaction): stop when asked, resumably."""
        if self.should_stop():
            raise InterruptedRun(
                f"Undo stopped after batch {self.batches}; {self.result.restored:,} rows "
                "restored so far.",
                "Run the same command again to finish the undo. Until then the runs it started "
                "on no longer protect anything: the next upgrade marks again what came back.",
            )


def undo(
    db: Database,
    *,
    run_ids: list[int] | None = None,
    acting_associate_id: int = 0,
    lock_timeout: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    batch_size: int = BATCH,
) -> UndoResult:
    if batch_size < 1:
        raise UsageError(f"Batch size {batch_size} is not a positive number of rows.")
    result = UndoResult()
    with run_lock(
        db.engine,
        timeout_seconds=lock_timeout,
        describe_holder=lambda: lock_holder(db.engine, db.books),
    ) as lock:
        with db.engine.connect() as conn:
            if installed_revision(conn, db.schema) is None:
                return result
            targets, unfinished = _targets(conn, db.books, run_ids)
            travel = detect_travel(conn, db.tables).enabled
        if not targets:
            return result
        with db.engine.begin() as conn:
            install_bookkeeping(conn, db.schema)
            close_dead_runs(conn, db.books)  # we hold the lock: a 'running' run died
            result.undo_run_id = start_run(
                conn,
                db.books,
                mode="undo",
                started_at=utc_now(),
                acting_associate_id=acting_associate_id,
                superoffice_version=None,
                synchronizer_version=None,
            )
        result.resumed_runs = [i for i in targets if i in unfinished]
        job = _Undo(
            db, travel, acting_associate_id, result, progress, should_stop, batch_size, lock.check
        )
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
                status=COMPLETED,
                outcome="action_required" if result.conflicts else "done",
                exit_code=int(result.exit_code),
                finished_at=utc_now(),
            )
    return result


def _record_failure(db: Database, undo_run_id: int, error: BaseException) -> None:
    """The undo run stops being 'running': failed, or interrupted (Ctrl-C). The runs it claimed
    stay claimed and unfinished, so running undo again finishes the job."""
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


def _targets(
    conn: Connection, books: Bookkeeping, run_ids: list[int] | None
) -> tuple[list[int], set[int]]:
    """Upgrade runs still to undo, newest first: never claimed by an undo, or claimed by one that
    did not complete (the second set)."""
    run = books.run
    undoer = run.alias("undoer")
    claim_status = (
        select(undoer.c.status).where(undoer.c.run_id == run.c.undone_by_run_id).scalar_subquery()
    )
    rows = conn.execute(
        select(run.c.run_id, run.c.undone_by_run_id, claim_status.label("claim_status"))
        .where(run.c.mode == "upgrade")
        .order_by(run.c.run_id.desc())
    ).all()
    active = [
        int(r.run_id) for r in rows if r.undone_by_run_id is None or r.claim_status != COMPLETED
    ]
    unfinished = {
        int(r.run_id)
        for r in rows
        if r.undone_by_run_id is not None and r.claim_status != COMPLETED
    }
    if run_ids is None:
        return active, unfinished
    unknown = sorted(set(run_ids) - set(active))
    if unknown:
        raise UsageError(
            f"Run(s) {', '.join(map(str, unknown))} cannot be undone: no such upgrade run, or "
            "it was undone already.",
            "See 'setup-tool history' for the runs this database has.",
        )
    return [i for i in active if i in run_ids], unfinished


def _undo_run(job: _Undo, run_id: int) -> None:
    books = job.db.books
    with job.db.engine.begin() as conn:
        # Claimed before anything comes back, in a transaction of its own: from now on the run
        # protects nothing (an upgrade marks again what comes back), and until this undo run
        # completes, undo takes it up again.
        conn.execute(
            update(books.run)
            .where(books.run.c.run_id == run_id)
            .values(undone_by_run_id=job.undo_run_id)
        )
        steps = [
            int(i)
            for i in conn.execute(
                select(books.step.c.step_row_id)
                .where(books.step.c.run_id == run_id)
                .order_by(books.step.c.step_row_id.desc())
            ).scalars()
        ]
        job.check_lock()
    for step_row_id in steps:
        _undo_appointments(job, step_row_id)
        _undo_preferences(job, step_row_id)
        job.stop_if_asked()
    with job.db.engine.begin() as conn:
        conn.execute(delete(books.candidate).where(books.candidate.c.step_row_id.in_(steps)))
        job.check_lock()
    job.result.undone_runs.append(run_id)


# --- NULL-safe comparison ---------------------------------------------------------------------


def _same(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[bool]:
    """a IS NOT DISTINCT FROM b, written so every engine understands it and it is never NULL
    (so its negation is safe too): equal values, or both NULL."""
    return or_(
        and_(a.is_not(None), b.is_not(None), a == b),
        and_(a.is_(None), b.is_(None)),
    )


def _holds(current: Any, expected: dict[str, Any]) -> bool:
    """A row read back holds these values (None equals None, as in SQL's IS NOT DISTINCT)."""
    return current is not None and all(
        getattr(current, name) == value for name, value in expected.items()
    )


# --- appointments: set-based, in batches of recorded rows ----------------------------------------


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
    for start in range(int(low), int(high) + 1, job.batch_size):
        in_batch = and_(mine, pv.c.previous_value_id.between(start, start + job.batch_size - 1))
        with job.db.engine.begin() as conn:
            done += _restore_batch(job, conn, in_batch)
        job.batches += 1
        if job.progress:
            job.progress(done, int(total))
        job.stop_if_asked()


def _restore_batch(job: _Undo, conn: Connection, in_batch: ColumnElement[bool]) -> int:
    """One batch, one transaction: restore the rows that still hold what the tool wrote, tell
    Travel of exactly those, and list the rows that hold neither that nor their old values."""
    tables, pv = job.db.tables, job.db.books.previous_value
    a = tables.appointment
    joined = a.c.appointment_id == pv.c.record_id
    ours = and_(
        a.c.cautionWarning == NOT_IN_SYNC,
        _same(a.c.updatedCount, pv.c.new_updated_count),
        or_(pv.c.new_updated.is_(None), _same(a.c.updated, pv.c.new_updated)),
    )
    to_restore = 0
    if job.travel:  # logged first, while the rows still say they are the tool's
        ids = select(pv.c.record_id).select_from(pv.join(a, joined)).where(in_batch, ours)
        to_restore = conn.execute(select(func.count()).select_from(ids.subquery())).scalar_one()
        log_changes(
            conn,
            tables,
            "appointment",
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
    as_before = and_(
        _same(a.c.cautionWarning, pv.c.caution_warning),
        _same(a.c.updated, pv.c.updated),
        _same(a.c.updated_associate_id, pv.c.updated_associate_id),
        _same(a.c.updatedCount, pv.c.updated_count),
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
    job.check_lock()
    job.result.conflicts += [f"appointment {i}" for i in conflicts]
    job.result.restored += restored
    return restored


# --- preference rows: few, one by one ---------------------------------------------------------


def _undo_preferences(job: _Undo, step_row_id: int) -> None:
    pv = job.db.books.previous_value
    with job.db.engine.begin() as conn:
        recorded = (
            conn.execute(
                select(pv)
                .where(pv.c.step_row_id == step_row_id, pv.c.table_name == "UserPreference")
                .order_by(pv.c.previous_value_id)
            )
            .mappings()
            .all()
        )
        for row in recorded:
            _undo_preference(job, conn, dict(row))
        job.check_lock()


def _undo_preference(job: _Undo, conn: Connection, recorded: dict[str, Any]) -> None:
    tables = job.db.tables
    up = tables.userpreference
    record_id = recorded["record_id"]
    current = conn.execute(
        select(up.c.prefvalue, up.c.updated, up.c.updated_associate_id, up.c.updatedCount).where(
            up.c.userpreference_id == record_id
        )
    ).first()
    ours = _holds(current, {"updatedCount": recorded["new_updated_count"]}) and (
        recorded["new_updated"] is None or _holds(current, {"updated": recorded["new_updated"]})
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
    previous = {
        "prefvalue": recorded["prefvalue"],
        "updated": recorded["updated"],
        "updated_associate_id": recorded["updated_associate_id"],
        "updatedCount": recorded["updated_count"],
    }
    if not ours:
        if not _holds(current, previous):  # already back (an undo that ran before) is fine
            job.result.conflicts.append(f"UserPreference {record_id} (changed since)")
        return
    conn.execute(update(up).where(up.c.userpreference_id == record_id).values(**previous))
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


# --- what undo would do (undo --dry-run, and the question before a real undo) -----------------

SAMPLE_SIZE = 10


@dataclass
class PreferenceBack:
    """One preference row undo puts back: its value now and the value it gets (None with
    `remove`: the tool inserted it, undo deletes it)."""

    record_id: int
    now: str | None
    back_to: str | None
    remove: bool
    conflict: bool  # changed by someone since: left as it is


@dataclass
class RunUndoPlan:
    run_id: int
    resumes_unfinished_undo: bool
    appointments: int = 0  # rows restored to their previous values
    sample_ids: list[int] = field(default_factory=list)
    already_back: int = 0  # rows already at their previous values (an earlier undo)
    conflicts: int = 0  # rows someone changed since: left alone
    conflict_ids: list[int] = field(default_factory=list)
    preferences: list[PreferenceBack] = field(default_factory=list)


@dataclass
class UndoPlan:
    runs: list[RunUndoPlan] = field(default_factory=list)

    @property
    def appointments(self) -> int:
        return sum(r.appointments for r in self.runs)

    @property
    def conflicts(self) -> int:
        return sum(r.conflicts for r in self.runs) + sum(
            p.conflict for r in self.runs for p in r.preferences
        )

    def lines(self) -> list[str]:
        """What undo would put back, run by run, as a person reads it."""
        if not self.runs:
            return ["setup-tool has no changes to undo in this database."]
        lines = []
        for run in self.runs:
            resumed = (
                " (finishing an undo that did not complete)" if run.resumes_unfinished_undo else ""
            )
            lines.append(f"Run {run.run_id}{resumed}:")
            lines.append(
                f"  {run.appointments:,} appointment row(s) get their previous cautionWarning, "
                f"updated, updated_associate_id and updatedCount back"
                + (f" (e.g. {', '.join(map(str, run.sample_ids))})" if run.sample_ids else "")
            )
            if run.already_back:
                lines.append(f"  {run.already_back:,} row(s) are already back: nothing to do")
            if run.conflicts:
                lines.append(
                    f"  {run.conflicts:,} row(s) were changed by someone since and are left as "
                    f"they are (e.g. {', '.join(map(str, run.conflict_ids))})"
                )
            for pref in run.preferences:
                lines.append("  " + _describe_preference(pref))
        lines.append(
            f"In all: {self.appointments:,} appointment row(s) and "
            f"{sum(len(r.preferences) for r in self.runs):,} preference row(s); "
            f"{self.conflicts:,} left as they are."
        )
        return lines

    def model(self) -> dict[str, Any]:
        """The plan as JSON-able data (undo --dry-run --format json)."""
        return {
            "mode": "undo-dry-run",
            "runs": [
                {
                    "run_id": r.run_id,
                    "resumes_unfinished_undo": r.resumes_unfinished_undo,
                    "appointments": r.appointments,
                    "sample_ids": r.sample_ids,
                    "already_back": r.already_back,
                    "conflicts": r.conflicts,
                    "conflict_ids": r.conflict_ids,
                    "preferences": [
                        {
                            "id": p.record_id,
                            "now": p.now,
                            "back_to": p.back_to,
                            "remove": p.remove,
                            "conflict": p.conflict,
                        }
                        for p in r.preferences
                    ],
                }
                for r in self.runs
            ],
            "appointments": self.appointments,
            "conflicts": self.conflicts,
        }


def _describe_preference(pref: PreferenceBack) -> str:
    now = "NULL" if pref.now is None else repr(pref.now)
    if pref.conflict:
        return f"UserPreference {pref.record_id} = {now}: changed since, left as it is"
    if pref.remove:
        return f"UserPreference {pref.record_id} = {now}: removed (setup-tool inserted it)"
    back = "NULL" if pref.back_to is None else repr(pref.back_to)
    return f"UserPreference {pref.record_id}: {now} -> {back}"


def plan_undo(db: Database, run_ids: list[int] | None = None) -> UndoPlan:
    """Exactly what `undo` would put back, read-only: per run the rows restored (with sample
    ids), those already back, those someone changed since, and each preference row's value now
    and after. Counts use the same conditions as the undo itself."""
    plan = UndoPlan()
    with db.engine.connect() as conn:
        if installed_revision(conn, db.schema) is None:
            return plan
        targets, unfinished = _targets(conn, db.books, run_ids)
        for run_id in targets:
            run = RunUndoPlan(run_id, run_id in unfinished)
            steps = [
                int(i)
                for i in conn.execute(
                    select(db.books.step.c.step_row_id).where(db.books.step.c.run_id == run_id)
                ).scalars()
            ]
            _plan_appointments(db, conn, steps, run)
            run.preferences = _plan_preferences(db, conn, steps)
            plan.runs.append(run)
    return plan


def _plan_appointments(db: Database, conn: Connection, steps: list[int], run: RunUndoPlan) -> None:
    a, pv = db.tables.appointment, db.books.previous_value
    if not steps:
        return
    joined = a.c.appointment_id == pv.c.record_id
    mine = and_(pv.c.step_row_id.in_(steps), pv.c.table_name == "appointment")
    ours = and_(
        a.c.cautionWarning == NOT_IN_SYNC,
        _same(a.c.updatedCount, pv.c.new_updated_count),
        or_(pv.c.new_updated.is_(None), _same(a.c.updated, pv.c.new_updated)),
    )
    as_before = and_(
        _same(a.c.cautionWarning, pv.c.caution_warning),
        _same(a.c.updated, pv.c.updated),
        _same(a.c.updated_associate_id, pv.c.updated_associate_id),
        _same(a.c.updatedCount, pv.c.updated_count),
    )
    state = case((ours, "restore"), (as_before, "back"), else_="conflict").label("state")
    rows = select(pv.c.record_id, state).select_from(pv.outerjoin(a, joined)).where(mine).subquery()
    counts: dict[str, int] = {
        str(state): int(n)
        for state, n in conn.execute(
            select(rows.c.state, func.count()).group_by(rows.c.state)
        ).all()
    }
    run.appointments = int(counts.get("restore", 0))
    run.already_back = int(counts.get("back", 0))
    run.conflicts = int(counts.get("conflict", 0))

    def first(which: str) -> list[int]:
        query = (
            select(rows.c.record_id)
            .where(rows.c.state == which)
            .order_by(rows.c.record_id)
            .limit(SAMPLE_SIZE)
        )
        return [int(i) for i in conn.execute(query).scalars()]

    run.sample_ids = first("restore") if run.appointments else []
    run.conflict_ids = first("conflict") if run.conflicts else []


def _plan_preferences(db: Database, conn: Connection, steps: list[int]) -> list[PreferenceBack]:
    up, pv = db.tables.userpreference, db.books.previous_value
    if not steps:
        return []
    recorded = conn.execute(
        select(pv)
        .where(pv.c.step_row_id.in_(steps), pv.c.table_name == "UserPreference")
        .order_by(pv.c.previous_value_id)
    ).mappings()
    planned = []
    for row in recorded:
        current = conn.execute(
            select(
                up.c.prefvalue, up.c.updated, up.c.updated_associate_id, up.c.updatedCount
            ).where(up.c.userpreference_id == row["record_id"])
        ).first()
        ours = _holds(current, {"updatedCount": row["new_updated_count"]}) and (
            row["new_updated"] is None or _holds(current, {"updated": row["new_updated"]})
        )
        if row["inserted"] and current is None:
            continue  # already removed
        previous = {
            "prefvalue": row["prefvalue"],
            "updated": row["updated"],
            "updated_associate_id": row["updated_associate_id"],
            "updatedCount": row["updated_count"],
        }
        if not ours and not row["inserted"] and _holds(current, previous):
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
