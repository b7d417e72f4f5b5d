"""The DBA script's logic, executed: its PL/pgSQL transcription run on a real PostgreSQL server.

SQL Server cannot run here, so the T-SQL script itself is only compiled and read
(test_tsql_script.py). The same builder (setup_tool.tsql_script) also writes its batches as
PostgreSQL DO blocks; these tests run them and judge the result against the independent oracle
(invite_oracle, SPEC step 4 in plain Python) and the sequence table. A loop that never moves its
lower bound, a first id taken before the sequence UPDATE, a batch that finds another run's row,
or a re-run that starts a second run beside the first fails here, not only reads wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import DEMO_NOW
from scenarios import SATELLITE, TRAVELLER
from sqlalchemy import Engine, create_engine
from superoffice_databases import TargetDatabase, invites_to_mark, postgresql_target

from setup_tool.bookkeeping import install_bookkeeping, script_run_mark
from setup_tool.connection import ConnectionSettings
from setup_tool.database import Database, open_database
from setup_tool.demo import DemoOptions
from setup_tool.detect import OperatorAnswers
from setup_tool.findings import REFUSAL_HINT
from setup_tool.host_probe import NoHostProbe
from setup_tool.steps import UpgradeSettings
from setup_tool.tsql_script import closing_select, expected_rows, plpgsql_blocks
from setup_tool.upgrade import UpgradePlan, plan_upgrade

SCRIPT_ID = "5c1a7e0d2b9f4e8aa1b2c3d4"
BATCH_SIZE = 2  # many batches from a small demo: the loop must move from one to the next
# A loop that never advances its lower bound runs until this, instead of hanging the suite.
STATEMENT_TIMEOUT = "20s"


@dataclass
class Script:
    target: TargetDatabase
    db: Database
    plan: UpgradePlan
    blocks: list[str]
    settings: UpgradeSettings

    def run(self, engine: Engine | None = None) -> None:
        """Every block in order, each in autocommit (its COMMITs end its transactions), stopping
        at the first that fails, as SET NOEXEC stops the T-SQL script."""
        own = engine is None
        engine = engine or create_engine(self.target.admin_url)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
                run_blocks(conn, self.blocks)
        finally:
            if own:
                engine.dispose()


def run_blocks(conn: Any, blocks: list[str]) -> None:
    """Straight to the driver, without parameters: the blocks' messages hold % signs."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for block in blocks:
            try:
                cursor.execute(block)
            except psycopg.Error as exc:
                numbered = "\n".join(f"{n:4} {line}" for n, line in enumerate(block.splitlines()))
                exc.add_note(f"in the block:\n{numbered}")
                raise
    finally:
        cursor.close()


def scalar(t: TargetDatabase, sql: str, **params: Any) -> Any:
    rows = t.query(sql, **params)
    return rows[0][0] if rows else None


def marked(t: TargetDatabase) -> set[int]:
    return {
        row[0]
        for row in t.query(
            f"SELECT appointment_id FROM {t.table('appointment')} WHERE cautionwarning = 1"
        )
    }


def travel_next_id(t: TargetDatabase) -> int:
    return int(
        scalar(
            t,
            f"SELECT next_id FROM {t.table('sequence')} "
            "WHERE lower(tablename) = 'traveltransactionlog'",
        )
    )


@pytest.fixture
def script(pg_database: Any) -> Iterator[Any]:
    """make(travel=..., scenario=...): a PostgreSQL demo with the bookkeeping installed (unless
    bookkeeping=False), and the transcription of the script a dry run writes for it."""
    opened: list[Database] = []

    def make(bookkeeping: bool = True, **options: Any) -> Script:
        demo = DemoOptions(**{"appointments": 1500, "now": DEMO_NOW, **options})
        target = postgresql_target(pg_database, demo)
        engine = create_engine(target.admin_url)
        try:
            with engine.begin() as conn:  # the T-SQL script's DDL batches, done as a run does
                if bookkeeping:
                    install_bookkeeping(conn, target.prefix)
        finally:
            engine.dispose()
        db = open_database(
            ConnectionSettings(database_url=target.url, table_prefix=target.prefix),
            read_only=True,
        )
        opened.append(db)
        settings = UpgradeSettings(batch_size=BATCH_SIZE, fix_overrides=True)
        plan = plan_upgrade(db, OperatorAnswers(), settings, NoHostProbe())
        blocks = plpgsql_blocks(db, plan, settings, script_id=SCRIPT_ID)
        return Script(target, db, plan, blocks, settings)

    yield make
    for db in opened:
        db.dispose()


