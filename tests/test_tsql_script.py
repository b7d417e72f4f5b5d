"""The T-SQL script a DBA signs off, read as a DBA and two independent T-SQL parsers would.

SQL Server cannot run here: every script the tool writes (each demo scenario; dry runs of a
SQLite, a PostgreSQL and a SQL Server-shaped database) must parse with sqlglot and with
sqlfluff's tsql dialect without an unparsable segment, and its text is asserted on: the lock
(the tool's own sp_getapplock), the column types, the header's counts against the dry run's, the
stops and the resume rules. Its logic is executed in test_tsql_loop_pg.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from cli_helpers import invoke
from conftest import DEMO_NOW
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    create_engine,
    exists,
    select,
)
from sqlglot import exp
from superoffice_databases import postgresql_target

from setup_tool.bookkeeping import BOOKKEEPING_HEAD, Bookkeeping, script_run_mark
from setup_tool.connection import ConnectionSettings
from setup_tool.database import Database, open_database
from setup_tool.demo import DemoOptions
from setup_tool.detect import OperatorAnswers, database_role
from setup_tool.findings import REFUSAL_HINT
from setup_tool.host_probe import NoHostProbe
from setup_tool.locking import applock_sql, get_applock_statement, release_applock_sql
from setup_tool.schema import canonical_tables
from setup_tool.sql_layout import layout, tokens
from setup_tool.steps import UpgradeSettings
from setup_tool.tsql_script import SCRIPT_LOCK_TIMEOUT_MS, copy_rows, tsql_script
from setup_tool.upgrade import UpgradePlan, plan_upgrade

SCRIPT_ID = "0123456789abcdef01234567"
MARK = script_run_mark(SCRIPT_ID)
SCENARIOS = ["new-customer", "existing-customer", "r10-shape"]
TABLE_NUMBERS = {"appointment": 9, "UserPreference": 56}
WITH_NOWAIT = ") WITH NOWAIT;"


# --- making scripts ------------------------------------------------------------------------


def plan_for(db: Database, **settings: Any) -> tuple[UpgradePlan, UpgradeSettings]:
    upgrade_settings = UpgradeSettings(**settings)
    return plan_upgrade(db, OperatorAnswers(), upgrade_settings, NoHostProbe()), upgrade_settings


def sqlite_script(path: Path, *, as_sql_server: bool, **settings: Any) -> str:
    """The script of a dry run on a SQLite demo; `as_sql_server`: with the tables in schema
    crm7 as SQL Server stores them (the dry run's findings are the same)."""
    db = open_database(ConnectionSettings(database_url=f"sqlite:///{path}"), read_only=True)
    try:
        plan, upgrade_settings = plan_for(db, **settings)
        if as_sql_server:
            db = Database(
                db.engine,
                db.url,
                "crm7",
                canonical_tables("crm7"),
                Bookkeeping.for_schema("crm7"),
                True,
            )
        return tsql_script(db, plan, upgrade_settings, TABLE_NUMBERS, SCRIPT_ID)
    finally:
        db.dispose()


@pytest.fixture
def sql_server_script(make_demo: Callable[..., Path]) -> Callable[..., str]:
    def make(scenario: str = "new-customer", travel: bool = False, **settings: Any) -> str:
        path = make_demo(scenario=scenario, travel=travel, appointments=1500)
        return sqlite_script(path, as_sql_server=True, fix_overrides=True, **settings)

    return make


# --- reading scripts ------------------------------------------------------------------------


def go_batches(script: str) -> list[str]:
    return [b for b in re.split(r"^\s*GO\s*$", script, flags=re.MULTILINE) if b.strip()]


def sqlglot_problems(batch: str) -> list[str]:
    """What sqlglot cannot parse in a batch: errors, and statements it keeps as raw commands.

    sqlglot 30 has no grammar for RAISERROR's WITH NOWAIT option; it reads every RAISERROR here
    without it (test_every_raiserror_is_a_message_or_a_stop checks they all have that one form),
    and sqlfluff reads them whole."""
    try:
        statements = sqlglot.parse(batch.replace(WITH_NOWAIT, ");"), read="tsql")
    except sqlglot.errors.ParseError as exc:
        return [str(exc).splitlines()[0]]
    return [
        node.sql()[:200]
        for statement in statements
        if statement is not None
        for node in statement.walk()
        if isinstance(node, exp.Command)
    ]


@functools.cache
def _fluff() -> Any:
    from sqlfluff.core import FluffConfig, Linter

    return Linter(config=FluffConfig(overrides={"dialect": "tsql"}))


@functools.cache
def sqlfluff_problems(batch: str) -> tuple[str, ...]:
    """sqlfluff's parse errors and unparsable segments in one batch (cached: batches repeat from
    script to script, and sqlfluff takes seconds per script)."""
    parsed = _fluff().parse_string(batch + "\nGO\n")
    problems = [str(v.desc()) for v in parsed.violations]
    if parsed.tree is None:
        return (*problems, "no parse tree")
    problems += [seg.raw[:200] for seg in parsed.tree.recursive_crawl("unparsable")]
    return tuple(problems)


def assert_parses(script: str) -> None:
    for batch in go_batches(script):
        assert sqlglot_problems(batch) == [], batch[:400]
        assert sqlfluff_problems(batch) == (), batch[:400]


def batch_with(script: str, needle: str) -> str:
    [batch] = [b for b in go_batches(script) if needle in b]
    return batch


# --- every script parses ----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenarios_script_parses_with_sqlglot_and_sqlfluff(
    scenario: str, make_demo: Callable[..., Path]
) -> None:
    path = make_demo(scenario=scenario, travel=scenario == "new-customer", appointments=1500)
    for as_sql_server in (True, False):  # a SQL Server-shaped and a SQLite dry run
        script = sqlite_script(path, as_sql_server=as_sql_server, fix_overrides=True)
        assert_parses(script)
        assert "CREATE TABLE" in script  # the bookkeeping DDL is there, and parsed too


