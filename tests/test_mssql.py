"""SQL Server without a SQL Server: every statement the steps run, compiled for the mssql dialect
and asserted on; the DBA script parsed with sqlglot as T-SQL."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, literal, literal_column, select
from sqlalchemy.dialects import mssql
from sqlalchemy.sql import ClauseElement

from setup_tool.bookkeeping import Bookkeeping, bookkeeping_sql
from setup_tool.connection import ConnectionSettings
from setup_tool.database import Database, open_database
from setup_tool.detect import OperatorAnswers
from setup_tool.findings import MarkingWindow
from setup_tool.host_probe import NoHostProbe
from setup_tool.invites import Selection, to_mark
from setup_tool.schema import canonical_tables
from setup_tool.sequence import reserve_ids_statement
from setup_tool.steps import UpgradeSettings, preference
from setup_tool.steps import mark_invites as marking
from setup_tool.travel import UPDATED, log_changes_statement
from setup_tool.tsql_script import tsql_script
from setup_tool.upgrade import UpgradePlan, plan_upgrade

DIALECT = mssql.dialect()
TABLES = canonical_tables("crm7")
BOOKS = Bookkeeping.for_schema("crm7")
WINDOW = MarkingWindow(datetime(2025, 1, 1), datetime(2026, 11, 1, 12))
SELECTION = Selection(WINDOW, invites_since=datetime(2024, 6, 1))
MAX_PARAMETERS = 2100  # SQL Server's limit per statement


def tsql(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=DIALECT))


def parameters(statement: ClauseElement) -> int:
    return len(statement.compile(dialect=DIALECT).params)


def batch_statements() -> dict[str, ClauseElement]:
    lo, hi, batch = literal(10), literal(2010), literal(3)
    return {
        "stage": marking.stage_candidates_statement(TABLES, BOOKS, 7, SELECTION),
        "boundary": marking.next_boundary_statement(BOOKS, 7, 2000),
        "record": marking.record_batch_statement(
            TABLES, BOOKS, 7, lo, hi, batch, datetime(2026, 11, 1)
        ),
        "mark": marking.mark_batch_statement(
            TABLES, BOOKS, 7, lo, hi, batch, 0, datetime(2026, 11, 1)
        ),
        "checkpoint": marking.checkpoint_statement(BOOKS, 7),
        "travel": log_changes_statement(
            TABLES,
            marking.recorded_ids(BOOKS, 7, batch),
            first_id=500,
            kind=UPDATED,
            table_no=9,
            associate_id=0,
            now=datetime(2026, 11, 1),
        ),
        "sequence": reserve_ids_statement(TABLES, "traveltransactionlog", 80),
        "count": select(func.count()).where(to_mark(TABLES, SELECTION)),
    }


@pytest.mark.parametrize("name", sorted(batch_statements()))
def test_every_marking_statement_names_the_schema_and_brackets_mixed_case(name: str) -> None:
    sql = tsql(batch_statements()[name])
    assert "crm7." in sql
    assert '"' not in sql  # T-SQL brackets, never ANSI quotes
    for mixed in ("cautionWarning", "updatedCount", "invitedPersonId", "TableName"):
        if mixed.lower() in sql.lower():
            assert f"[{mixed}]" in sql, f"{mixed} not bracketed in {name}"
    assert parameters(batch_statements()[name]) < MAX_PARAMETERS


def test_selecting_statements_carry_every_footprint_and_exclusion_of_spec_step_4() -> None:
    statements = batch_statements()
    for name in ("stage", "count"):
        sql = tsql(statements[name])
        assert sql.startswith("WITH invite_footprints AS"), name  # T-SQL: WITH before INSERT
        assert "FROM crm7.invitation" in sql  # (a)
        assert "footprint.[SendEmail] = " in sql  # (b)
        assert "footprint.[emailId] != " in sql and "footprint.registered >= " in sql  # (c)
        assert "[recurrenceRuleId]" in sql and "min(series_first.registered)" in sql  # series
        for row in ("own_row", "participant"):  # a meeting's own row and its participants'
            assert f"{row}.associate_id != " in sql, name  # in a diary
            assert f"{row}.owned_externally = " in sql, name  # not Outlook/Google's
    for name in ("record", "mark"):
        sql = tsql(statements[name])
        assert "crm7.appointment.associate_id != " in sql, name  # re-checked per batch
        assert "crm7.appointment.[cautionWarning] = " in sql, name
    for name in ("record", "mark"):
        sql = tsql(statements[name])
        assert re.search(
            r"crm7\.appointment\.appointment_id > \S+ AND "
            r"crm7\.appointment\.appointment_id <= ",
            sql,
        ), name
        assert "TOP" not in sql  # a batch is a key range, never a re-scanned TOP (n)


def test_the_next_batch_is_a_seek_on_the_staged_keys_not_a_scan_of_appointments() -> None:
    boundary = marking.next_boundary_statement(BOOKS, 7, 2000, literal_column("@lo"))
    sql = literal_tsql(boundary)
    assert "SELECT TOP 2000 crm7.setup_tool_candidate.appointment_id" in sql
    assert "crm7.appointment" not in sql
    # Strictly above the last batch's upper bound: `>=` would find the same batch for ever.
    assert re.search(r"crm7\.setup_tool_candidate\.appointment_id > @lo\b", sql)
    assert "crm7.setup_tool_candidate.step_row_id = 7 AND" in sql
    assert sql.rstrip().endswith("ORDER BY crm7.setup_tool_candidate.appointment_id) AS next_batch")
    assert sql.startswith("SELECT max(next_batch.appointment_id)")


def test_the_update_stamps_the_row_and_caps_updated_count() -> None:
    sql = " ".join(literal_tsql(batch_statements()["mark"]).split())
    assert "SET updated='2026-11-01 00:00:00', updated_associate_id=0, " in sql
    assert (
        "[updatedCount]=CASE WHEN (crm7.appointment.[updatedCount] >= 65535) THEN 65535 "
        "ELSE crm7.appointment.[updatedCount] + 1 END, [cautionWarning]=1 WHERE" in sql
    )
    # Only rows still markable, of this batch's range, recorded first in this batch.
    assert "crm7.appointment.appointment_id > 10 AND crm7.appointment.appointment_id <= 2010" in (
        sql
    )
    assert (
        "(crm7.appointment.[cautionWarning] = 0 OR crm7.appointment.[cautionWarning] IS NULL)"
        in sql
    )
    assert (
        "WHERE crm7.setup_tool_previous_value.step_row_id = 7 AND "
        "crm7.setup_tool_previous_value.batch_no = 3)" in sql
    )


def test_a_smallint_updated_count_is_capped_at_32767() -> None:
    from sqlalchemy import Column, MetaData, SmallInteger, Table

    from setup_tool.steps import next_updated_count

    counter = Table("t", MetaData(), Column("updatedCount", SmallInteger)).c.updatedCount
    sql = literal_tsql(next_updated_count(counter))
    assert sql == "CASE WHEN (t.[updatedCount] >= 32767) THEN 32767 ELSE t.[updatedCount] + 1 END"


def literal_tsql(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True}))


def test_preference_statements_compile_for_sql_server(demo_db: Path) -> None:
    db = open_database(ConnectionSettings(database_url=f"sqlite:///{demo_db}"), read_only=True)
    try:
        plan = plan_upgrade(db, OperatorAnswers(), UpgradeSettings(), NoHostProbe())
    finally:
        db.dispose()
    ctx = _crm7_context(plan)
    insert = tsql(preference.insert_statement(ctx, 31))
    assert insert.startswith("INSERT INTO crm7.[UserPreference]")
    assert "[updatedCount]" in insert
    update = tsql(preference.switch_on_statement(ctx, [4, 5]))
    assert update.startswith("UPDATE crm7.[UserPreference] SET")
    assert "lower(crm7.sequence.[TableName])" in tsql(
        reserve_ids_statement(TABLES, "UserPreference", 1)
    )


def _crm7_context(plan: UpgradePlan):  # type: ignore[no-untyped-def]
    from setup_tool.steps import PlanContext

    return PlanContext(TABLES, BOOKS, plan.findings, UpgradeSettings(), DIALECT, plan.now)


# --- the DBA script -----------------------------------------------------------------------------


def script_for(demo_path: Path, **settings: object) -> str:
    db = open_database(ConnectionSettings(database_url=f"sqlite:///{demo_path}"), read_only=True)
    try:
        upgrade_settings = UpgradeSettings(**settings)  # type: ignore[arg-type]
        plan = plan_upgrade(db, OperatorAnswers(), upgrade_settings, NoHostProbe())
        crm7 = Database(db.engine, db.url, "crm7", TABLES, BOOKS, True)
        return tsql_script(crm7, plan, upgrade_settings, {"appointment": 9, "UserPreference": 56})
    finally:
        db.dispose()


def go_batches(script: str) -> list[str]:
    return [b for b in re.split(r"^\s*GO\s*$", script, flags=re.MULTILINE) if b.strip()]


def commands(batch: str) -> list[str]:
    """What sqlglot cannot parse in a batch (test_tsql_script.sqlglot_problems: RAISERROR's
    WITH NOWAIT, which sqlglot has no grammar for, is read without it)."""
    from test_tsql_script import sqlglot_problems

    return sqlglot_problems(batch)


def indented(lines: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in lines.splitlines())


@pytest.mark.parametrize("travel", [False, True])
def test_the_dba_scripts_loop_runs_the_tools_own_batch_statements(make_demo, travel: bool) -> None:
    """Each batch of the loop is the tool's record, mark and travel statements, built by the same
    functions for the script's variables: the script cannot drift from what a real run does."""
    from setup_tool.sql_layout import layout

    script = script_for(make_demo(travel=travel), fix_overrides=True)
    v = {name: literal_column(f"@{name}") for name in ("step", "lo", "hi", "batch", "now")}
    record = marking.record_batch_statement(
        TABLES, BOOKS, v["step"], v["lo"], v["hi"], v["batch"], v["now"]
    )
    mark = marking.mark_batch_statement(
        TABLES, BOOKS, v["step"], v["lo"], v["hi"], v["batch"], 0, v["now"]
    )
    loop = script[script.index("WHILE 1 = 1") :]
    loop = loop[: loop.index("\nEND;\n")]
    for statement in (record, mark):
        assert indented(layout(literal_tsql(statement)) + ";", "    ") in loop
    log = log_changes_statement(
        TABLES,
        marking.recorded_ids(BOOKS, v["step"], v["batch"]),
        first_id=literal_column("@first"),
        kind=UPDATED,
        table_no=9,
        associate_id=0,
        now=v["now"],
    )
    logged = indented(layout(literal_tsql(log.inline())) + ";", "    ")
    assert (logged in loop) is travel
    assert len(go_batches(script)) >= 8
    for batch in go_batches(script):
        assert commands(batch) == [], batch[:300]