def run_row(t: TargetDatabase) -> dict[str, Any]:
    [row] = t.records(
        f"SELECT * FROM {t.table('setup_tool_run')} WHERE tool_version = :mark",
        mark=script_run_mark(SCRIPT_ID),
    )
    return row


def test_the_script_marks_exactly_the_oracles_rows_with_travel_ids_from_the_sequence(
    script: Any,
) -> None:
    s = script(travel=True)
    t = s.target
    before_rows = t.database_rows()
    before_marked = marked(t)
    next_before = travel_next_id(t)
    log = t.table("traveltransactionlog")
    old_log = {row[0] for row in t.query(f"SELECT traveltransactionlog_id FROM {log}")}

    s.run()

    run = run_row(t)
    assert run["status"] == "completed"
    expected = invites_to_mark(before_rows, run["preference_on_at"])
    assert expected, "the demo must have rows to mark"
    assert marked(t) - before_marked == expected
    # Previous values: one per marked row, each batch inside its own key range.
    pv = t.table("setup_tool_previous_value")
    recorded = t.query(
        f"SELECT record_id FROM {pv} WHERE table_name = 'appointment' ORDER BY record_id"
    )
    assert [r[0] for r in recorded] == sorted(expected)
    # The travel log's ids are exactly the ids reserved from the sequence: UPDATE first, then
    # read next_id (SUPEROFFICE.md) - a first id read before the UPDATE overlaps older rows.
    new_log = t.records(
        f"SELECT traveltransactionlog_id, record_id, tablenumber, type FROM {log} "
        "ORDER BY traveltransactionlog_id"
    )
    new_log = [r for r in new_log if r["traveltransactionlog_id"] not in old_log]
    ids = [r["traveltransactionlog_id"] for r in new_log]
    assert ids == list(range(next_before, travel_next_id(t)))
    appointment_log = {r["record_id"] for r in new_log if r["tablenumber"] == 9}
    assert appointment_log == expected
    # Many batches, the checkpoint at the last candidate, no candidate left behind.
    step = t.records(
        f"SELECT * FROM {t.table('setup_tool_step')} WHERE run_id = :r AND step_key = "
        "'mark_invites'",
        r=run["run_id"],
    )[0]
    assert step["status"] == "completed" and step["rows_changed"] == len(expected)
    assert step["batches_done"] == math.ceil(step["rows_planned"] / BATCH_SIZE) > 10
    assert step["checkpoint_key"] == max(expected)
    assert scalar(t, f"SELECT count(*) FROM {t.table('setup_tool_candidate')}") == 0