def test_the_script_of_a_postgresql_dry_run_parses_too(pg_database: Any) -> None:
    target = postgresql_target(
        pg_database, DemoOptions(appointments=1500, now=DEMO_NOW, travel=True)
    )
    db = open_database(
        ConnectionSettings(database_url=target.url, table_prefix=target.prefix), read_only=True
    )
    try:
        plan, settings = plan_for(db, fix_overrides=True)
        script = tsql_script(db, plan, settings, TABLE_NUMBERS, SCRIPT_ID)
    finally:
        db.dispose()
    assert_parses(script)
    assert "WHILE 1 = 1" in script and "crm7.traveltransactionlog" in script


def test_the_parsers_do_catch_what_is_not_tsql() -> None:
    """The two checks above can fail: they see an opaque statement and a broken one."""
    assert sqlglot_problems("PRINT N'x';")
    assert sqlglot_problems("IF 1 = 1 BEGIN SET @a = 1; END ELSE BEGIN SET @a = 2; END;")
    assert sqlfluff_problems("SELECT FROM WHERE (;")


# --- the lock -----------------------------------------------------------------------------------


def test_the_script_takes_the_tools_own_lock_and_stops_naming_the_holder(
    sql_server_script: Callable[..., str],
) -> None:
    script = sql_server_script()
    first = go_batches(script)[0]  # the header's comments, then the first batch
    assert get_applock_statement("@lock", SCRIPT_LOCK_TIMEOUT_MS) in first
    # The same call as the tool's (resource, mode, owner), by the same parser.
    ours = _applock_call(first)
    tools = _applock_call(applock_sql(0))
    assert {k: v for k, v in ours.items() if k != "LockTimeout"} == {
        k: v for k, v in tools.items() if k != "LockTimeout"
    }
    assert ours["LockOwner"] == "Session" and ours["LockTimeout"] == str(SCRIPT_LOCK_TIMEOUT_MS)
    # Not taken: a severity-16 message naming the holder, then nothing more runs.
    refusal = first[first.index("IF @lock < 0") :]
    assert "sys.dm_tran_locks" in refusal and "[setup-tool]" in refusal
    assert "FROM crm7.setup_tool_run" in refusal and "WHERE status = 'running'" in refusal
    raiserror = re.search(r"RAISERROR\(N'(?:[^']|'')*held by %s(?:[^']|'')*'[^;]*;", refusal)
    assert raiserror and ", 16, 1, @holder, @lock)" in raiserror.group()
    assert refusal.index("SET NOEXEC ON;") > raiserror.start()


