"""Waiting on users' locks (issue #9, item 11).

A user editing an appointment holds its row lock in an open transaction. A batch that needs that
row waits at most --lock-wait seconds (SQL Server SET LOCK_TIMEOUT, PostgreSQL lock_timeout,
SQLite busy_timeout), is tried again a bounded number of times with backoff after a lock timeout
or as a deadlock victim, and then fails with exit 1 naming the wait (resumable). When the user
commits during the retries, the run completes. Exercised for real on PostgreSQL with a second
session holding the row (SELECT ... FOR UPDATE); SQL Server's statements are compiled and
asserted.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from click.testing import CliRunner
from conftest import DEMO_NOW
from postgres_fixture import PostgresDatabase
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlglot import exp
from superoffice_databases import TargetDatabase, postgresql_target
from test_end_to_end import invite_rows_to_mark
from test_server_failures import assert_converged, batches_done, finish, start_upgrade

from setup_tool.cli import cli
from setup_tool.connection import ConnectionSettings
from setup_tool.database import open_database
from setup_tool.demo import DemoOptions
from setup_tool.detect import OperatorAnswers
from setup_tool.errors import ExitCode, InterruptedRun
from setup_tool.host_probe import NoHostProbe
from setup_tool.interaction import UnattendedInteraction
from setup_tool.lock_waits import (
    DEADLOCK,
    LOCK_TIMEOUT,
    LockWaitError,
    backoff_seconds,
    bound_lock_waits,
    lock_timeout_sql,
    lock_wait_failure,
    retrying_lock_waits,
)
from setup_tool.steps import UpgradeSettings
from setup_tool.upgrade import run_upgrade

BATCH = 5


@pytest.fixture
def pg_target(pg_database: PostgresDatabase) -> TargetDatabase:
    options = DemoOptions(appointments=3000, invite_share=0.08, now=DEMO_NOW)
    return postgresql_target(pg_database, options)


@contextmanager
def user_holding_row(t: TargetDatabase, appointment_id: int) -> Iterator[Connection]:
    """A second session, as a user editing one appointment: SELECT ... FOR UPDATE in an open
    transaction. Leaving the block without committing rolls it back."""
    engine = create_engine(t.admin_url)
    try:
        with engine.connect() as conn:
            held = conn.execute(
                text(
                    f"SELECT appointment_id FROM {t.table('appointment')} "
                    "WHERE appointment_id = :id FOR UPDATE"
                ),
                {"id": appointment_id},
            ).scalar_one()
            assert held == appointment_id
            yield conn
            if conn.in_transaction():
                conn.rollback()
    finally:
        engine.dispose()


def locked_row(expected: set[int]) -> int:
    """A row to mark in the fifth batch: four batches go through before it."""
    ids = sorted(expected)
    assert len(ids) > 4 * BATCH + 10
    return ids[4 * BATCH + 2]


def lines_with(path: Path, words: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if words in line]


# --- for real, on PostgreSQL ---------------------------------------------------------------------


def test_a_user_holding_a_row_lock_fails_the_batch_after_bounded_retries_and_it_resumes(
    pg_target: TargetDatabase, tmp_path: Path
) -> None:
    t = pg_target
    expected = invite_rows_to_mark(t)
    with user_holding_row(t, locked_row(expected)):
        started = time.monotonic()
        run = start_upgrade(t, tmp_path, "held", "--batch-size", str(BATCH), "--lock-wait", "0.4")
        code, err = finish(run)
        elapsed = time.monotonic() - started

    assert code == 1, err
    assert "batch 5 (appointment_id" in err.lower()
    assert "waited 0.4 s for another session's lock 4 times" in err
    assert "(4 tries, 0.1 s, 0.2 s and 0.4 s apart)" in err
    assert "lock timeout" in err  # PostgreSQL's own words, 55P03
    assert "--lock-wait" in err and "run the same command again to resume" in err
    # bounded: four waits of 0.4 s and three pauses, plus start-up; never the default 10 s wait
    assert 4 * 0.4 + 0.7 <= elapsed < 20
    assert len(lines_with(tmp_path / "held.log", "trying again")) == 3
    assert batches_done(t) == 4  # the batches before the held row are kept
    statuses = t.query(f"SELECT status, exit_code FROM {t.table('setup_tool_run')}")
    assert statuses == [("failed", 1)]

    # The user is done: the next run resumes and converges to what a clean run marks.
    code, err = finish(start_upgrade(t, tmp_path, "again"))
    assert code == 0, err
    assert_converged(t, expected)


def test_when_the_user_commits_during_the_retries_the_run_completes(
    pg_target: TargetDatabase, tmp_path: Path
) -> None:
    t = pg_target
    expected = invite_rows_to_mark(t)
    answers = tmp_path / "answers.toml"
    answers.write_text("lock-wait = 0.5\n")  # the answer-file key
    log = tmp_path / "waits.log"
    with user_holding_row(t, locked_row(expected)) as user:
        run = start_upgrade(
            t, tmp_path, "waits", "--batch-size", str(BATCH), "--config", str(answers)
        )
        deadline = time.monotonic() + 60
        while not (log.exists() and lines_with(log, "trying again")):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the batch never waited for the user's lock"
            time.sleep(0.02)
        user.commit()  # the user saves the appointment
    code, err = finish(run)

    assert code == 0, err
    assert 1 <= len(lines_with(log, "trying again")) <= 3
    assert "waited 0.5 s for another session's lock" in log.read_text()
    assert_converged(t, expected)


def test_an_administrator_holding_the_preference_row_is_a_bounded_wait_too(
    pg_target: TargetDatabase, tmp_path: Path
) -> None:
    """The preference step is one transaction; it waits and retries like a batch."""
    t = pg_target
    expected = invite_rows_to_mark(t)
    engine = create_engine(t.admin_url)
    try:
        with engine.connect() as admin:  # SuperOffice Admin editing the preference (and its id)
            admin.execute(
                text(
                    f"SELECT * FROM {t.table('userpreference')} "
                    "WHERE prefkey = 'DiarySynchronizerActive' FOR UPDATE"
                )
            ).all()
            admin.execute(
                text(
                    f"SELECT * FROM {t.table('sequence')} "
                    "WHERE lower(tablename) = 'userpreference' FOR UPDATE"
                )
            ).all()
            code, err = finish(start_upgrade(t, tmp_path, "pref", "--lock-wait", "0.2"))
            admin.rollback()
    finally:
        engine.dispose()
    assert code == 1, err
    assert "The step 'Switch on Diary Synchronizer Active" in err
    assert "waited 0.2 s for another session's lock 4 times" in err
    assert batches_done(t) == 0  # nothing after it ran
    code, err = finish(start_upgrade(t, tmp_path, "again"))
    assert code == 0, err
    assert_converged(t, expected)


def test_the_lock_wait_comes_from_the_environment_too(
    pg_target: TargetDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = pg_target
    expected = invite_rows_to_mark(t)
    monkeypatch.setenv("SETUP_TOOL_LOCK_WAIT", "0.2")
    with user_holding_row(t, locked_row(expected)):
        code, err = finish(start_upgrade(t, tmp_path, "env", "--batch-size", str(BATCH)))
    assert code == 1, err
    assert "waited 0.2 s for another session's lock 4 times" in err


def test_each_batch_bounds_its_own_lock_waits_and_nothing_leaks(
    pg_target: TargetDatabase,
) -> None:
    """SET LOCAL: the bound lives in each batch's transaction, not in the pooled session. A batch
    locks its rows first, in key order, and from then on waits at most the holding wait (0.5 s),
    not the whole lock wait: users queued behind it never wait long (issue 13)."""
    t = pg_target
    db = open_database(
        ConnectionSettings(database_url=t.url, table_prefix=t.prefix), read_only=False
    )
    statements: list[str] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def seen(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()))

    try:
        result = run_upgrade(
            db,
            OperatorAnswers(),
            UpgradeSettings(batch_size=BATCH, fix_overrides=True, lock_wait_seconds=1.5),
            NoHostProbe(),
            UnattendedInteraction(),
        )
        assert result.exit_code == ExitCode.DONE
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
    finally:
        db.dispose()
    holding = "SET LOCAL lock_timeout = 500"
    updates = [s for s in statements if s.startswith("UPDATE crm7.appointment SET")]
    assert len(updates) == batches_done(t) > 1
    assert "SET LOCAL lock_timeout = 1500" in statements  # the preference step: the whole wait
    assert statements.count(holding) == len(updates)  # nobody held a row: one try per batch
    for index, statement in enumerate(statements):  # bound, rows locked, recorded, changed
        if statement.startswith("UPDATE crm7.appointment SET"):
            bound, lock, record = statements[index - 3 : index]
            assert bound == holding
            assert lock.startswith("SELECT crm7.appointment.appointment_id FROM crm7.appointment")
            assert lock.endswith("appointment.appointment_id FOR UPDATE OF appointment")
            assert record.startswith("INSERT INTO crm7.setup_tool_previous_value")


def test_postgresql_lock_timeout_and_deadlock_are_recognised(
    pg_database: PostgresDatabase,
) -> None:
    engine = create_engine(pg_database.url())
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id int PRIMARY KEY)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1), (2)")
        # 55P03: a row another session holds, with a bounded wait
        with engine.connect() as holder, engine.connect() as waiter:
            holder.exec_driver_sql("SELECT * FROM t WHERE id = 1 FOR UPDATE")
            bound_lock_waits(waiter, 0.1)
            with pytest.raises(OperationalError) as timed_out:
                waiter.exec_driver_sql("UPDATE t SET id = 1 WHERE id = 1")
        assert lock_wait_failure(timed_out.value) == LOCK_TIMEOUT
        # 40P01: two sessions each waiting for the other's row
        assert lock_wait_failure(real_deadlock(engine)) == DEADLOCK
    finally:
        engine.dispose()


def real_deadlock(engine: Engine) -> DBAPIError:
    errors: list[DBAPIError] = []
    both_hold = threading.Barrier(2)

    def session(first: int, second: int) -> None:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"UPDATE t SET id = {first} WHERE id = {first}")
            both_hold.wait(timeout=10)
            try:
                conn.exec_driver_sql(f"UPDATE t SET id = {second} WHERE id = {second}")
            except DBAPIError as error:
                errors.append(error)
            conn.rollback()

    threads = [threading.Thread(target=session, args=pair) for pair in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    [error] = errors  # the server chose one victim; the other went on
    return error


def test_a_user_holding_a_sqlite_database_is_a_lock_wait_too(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    sqlite3.connect(path).close()
    engine = create_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a writer in an open transaction
        with engine.connect() as conn:
            bound_lock_waits(conn, 0.05)
            with pytest.raises(OperationalError) as busy:
                conn.exec_driver_sql("CREATE TABLE t (id int)")
        assert lock_wait_failure(busy.value) == LOCK_TIMEOUT
    finally:
        holder.close()
        engine.dispose()


# --- SQL Server, without a server: the statements and its error numbers ---------------------------


class FakeConnection:
    def __init__(self, dialect_name: str) -> None:
        self.dialect = type("Dialect", (), {"name": dialect_name})()
        self.statements: list[str] = []

    def exec_driver_sql(self, statement: str) -> None:
        self.statements.append(statement)


@pytest.mark.parametrize(
    ("dialect", "seconds", "statement"),
    [
        ("mssql", 10, "SET LOCK_TIMEOUT 10000"),
        ("mssql", 0.0004, "SET LOCK_TIMEOUT 1"),  # never 0: SQL Server reads 0 as "no wait"
        ("postgresql", 10, "SET LOCAL lock_timeout = 10000"),
        ("postgresql", 0.0001, "SET LOCAL lock_timeout = 1"),  # never 0: "wait forever"
        ("sqlite", 2.5, "PRAGMA busy_timeout = 2500"),
    ],
)
def test_lock_timeout_statements(dialect: str, seconds: float, statement: str) -> None:
    assert lock_timeout_sql(dialect, seconds) == statement
    conn = FakeConnection(dialect)
    bound_lock_waits(conn, seconds)  # type: ignore[arg-type]
    assert conn.statements == [statement]


def test_the_sql_server_statement_parses_as_tsql() -> None:
    statement = lock_timeout_sql("mssql", 10)
    assert statement is not None
    [parsed] = sqlglot.parse(statement, read="tsql")
    assert isinstance(parsed, exp.Set)
    [item] = parsed.expressions
    assert item.this.this.name == "LOCK_TIMEOUT" and item.this.expression.to_py() == 10000


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), 86_401])
def test_a_lock_wait_must_bound_the_wait(seconds: float) -> None:
    with pytest.raises(ValueError):
        lock_timeout_sql("mssql", seconds)


class FakeOdbcError(Exception):
    """What pyodbc raises: (sqlstate, message)."""


def odbc_error(sqlstate: str, message: str) -> DBAPIError:
    return DBAPIError("UPDATE crm7.appointment ...", None, FakeOdbcError(sqlstate, message))


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            odbc_error(
                "HY000",
                "[HY000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Lock request time "
                "out period exceeded. (1222) (SQLExecDirectW)",
            ),
            LOCK_TIMEOUT,
        ),
        (
            odbc_error(
                "40001",
                "[40001] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Transaction "
                "(Process ID 57) was deadlocked on lock resources with another process and has "
                "been chosen as the deadlock victim. Rerun the transaction. (1205) "
                "(SQLExecDirectW)",
            ),
            DEADLOCK,
        ),
        (odbc_error("40001", "[40001] [FreeTDS][SQL Server]deadlock victim"), DEADLOCK),
        (
            odbc_error("23000", "[23000] Violation of PRIMARY KEY constraint (2627)"),
            None,
        ),
        (odbc_error("08S01", "[08S01] Communication link failure (10054)"), None),
    ],
)
def test_sql_server_lock_errors_are_recognised(error: DBAPIError, kind: str | None) -> None:
    assert lock_wait_failure(error) == kind


# --- the retries --------------------------------------------------------------------------------


def lock_timeout_error() -> DBAPIError:
    return odbc_error("HY000", "Lock request time out period exceeded. (1222)")


def deadlock_error() -> DBAPIError:
    return odbc_error("40001", "chosen as the deadlock victim (1205)")


class Attempts:
    def __init__(self, *outcomes: BaseException | int) -> None:
        self.outcomes = list(outcomes)
        self.count = 0

    def __call__(self) -> int:
        self.count += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def test_retries_are_bounded_and_back_off() -> None:
    slept: list[float] = []
    attempts = Attempts(*[lock_timeout_error()] * 2, deadlock_error(), lock_timeout_error())
    with pytest.raises(LockWaitError) as gave_up:
        retrying_lock_waits(attempts, seconds=2, retries=3, what="batch 7", sleep=slept.append)
    assert attempts.count == 4
    assert round(sum(slept), 6) == backoff_seconds(2, 1) + backoff_seconds(2, 2) + backoff_seconds(
        2, 3
    )
    assert [backoff_seconds(2, n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    message = str(gave_up.value)
    assert message.startswith(
        "Batch 7 waited 2 s for another session's lock 3 times and was chosen as a deadlock "
        "victim once (4 tries, 0.5 s, 1 s and 2 s apart), so the run stopped"
    )
    assert gave_up.value.exit_code == ExitCode.FAILED


def test_a_retry_that_succeeds_returns_its_result() -> None:
    attempts = Attempts(deadlock_error(), lock_timeout_error(), 42)
    assert retrying_lock_waits(attempts, seconds=0.01, retries=3, what="batch 1") == 42
    assert attempts.count == 3


def test_other_errors_are_not_retried() -> None:
    other = odbc_error("23000", "Violation of PRIMARY KEY constraint (2627)")
    attempts = Attempts(other, 1)
    with pytest.raises(DBAPIError) as raised:
        retrying_lock_waits(attempts, seconds=0.01, retries=3, what="batch 1")
    assert raised.value is other and attempts.count == 1


def test_a_stop_request_during_the_backoff_stops_the_run() -> None:
    stops = iter([False, True])
    attempts = Attempts(lock_timeout_error(), 1)
    with pytest.raises(InterruptedRun, match="batch 3 waited to be tried again"):
        retrying_lock_waits(
            attempts,
            seconds=10,
            retries=3,
            what="batch 3",
            should_stop=lambda: next(stops),
            sleep=lambda _s: None,
        )
    assert attempts.count == 1


# --- the option --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", "86401"])
def test_invalid_lock_wait_is_a_usage_error(value: str, demo_db: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["upgrade", "--database-url", f"sqlite:///{demo_db}", "--dry-run", "--lock-wait", value],
    )
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--lock-wait" in result.output
    assert "Traceback" not in result.output


def test_the_lock_wait_option_is_documented() -> None:
    result = CliRunner().invoke(cli, ["upgrade", "--help"])
    assert "--lock-wait" in result.output and "SETUP_TOOL_LOCK_WAIT" in result.output