def test_the_script_stages_the_same_selection_as_a_real_run(demo_db: Path) -> None:
    """The candidates are staged by the tool's own statement, its window ending at @until (when
    the script switched the preference on), as a real run's ends when it starts."""
    from setup_tool.sql_layout import layout

    db = open_database(ConnectionSettings(database_url=f"sqlite:///{demo_db}"), read_only=True)
    try:
        plan = plan_upgrade(db, OperatorAnswers(), UpgradeSettings(), NoHostProbe())
    finally:
        db.dispose()
    selection = plan.findings.invites.selection
    assert selection is not None and selection.window.until == plan.now
    window = dataclasses.replace(selection.window, until_sql=literal_column("@until"))
    staged = marking.stage_candidates_statement(
        TABLES, BOOKS, literal_column("@step"), dataclasses.replace(selection, window=window)
    )
    script = script_for(demo_db)
    marking_batch = next(b for b in go_batches(script) if "WHILE 1 = 1" in b)
    assert indented(layout(literal_tsql(staged.inline())) + ";", "    ") in marking_batch
    assert "registered < @until" in marking_batch


def test_bookkeeping_ddl_for_sql_server() -> None:
    ddl = bookkeeping_sql("crm7", "mssql")
    assert "CREATE TABLE crm7.setup_tool_alembic_version" in ddl
    for table in (
        "setup_tool_run",
        "setup_tool_step",
        "setup_tool_previous_value",
        "setup_tool_candidate",
    ):
        assert f"CREATE TABLE crm7.{table}" in ddl
    assert "IDENTITY" in ddl and "\nGO\n" in ddl
    for batch in go_batches(ddl):
        assert commands(batch) == []


