"""The marking while SuperOffice is in use (issue 13): users never wait long on a batch.

A batch locks its rows first, in primary-key order, so the previous values it records are the
values it changes, whatever users do meanwhile; while it holds rows it waits at most 0.5 s for
another lock, then lets them go and waits for the busy rows alone; on SQL Server it is the
deadlock victim of choice. `--pause-between-batches` rests between batches. The report shows the
longest batch, the lock waits given up and the retries.

PostgreSQL runs for real, with users as second sessions; SQL Server's statements and the DBA
script are compiled and asserted on (with sqlglot parsing the T-SQL).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from click.testing import CliRunner
from sqlalchemy import create_engine, literal, text
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from superoffice_databases import TargetDatabase
from test_end_to_end import invite_rows_to_mark
from test_lock_waits import BATCH, locked_row, pg_target, user_holding_row  # noqa: F401
from test_mssql import BOOKS, TABLES, go_batches, script_for
from test_server_failures import assert_converged, finish, start_upgrade

from setup_tool.cli import cli
from setup_tool.errors import ExitCode
from setup_tool.lock_waits import (
    HOLDING_LOCK_WAIT_SECONDS,
    MAX_WAITS_ALONE,
    LockWaitError,
    LockWaitTally,
    holding_lock_wait,
    retrying_lock_waits,
    yield_deadlocks_sql,
)
from setup_tool.steps import BatchFigures
from setup_tool.steps import mark_invites as marking

MSSQL = mssql.dialect()


def tsql(statement: Any) -> str:
    return " ".join(
        str(statement.compile(dialect=MSSQL, compile_kwargs={"literal_binds": True})).split()
    )


# --- PostgreSQL, for real --------------------------------------------------------------------


def session_waiting_on(t: TargetDatabase, holder_pid: int, timeout: float = 60) -> None:
    """Return once some session waits for a lock that `holder_pid` holds."""
    engine = create_engine(t.admin_url)
    deadline = time.monotonic() + timeout
    try:
        with engine.connect() as conn:
            while True:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE :holder = ANY(pg_blocking_pids(pid))"
                    ),
                    {"holder": holder_pid},
                ).scalar_one()
                conn.rollback()  # pg_stat_activity is a snapshot per transaction
                if waiting:
                    return
                assert time.monotonic() < deadline, "nobody ever waited for the user's row"
                time.sleep(0.01)
    finally:
        engine.dispose()


def pid(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def timed_update(t: TargetDatabase, row: int, took: list[float]) -> None:
    """Another user saving row `row`: how long the UPDATE waited."""
    engine = create_engine(t.admin_url)
    try:
        with engine.begin() as conn:
            started = time.monotonic()
            conn.execute(
                text(
                    f"UPDATE {t.table('appointment')} SET enddate = enddate "
                    "WHERE appointment_id = :id"
                ),
                {"id": row},
            )
            took.append(time.monotonic() - started)
    finally:
        engine.dispose()


def marking_batches(report: Path) -> dict[str, Any]:
    steps = json.loads(report.read_text())["steps"]
    batches = next(s for s in steps if s["id"] == "mark_invites")["batches"]
    assert isinstance(batches, dict)
    return batches


def test_users_queued_behind_a_waiting_batch_wait_at_most_the_holding_wait(
    pg_target: TargetDatabase,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A user holds one row of batch 5 for 3 s. The batch, holding the rows before it, waits
    0.5 s, not the 10 s lock wait: then it lets its rows go and waits for that row alone. A
    second user saving a row the batch had locked waits less than a second, and the run
    completes once the first user commits."""
    t = pg_target
    expected = invite_rows_to_mark(t)
    held = locked_row(expected)
    earlier = sorted(expected)[4 * BATCH]  # the first row of batch 5: locked before `held`
    took: list[float] = []
    with user_holding_row(t, held) as user:
        run = start_upgrade(t, tmp_path, "busy", "--batch-size", str(BATCH))
        session_waiting_on(t, pid(user))  # batch 5 holds `earlier` and waits for `held`
        second = threading.Thread(target=timed_update, args=(t, earlier, took))
        second.start()
        time.sleep(3)
        user.commit()
        second.join(timeout=30)
    code, err = finish(run)

    assert code == 0, err
    [waited] = took
    assert waited < HOLDING_LOCK_WAIT_SECONDS + 0.45  # never the lock wait of 10 s
    log = (tmp_path / "busy.log").read_text()
    assert "waiting for the rows another session holds, alone" in log
    assert "trying again" not in log  # a wait alone uses up no retry: it just waits
    batches = marking_batches(tmp_path / "busy.json")
    assert batches["lock_timeouts"] >= 1 and batches["retries"] >= 1
    assert batches["longest_lock_seconds"] >= 2  # batch 5 waited for the user's row
    assert "lock waits given up: " in batches["summary"]
    assert_converged(t, expected)


