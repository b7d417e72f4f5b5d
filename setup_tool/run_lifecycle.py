"""One run's life, the same for upgrade and undo: the lock, the tool's tables, the run record,
its end, and the runs that died before it.

- The lock (setup_tool.locking) is held from before planning until the run is recorded as
  finished, so two runs never work side by side and a run still 'running' in the records while
  we hold it died (killed, crashed, lost connection): it is closed as interrupted.
- The bookkeeping tables are installed or upgraded (alembic), the dead runs closed and the new
  run recorded in one transaction, before the first change.
- A run ends as completed (exit 0 or 4), interrupted (Ctrl-C, a stop between batches) or
  failed, written in a fresh transaction: a failed one is gone, the record of it must not be.
  The status mapping is `bookkeeping.run_status`, one rule for both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime

from setup_tool.bookkeeping import (
    FAILED,
    INTERRUPTED,
    close_dead_runs,
    finish_run_statement,
    install_bookkeeping,
    lock_holder,
    start_run,
)
from setup_tool.clock import utc_now
from setup_tool.database import Database
from setup_tool.errors import ExitCode, InterruptedRun
from setup_tool.locking import HeldLock, run_lock


def held_lock(db: Database, timeout_seconds: float) -> AbstractContextManager[HeldLock]:
    """setup-tool's run lock on this database; a busy lock names who holds it (exit 5)."""
    return run_lock(
        db.engine,
        timeout_seconds=timeout_seconds,
        describe_holder=lambda: lock_holder(db.engine, db.books),
    )


@dataclass(frozen=True)
class StartedRun:
    """A run recorded as running: its id and when it started (naive UTC, as stored)."""

    db: Database
    run_id: int
    started_at: datetime

    def finish(self, outcome: str, code: ExitCode) -> None:
        """Record how the run ended. Never raises: the connection may be what failed, and the
        error that ended the run matters more than this record of it."""
        try:
            with self.db.engine.begin() as conn:
                conn.execute(
                    finish_run_statement(
                        self.db.books,
                        self.run_id,
                        outcome=outcome,
                        exit_code=int(code),
                        finished_at=utc_now(),
                    )
                )
        except Exception:
            pass

    def fail(self, error: BaseException) -> None:
        """The run stops being 'running': interrupted (a stop asked for, Ctrl-C) or failed."""
        if isinstance(error, (KeyboardInterrupt, InterruptedRun)):
            self.finish(INTERRUPTED, ExitCode.INTERRUPTED)
        else:
            self.finish(FAILED, ExitCode.FAILED)


def start(
    db: Database,
    *,
    mode: str,
    acting_associate_id: int,
    started_at: datetime | None = None,
    superoffice_version: str | None = None,
    synchronizer_version: str | None = None,
) -> StartedRun:
    """Install the tool's tables, close the runs that died and record this one, in one
    transaction. Only for a caller holding the lock (`held_lock`)."""
    now = started_at or utc_now()
    with db.engine.begin() as conn:
        install_bookkeeping(conn, db.schema)
        close_dead_runs(conn, db.books)  # we hold the lock: a 'running' run died
        run_id = start_run(
            conn,
            db.books,
            mode=mode,
            started_at=now,
            acting_associate_id=acting_associate_id,
            superoffice_version=superoffice_version,
            synchronizer_version=synchronizer_version,
        )
    return StartedRun(db, run_id, now)


@contextmanager
def recorded(run: StartedRun) -> Iterator[StartedRun]:
    """Whatever escapes the block ends the run as interrupted or failed, and goes on."""
    try:
        yield run
    except BaseException as error:
        run.fail(error)
        raise
