"""The whole upgrade through the command line, on SQLite and on a real PostgreSQL server.

What must be marked comes from the independent oracle (`invite_oracle`, SPEC step 4 in plain
Python) over rows read with plain SQL before the run, never from the tool's own dry run.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from invite_oracle import diary_sync_on_since, invites_since
from sqlalchemy import create_engine, inspect, select, update
from superoffice_databases import TargetDatabase, invites_to_mark

from setup_tool.bookkeeping import Bookkeeping
from setup_tool.cli import cli
from setup_tool.connection import ConnectionSettings
from setup_tool.database import open_database
from setup_tool.detect import OperatorAnswers
from setup_tool.errors import InterruptedRun
from setup_tool.host_probe import NoHostProbe
from setup_tool.interaction import UnattendedInteraction
from setup_tool.locking import run_lock
from setup_tool.schema import reflect_tables
from setup_tool.steps import UpgradeSettings
from setup_tool.upgrade import run_upgrade

SUPEROFFICE_TABLES = ("appointment", "userpreference", "sequence", "traveltransactionlog")


def invite_rows_to_mark(t: TargetDatabase) -> set[int]:
    """The oracle over the rows as they are now: what a first run must mark that is not marked
    yet (the window ends when the tool's first run started, or now when it never ran)."""
    return invites_to_mark(t.database_rows(), t.first_run_started())


def cli_run(t: TargetDatabase, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result, report = cli_invoke(t, tmp_path, *args)
    return result.exit_code, report


def cli_invoke(t: TargetDatabase, tmp_path: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    """Run a command unattended; the result (stdout/stderr) and the JSON report it wrote."""
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    result = CliRunner().invoke(
        cli,
        [
            *args,
            *t.connection_args(),
            "--unattended",
            "--log-file",
            str(tmp_path / "run.log"),
            "--report",
            str(report),
        ],
    )
    assert "Traceback" not in result.output
    return result, json.loads(report.read_text()) if report.exists() else {}


def upgrade(t: TargetDatabase, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    return cli_run(t, tmp_path, "upgrade", "--fix-overrides", *args)


def rows_by_step(report: dict[str, Any]) -> dict[str, int]:
    return {step["id"]: step["rows"] for step in report["steps"]}


def test_upgrade_marks_exactly_the_invite_rows_and_then_has_nothing_to_do(
    make_target: Any, tmp_path: Path
) -> None:
    t = make_target()
    rows_before = t.database_rows()
    before = {
        r[0]: r[1:]
        for r in t.query(
            f"SELECT appointment_id, cautionWarning, updatedCount FROM {t.table('appointment')}"
        )
    }

    code, dry = upgrade(t, tmp_path, "--dry-run")
    assert code == 0 and dry["outcome"] == "changes_pending"
    code, real = upgrade(t, tmp_path)
    assert code == 0, real.get("outcome")
    expected = invites_to_mark(rows_before, t.first_run_started())
    assert rows_by_step(real) == rows_by_step(dry)
    assert rows_by_step(real)["mark_invites"] == len(expected) > 0

    after = {
        r[0]: r[1:]
        for r in t.query(
            f"SELECT appointment_id, cautionWarning, updatedCount FROM {t.table('appointment')}"
        )
    }
    changed = {i for i in before if before[i] != after[i]}
    assert changed == expected
    for i in expected:
        assert after[i] == (1, min(before[i][1] + 1, 65535))
    on = t.query(
        f"SELECT prefvalue FROM {t.table('userpreference')} WHERE deflevel = 2 "
        "AND owner_id = 0 AND prefkey = 'DiarySynchronizerActive'"
    )
    assert on == [("1",)]

    code, again = upgrade(t, tmp_path)
    assert code == 0 and again["outcome"] == "nothing_to_do"
    assert all(step["decision"] != "change" for step in again["steps"])


def test_undo_restores_every_row_exactly_and_tells_travel(make_target: Any, tmp_path: Path) -> None:
    t = make_target(travel=True)
    before = t.snapshot("appointment", "userpreference")
    log = t.table("traveltransactionlog")
    [(old_rows,)] = t.query(f"SELECT COALESCE(MAX(traveltransactionlog_id), 0) FROM {log}")
    code, report = upgrade(t, tmp_path)
    assert code == 0
    logged = t.query(
        f"SELECT type, COUNT(*) FROM {log} WHERE traveltransactionlog_id > :old "
        "GROUP BY type ORDER BY type",
        old=old_rows,
    )
    assert dict(logged) == {
        4352: 1,
        4608: rows_by_step(report)["mark_invites"] + rows_by_step(report)["overrides"],
    }

    result = CliRunner().invoke(
        cli,
        ["undo", *t.connection_args(), "--unattended", "--log-file", str(tmp_path / "undo.log")],
    )
    assert result.exit_code == 0, result.output
    assert t.snapshot("appointment", "userpreference") == before
    deleted = t.query(
        f"SELECT COUNT(*) FROM {log} WHERE type = 4864 AND traveltransactionlog_id > :old",
        old=old_rows,
    )
    assert deleted == [(1,)]


def test_interrupted_marking_resumes_from_its_checkpoint(make_target: Any, tmp_path: Path) -> None:
    t = make_target()
    expected = invite_rows_to_mark(t)
    db = open_database(
        ConnectionSettings(database_url=t.url, table_prefix=t.prefix), read_only=False
    )
    batches = iter(range(1000))
    try:
        with pytest.raises(InterruptedRun):
            run_upgrade(
                db,
                OperatorAnswers(),
                UpgradeSettings(batch_size=10, fix_overrides=True),
                NoHostProbe(),
                UnattendedInteraction(),
                should_stop=lambda: next(batches) >= 2,
            )
    finally:
        db.dispose()
    marked_so_far = t.query(
        f"SELECT COUNT(*) FROM {t.table('appointment')} WHERE cautionWarning = 1"
    )
    assert len(expected) > 0
    code, report = upgrade(t, tmp_path)
    assert code == 0
    marked = {
        r[0]
        for r in t.query(
            f"SELECT record_id FROM {t.table('setup_tool_previous_value')} "
            "WHERE table_name = 'appointment'"
        )
    }
    recorded = t.query(
        f"SELECT COUNT(*) FROM {t.table('setup_tool_previous_value')} "
        "WHERE table_name = 'appointment'"
    )
    assert marked == expected and recorded == [(len(expected),)]
    assert rows_by_step(report)["mark_invites"] == len(expected) - 30
    assert marked_so_far[0][0] > 0


def test_dry_run_changes_nothing_at_all(make_target: Any, tmp_path: Path) -> None:
    t = make_target(travel=True)
    tables = (*SUPEROFFICE_TABLES, "productversion")
    before = t.snapshot(*tables)
    raw = Path(t.url.removeprefix("sqlite:///")).read_bytes() if t.kind == "sqlite" else None
    for fmt in ("json", "html"):
        result = CliRunner().invoke(
            cli, ["upgrade", "--dry-run", *t.connection_args(), "--format", fmt]
        )
        assert result.exit_code == 0, result.output
    assert t.snapshot(*tables) == before
    if raw is not None:
        assert Path(t.url.removeprefix("sqlite:///")).read_bytes() == raw
    engine = create_engine(t.admin_url)
    with engine.connect() as conn:
        from sqlalchemy import inspect

        assert not [
            n for n in inspect(conn).get_table_names(schema=t.prefix) if n.startswith("setup_tool")
        ]
    engine.dispose()


def test_a_second_run_is_told_who_holds_the_lock(make_target: Any, tmp_path: Path) -> None:
    t = make_target()
    first, _ = upgrade(t, tmp_path, "--dry-run")  # nothing installed yet: a dry run writes nothing
    assert first == 10 or first == 0
    code, _ = upgrade(t, tmp_path)
    assert code == 0
    # The holder as the run table shows it while a run is under way on another machine.
    t.execute(
        f"INSERT INTO {t.table('setup_tool_run')} (run_id, mode, status, started_at, "
        "tool_version, host, os_user, acting_associate_id) VALUES (7, 'upgrade', 'running', "
        "'2026-11-30 08:15:00', '0.0', 'build-07', 'tester', 0)"
    )
    engine = create_engine(t.admin_url)
    try:
        with run_lock(engine):
            busy, _ = upgrade(t, tmp_path)
            result = CliRunner().invoke(
                cli,
                ["upgrade", *t.connection_args(), "--unattended", "--log-file", "busy.log"],
            )
    finally:
        engine.dispose()
    assert busy == 5 and result.exit_code == 5
    # Named, not just "locked" (the word is in "blocked" too): which run, whose, where.
    said = " ".join(result.output.split())
    holder = "It is held by run 7 started 2026-11-30 08:15:00 UTC by tester on build-07."
    assert holder in said, said


def test_a_smallint_updated_count_is_capped_where_the_column_ends(
    make_target: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.id != "postgresql":
        pytest.skip("a DBA's SMALLINT column is tested on PostgreSQL")
    t = make_target()
    a = t.table("appointment")
    t.execute(f"UPDATE {a} SET updatedCount = 32000 WHERE updatedCount > 32000")
    t.execute(f"ALTER TABLE {a} ALTER COLUMN updatedCount TYPE SMALLINT")
    victim = min(invite_rows_to_mark(t))
    t.execute(f"UPDATE {a} SET updatedCount = 32767 WHERE appointment_id = :id", id=victim)
    code, _ = upgrade(t, tmp_path)
    assert code == 0
    assert t.query(
        f"SELECT cautionWarning, updatedCount FROM {a} WHERE appointment_id = :id", id=victim
    ) == [(1, 32767)]


def _meeting(master_id: int, registered: Any) -> list[dict[str, Any]]:
    """An invite meeting as SuperOffice stores it: the organizer's row, a colleague's row and an
    external person's row (nobody's diary) carrying the emailId the invitation was mailed to
    (footprint (c): registered after invites-since)."""
    base = {
        "contact_id": 1,
        "person_id": 0,
        "registered": registered,
        "registered_associate_id": 1,
        "updated": datetime(1900, 1, 1),
        "updated_associate_id": 0,
        "updatedCount": 0,
        "type": 1,
        "status": 1,
        "mother_id": master_id,
        "invitedPersonId": 0,
        "emailId": 0,
        "activeDate": registered,
        "do_by": registered,
        "endDate": registered,
        "cautionWarning": 0,
        "mother_associate_id": 1,
    }
    return [
        {**base, "appointment_id": master_id, "associate_id": 1},
        {**base, "appointment_id": master_id + 1, "associate_id": 2, "status": 5, "type": 6},
        {
            **base,
            "appointment_id": master_id + 2,
            "associate_id": 0,
            "invitedPersonId": 7,
            "person_id": 7,
            "emailId": 100_007,
            "status": 5,
            "type": 6,
        },
    ]


def test_converges_after_an_admin_switched_the_preference_off(
    make_target: Any, tmp_path: Path
) -> None:
    t = make_target()
    assert upgrade(t, tmp_path)[0] == 0
    engine = create_engine(t.admin_url)
    with engine.begin() as conn:  # typed writes: each engine stores datetimes its own way
        tables, run = reflect_tables(conn, t.prefix), Bookkeeping.for_schema(t.prefix).run
        switched_on = conn.execute(select(run.c.preference_on_at)).scalar_one()
        switched_on -= timedelta(days=10)  # as if the first run was ten days ago
        conn.execute(update(run).values(preference_on_at=switched_on))
        switched_off = switched_on + timedelta(days=5)
        up = tables.userpreference
        conn.execute(
            update(up)
            .where(
                up.c.deflevel == 2, up.c.owner_id == 0, up.c.prefkey == "DiarySynchronizerActive"
            )
            .values(prefvalue="0", updated=switched_off)
        )
        conn.execute(tables.appointment.insert(), _meeting(9_000_000, switched_on + timedelta(1)))
        conn.execute(tables.appointment.insert(), _meeting(9_000_010, switched_off + timedelta(1)))
    engine.dispose()

    code, report = upgrade(t, tmp_path)
    assert code == 0
    assert rows_by_step(report)["mark_invites"] == 2
    marked = t.query(
        f"SELECT appointment_id FROM {t.table('appointment')} "
        "WHERE appointment_id >= 9000000 AND cautionWarning = 1 ORDER BY 1"
    )
    # registered while off; not those while on; the external row is in nobody's diary
    assert marked == [(9_000_010,), (9_000_011,)]
    assert upgrade(t, tmp_path)[1]["outcome"] == "nothing_to_do"


# --- every demo scenario ------------------------------------------------------------------------

SCENARIOS = ("new-customer", "existing-customer", "r10-shape")
AFTER_R10_COLUMNS = ("SendEmail", "owned_externally", "mother_associate_id")
AFTER_R10 = (*(f"appointment.{name}" for name in AFTER_R10_COLUMNS), "invitation table")


def caution_and_count(t: TargetDatabase) -> dict[int, tuple[Any, ...]]:
    rows = t.query(
        f"SELECT appointment_id, cautionWarning, updatedCount FROM {t.table('appointment')}"
    )
    return {r[0]: r[1:] for r in rows}


def lacks_after_r10(t: TargetDatabase) -> list[str]:
    """What came after 8.5 R10 and this database does not have, seen with the inspector."""
    engine = t.engine()
    try:
        with engine.connect() as conn:
            columns = {
                c["name"].lower() for c in inspect(conn).get_columns("appointment", t.prefix)
            }
    finally:
        engine.dispose()
    missing = [f"appointment.{name}" for name in AFTER_R10_COLUMNS if name.lower() not in columns]
    return missing + ([] if t.has_table("invitation") else ["invitation table"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_demo_scenario_marks_exactly_the_oracles_rows_and_undo_restores_them(
    scenario: str, make_target: Any, tmp_path: Path
) -> None:
    t = make_target(scenario=scenario)
    snapshot = t.snapshot("appointment", "userpreference")
    rows_before, before = t.database_rows(), caution_and_count(t)

    code, dry = upgrade(t, tmp_path, "--dry-run")
    assert code == 0, dry.get("outcome")
    result, real = cli_invoke(t, tmp_path, "upgrade", "--fix-overrides")
    assert result.exit_code == 0, result.output
    expected = invites_to_mark(rows_before, t.first_run_started())
    after = caution_and_count(t)
    changed = {i for i in before if before[i] != after[i]}
    assert changed == expected, (
        f"extra {sorted(changed - expected)[:10]}, missing {sorted(expected - changed)[:10]}"
    )
    assert all(after[i][0] == 1 for i in expected)
    assert rows_by_step(dry)["mark_invites"] == rows_by_step(real)["mark_invites"] == len(expected)
    invites = real["findings"]["invites"]
    assert invites["to_mark"] == len(expected)
    evidence = " ".join(e["detail"] for e in invites["evidence"])

    if scenario == "existing-customer":
        assert expected == set()
        on_since = diary_sync_on_since(rows_before.preferences)
        since = invites_since(rows_before)
        assert on_since is not None and since is not None and on_since < since
        because = invites["nothing_to_mark_because"]
        assert because is not None and "before invites arrived" in because
        assert f"{on_since:%Y-%m-%d %H:%M}" in because and f"{since:%Y-%m-%d %H:%M}" in because
        assert because in result.stderr  # the console summary says it too
        assert real["advice"] == []  # the preference did not change
    else:
        assert len(expected) > 0
        assert invites["nothing_to_mark_because"] is None
        assert any("No Login" in line for line in real["advice"])
    if scenario == "r10-shape":
        assert lacks_after_r10(t) == list(AFTER_R10)
        for name in AFTER_R10:
            assert name in evidence, f"the report does not say {name} is absent"
        counted = {fp["kind"]: fp["counted"] for fp in invites["footprints"]}
        assert counted == {"invitation": False, "send-email": False, "email-id": True}
    else:
        assert lacks_after_r10(t) == []
        assert not any(name in evidence for name in AFTER_R10)

    undone = CliRunner().invoke(
        cli,
        ["undo", *t.connection_args(), "--unattended", "--log-file", str(tmp_path / "undo.log")],
    )
    assert undone.exit_code == 0, undone.output
    assert t.snapshot("appointment", "userpreference") == snapshot