def _applock_call(batch: str) -> dict[str, str]:
    calls = [
        node
        for statement in sqlglot.parse(batch.replace(WITH_NOWAIT, ");"), read="tsql")
        if statement is not None
        for node in statement.walk()
        if isinstance(node, exp.Execute) and node.this.name.lower() == "sp_getapplock"
    ]
    assert len(calls) == 1
    return {p.this.name.lstrip("@"): p.expression.name for p in calls[0].expressions}


def test_every_batch_checks_the_lock_and_the_last_one_releases_it(
    sql_server_script: Callable[..., str],
) -> None:
    batches = go_batches(sql_server_script(travel=True))
    ddl = [b for b in batches if b.lstrip().startswith(("CREATE", "ALTER", "INSERT", "UPDATE"))]
    ddl += [b for b in batches if "-- Running upgrade" in b]
    ours = [b for b in batches if b not in ddl and "-- The DDL is done" not in b]
    assert len(ours) >= 6
    held = "APPLOCK_MODE('public', N'setup-tool', 'Session')"
    for batch in ours[:-1]:
        assert held in batch, batch[:300]
    last = ours[-1]
    assert last.index("SET NOEXEC OFF;") < last.index(release_applock_sql())
    assert "did not finish" in last


def test_after_the_ddl_the_script_stays_stopped_when_it_had_stopped(
    sql_server_script: Callable[..., str],
) -> None:
    """The DDL batches are skipped with SET NOEXEC ON when the tables exist already; the batch
    after them turns NOEXEC off again, so it must turn it back on when the script had stopped
    (every stop releases the lock first, so no lock means stopped)."""
    batch = batch_with(sql_server_script(), "-- The DDL is done")
    assert (
        batch.index("SET NOEXEC OFF;")
        < batch.index("IF NOT (APPLOCK_MODE('public', N'setup-tool', 'Session') != 'NoLock')")
        < batch.rindex("SET NOEXEC ON;")
    )
    skip = batch_with(sql_server_script(), "unless they are installed already")
    assert f"version_num = '{BOOKKEEPING_HEAD}'" in skip and "SET NOEXEC ON;" in skip


# --- the central database only -------------------------------------------------------------------

HINT = REFUSAL_HINT.split("; ")[1].rstrip(".")  # "satellites and travellers receive ... Travel"


def test_the_first_batch_stops_on_a_satellite_or_travel_copy_before_the_lock_and_any_write(
    sql_server_script: Callable[..., str],
) -> None:
    script = sql_server_script()
    first = go_batches(script)[0]
    guard = first.index("IF OBJECT_ID(N'crm7.travelcurrent', N'U') IS NOT NULL")
    assert (
        first.index("SET @database = DB_NAME();")
        < guard
        < first.index("EXEC @lock = sp_getapplock")
    )
    block = first[guard : first.index("SET @lock = 0;")]
    # What makes setup-tool refuse (detect.database_role): a value that is not the central one.
    copy = (
        "WHERE crm7.travelcurrent.current_id IS NOT NULL AND crm7.travelcurrent.current_id != 0"
        "\n                OR crm7.travelcurrent.systemlevel IS NOT NULL "
        "AND crm7.travelcurrent.systemlevel != 10\n"
    )
    assert block.count(copy) == 3  # the check, then the row it names in the message
    assert block.index("IF EXISTS (") < block.index("SET @current_id = (SELECT TOP 1")
    stop = re.search(
        r"RAISERROR\(N'Database %s is not the central database(?:[^']|'')*'[^;]*;", block
    )
    assert stop is not None
    assert stop.group().endswith(", 16, 1, @database, @current_id, @systemlevel) WITH NOWAIT;")
    assert "Run this script on the central database" in stop.group() and HINT in stop.group()
    assert block[stop.end() :].split()[:2] == ["SET", "NOEXEC"]
    # Nothing is written before it: the bookkeeping DDL and the run record come later.
    for write in ("CREATE TABLE", "INSERT INTO", "UPDATE crm7", "DELETE FROM"):
        assert write not in first, write
    assert script.index("CREATE TABLE") > script.index(first) + len(first)
    # The last batch (it runs after a stop) says why, instead of "run it again to resume".
    last = go_batches(script)[-1]
    assert copy in last and "IF @finished = 0 AND @copy = 1" in last
    assert "this is not the central database" in last and HINT in last
    assert "IF @finished = 0 AND @copy = 0" in last


