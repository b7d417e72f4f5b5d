"""The dry run never promises what the real run cannot do: every precondition of a real run
(SuperOffice's sequence rows, the travel log, records this version knows, the login's rights for
undo) is checked before the first write, alike in the dry run, and a missing one blocks with
exit 3 and words that name it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from superoffice_databases import postgresql_target

from setup_tool.bookkeeping import BOOKKEEPING_HEAD
from setup_tool.cli import cli
from setup_tool.connection import ConnectionSettings
from setup_tool.database import open_database
from setup_tool.demo import DemoOptions
from setup_tool.errors import BlockedError, ExitCode
from setup_tool.preconditions import known_revisions, revision_problem
from setup_tool.sequence import SequenceRowError, reserve_ids, table_number

pytestmark = pytest.mark.usefixtures("workdir")


def invoke(*args: object) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="setup-tool")
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Unexpected error" not in result.output, result.output
    return result


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def execute(db: Path, *statements: str) -> None:
    with closing(sqlite3.connect(db)) as con:
        for statement in statements:
            con.execute(statement)
        con.commit()


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as con:
        return con.execute(sql).fetchall()


def url(db: Path) -> str:
    return f"sqlite:///{db}"


def dry_run(db: Path) -> tuple[Result, dict[str, Any]]:
    result = invoke(
        "upgrade", "--database-url", url(db), "--dry-run", "--detailed-exitcode", "--format", "json"
    )
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


def real_run(db: Path) -> Result:
    return invoke("upgrade", "--database-url", url(db), "--unattended", "--fix-overrides")


# --- Travel: the log table, ids for its rows, the table numbers --------------------------------

TRAVEL_SABOTAGE: dict[str, tuple[str, str]] = {
    "no sequence row for the travel log": (
        "DELETE FROM sequence WHERE lower(TableName) = 'traveltransactionlog'",
        "sequence table lacks a row for the table traveltransactionlog",
    ),
    "two sequence rows for the travel log": (
        "INSERT INTO sequence (id, next_id, TableName, TableNumber) "
        "VALUES (9999, 1, 'TravelTransactionLog', 29)",
        "sequence table has 2 rows for the table traveltransactionlog",
    ),
    "no table number for appointment": (
        "DELETE FROM sequence WHERE lower(TableName) = 'appointment'",
        "sequence table lacks a row for the table appointment",
    ),
    "no travel log table": (
        "DROP TABLE traveltransactionlog",
        "Travel is on, but the database has no traveltransactionlog table",
    ),
}


@pytest.mark.parametrize("case", TRAVEL_SABOTAGE, ids=list(TRAVEL_SABOTAGE))
def test_what_the_travel_log_needs_blocks_the_dry_run_and_the_real_run_alike(
    case: str, make_demo: Callable[..., Path]
) -> None:
    sabotage, missing = TRAVEL_SABOTAGE[case]
    db = make_demo(travel=True)
    execute(db, sabotage)
    before = digest(db)

    dry, report = dry_run(db)
    assert dry.exit_code == ExitCode.BLOCKED, dry.output  # was 10: "changes pending"
    steps = {step["id"]: step for step in report["steps"]}
    assert steps["preconditions"]["decision"] == "blocked"
    assert missing in steps["preconditions"]["reason"]
    assert "Nothing was changed" in steps["preconditions"]["reason"]
    assert not [s for s in report["steps"] if s["decision"] == "change"]  # no promises
    assert "it would change" in steps["mark_invites"]["reason"]
    assert report["exit_code"] == ExitCode.BLOCKED

    real = real_run(db)
    assert real.exit_code == ExitCode.BLOCKED, real.output  # was 1, after a half-done run
    assert missing in real.stderr
    assert digest(db) == before


def test_a_missing_sequence_row_does_not_block_what_needs_no_travel_log(
    make_demo: Callable[..., Path],
) -> None:
    db = make_demo(travel=True)
    assert real_run(db).exit_code == ExitCode.DONE
    execute(db, "DELETE FROM sequence WHERE lower(TableName) = 'traveltransactionlog'")
    dry, report = dry_run(db)
    assert dry.exit_code == ExitCode.DONE, dry.output  # nothing to change, nothing to log
    assert "preconditions" not in {s["id"] for s in report["steps"]}
    assert real_run(db).exit_code == ExitCode.DONE


def test_no_sequence_row_for_the_missing_preference_row_blocks_both_with_a_hint(
    demo_db: Path,
) -> None:
    execute(demo_db, "DELETE FROM sequence WHERE lower(TableName) = 'userpreference'")
    before = digest(demo_db)
    for result in (dry_run(demo_db)[0], real_run(demo_db)):
        assert result.exit_code == ExitCode.BLOCKED, result.output  # was 1, without a hint
        assert "sequence table lacks a row for the table UserPreference" in result.stderr
        assert "Ask SuperOffice support" in result.stderr
    assert digest(demo_db) == before


def test_a_sequence_row_missing_while_writing_names_the_table_and_what_to_do(
    demo_db: Path,
) -> None:
    db = open_database(ConnectionSettings(database_url=url(demo_db)), read_only=False)
    try:
        with db.engine.connect() as conn:
            with pytest.raises(SequenceRowError) as reserving:
                reserve_ids(conn, db.tables, "NoSuchTable", 3)
            with pytest.raises(SequenceRowError) as numbering:
                table_number(conn, db.tables, "NoSuchTable")
            conn.rollback()
    finally:
        db.dispose()
    for error in (reserving.value, numbering.value):
        assert isinstance(error, BlockedError) and error.exit_code == ExitCode.BLOCKED
        assert "SuperOffice's sequence table lacks a row for the table NoSuchTable" in error.message
        assert error.hint is not None and "SuperOffice support" in error.hint


# --- records written by a newer setup-tool -----------------------------------------------------


def test_the_known_revisions_are_every_migration_not_a_list() -> None:
    known = known_revisions()
    assert {"0001", "0002", BOOKKEEPING_HEAD} <= known
    for revision in known:
        assert revision_problem(revision, []) is None
    problem = revision_problem("0099", [{"run_id": 8, "tool_version": "9.9.9"}])
    assert problem is not None and "setup-tool 9.9.9" in problem.what


def test_a_database_upgraded_by_a_newer_setup_tool_blocks_upgrade_and_undo(
    demo_db: Path,
) -> None:
    assert real_run(demo_db).exit_code == ExitCode.DONE
    assert invoke("undo", "--database-url", url(demo_db), "--unattended").exit_code == 0
    # A newer setup-tool ran since: its own revision and its version in the newest run.
    execute(
        demo_db,
        "UPDATE setup_tool_alembic_version SET version_num = '0099'",
        "UPDATE setup_tool_run SET tool_version = '9.9.9' "
        "WHERE run_id = (SELECT max(run_id) FROM setup_tool_run)",
    )
    before = digest(demo_db)

    dry, report = dry_run(demo_db)
    assert dry.exit_code == ExitCode.BLOCKED, dry.output  # was 10: "will change"
    reason = {s["id"]: s for s in report["steps"]}["preconditions"]["reason"]
    assert "bookkeeping revision '0099'" in reason and "setup-tool 9.9.9" in reason

    real = real_run(demo_db)
    assert real.exit_code == ExitCode.BLOCKED, real.output  # was 1: "Unexpected error"
    assert "setup-tool 9.9.9" in real.stderr

    undone = invoke("undo", "--database-url", url(demo_db), "--unattended")
    assert undone.exit_code == ExitCode.BLOCKED, undone.output
    assert "setup-tool 9.9.9" in undone.stderr and "Nothing was changed" in undone.stderr
    assert digest(demo_db) == before


# --- undo -------------------------------------------------------------------------------------


def test_undo_with_travel_and_no_sequence_row_is_blocked_before_its_first_write(
    make_demo: Callable[..., Path],
) -> None:
    db = make_demo(travel=True)
    assert real_run(db).exit_code == ExitCode.DONE
    execute(db, "DELETE FROM sequence WHERE lower(TableName) = 'traveltransactionlog'")
    before = digest(db)
    undone = invoke("undo", "--database-url", url(db), "--unattended")
    assert undone.exit_code == ExitCode.BLOCKED, undone.output  # was 1, half-way
    assert "lacks a row for the table traveltransactionlog" in undone.stderr
    assert digest(db) == before
    assert query(db, "SELECT count(*) FROM setup_tool_run WHERE mode = 'undo'") == [(0,)]


def test_undo_without_rights_says_which_and_changes_nothing(pg_database: Any) -> None:
    target = postgresql_target(pg_database, DemoOptions(appointments=300))
    owner = ["--database-url", target.url, "--table-prefix", "crm7"]
    assert invoke("upgrade", *owner, "--unattended", "--fix-overrides").exit_code == 0
    target.execute("GRANT USAGE ON SCHEMA crm7 TO crm_reader")
    target.execute("GRANT SELECT ON ALL TABLES IN SCHEMA crm7 TO crm_reader")
    before = target.snapshot("appointment", "userpreference", "setup_tool_run")

    reader = ["--database-url", pg_database.url(user="crm_reader"), "--table-prefix", "crm7"]
    undone = invoke("undo", *reader, "--unattended")

    assert undone.exit_code == ExitCode.BLOCKED, undone.output  # was 1: raw "permission denied"
    assert "permission denied" not in undone.stderr
    assert "The login cannot undo setup-tool's changes; it lacks:" in undone.stderr
    assert "UPDATE on crm7.appointment" in undone.stderr
    assert "Nothing was changed" in undone.stderr
    assert target.snapshot("appointment", "userpreference", "setup_tool_run") == before
