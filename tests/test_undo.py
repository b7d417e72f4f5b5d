"""Undo: every value the tool changed comes back exactly; other people's changes are left alone."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scenarios import (
    backdate_run,
    by_id,
    dump,
    execute,
    insert,
    invite_meeting,
    next_id,
    normalised,
    open_db,
    query,
    run_rows,
    run_time,
    tables_named,
    ts,
    upgrade,
)
from sqlalchemy.exc import DBAPIError
from superoffice_databases import TargetDatabase, invites_to_mark
from test_detect import allow_nulls

from setup_tool.connection import ConnectionSettings
from setup_tool.database import open_database
from setup_tool.detect import OperatorAnswers
from setup_tool.errors import ExitCode, InterruptedRun, UsageError
from setup_tool.host_probe import NoHostProbe
from setup_tool.interaction import UnattendedInteraction
from setup_tool.steps import UpgradeSettings
from setup_tool.undo import UndoResult, undo
from setup_tool.upgrade import run_upgrade

ACTING = 7
UNDOER = 5


def run_undo(path: Path, **options: Any) -> UndoResult:
    db = open_db(path)
    try:
        return undo(db, **options)
    finally:
        db.dispose()


def prefs(path: Path) -> list[dict[str, Any]]:
    return dump(path, "UserPreference")


def marked(path: Path) -> set[int]:
    return {r["appointment_id"] for r in dump(path, "appointment") if r["cautionWarning"] == 1}


def changed_ids(path: Path, table: str) -> list[int]:
    return [
        r["record_id"]
        for r in query(
            path,
            "SELECT record_id FROM setup_tool_previous_value WHERE table_name = ? "
            "ORDER BY record_id",
            [table],
        )
    ]


def test_undo_restores_every_value_and_tells_travel(make_demo: Callable[..., Path]) -> None:
    path = make_demo(travel=True)
    appointments, preferences = dump(path, "appointment"), prefs(path)
    sequence = by_id(dump(path, "sequence"), "id")
    result = upgrade(path, fix_overrides=True, acting_associate_id=ACTING)
    changed = changed_ids(path, "appointment")
    inserted = next(
        r["record_id"]
        for r in query(path, "SELECT record_id FROM setup_tool_previous_value WHERE inserted = 1")
    )
    assert len(changed) > 10 and dump(path, "appointment") != appointments
    log_start = next_id(path, "traveltransactionlog")

    undone = run_undo(path, acting_associate_id=UNDOER)

    assert undone.undone_runs == [result.run_id] and undone.conflicts == []
    assert (undone.restored, undone.removed) == (len(changed) + 1, 1)  # + the override row
    assert undone.exit_code == ExitCode.DONE
    assert dump(path, "appointment") == appointments
    assert prefs(path) == preferences
    after = by_id(dump(path, "sequence"), "id")
    for seq_id, row in after.items():
        grew = {"UserPreference": 1, "traveltransactionlog": len(changed) + 2 + len(changed) + 2}
        assert row["next_id"] == sequence[seq_id]["next_id"] + grew.get(row["TableName"], 0)
    logged = query(
        path,
        "SELECT * FROM traveltransactionlog WHERE traveltransactionlog_id >= ? "
        "ORDER BY traveltransactionlog_id",
        [log_start],
    )
    assert [r["traveltransactionlog_id"] for r in logged] == list(
        range(log_start, log_start + len(changed) + 2)
    )
    assert sorted((r["type"], r["tablenumber"], r["record_id"]) for r in logged) == sorted(
        [(4608, 9, i) for i in changed] + [(4864, 56, inserted), (4608, 56, 19)]
    )
    assert {(r["associate_id"], r["flags"]) for r in logged} == {(UNDOER, 2)}
    runs = run_rows(path)
    assert [(r["run_id"], r["mode"], r["undone_by_run_id"]) for r in runs] == [
        (1, "upgrade", 2),
        (2, "undo", None),
    ]
    assert (runs[1]["status"], runs[1]["exit_code"]) == ("completed", 0)


def test_undo_without_travel_writes_no_log(demo_db: Path) -> None:
    appointments, preferences = dump(demo_db, "appointment"), prefs(demo_db)
    upgrade(demo_db, fix_overrides=True)

    result = run_undo(demo_db)

    assert result.exit_code == ExitCode.DONE and result.restored > 0
    assert dump(demo_db, "appointment") == appointments and prefs(demo_db) == preferences
    assert dump(demo_db, "traveltransactionlog") == []


def test_rows_changed_since_are_left_alone_and_reported(demo_db: Path) -> None:
    appointments = by_id(dump(demo_db, "appointment"))
    preferences = by_id(prefs(demo_db), "userpreference_id")
    result = upgrade(demo_db, fix_overrides=True)
    changed = changed_ids(demo_db, "appointment")
    edited, deleted = changed[3], changed[5]
    (new_pref,) = [
        r["record_id"]
        for r in query(
            demo_db, "SELECT record_id FROM setup_tool_previous_value WHERE inserted = 1"
        )
    ]
    someone = ts(datetime.fromisoformat(run_time(demo_db, result.run_id)) + timedelta(hours=1))
    execute(
        demo_db,
        # A user moved a marked meeting row: SuperOffice bumps updatedCount.
        f"UPDATE appointment SET endDate = '{someone}', updated = '{someone}', "
        f"updated_associate_id = 3, updatedCount = updatedCount + 1 "
        f"WHERE appointment_id = {edited}",
        f"DELETE FROM appointment WHERE appointment_id = {deleted}",
        # An administrator touched the row the tool added, and the override it switched on.
        f"UPDATE UserPreference SET updated = '{someone}', updatedCount = 1 "
        f"WHERE userpreference_id = {new_pref}",
        "UPDATE UserPreference SET prefvalue = 'Yes', updatedCount = 2 "
        "WHERE userpreference_id = 19",
    )
    edited_row = by_id(dump(demo_db, "appointment"))[edited]
    edited_prefs = by_id(prefs(demo_db), "userpreference_id")

    undone = run_undo(demo_db)

    assert undone.exit_code == ExitCode.ACTION_REQUIRED and int(undone.exit_code) == 4
    assert sorted(undone.conflicts) == sorted(
        [
            f"appointment {edited}",
            f"appointment {deleted}",
            f"UserPreference {new_pref} (changed since it was added)",
            "UserPreference 19 (changed since)",
        ]
    )
    assert undone.restored == len(changed) - 2 and undone.removed == 0
    now = by_id(dump(demo_db, "appointment"))
    assert now[edited] == edited_row and deleted not in now
    assert {i: r for i, r in now.items() if i != edited} == {
        i: r for i, r in appointments.items() if i not in (edited, deleted)
    }
    after = by_id(prefs(demo_db), "userpreference_id")
    assert after[new_pref] == edited_prefs[new_pref] and after[19] == edited_prefs[19]
    assert {i: r for i, r in after.items() if i not in (new_pref, 19)} == {
        i: r for i, r in preferences.items() if i != 19
    }
    assert run_rows(demo_db)[-1]["outcome"] == "action_required"


def test_undo_twice_changes_nothing_more(demo_db: Path) -> None:
    appointments = dump(demo_db, "appointment")
    upgrade(demo_db, fix_overrides=True)
    first = run_undo(demo_db)
    state = (dump(demo_db, "appointment"), prefs(demo_db), dump(demo_db, "sequence"))
    assert first.undone_runs == [1] and state[0] == appointments

    second = run_undo(demo_db)

    assert (second.undone_runs, second.restored, second.removed, second.conflicts) == ([], 0, 0, [])
    assert second.undo_run_id is None and second.exit_code == ExitCode.DONE
    assert (dump(demo_db, "appointment"), prefs(demo_db), dump(demo_db, "sequence")) == state
    assert len(run_rows(demo_db)) == 2
    with pytest.raises(UsageError, match="cannot be undone"):
        run_undo(demo_db, run_ids=[1])


def test_undo_on_a_database_the_tool_never_touched(demo_db: Path) -> None:
    content = demo_db.read_bytes()

    result = run_undo(demo_db)

    assert result.undone_runs == [] and result.exit_code == ExitCode.DONE
    assert tables_named(demo_db, "setup_tool") == []
    assert demo_db.read_bytes() == content


def test_undo_one_run_only(demo_db: Path) -> None:
    original = (dump(demo_db, "appointment"), prefs(demo_db))
    upgrade(demo_db)  # run 1: preference inserted, invites marked, the override left off
    now = datetime.fromisoformat(run_time(demo_db, 1))
    backdate_run(demo_db, 1, now - timedelta(days=10))
    switched_off = ts(now - timedelta(days=5))
    (pref_id,) = [
        r["record_id"]
        for r in query(
            demo_db, "SELECT record_id FROM setup_tool_previous_value WHERE inserted = 1"
        )
    ]
    execute(
        demo_db,
        f"UPDATE UserPreference SET prefvalue = '0', updated = '{switched_off}', "
        f"updatedCount = 1 WHERE userpreference_id = {pref_id}",
    )
    # An e-mailed invite meeting (footprint (c)): organizer, colleague, external participant.
    insert(demo_db, "appointment", invite_meeting(900_000, now - timedelta(days=3), 60))
    between = (dump(demo_db, "appointment"), prefs(demo_db))
    second = upgrade(demo_db, fix_overrides=True)  # run 2: its diary rows, the pref, row 19
    assert second.run_id == 2
    # The external participant's row (900_002) is in nobody's diary: not marked.
    assert sorted(marked(demo_db) - marked_in(between[0])) == [900_000, 900_001]

    result = run_undo(demo_db, run_ids=[2])

    assert result.undone_runs == [2] and result.conflicts == []
    assert (dump(demo_db, "appointment"), prefs(demo_db)) == between
    assert [r["undone_by_run_id"] for r in run_rows(demo_db)] == [None, 3, None]

    rest = run_undo(demo_db)

    assert rest.undone_runs == [1] and rest.conflicts == [
        f"UserPreference {pref_id} (changed since it was added)"
    ]
    new_rows = {900_000, 900_001, 900_002}
    assert [
        r for r in dump(demo_db, "appointment") if r["appointment_id"] not in new_rows
    ] == original[0]


def marked_in(rows: list[dict[str, Any]]) -> set[int]:
    return {r["appointment_id"] for r in rows if r["cautionWarning"] == 1}


def test_undo_then_upgrade_again_converges(demo_db: Path, tmp_path: Path) -> None:
    pristine = tmp_path / "pristine.db"
    shutil.copyfile(demo_db, pristine)
    upgrade(demo_db, fix_overrides=True)
    first = normalised(dump(demo_db, "appointment"), [run_time(demo_db, 1)])
    first_prefs = prefs(demo_db)
    inserted_id = next_id(pristine, "UserPreference")
    run_undo(demo_db)

    again = upgrade(demo_db, fix_overrides=True)

    assert again.run_id == 3 and again.exit_code == ExitCode.DONE
    assert normalised(dump(demo_db, "appointment"), [run_time(demo_db, 3)]) == first
    assert changed_ids(demo_db, "appointment") == sorted(2 * changed_ids_of_run(demo_db, 3))
    # The preference row comes back under a new id: sequence never goes back.
    now = {r["userpreference_id"]: r for r in prefs(demo_db)}
    was = {r["userpreference_id"]: r for r in first_prefs}
    assert inserted_id in was and inserted_id not in now and inserted_id + 1 in now
    assert {
        k: v
        for k, v in now[inserted_id + 1].items()
        if k not in ("userpreference_id", "registered")
    } == {k: v for k, v in was[inserted_id].items() if k not in ("userpreference_id", "registered")}


def changed_ids_of_run(path: Path, run_id: int) -> list[int]:
    return [
        r["record_id"]
        for r in query(
            path,
            "SELECT record_id FROM setup_tool_previous_value pv JOIN setup_tool_step s ON "
            "s.step_row_id = pv.step_row_id WHERE s.run_id = ? AND table_name = 'appointment'",
            [run_id],
        )
    ]


def test_undo_after_an_interrupted_and_resumed_run(make_demo: Callable[..., Path]) -> None:
    path = make_demo(travel=True)
    original = (dump(path, "appointment"), prefs(path))
    with pytest.raises(InterruptedRun):
        upgrade(path, batch_size=5, should_stop=lambda: True)
    upgrade(path, batch_size=5)

    result = run_undo(path)

    assert result.undone_runs == [2, 1] and result.conflicts == []
    assert (dump(path, "appointment"), prefs(path)) == original


def test_a_failed_undo_is_recorded_and_running_it_again_finishes(
    make_demo: Callable[..., Path],
) -> None:
    path = make_demo(travel=True)
    original = (dump(path, "appointment"), prefs(path))
    upgrade(path, fix_overrides=True)
    inserted = next_id(path, "UserPreference") - 1
    # The appointments are restored first; removing the added preference row then fails.
    execute(
        path,
        f"CREATE TRIGGER refuse BEFORE DELETE ON UserPreference WHEN "
        f"OLD.userpreference_id = {inserted} BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )

    with pytest.raises(DBAPIError, match="injected"):
        run_undo(path)

    undo_run = run_rows(path)[1]
    assert (undo_run["mode"], undo_run["status"], undo_run["exit_code"]) == ("undo", "failed", 1)
    # Claimed by the undo that failed: no longer protecting anything, and not undone yet (the
    # undo run did not complete), so undo takes it up again.
    assert run_rows(path)[0]["undone_by_run_id"] == 2
    assert dump(path, "appointment") == original[0]
    assert [r["userpreference_id"] for r in prefs(path)] == sorted(
        [r["userpreference_id"] for r in original[1]] + [inserted]
    )

    execute(path, "DROP TRIGGER refuse")
    again = run_undo(path)

    assert again.undone_runs == [1] and again.conflicts == [] and again.removed == 1
    assert again.resumed_runs == [1] and again.restored == 0  # the rows were back already
    assert (dump(path, "appointment"), prefs(path)) == original
    assert [(r["undone_by_run_id"], r["status"]) for r in run_rows(path)] == [
        (3, "completed"),
        (None, "failed"),
        (None, "completed"),
    ]
    assert run_undo(path).undone_runs == []  # now it is done


def test_undo_of_an_interrupted_run_then_a_fresh_upgrade(
    make_demo: Callable[..., Path], tmp_path: Path
) -> None:
    path = make_demo()
    reference = tmp_path / "reference.db"
    shutil.copyfile(path, reference)
    upgrade(reference, fix_overrides=True)
    original = (dump(path, "appointment"), prefs(path))
    with pytest.raises(InterruptedRun):
        upgrade(path, batch_size=5, should_stop=lambda: True)

    result = run_undo(path)

    assert result.undone_runs == [1] and result.restored == 5
    assert (dump(path, "appointment"), prefs(path)) == original
    again = upgrade(path, fix_overrides=True)  # no resume of the undone marking: a fresh start
    steps = {s.id: s for s in again.plan.steps}
    assert "resumes" not in steps["mark_invites"].reason.lower()
    assert normalised(dump(path, "appointment"), [run_time(path, 3)]) == normalised(
        dump(reference, "appointment"), [run_time(reference, 1)]
    )


# --- NULL round-trips (SQLite and PostgreSQL) --------------------------------------------------

# The columns undo restores and compares; real schemas have them nullable, and rows with NULLs.
RESTORED = ("cautionWarning", "updated", "updated_associate_id", "updatedCount")


@pytest.fixture
def nullable(make_target: Any, request: pytest.FixtureRequest) -> TargetDatabase:
    """A demo whose appointment and UserPreference columns that undo restores allow NULL."""
    if request.node.callspec.params["make_target"] == "mssql":
        pytest.skip("NULL round-trips are tested on SQLite and PostgreSQL")
    t: TargetDatabase = make_target(travel=True, appointments=3000, invite_share=0.1)
    for table, columns in (("appointment", RESTORED), ("UserPreference", RESTORED[1:])):
        if t.kind == "sqlite":
            allow_nulls(Path(t.url.removeprefix("sqlite:///")), table)
        else:
            for column in columns:
                t.execute(f"ALTER TABLE {t.table(table)} ALTER COLUMN {column} DROP NOT NULL")
    return t


def target_upgrade(t: TargetDatabase) -> None:
    db = open_database(
        ConnectionSettings(database_url=t.url, table_prefix=t.prefix), read_only=False
    )
    try:
        run_upgrade(
            db,
            OperatorAnswers(),
            UpgradeSettings(batch_size=7, fix_overrides=True),
            NoHostProbe(),
            UnattendedInteraction(),
        )
    finally:
        db.dispose()


def target_undo(t: TargetDatabase) -> UndoResult:
    db = open_database(
        ConnectionSettings(database_url=t.url, table_prefix=t.prefix), read_only=False
    )
    try:
        return undo(db, acting_associate_id=UNDOER, batch_size=7)
    finally:
        db.dispose()


def set_null(t: TargetDatabase, table: str, key: str, ids: list[int], *columns: str) -> None:
    listed = ", ".join(map(str, ids))
    nulls = ", ".join(f"{c} = NULL" for c in columns)
    t.execute(f"UPDATE {t.table(table)} SET {nulls} WHERE {key} IN ({listed})")


def marked_rows(t: TargetDatabase) -> set[int]:
    rows = t.query(f"SELECT appointment_id FROM {t.table('appointment')} WHERE cautionWarning = 1")
    return {int(r[0]) for r in rows}


def diary_sync_rows(t: TargetDatabase) -> list[int]:
    rows = t.query(
        f"SELECT userpreference_id FROM {t.table('UserPreference')} "
        "WHERE prefsection = 'Mail' AND prefkey = 'DiarySynchronizerActive' ORDER BY 1"
    )
    return [int(r[0]) for r in rows]


def test_null_previous_values_come_back_as_null(nullable: TargetDatabase) -> None:
    t = nullable
    ids = sorted(invites_to_mark(t.database_rows()))
    assert len(ids) >= 40
    for offset, column in enumerate(RESTORED):  # each column NULL on its own ...
        set_null(t, "appointment", "appointment_id", ids[offset::5], column)
    set_null(t, "appointment", "appointment_id", ids[4::5], *RESTORED)  # ... and all at once
    prefs_with_nulls = diary_sync_rows(t)
    assert prefs_with_nulls  # the overrides the upgrade switches on (--fix-overrides)
    set_null(t, "UserPreference", "userpreference_id", prefs_with_nulls, *RESTORED[1:])
    original = t.snapshot("appointment", "UserPreference")

    target_upgrade(t)

    assert marked_rows(t) >= set(ids)  # the rows with NULLs were marked like any other
    [(null_counts,)] = t.query(
        f"SELECT COUNT(*) FROM {t.table('setup_tool_previous_value')} "
        "WHERE table_name = 'appointment' AND updated_count IS NULL"
    )
    assert null_counts == len(ids[3::5]) + len(ids[4::5])

    result = target_undo(t)

    assert result.conflicts == [] and result.exit_code == ExitCode.DONE
    assert t.snapshot("appointment", "UserPreference") == original  # NULL came back as NULL
    assert not marked_rows(t) & set(ids)


def test_rows_with_nulls_changed_since_are_left_alone_and_listed(nullable: TargetDatabase) -> None:
    t = nullable
    ids = sorted(invites_to_mark(t.database_rows()))
    recounted, rewarned, retouched = ids[0], ids[1], ids[2]
    set_null(t, "appointment", "appointment_id", [recounted], "updatedCount")
    set_null(t, "appointment", "appointment_id", [rewarned], "cautionWarning", "updatedCount")
    set_null(t, "appointment", "appointment_id", [retouched], "updated", "updated_associate_id")
    override = diary_sync_rows(t)[-1]
    set_null(t, "UserPreference", "userpreference_id", [override], "updated", "updatedCount")
    original = t.snapshot("appointment", "UserPreference")
    target_upgrade(t)
    someone = "'2030-01-02 03:04:05'"
    table = t.table("appointment")
    t.execute(  # SuperOffice saved it: the counter starts from NULL, the stamp moves on
        f"UPDATE {table} SET updatedCount = 1, updated = {someone} "
        f"WHERE appointment_id = {recounted}"
    )
    t.execute(  # a user gave it another warning; the counter stayed NULL
        f"UPDATE {table} SET cautionWarning = 3, updated = {someone} "
        f"WHERE appointment_id = {rewarned}"
    )
    t.execute(
        f"UPDATE {table} SET updated_associate_id = 3, updated = {someone} "
        f"WHERE appointment_id = {retouched}"
    )
    t.execute(
        f"UPDATE {t.table('UserPreference')} SET prefvalue = '0', updatedCount = 1 "
        f"WHERE userpreference_id = {override}"
    )
    edited = t.snapshot("appointment", "UserPreference")

    result = target_undo(t)

    assert sorted(result.conflicts) == sorted(
        [f"appointment {i}" for i in (recounted, rewarned, retouched)]
        + [f"UserPreference {override} (changed since)"]
    )
    assert result.exit_code == ExitCode.ACTION_REQUIRED
    now = t.snapshot("appointment", "UserPreference")
    for table_name, key in (
        ("appointment", {recounted, rewarned, retouched}),
        ("UserPreference", {override}),
    ):
        left = {r[0]: r for r in now[table_name] if r[0] in key}
        assert left == {r[0]: r for r in edited[table_name] if r[0] in key}  # left alone
        assert [r for r in now[table_name] if r[0] not in key] == [
            r for r in original[table_name] if r[0] not in key
        ]
