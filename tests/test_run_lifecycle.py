"""One run lifecycle for upgrade and undo, and no gap between the preference and its marking.

The preference switch ends the marking window: once it is committed, a later run sees the
preference on since that run and selects nothing new. So the marking step must be open (status
"staging", with its selection) in the same transaction, or a run killed between the two leaves
invites that no run ever marks. The kill here is real: an engine event breaks the first
statement after the commit that recorded the preference, as a lost connection would.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scenarios import (
    database_rows,
    dump,
    execute,
    open_db,
    oracle_marks,
    query,
    run_rows,
    run_time,
    upgrade,
)
from sqlalchemy import event

from setup_tool.database import Database
from setup_tool.errors import ExitCode
from setup_tool.steps.registry import APPLY_ORDER, STEPS, step_named
from setup_tool.undo import undo

BATCH = 7


class Killed(RuntimeError):
    """The failure injected right after the preference's commit (a lost connection, say)."""


def kill_after_the_preference_commit(db: Database) -> None:
    """Break the first statement after the commit of the transaction that recorded when the
    preference went on: nothing of the run after that commit reaches the database."""
    state = {"preference_written": False, "committed": False, "fired": False}

    @event.listens_for(db.engine, "before_cursor_execute")
    def watch(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = " ".join(statement.split()).upper()
        if state["committed"] and not state["fired"]:
            state["fired"] = True
            raise Killed("killed right after the preference commit (injected)")
        if text.startswith("UPDATE SETUP_TOOL_RUN SET PREFERENCE_ON_AT"):
            state["preference_written"] = True

    @event.listens_for(db.engine, "commit")
    def committed(_conn: Any) -> None:
        if state["preference_written"]:
            state["committed"] = True


@pytest.fixture
def crm(make_demo: Callable[..., Path], tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    shutil.copyfile(make_demo(travel=True, appointments=1500, invite_share=0.1), path)
    return path


def marked_since(before: list[dict[str, Any]], path: Path) -> set[int]:
    old = {r["appointment_id"]: r for r in before}
    return {r["appointment_id"] for r in dump(path, "appointment") if r != old[r["appointment_id"]]}


def test_a_run_killed_right_after_the_preference_commit_is_resumed_by_the_next(
    crm: Path,
) -> None:
    database = database_rows(crm)
    before = dump(crm, "appointment")

    with pytest.raises(Killed):
        upgrade(crm, batch_size=BATCH, on_open=kill_after_the_preference_commit)

    (first,) = run_rows(crm)
    assert first["preference_on_at"] is not None  # the switch was committed
    assert marked_since(before, crm) == set()  # and nothing was marked yet
    # The marking step was opened with the switch: the next run has something to resume.
    (step,) = query(crm, "SELECT * FROM setup_tool_step WHERE step_key = 'mark_invites'")
    assert (step["status"], step["run_id"]) == ("staging", first["run_id"])
    assert step["window_until"] == first["preference_on_at"]
    expected = oracle_marks(database, run_time(crm, first["run_id"]))
    assert expected

    result = upgrade(crm, batch_size=BATCH)

    assert result.exit_code in (ExitCode.DONE, ExitCode.ACTION_REQUIRED)
    assert marked_since(before, crm) == expected
    statuses = {r["run_id"]: r["status"] for r in run_rows(crm)}
    assert statuses[first["run_id"]] == "failed"
    (step,) = query(crm, "SELECT * FROM setup_tool_step WHERE step_key = 'mark_invites'")
    assert (step["status"], step["rows_changed"]) == ("completed", len(expected))
    assert step["finished_by_run_id"] == result.run_id


def test_undo_closes_dead_runs_as_upgrade_does(crm: Path) -> None:
    upgrade(crm, batch_size=BATCH)
    # A run that died without a word (killed -9): still 'running' in the records.
    execute(
        crm,
        "INSERT INTO setup_tool_run (mode, status, started_at, tool_version, host, os_user, "
        "acting_associate_id) VALUES ('upgrade', 'running', '2024-01-01 00:00:00', 'x', 'h', "
        "'u', 0)",
    )
    dead = max(r["run_id"] for r in run_rows(crm))
    db = open_db(crm)
    try:
        undo(db)
    finally:
        db.dispose()
    (row,) = [r for r in run_rows(crm) if r["run_id"] == dead]
    assert (row["status"], row["outcome"]) == ("interrupted", "interrupted")


def test_one_registry_in_the_order_the_steps_run() -> None:
    assert [s.id for s in STEPS] == [
        "gate",
        "preference",
        "overrides",
        "mark_invites",
        "synchronizer_check",
    ]
    assert all(step_named(s.id) is s for s in STEPS)
    # The steps that change rows record previous values, and say which table undo restores.
    recorded = {s.id: s.recorded_table for s in APPLY_ORDER}
    assert recorded == {
        "preference": "UserPreference",
        "overrides": "UserPreference",
        "mark_invites": "appointment",
    }