def test_literal_columns_are_tsql_variables() -> None:
    window = dataclasses.replace(WINDOW, until_sql=literal_column("@until"))
    selection = dataclasses.replace(SELECTION, window=window)
    assert "registered < @until" in tsql(select(func.count()).where(to_mark(TABLES, selection)))


def test_the_cli_writes_the_script_of_a_dry_run_and_refuses_it_for_a_real_run(
    demo_db: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from setup_tool.cli import cli

    before = demo_db.read_bytes()
    target = tmp_path / "upgrade.sql"
    url = f"sqlite:///{demo_db}"
    result = CliRunner().invoke(
        cli, ["upgrade", "--database-url", url, "--dry-run", "--report", str(target)]
    )
    assert result.exit_code == 0, result.output
    script = target.read_text()
    assert script.startswith("-- setup-tool") and "WHILE 1 = 1" in script
    assert all(commands(batch) == [] for batch in go_batches(script))
    assert demo_db.read_bytes() == before

    refused = CliRunner().invoke(
        cli,
        [
            "upgrade",
            "--database-url",
            url,
            "--unattended",
            "--format",
            "sql",
            "--log-file",
            str(tmp_path / "x.log"),
        ],
    )
    assert refused.exit_code == 2 and "--dry-run" in refused.output
    assert demo_db.read_bytes() == before
