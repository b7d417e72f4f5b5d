"""What a real server does to a run: other sessions, kills, dropped connections, logins without
rights. Each test really does it, on SQLite and on a PostgreSQL server started by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from superoffice_databases import TargetDatabase
from test_end_to_end import invite_rows_to_mark

from setup_tool.locking import run_lock

BIG = 30_000  # enough batches of one row that a run can be caught half-way


@pytest.fixture
def big_target(make_target: Any, request: pytest.FixtureRequest) -> TargetDatabase:
    if "mssql" in request.node.callspec.id:
        pytest.skip("kills and terminated sessions are tested on SQLite and PostgreSQL")
    target: TargetDatabase = make_target(appointments=BIG)
    return target


def start_upgrade(
    t: TargetDatabase, tmp_path: Path, name: str, *args: str
) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "setup_tool",
        "upgrade",
        *t.connection_args(),
        "--unattended",
        "--fix-overrides",
        "--log-file",
        str(tmp_path / f"{name}.log"),
        "--report",
        str(tmp_path / f"{name}.json"),
        *args,
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )


def batches_done(t: TargetDatabase) -> int:
    try:
        rows = t.query(
            f"SELECT COALESCE(MAX(batches_done), 0) FROM {t.table('setup_tool_step')} "
            "WHERE step_key = 'mark_invites'"
        )
    except Exception:  # the tables are not there yet
        return 0
    return int(rows[0][0])


def wait_for_batches(t: TargetDatabase, process: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while batches_done(t) < count:
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "the run never reached its batches"
        time.sleep(0.02)


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _out, err = process.communicate(timeout=120)
    assert "Traceback" not in err
    return process.returncode, err


def assert_converged(t: TargetDatabase, expected: set[int]) -> None:
    marked = {
        r[0]
        for r in t.query(
            f"SELECT record_id FROM {t.table('setup_tool_previous_value')} "
            "WHERE table_name = 'appointment'"
        )
    }
    [(recorded,)] = t.query(
        f"SELECT COUNT(*) FROM {t.table('setup_tool_previous_value')} "
        "WHERE table_name = 'appointment'"
    )
    assert marked == expected and recorded == len(expected)  # every previous value, once
    left = invite_rows_to_mark(t)
    assert left == set()


def test_two_concurrent_upgrades_one_waits_out_with_code_5(
    big_target: TargetDatabase, tmp_path: Path
) -> None:
    expected = invite_rows_to_mark(big_target)
    first = start_upgrade(big_target, tmp_path, "first", "--batch-size", "1")
    wait_for_batches(big_target, first, 3)
    second = start_upgrade(big_target, tmp_path, "second")
    code, err = finish(second)
    assert code == 5 and "holds the lock" in err
    assert "run 1 started" in err  # who: from the tool's run table
    assert finish(first)[0] == 0
    assert_converged(big_target, expected)


def test_a_run_killed_mid_marking_leaves_no_lock_and_the_next_run_resumes(
    big_target: TargetDatabase, tmp_path: Path
) -> None:
    expected = invite_rows_to_mark(big_target)
    victim = start_upgrade(big_target, tmp_path, "victim", "--batch-size", "1")
    wait_for_batches(big_target, victim, 10)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    done_before = batches_done(big_target)
    assert done_before > 0

    engine = create_engine(big_target.admin_url)
    try:  # the lock died with the process (the server notices the closed socket quickly)
        with run_lock(engine, timeout_seconds=10):
            pass
    finally:
        engine.dispose()
    code, _ = finish(start_upgrade(big_target, tmp_path, "resume"))
    assert code == 0
    assert_converged(big_target, expected)
    statuses = big_target.query(
        f"SELECT run_id, status FROM {big_target.table('setup_tool_run')} ORDER BY run_id"
    )
    assert statuses == [(1, "interrupted"), (2, "completed")]


def test_a_terminated_server_session_is_a_clear_error_and_resumable(
    big_target: TargetDatabase, tmp_path: Path
) -> None:
    if big_target.kind != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    expected = invite_rows_to_mark(big_target)
    run = start_upgrade(big_target, tmp_path, "cut", "--batch-size", "1")
    wait_for_batches(big_target, run, 10)
    big_target.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE usename = 'crm_user' AND datname = current_database() AND pid <> pg_backend_pid()"
    )
    code, err = finish(run)
    assert code == 1
    # Whichever session notices first: a work session's next statement, or the lock's check
    # just before the next commit (the lock's session was terminated too).
    lost_lock = "run lock on database" in err and "was lost" in err
    assert "database reported an error" in err or lost_lock, err
    assert "run the same command again" in err
    code, _ = finish(start_upgrade(big_target, tmp_path, "again"))
    assert code == 0
    assert_converged(big_target, expected)


def test_a_read_only_login_can_dry_run_but_is_stopped_before_the_first_write(
    make_target: Any, pg_database: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.id != "postgresql":
        pytest.skip("logins and rights are tested on PostgreSQL")
    t: TargetDatabase = make_target()
    t.execute("GRANT USAGE ON SCHEMA crm7 TO crm_reader")
    t.execute("GRANT SELECT ON ALL TABLES IN SCHEMA crm7 TO crm_reader")
    before = t.snapshot("appointment", "userpreference", "sequence")
    reader = TargetDatabase("postgresql", pg_database.url(user="crm_reader"), "crm7", t.admin_url)

    code, _ = finish(start_upgrade(reader, tmp_path, "dry", "--dry-run"))
    assert code == 0
    code, err = finish(start_upgrade(reader, tmp_path, "real"))
    assert code == 3
    assert "UPDATE on crm7.appointment" in err
    assert "CREATE TABLE in schema crm7" in err
    assert "Nothing was changed" in err
    assert t.snapshot("appointment", "userpreference", "sequence") == before