def test_the_guard_is_there_when_the_dry_run_found_no_travelcurrent_table(
    make_demo: Callable[..., Path],
) -> None:
    """The script may run on another database than the dry run read: it looks for travelcurrent
    where SuperOffice keeps it."""
    path = make_demo(appointments=500)
    db = open_database(ConnectionSettings(database_url=f"sqlite:///{path}"), read_only=True)
    try:
        plan, settings = plan_for(db)
        tables = dataclasses.replace(canonical_tables("crm7"), travelcurrent=None)
        shaped = Database(db.engine, db.url, "crm7", tables, Bookkeeping.for_schema("crm7"), True)
        script = tsql_script(shaped, plan, settings, TABLE_NUMBERS, SCRIPT_ID)
    finally:
        db.dispose()
    first = go_batches(script)[0]
    assert "IF OBJECT_ID(N'crm7.travelcurrent', N'U') IS NOT NULL" in first
    assert "FROM crm7.travelcurrent" in first


@pytest.mark.parametrize(
    "rows",
    [
        [(0, 10)],
        [(None, 10)],
        [(0, None)],
        [(0x01000000, 9)],
        [(0x7F000000, 9)],
        [(0x01000002, 8)],
        [(3, 9)],
        [(0x7F000001, 9)],
        [(0, 9)],
        [(0x01000002, 10)],
        [(5, 10)],
        [(None, 9)],
        [(0, 10), (3, 9)],
        [(0, 10), (0, 10)],
        [],
        [(None, None)],
    ],
)
def test_the_script_reads_travelcurrent_as_setup_tool_does(
    rows: list[tuple[int | None, int | None]], tmp_path: Path
) -> None:
    """The script's condition, executed on a real database, refuses exactly where setup-tool's
    own reading (detect.database_role) refuses, NULLs included (a copy whose columns allow them)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'travelcurrent.db'}")
    tc = Table(
        "travelcurrent",
        MetaData(),
        Column("travelcurrent_id", Integer, primary_key=True),
        Column("current_id", Integer),
        Column("systemlevel", SmallInteger),
    )
    try:
        with engine.begin() as conn:
            tc.create(conn)
            for n, (current_id, systemlevel) in enumerate(rows, start=1):
                conn.execute(
                    tc.insert().values(
                        travelcurrent_id=n, current_id=current_id, systemlevel=systemlevel
                    )
                )
            refused = conn.execute(select(exists().where(copy_rows(tc)))).scalar_one()
    finally:
        engine.dispose()
    assert bool(refused) is database_role(rows).refuses


# --- types --------------------------------------------------------------------------------------


def test_large_types_are_nvarchar_max_as_a_connected_run_creates_them(
    sql_server_script: Callable[..., str],
) -> None:
    script = sql_server_script()
    assert re.search(r"report_json NVARCHAR\(max\) NULL", script)
    for deprecated in ("NTEXT", "IMAGE"):
        assert deprecated not in script.upper()
    assert not re.search(r"\bTEXT\b", script.upper().replace("'", " "))


# --- the header and the closing SELECT ---------------------------------------------------------


def header_rows(script: str) -> dict[str, tuple[str, int]]:
    rows = re.findall(r"^--\s+(preference|overrides|mark_invites)\s+(\w+)\s+(\d+)$", script, re.M)
    return {key: (decision, int(n)) for key, decision, n in rows}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_header_counts_are_the_dry_runs_counts(
    scenario: str, tmp_path: Path, workdir: Path
) -> None:
    demo = tmp_path / "demo.db"
    made = invoke("demo", demo, "--scenario", scenario, "--appointments", 3000, "--travel")
    assert made.exit_code == 0, made.output
    url = f"sqlite:///{demo}"
    common = ["upgrade", "--database-url", url, "--dry-run", "--fix-overrides"]
    dry = invoke(*common, "--format", "json", "--report", tmp_path / "plan.json")
    sql = invoke(*common, "--format", "sql", "--report", tmp_path / "upgrade.sql")
    assert dry.exit_code == 0 and sql.exit_code == 0, (dry.output, sql.output)
    report = json.loads((tmp_path / "plan.json").read_text())
    script = (tmp_path / "upgrade.sql").read_text()
    planned = {
        s["id"]: (s["decision"], s["rows"] if s["decision"] == "change" else 0)
        for s in report["steps"]
        if s["id"] in ("preference", "overrides", "mark_invites")
    }
    assert header_rows(script) == planned
    if scenario == "new-customer":
        assert planned["mark_invites"][1] > 0  # the comparison is about a real count
    # The closing SELECT lists the same numbers beside what the run changed.
    closing = script[script.index("-- Rows changed per step") :]
    for position, (key, (_, rows)) in enumerate(planned.items(), start=1):
        assert f"({position}, '{key}', {rows})" in closing
    assert "LEFT OUTER JOIN" in closing and "sum(done.rows_changed)" in closing


# --- stops and resume rules ----------------------------------------------------------------------


def test_every_raiserror_is_a_message_or_a_stop(sql_server_script: Callable[..., str]) -> None:
    script = sql_server_script(travel=True)
    last = go_batches(script)[-1]
    calls = re.findall(r"RAISERROR\(N'(?:[^']|'')*', (\d+), 1[^;]*;", script)
    assert calls and set(calls) <= {"0", "16"}
    lines = script.splitlines()
    for number, line in enumerate(lines):
        if "RAISERROR(" not in line or line.strip().startswith("--"):
            continue
        assert line.rstrip().endswith(WITH_NOWAIT) or "did not finish" in line, line
        if ", 16, 1" in line and line.strip() not in last:
            # A stop: the lock released before it, nothing run after it.
            assert lines[number + 1].strip() == "SET NOEXEC ON;", line
            assert lines[number + 2].strip() == "RETURN;", line
            before = "\n".join(lines[max(0, number - 6) : number])
            assert "sp_releaseapplock" in before, line


def test_batches_find_their_run_by_the_scripts_own_id(
    sql_server_script: Callable[..., str],
) -> None:
    script = sql_server_script()
    assert script.count(f"'{MARK}'") >= 8
    # Never the newest 'running' row of any run: a stopped script or a dead tool leaves one.
    finds = re.findall(r"SET @run_id = \(SELECT[^;]*;", script, re.S)
    assert finds and all(f"tool_version = '{MARK}'" in f for f in finds)
    assert all("max(" not in f or "status" not in f for f in finds)
    assert f"Script id {SCRIPT_ID}" in script.split("\n\n")[0]  # the header tells it


def test_two_scripts_never_share_an_id(make_demo: Callable[..., Path]) -> None:
    path = make_demo(appointments=500)
    db = open_database(ConnectionSettings(database_url=f"sqlite:///{path}"), read_only=True)
    try:
        plan, settings = plan_for(db)
        scripts = [tsql_script(db, plan, settings, TABLE_NUMBERS) for _ in range(3)]
        ids = {re.findall(r"Script id (\w+)", script)[0] for script in scripts}
    finally:
        db.dispose()
    assert len(ids) == 3 and all(len(i) == 24 for i in ids)


def test_a_rerun_resumes_its_own_run_or_refuses(sql_server_script: Callable[..., str]) -> None:
    start = batch_with(sql_server_script(), "-- The run record")
    order = [
        f"WHERE crm7.setup_tool_run.tool_version = '{MARK}'",  # its own run, any status
        "crm7.setup_tool_run.status = 'completed'",  # finished: refuse
        "ran to its end already (run %d)",
        "WHERE crm7.setup_tool_run.run_id > @run_id",  # a run after it: refuse
        "setup-tool ran after it (run %d)",
        f"AND crm7.setup_tool_run.tool_version != '{MARK}'",  # died under the lock
        "SET status='running'",  # resume this script's run ...
        "INSERT INTO crm7.setup_tool_run",  # ... or start one
    ]
    positions = [start.index(needle) for needle in order]
    assert positions == sorted(positions)
    refusals = start[: start.index("SET status='interrupted'")]
    assert refusals.count("SET NOEXEC ON;") == 3  # no lock, finished, out of date


def test_each_step_batch_skips_what_this_run_did_and_checks_what_came_before(
    sql_server_script: Callable[..., str],
) -> None:
    script = sql_server_script()
    preference = batch_with(script, "-- Switch on Diary Synchronizer Active")
    skip = preference.index("preference_on_at IS NOT NULL")
    assert skip < preference.index("RETURN;", skip) < preference.index("BEGIN TRANSACTION;")
    # The marking step opens in the transaction that switches the preference on.
    opened = re.search(r"'mark_invites',\s+'staging'", preference)
    assert opened is not None
    assert preference.index("SET preference_on_at=@now") < opened.start()
    assert opened.start() < preference.index("COMMIT TRANSACTION;")
    marking = batch_with(script, "-- Mark pre-existing invite appointments")
    # After the preference and the overrides, or it stops.
    assert "the preference batch did not finish" in marking
    assert "the overrides batch failed" in marking
    # Its own step again, staged only once, the loop from the step's checkpoint.
    assert "AND crm7.setup_tool_step.step_key = 'mark_invites');" in marking
    assert marking.index("IF @step IS NULL") < marking.index("INSERT INTO crm7.setup_tool_step")
    assert re.search(r"IF EXISTS \(\s*SELECT \*[^;]*status = 'staging'\s*\)\s*BEGIN", marking)
    assert "SET @lo = coalesce(@checkpoint, -2147483648);" in marking
    finish = batch_with(script, "-- Done: record the outcome")
    assert "the marking did not finish" in finish
    assert finish.index("the marking did not finish") < finish.index("SET status='completed'")


# --- the keyset loop ---------------------------------------------------------------------------


def loop_of(script: str) -> str:
    marking = batch_with(script, "-- Mark pre-existing invite appointments")
    start = marking.index("WHILE 1 = 1")
    return marking[start : marking.index("\nEND;", start)]


def test_the_loop_takes_its_first_id_after_the_sequence_update(
    sql_server_script: Callable[..., str],
) -> None:
    loop = loop_of(sql_server_script(travel=True))
    update = loop.index("UPDATE crm7.sequence\n")
    first = loop.index("SET @first = (SELECT crm7.sequence.next_id - @changed")
    assert update < loop.index("SET @seq_rows = @@ROWCOUNT;", update) < first
    assert loop.index("INSERT INTO crm7.traveltransactionlog") > first


def test_the_loop_moves_past_each_batch_and_stops_after_the_last(
    sql_server_script: Callable[..., str],
) -> None:
    loop = loop_of(sql_server_script())
    boundary = loop[: loop.index("IF @hi IS NULL")]
    assert re.search(r"crm7\.setup_tool_candidate\.appointment_id > @lo\n", boundary)
    assert (
        "TOP 1000" in boundary and "ORDER BY crm7.setup_tool_candidate.appointment_id" in boundary
    )
    lines = [line.strip() for line in loop.splitlines()]
    at = lines.index
    assert "IF @hi IS NULL BREAK;" in lines
    assert (
        at("BEGIN TRANSACTION;")
        < at("SET @recorded = @@ROWCOUNT;")
        < at("SET @changed = @@ROWCOUNT;")
        < at("IF @changed <> @recorded")
        < at("checkpoint_key=@hi,")
        < at("COMMIT TRANSACTION;")
    )
    # The next batch starts above this one: the lower bound moves to the upper, after commit.
    assert at("SET @lo = @hi;") == at("COMMIT TRANSACTION;") + 1
    assert lines.count("SET @lo = @hi;") == 1
    # Record and mark take exactly (lo, hi] of the staged ids.
    for needle in (
        "INSERT INTO crm7.setup_tool_previous_value",
        "UPDATE crm7.appointment WITH (ROWLOCK)\n",  # row locks: users on its pages go on
    ):
        part = loop[loop.index(needle) :]
        assert re.search(
            r"appointment_id > @lo\n\s+AND crm7\.appointment\.appointment_id <= @hi\n", part
        )
    assert "IF @batch % 10 = 0" in loop and "Marking: batch %d, %d of %d rows marked" in loop


def test_the_window_ends_when_the_script_switches_the_preference_on(
    make_demo: Callable[..., Path],
) -> None:
    path = make_demo(appointments=1500, travel=False)
    db = open_database(ConnectionSettings(database_url=f"sqlite:///{path}"), read_only=True)
    try:
        plan, settings = plan_for(db)
        script = tsql_script(db, plan, settings, TABLE_NUMBERS, SCRIPT_ID)
        assert "registered < @until" in batch_with(script, "-- Mark pre-existing")
        # A window that ended before the dry run (the preference came on by itself) keeps its
        # end: the script must not stretch it to the moment it runs.
        selection = plan.findings.invites.selection
        assert selection is not None
        earlier = dataclasses.replace(
            selection, window=dataclasses.replace(selection.window, until=DEMO_NOW)
        )
        findings = dataclasses.replace(
            plan.findings, invites=dataclasses.replace(plan.findings.invites, selection=earlier)
        )
        script = tsql_script(
            db, dataclasses.replace(plan, findings=findings), settings, TABLE_NUMBERS, SCRIPT_ID
        )
    finally:
        db.dispose()
    marking = batch_with(script, "-- Mark pre-existing")
    assert "@until" not in marking.split("INSERT INTO setup_tool_candidate")[1]
    assert f"registered < '{DEMO_NOW:%Y-%m-%d %H:%M:%S}'" in marking


def test_dates_are_read_the_same_whatever_the_logins_language(
    sql_server_script: Callable[..., str],
) -> None:
    first = go_batches(sql_server_script())[0]
    assert "SET DATEFORMAT ymd;" in first and "SET XACT_ABORT ON;" in first
    assert "SET NOCOUNT ON;" in first


# --- the layout --------------------------------------------------------------------------------


def test_statements_are_laid_out_one_clause_per_line_and_keep_every_token(
    sql_server_script: Callable[..., str],
) -> None:
    script = sql_server_script(travel=True)
    # Only messages may be longer: RAISERROR takes one literal, never an expression.
    assert max(len(line) for line in script.splitlines() if "RAISERROR(" not in line) < 200
    loop = loop_of(script)
    mark = loop[loop.index("    UPDATE crm7.appointment WITH (ROWLOCK)\n") :]
    assert mark.startswith("    UPDATE crm7.appointment WITH (ROWLOCK)\n    SET updated=@now,\n")
    assert "[cautionWarning]=1\n    WHERE crm7.appointment.appointment_id > @lo\n" in mark
    sql = (
        "SELECT a.x, 'it''s -- not a comment' FROM t AS a WHERE a.y IN (SELECT b.y FROM b "
        "WHERE b.z = 1 AND b.w > 2) AND a.q = N'x  y' ORDER BY a.x"
    )
    assert tokens(layout(sql)) == tokens(sql)
    assert layout(sql).splitlines()[0] == "SELECT a.x, 'it''s -- not a comment'"