def test_the_closing_select_shows_the_dry_runs_counts_beside_what_was_done(script: Any) -> None:
    s = script()
    before = marked(s.target)
    s.run()
    run_id = run_row(s.target)["run_id"]
    engine = create_engine(s.target.admin_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(closing_select(s.db.books, s.plan, run_id)).all()
    finally:
        engine.dispose()
    expected = expected_rows(s.plan)
    assert [(key, want) for key, want, _ in rows] == list(expected.items())
    assert all(done == want for _, want, done in rows), rows
    assert expected["mark_invites"] == len(marked(s.target) - before) > 0
    assert expected["preference"] == 1 and expected["overrides"] > 0


def test_a_rerun_after_a_stop_resumes_its_own_run_from_the_checkpoint(script: Any) -> None:
    s = script(travel=True)
    t = s.target
    before_rows = t.database_rows()
    pv = t.table("setup_tool_previous_value")
    # A batch that fails half-way through the marking: batch 4 cannot record its rows.
    t.execute(
        "CREATE FUNCTION fail_batch_4() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.batch_no = 4 AND NEW.table_name = 'appointment' THEN "
        "RAISE EXCEPTION 'batch 4 fails'; END IF; RETURN NEW; END $$"
    )
    t.execute(
        f"CREATE TRIGGER fail_batch_4 BEFORE INSERT ON {pv} FOR EACH ROW "
        "EXECUTE FUNCTION fail_batch_4()"
    )
    with pytest.raises(psycopg.Error, match="batch 4 fails"):
        s.run()
    stopped = run_row(t)
    step_sql = (
        f"SELECT status, batches_done, rows_changed FROM {t.table('setup_tool_step')} "
        "WHERE run_id = :r AND step_key = 'mark_invites'"
    )
    recorded_before = scalar(t, f"SELECT count(*) FROM {pv} WHERE table_name = 'appointment'")
    # Batches 1-3 committed and checkpointed; batch 4 rolled back whole.
    assert t.query(step_sql, r=stopped["run_id"]) == [("marking", 3, recorded_before)]
    assert recorded_before > 0
    preference_rows = scalar(t, f"SELECT count(*) FROM {t.table('userpreference')}")
    t.execute(f"DROP TRIGGER fail_batch_4 ON {pv}")

    s.run()  # the same script again

    runs = t.query(f"SELECT run_id, status FROM {t.table('setup_tool_run')}")
    assert runs == [(stopped["run_id"], "completed")]  # resumed, never a second run
    assert scalar(t, f"SELECT count(*) FROM {t.table('userpreference')}") == preference_rows
    expected = invites_to_mark(before_rows, stopped["preference_on_at"])
    assert marked(t) == expected | {
        r["appointment_id"] for r in before_rows.appointments if r["cautionwarning"] == 1
    }
    recorded = t.query(f"SELECT record_id FROM {pv} WHERE table_name = 'appointment'")
    assert sorted(r[0] for r in recorded) == sorted(expected)  # no row recorded twice


def test_a_finished_script_refuses_to_run_again_and_changes_nothing(script: Any) -> None:
    s = script(travel=True)
    s.run()
    t = s.target
    snapshot = t.snapshot("appointment", "userpreference", "sequence", "traveltransactionlog")
    with pytest.raises(psycopg.Error, match="ran to its end already"):
        s.run()
    assert t.snapshot("appointment", "userpreference", "sequence", "traveltransactionlog") == (
        snapshot
    )
    assert scalar(t, f"SELECT count(*) FROM {t.table('setup_tool_run')}") == 1


def test_setup_tool_finishes_a_stopped_script_and_the_script_then_refuses(
    script: Any, tmp_path: Path
) -> None:
    """Stopped right after switching the preference on (its marking step opened in the same
    transaction): setup-tool resumes that marking with the script's window, and the script,
    run again, refuses: setup-tool ran after it."""
    from cli_helpers import invoke

    s = script(travel=True)
    t = s.target
    before_rows, before_marked = t.database_rows(), marked(t)
    s.blocks, whole = s.blocks[:3], s.blocks  # the lock, the run, the preference; then it stops
    s.run()
    stopped = run_row(t)
    assert stopped["preference_on_at"] is not None and marked(t) == before_marked
    result = invoke(
        "upgrade",
        *t.connection_args(),
        "--unattended",
        "--log-file",
        tmp_path / "tool.log",
        "--report",
        tmp_path / "report.json",
    )
    assert result.exit_code in (0, 4), result.output
    expected = invites_to_mark(before_rows, stopped["preference_on_at"])
    assert expected and marked(t) - before_marked == expected
    step = t.records(
        f"SELECT run_id, status, finished_by_run_id FROM {t.table('setup_tool_step')} "
        "WHERE step_key = 'mark_invites'"
    )
    assert len(step) == 1 and step[0]["run_id"] == stopped["run_id"]
    assert step[0]["status"] == "completed" and step[0]["finished_by_run_id"] != stopped["run_id"]

    s.blocks = whole
    snapshot = t.snapshot("appointment", "userpreference", "sequence")
    with pytest.raises(psycopg.Error, match=r"setup-tool ran after it \(run \d+\)"):
        s.run()
    assert t.snapshot("appointment", "userpreference", "sequence") == snapshot
    assert run_row(t)["status"] == "interrupted"  # as setup-tool found it: it died


def test_later_batches_never_take_another_runs_row_for_theirs(script: Any) -> None:
    """A row left 'running' by a tool that died must not be mistaken for the script's run."""
    s = script()
    t = s.target
    t.execute(
        f"INSERT INTO {t.table('setup_tool_run')} (mode, status, started_at, tool_version, host, "
        "os_user, acting_associate_id) VALUES ('upgrade', 'running', now(), '0.1.0', 'h', "
        "'u', 0)"
    )
    s.run()
    rows = t.records(f"SELECT * FROM {t.table('setup_tool_run')} ORDER BY run_id")
    assert [(r["tool_version"], r["status"]) for r in rows] == [
        ("0.1.0", "interrupted"),  # died: the script holds the lock, so nobody runs it
        (script_run_mark(SCRIPT_ID), "completed"),
    ]
    assert rows[0]["preference_on_at"] is None
    steps = t.query(f"SELECT DISTINCT run_id FROM {t.table('setup_tool_step')}")
    assert steps == [(rows[1]["run_id"],)]


def test_setup_tool_meets_a_running_script_as_the_lock_holder_and_names_it(
    script: Any, tmp_path: Path
) -> None:
    from cli_helpers import invoke

    s = script()
    t = s.target
    engine = create_engine(t.admin_url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            run_blocks(conn, s.blocks[:2])  # the script holds the lock and recorded its run
            result = invoke(
                "upgrade",
                *t.connection_args(),
                "--unattended",
                "--log-file",
                tmp_path / "busy.log",
            )
            run_id = run_row(t)["run_id"]
            run_blocks(conn, s.blocks[-1:])  # the script's last block releases it
    finally:
        engine.dispose()
    assert result.exit_code == 5, result.output
    assert f"the T-SQL script's run {run_id} ({script_run_mark(SCRIPT_ID)}) started" in (
        result.output
    )
    assert scalar(t, f"SELECT count(*) FROM {t.table('setup_tool_run')}") == 1


def test_the_transcription_is_the_same_builder_as_the_tsql(script: Any) -> None:
    """The blocks run here are the T-SQL batches after its DDL, statement for statement: the
    same statements in the same order, only spelled for PostgreSQL."""
    s = script(travel=True)
    text_blocks = "\n".join(s.blocks)
    assert "WHILE" not in text_blocks and "LOOP" in text_blocks
    assert text_blocks.count("UPDATE crm7.sequence") >= 3


def whole_schema(t: TargetDatabase) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the demo's schema with all its rows: a new table or row shows."""
    names = t.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = :s", s=t.prefix
    )
    return t.snapshot(*sorted(name for (name,) in names))


@pytest.mark.parametrize("row", [SATELLITE, TRAVELLER], ids=["satellite", "traveller"])
def test_on_a_satellite_or_travel_database_the_script_stops_at_once_and_writes_nothing(
    script: Any, row: dict[str, Any]
) -> None:
    """A script written on the central database, run on a copy (its travelcurrent row says so):
    its first block stops, before the lock and before the bookkeeping DDL, which in the T-SQL
    script comes after it (so here nothing installs the bookkeeping first)."""
    s = script(travel=True, bookkeeping=False)
    t = s.target
    t.execute(
        f"UPDATE {t.table('travelcurrent')} SET current_id = :c, systemlevel = :l",
        c=row["current_id"],
        l=row["systemlevel"],
    )
    before = whole_schema(t)
    engine = create_engine(t.admin_url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            with pytest.raises(psycopg.Error) as raised:
                run_blocks(conn, s.blocks)
            held = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid()"
            ).scalar_one()
    finally:
        engine.dispose()
    message = str(raised.value)
    assert "is not the central database" in message
    assert f"current_id={row['current_id']}, systemlevel={row['systemlevel']}" in message
    assert REFUSAL_HINT.split("; ")[1].rstrip(".") in message
    assert "in the block:\n   0 -- The central database only" in "\n".join(raised.value.__notes__)
    assert held == 0  # stopped before it took the lock
    assert whole_schema(t) == before
    assert not t.has_table("setup_tool_run")


def test_without_a_travelcurrent_row_the_script_runs_as_setup_tool_would(script: Any) -> None:
    """No row says what the database is: setup-tool treats it as central and says so (a copy
    cannot work without its row), and so does the script. (The demo's own central row is the
    database every other test here runs on.)"""
    s = script()
    t = s.target
    t.execute(f"DELETE FROM {t.table('travelcurrent')}")
    s.run()
    assert run_row(t)["status"] == "completed"
