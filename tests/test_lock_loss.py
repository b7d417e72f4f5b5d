"""A run whose lock is lost stops before its next batch commits (issue #9, item 4).

The lock lives on a session of its own; when that session ends (an administrator's
pg_terminate_backend, idle_session_timeout, a restart) the lock goes with it and another run could
start alongside. The holder checks the lock inside every batch's transaction, just before the
commit: it stops with exit 1, the batch in flight is rolled back, and the next run resumes to the
same marked set as a clean run. Really done: a PostgreSQL backend terminated from an admin
session, a SQLite lock file deleted under a running process.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest
from postgres_fixture import PostgresDatabase
from sqlalchemy import create_engine
from superoffice_databases import TargetDatabase, postgresql_target, sqlite_target
from test_end_to_end import invite_rows_to_mark
from test_server_failures import assert_converged, batches_done, finish, start_upgrade

from setup_tool.connection import ConnectionSettings
from setup_tool.database import open_database
from setup_tool.demo import DemoOptions
from setup_tool.detect import OperatorAnswers
from setup_tool.host_probe import NoHostProbe
from setup_tool.interaction import UnattendedInteraction
from setup_tool.locking import POSTGRES_LOCK_KEY, LockLostError, lock_file_path
from setup_tool.steps import UpgradeSettings
from setup_tool.upgrade import run_upgrade

DEMO_NOW = datetime(2026, 11, 1, 12, 0, 0)
APPOINTMENTS = 5000  # about 200 rows to mark: 200 batches of one row


def demo_options() -> DemoOptions:
    return DemoOptions(appointments=APPOINTMENTS, invite_share=0.08, now=DEMO_NOW)


@pytest.fixture
def pg_target(pg_database: PostgresDatabase) -> TargetDatabase:
    return postgresql_target(pg_database, demo_options())


def lock_backend(t: TargetDatabase) -> int | None:
    """The backend pid holding the run lock (pg_locks shows the bigint key in two halves)."""
    key = POSTGRES_LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
    rows = t.query(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1",
        hi=key >> 32,
        lo=key & 0xFFFF_FFFF,
    )
    return int(rows[0][0]) if rows else None


def terminate(t: TargetDatabase, pid: int) -> None:
    t.execute("SELECT pg_terminate_backend(:pid)", pid=pid)


def run_statuses(t: TargetDatabase) -> list[tuple[int, str, int | None]]:
    return [
        (int(r[0]), str(r[1]), r[2])
        for r in t.query(
            f"SELECT run_id, status, exit_code FROM {t.table('setup_tool_run')} ORDER BY run_id"
        )
    ]


def test_terminated_lock_session_stops_the_run_before_the_next_commit(
    pg_target: TargetDatabase,
) -> None:
    """Deterministic: the lock's backend is terminated right after batch 3 commits."""
    t = pg_target
    expected = invite_rows_to_mark(t)
    assert len(expected) > 20

    def cut_after_batch_three(done: int, _total: int) -> None:
        if done == 3:
            pid = lock_backend(t)
            assert pid is not None
            terminate(t, pid)
            deadline = time.monotonic() + 10
            while lock_backend(t) is not None:  # gone, and the lock with it
                assert time.monotonic() < deadline
                time.sleep(0.01)

    db = open_database(
        ConnectionSettings(database_url=t.url, table_prefix=t.prefix), read_only=False
    )
    try:
        with pytest.raises(LockLostError) as lost:
            run_upgrade(
                db,
                OperatorAnswers(),
                UpgradeSettings(batch_size=1, fix_overrides=True),
                NoHostProbe(),
                UnattendedInteraction(),
                progress=cut_after_batch_three,
            )
    finally:
        db.dispose()
    assert "was lost" in str(lost.value) and "session has ended" in str(lost.value)
    assert batches_done(t) == 3  # the fourth batch was rolled back, not committed
    marked = t.query(
        f"SELECT count(*) FROM {t.table('setup_tool_previous_value')} "
        "WHERE table_name = 'appointment'"
    )
    assert marked == [(3,)]
    assert run_statuses(t) == [(1, "failed", 1)]


def test_cli_run_whose_lock_backend_is_terminated_exits_1_and_the_next_run_resumes(
    pg_target: TargetDatabase, tmp_path: Path
) -> None:
    t = pg_target
    expected = invite_rows_to_mark(t)
    run = start_upgrade(t, tmp_path, "cut", "--batch-size", "1")
    deadline = time.monotonic() + 60
    while batches_done(t) < 3:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pid = lock_backend(t)
    assert pid is not None
    terminate(t, pid)  # from an admin session: the lock goes with its backend
    at_cut = batches_done(t)

    code, err = finish(run)

    assert code == 1, err
    assert "run lock on database" in err and "was lost" in err
    assert "stopped before committing its next batch" in err
    assert "run the same command again to resume" in err
    # At most the batch already committing when the backend died; nothing after it.
    assert at_cut <= batches_done(t) <= at_cut + 1
    assert batches_done(t) < len(expected)
    assert run_statuses(t) == [(1, "failed", 1)]

    code, err = finish(start_upgrade(t, tmp_path, "again"))
    assert code == 0, err
    assert_converged(t, expected)
    assert [status for _, status, _ in run_statuses(t)] == ["failed", "completed"]


def test_cli_run_whose_sqlite_lock_file_is_deleted_exits_1_and_the_next_run_resumes(
    tmp_path: Path,
) -> None:
    """The SQLite lock is an OS lock on a file: deleting the file lets a newcomer lock another
    file under the same name. The holder notices at its next batch."""
    t = sqlite_target(tmp_path / "crm.db", demo_options())
    expected = invite_rows_to_mark(t)
    run = start_upgrade(t, tmp_path, "cut", "--batch-size", "1")
    deadline = time.monotonic() + 60
    while batches_done(t) < 3:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.unlink(lock_file_path(tmp_path / "crm.db"))

    code, err = finish(run)

    assert code == 1, err
    assert "was lost" in err and "deleted or replaced" in err
    assert batches_done(t) < len(expected)
    code, err = finish(start_upgrade(t, tmp_path, "again"))
    assert code == 0, err
    assert_converged(t, expected)


def test_the_lock_session_outlives_idle_session_timeout_through_a_whole_run(
    pg_target: TargetDatabase, pg_database: PostgresDatabase, tmp_path: Path
) -> None:
    """A DBA's idle_session_timeout shorter than the run: the lock's session sits idle for the
    whole run and must not be ended for it (its work sessions are busy all the time)."""
    t = pg_target
    expected = invite_rows_to_mark(t)
    admin = create_engine(pg_database.admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f"ALTER ROLE crm_user IN DATABASE {pg_database.name} SET idle_session_timeout = 500"
            )
    finally:
        admin.dispose()
    code, err = finish(start_upgrade(t, tmp_path, "idle", "--batch-size", "1"))
    assert code == 0, err
    assert_converged(t, expected)
    # The lock was released by its own session at the end, not lost with it on the way.
    assert "Could not release the run lock" not in (tmp_path / "idle.log").read_text()
