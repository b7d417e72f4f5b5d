"""Undo: put back exactly what setup-tool changed, newest run first.

Every changed row's previous values were recorded before the change. A row is restored only while
it still holds what the tool wrote (same updatedCount and `updated` stamp); a row someone changed
since is left alone and reported, so undo never overwrites another person's work. NULL is a value
like any other here: a NULL the tool found comes back as NULL, and every "is it still as the tool
left it / as it was before" test compares NULL with NULL as equal (`steps.same`), on every
engine. Each step's inverse lives beside the step (its `undo`): this module only walks the runs.

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

from sqlalchemy import Connection, delete, select, update

from setup_tool import run_lifecycle
from setup_tool.bookkeeping import COMPLETED, Bookkeeping, installed_revision
from setup_tool.database import Database
from setup_tool.detect import detect_travel
from setup_tool.errors import UsageError
from setup_tool.steps import UndoJob, UndoResult
from setup_tool.steps.mark_invites import plan_undo as plan_appointments_back
from setup_tool.steps.preference import PreferenceBack
from setup_tool.steps.preference import plan_undo as plan_preferences_back
from setup_tool.steps.registry import APPLY_ORDER, step_named

__all__ = ["PreferenceBack", "UndoPlan", "UndoResult", "plan_undo", "undo"]

BATCH = 2000


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
    with run_lifecycle.held_lock(db, lock_timeout) as lock:
        with db.engine.connect() as conn:
            if installed_revision(conn, db.schema) is None:
                return result
            targets, unfinished = _targets(conn, db.books, run_ids)
            travel = detect_travel(conn, db.tables).enabled
        if not targets:
            return result
        run = run_lifecycle.start(db, mode="undo", acting_associate_id=acting_associate_id)
        result.undo_run_id = run.run_id
        result.resumed_runs = [i for i in targets if i in unfinished]
        job = UndoJob(
            db.engine,
            db.tables,
            db.books,
            travel,
            acting_associate_id,
            run.run_id,
            result,
            progress,
            should_stop,
            batch_size,
            lock.check,
        )
        with run_lifecycle.recorded(run):
            for run_id in targets:
                _undo_run(job, run_id)
            run.finish("action_required" if result.conflicts else "done", result.exit_code)
    return result


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


def _undo_run(job: UndoJob, run_id: int) -> None:
    books = job.books
    with job.engine.begin() as conn:
        # Claimed before anything comes back, in a transaction of its own: from now on the run
        # protects nothing (an upgrade marks again what comes back), and until this undo run
        # completes, undo takes it up again.
        conn.execute(
            update(books.run)
            .where(books.run.c.run_id == run_id)
            .values(undone_by_run_id=job.undo_run_id)
        )
        steps = conn.execute(
            select(books.step.c.step_row_id, books.step.c.step_key).where(
                books.step.c.run_id == run_id
            )
        ).all()
        job.check_lock()
    for step_row_id, step_key in sorted(steps, key=_newest_first, reverse=True):
        # The inverse of the step that wrote the row; a step this version does not know gets
        # every inverse (each restores only the rows recorded for its own table).
        known = step_named(step_key)
        for step in (known,) if known is not None else tuple(reversed(APPLY_ORDER)):
            step.undo(job, int(step_row_id))
        job.stop_if_asked()
    ids = [int(step_row_id) for step_row_id, _key in steps]
    with job.engine.begin() as conn:
        conn.execute(delete(books.candidate).where(books.candidate.c.step_row_id.in_(ids)))
        job.check_lock()
    job.result.undone_runs.append(run_id)


def _newest_first(step_row: Any) -> tuple[int, int]:
    """Undo goes back the way the run came: the step applied last first (registry order; a
    marking's row opens with the preference switch, before the overrides' row), and within a
    step the newest row first. A step this version does not know comes first."""
    order = [step.id for step in APPLY_ORDER]
    key = step_row.step_key
    return (order.index(key) if key in order else len(order), int(step_row.step_row_id))


# --- what undo would do (undo --dry-run, and the question before a real undo) -----------------


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
                lines.append("  " + pref.describe())
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
            back = plan_appointments_back(conn, db.tables, db.books, steps)
            run.appointments, run.sample_ids = back.restore, back.sample_ids
            run.already_back = back.already_back
            run.conflicts, run.conflict_ids = back.conflicts, back.conflict_ids
            run.preferences = plan_preferences_back(conn, db.tables, db.books, steps)
            plan.runs.append(run)
    return plan