def test_a_row_given_another_warning_while_the_batch_waits_is_left_alone(
    pg_target: TargetDatabase,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The user who holds the row saves it with another warning while the batch waits for it.
    The batch locked before it read anything, so it neither marks that row nor records it, and
    the run does not stop with "changed ... but recorded"."""
    t = pg_target
    expected = invite_rows_to_mark(t)
    held = locked_row(expected)
    with user_holding_row(t, held) as user:
        run = start_upgrade(t, tmp_path, "warned", "--batch-size", str(BATCH))
        session_waiting_on(t, pid(user))
        user.execute(
            text(
                f"UPDATE {t.table('appointment')} SET cautionwarning = 3 WHERE appointment_id = :id"
            ),
            {"id": held},
        )
        user.commit()
    code, err = finish(run)

    assert code == 0, err
    [(warning,)] = t.query(
        f"SELECT cautionwarning FROM {t.table('appointment')} WHERE appointment_id = {held}"
    )
    assert warning == 3  # the user's warning, not overwritten
    assert_converged(t, expected - {held})


# --- the retries: a wait alone ---------------------------------------------------------------


def lock_timeout() -> DBAPIError:
    class Timeout(Exception):
        sqlstate = "55P03"

    return DBAPIError(
        "SELECT ... FOR UPDATE", None, Timeout("canceling statement due to lock timeout")
    )


class Tries:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        if self.count <= self.failures:
            raise lock_timeout()
        return "done"


def test_a_wait_alone_goes_at_once_and_uses_up_no_retry() -> None:
    slept: list[float] = []
    tally = LockWaitTally()
    tries = Tries(failures=3)
    result = retrying_lock_waits(
        tries,
        seconds=10,
        retries=1,
        what="batch 2",
        sleep=slept.append,
        tally=tally,
        waited=lambda: 0.5,
        wait_alone=lambda kind: True,
    )
    assert result == "done" and tries.count == 4
    assert slept == []  # no backoff: the next try waits for the busy rows itself
    assert (tally.timeouts, tally.deadlocks, tally.retries) == (3, 0, 3)


def test_waits_alone_are_bounded_then_count_as_retries() -> None:
    tries = Tries(failures=MAX_WAITS_ALONE + 10)
    with pytest.raises(LockWaitError, match=r"waited 0\.5 s for another session's lock 3 times"):
        retrying_lock_waits(
            tries,
            seconds=0.01,
            retries=2,
            what="batch 2",
            sleep=lambda _s: None,
            waited=lambda: 0.5,
            wait_alone=lambda kind: True,
        )
    assert tries.count == MAX_WAITS_ALONE + 3


def test_the_wait_while_holding_rows_is_short_except_on_sqlite() -> None:
    assert holding_lock_wait("postgresql", 10) == HOLDING_LOCK_WAIT_SECONDS == 0.5
    assert holding_lock_wait("mssql", 0.2) == 0.2  # never longer than the lock wait
    assert holding_lock_wait("sqlite", 10) == 10  # no row locks: it holds nothing while it waits


def test_batch_figures_keep_the_longest_batch() -> None:
    figures = BatchFigures(2000, planned=3)
    figures.record(1, 0.2, 0.01)
    figures.record(2, 0.4, 0.3)
    figures.record(3, 0.1, None)
    assert (figures.done, figures.longest_batch, figures.longest_seconds) == (3, 2, 0.4)
    assert figures.longest_lock_seconds == 0.3
    assert figures.outcome_text().startswith(
        "3 batches of up to 2,000 rows; the longest took 0.40 s (batch 2); locking a batch's "
        "rows took at most 0.30 s; lock waits given up: 0, deadlocks: 0, retries: 0"
    )


# --- SQL Server, compiled ----------------------------------------------------------------------


def test_sql_server_batches_take_update_row_locks_first_and_never_skip_rows() -> None:
    lo, hi = literal(10), literal(2010)
    lock = tsql(marking.lock_batch_statement(TABLES, BOOKS, 7, lo, hi))
    assert lock.startswith(
        "SELECT crm7.appointment.appointment_id FROM crm7.appointment WITH (UPDLOCK, ROWLOCK) "
        "WHERE crm7.appointment.appointment_id > 10 AND crm7.appointment.appointment_id <= 2010"
    )
    assert lock.endswith("ORDER BY crm7.appointment.appointment_id")  # key order
    assert "FOR UPDATE" not in lock and "READPAST" not in lock
    mark = tsql(marking.mark_batch_statement(TABLES, BOOKS, 7, lo, hi, literal(3), 0, literal(1)))
    assert mark.startswith("UPDATE crm7.appointment WITH (ROWLOCK) SET")
    assert "READPAST" not in mark
    # READPAST only where it decides nothing: finding the rows another session holds
    free = tsql(marking.free_rows_statement(TABLES, BOOKS, 7, lo, hi))
    assert "FROM crm7.appointment WITH (UPDLOCK, ROWLOCK, READPAST) WHERE" in free
    alone = tsql(marking.lock_rows_statement(TABLES, [5, 9]))
    assert "WITH (UPDLOCK, ROWLOCK) WHERE crm7.appointment.appointment_id IN (5, 9)" in alone
    for statement in (lock, mark, free, alone):
        sqlglot.parse_one(statement, read="tsql")


def test_postgresql_batches_lock_the_appointments_only_in_key_order() -> None:
    from sqlalchemy.dialects import postgresql

    lock = marking.lock_batch_statement(TABLES, BOOKS, 7, literal(10), literal(2010))
    sql = " ".join(str(lock.compile(dialect=postgresql.dialect())).split())
    assert sql.endswith("ORDER BY crm7.appointment.appointment_id FOR UPDATE OF appointment")
    free = marking.free_rows_statement(TABLES, BOOKS, 7, literal(10), literal(2010))
    assert str(free.compile(dialect=postgresql.dialect())).endswith(
        "FOR UPDATE OF appointment SKIP LOCKED"
    )


def test_sql_server_batches_stay_under_lock_escalation() -> None:
    assert marking.batch_size("mssql", 10_000) == marking.MSSQL_MAX_BATCH_ROWS < 5000
    assert marking.batch_size("mssql", 2000) == 2000
    assert marking.batch_size("postgresql", 10_000) == 10_000
    assert yield_deadlocks_sql("mssql") == "SET DEADLOCK_PRIORITY LOW"
    assert yield_deadlocks_sql("postgresql") is None


def marking_loop(script: str) -> str:
    batch = next(b for b in go_batches(script) if "WHILE 1 = 1" in b)
    return batch[batch.index("WHILE 1 = 1") :]


def test_the_dba_script_bounds_each_batchs_lock_waits_and_locks_rows_first(make_demo: Any) -> None:
    script = script_for(make_demo(), lock_wait_seconds=4.0, pause_between_batches=0.25)
    loop = marking_loop(script)
    order = [
        "SET DEADLOCK_PRIORITY LOW;",
        "SET LOCK_TIMEOUT 4000;",
        "BEGIN TRANSACTION;",
        "SET @locked = (SELECT count(*) AS count_1",
        "FROM crm7.appointment WITH (UPDLOCK, ROWLOCK)",
        "INSERT INTO crm7.setup_tool_previous_value",
        "UPDATE crm7.appointment WITH (ROWLOCK)\n",
        "COMMIT TRANSACTION;",
        "WAITFOR DELAY '00:00:00.250';",
    ]
    positions = [loop.index(line) for line in order]
    assert positions == sorted(positions), positions
    assert "READPAST" not in script
    assert script.count("SET LOCK_TIMEOUT 4000;") == 1  # once in the loop: every batch


def test_the_dba_script_without_a_pause_does_not_wait(make_demo: Any) -> None:
    loop = marking_loop(script_for(make_demo()))
    assert "WAITFOR" not in loop
    assert "SET LOCK_TIMEOUT 10000;" in loop


# --- --pause-between-batches -------------------------------------------------------------------


def upgrade(demo: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    result = CliRunner().invoke(
        cli,
        [
            "upgrade",
            "--database-url",
            f"sqlite:///{demo}",
            "--unattended",
            "--report",
            str(report),
            "--format",
            "json",
            "--log-file",
            str(tmp_path / "run.log"),
            *args,
        ],
        env=env,
    )
    return result, json.loads(report.read_text()) if report.exists() else None


def mark_step(report: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in report["steps"] if s["id"] == "mark_invites")


def test_the_marking_rests_between_batches_and_says_so(make_demo: Any, tmp_path: Path) -> None:
    demo = make_demo(appointments=1500)
    result, report = upgrade(demo, tmp_path, "--batch-size", "5", "--pause-between-batches", "0.05")
    assert result.exit_code in (ExitCode.DONE, ExitCode.ACTION_REQUIRED), result.output
    batches = mark_step(report)["batches"]
    assert batches["done"] > 3 and batches["pause_seconds"] == 0.05
    assert batches["paused_seconds"] >= 0.05 * (batches["done"] - 1) * 0.9
    assert mark_step(report)["duration_seconds"] >= batches["paused_seconds"]
    assert "rested" in batches["summary"]


def test_the_pause_comes_from_the_answer_file_and_the_environment(
    make_demo: Any, tmp_path: Path
) -> None:
    demo = make_demo(appointments=1500)
    answers = tmp_path / "answers.toml"
    answers.write_text("pause-between-batches = 0.02\nbatch-size = 50\n")
    result, report = upgrade(demo, tmp_path, "--config", str(answers), "--dry-run")
    assert result.exit_code in (ExitCode.DONE, ExitCode.ACTION_REQUIRED), result.output
    assert mark_step(report)["batches"]["pause_seconds"] == 0.02
    env = {"SETUP_TOOL_PAUSE_BETWEEN_BATCHES": "0.03"}
    result, report = upgrade(demo, tmp_path, "--dry-run", env=env)
    assert mark_step(report)["batches"]["pause_seconds"] == 0.03


def test_the_estimate_and_the_plan_include_the_pauses(make_demo: Any, tmp_path: Path) -> None:
    demo = make_demo(appointments=1500)
    _result, plain = upgrade(demo, tmp_path, "--dry-run", "--batch-size", "5")
    _result, paced = upgrade(
        demo, tmp_path, "--dry-run", "--batch-size", "5", "--pause-between-batches", "10"
    )
    planned = mark_step(paced)["batches"]["planned"]
    assert planned > 3
    extra = mark_step(paced)["estimate_seconds"] - mark_step(plain)["estimate_seconds"]
    assert extra == pytest.approx(10 * (planned - 1), abs=1)
    assert mark_step(paced)["batches"]["done"] is None  # a plan has not run
    assert "resting 10 s between them" in mark_step(paced)["batches"]["summary"]


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "601", "soon"])
def test_an_invalid_pause_is_a_usage_error(value: str, demo_db: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["upgrade", "--database-url", f"sqlite:///{demo_db}", "--dry-run",
         "--pause-between-batches", value],
    )  # fmt: skip
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--pause-between-batches" in result.output
    assert "Traceback" not in result.output


def test_the_pause_is_documented_and_saved_with_the_answers(make_demo: Any, tmp_path: Path) -> None:
    help_text = CliRunner().invoke(cli, ["upgrade", "--help"]).output
    assert "--pause-between-batches" in help_text
    assert "SETUP_TOOL_PAUSE_BETWEEN_BATCHES" in help_text
    saved = tmp_path / "saved.toml"
    result, _report = upgrade(
        make_demo(appointments=300),
        tmp_path,
        "--dry-run",
        "--pause-between-batches",
        "0.5",
        "--save-answers",
        str(saved),
    )
    assert result.exit_code in (ExitCode.DONE, ExitCode.ACTION_REQUIRED), result.output
    assert "pause-between-batches = 0.5" in saved.read_text().splitlines()


def test_the_wizard_plan_shows_the_pace(make_demo: Any) -> None:
    from setup_tool.connection import ConnectionSettings
    from setup_tool.database import open_database
    from setup_tool.detect import OperatorAnswers
    from setup_tool.host_probe import NoHostProbe
    from setup_tool.steps import UpgradeSettings
    from setup_tool.upgrade import plan_upgrade
    from setup_tool.wizard_screens import plan_screen

    db = open_database(
        ConnectionSettings(database_url=f"sqlite:///{make_demo(appointments=1500)}"),
        read_only=True,
    )
    try:
        settings = UpgradeSettings(batch_size=10, pause_between_batches=2)
        plan = plan_upgrade(db, OperatorAnswers(), settings, NoHostProbe())
    finally:
        db.dispose()
    screen = " ".join(" ".join(plan_screen(plan, 200)).split())
    planned = next(s for s in plan.steps if s.id == "mark_invites").batches
    assert planned is not None and planned.planned > 1
    assert (
        f"in about {planned.planned} batches of up to 10 rows, resting 2 s between them" in screen
    )


def test_the_report_shows_the_batches_in_every_format(make_demo: Any, tmp_path: Path) -> None:
    demo = make_demo(appointments=1500)
    for fmt, marker in (("text", "Batches: "), ("md", "- Batches: "), ("html", "<dt>Batches</dt>")):
        report = tmp_path / f"report.{fmt}"
        result = CliRunner().invoke(
            cli,
            ["upgrade", "--database-url", f"sqlite:///{demo}", "--dry-run", "--batch-size", "7",
             "--report", str(report), "--format", fmt],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        text_ = report.read_text()
        assert marker in text_ and "batches of up to 7 rows" in text_
