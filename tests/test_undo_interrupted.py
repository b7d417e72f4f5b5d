"""An interrupted undo never leaves the database half-restored behind the tool's back.

Undo is stopped for real, on SQLite and on a PostgreSQL server: between batches (the `should_stop`
callback Ctrl-C sets), by a statement that fails mid-batch (a lost connection, injected by an
engine event), and in a subprocess by SIGINT, SIGKILL or a terminated server session. After each,
either `undo` runs again and finishes the job (the database is exactly as before the upgrade),
or an `upgrade` runs first and marks again what the undo had put back: the marked set is then
what a clean first run marks, by the independent oracle (invite_oracle), and a later undo still
restores everything exactly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from invite_oracle import DatabaseRows
from sqlalchemy import event
from superoffice_databases import TargetDatabase, invites_to_mark

from setup_tool.connection import ConnectionSettings
from setup_tool.database import Database, open_database
from setup_tool.detect import OperatorAnswers
from setup_tool.errors import InterruptedRun
from setup_tool.host_probe import NoHostProbe
from setup_tool.interaction import UnattendedInteraction
from setup_tool.steps import UpgradeSettings
from setup_tool.undo import UndoResult, undo
from setup_tool.upgrade import UpgradePlan, UpgradeResult, plan_upgrade, run_upgrade

BATCH = 7
UNDOER = 5
ROOT = Path(__file__).resolve().parents[1]
SUPEROFFICE = ("appointment", "userpreference")
UPDATED, APPOINTMENT_TABLE = 4608, 9


class Injected(RuntimeError):
    """The failure an engine event injects (a lost connection, say)."""


# --- the database and the tool ----------------------------------------------------------------


def engine_of(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["make_target"])


@pytest.fixture
def target(make_target: Any, request: pytest.FixtureRequest) -> TargetDatabase:
    if engine_of(request) == "mssql":
        pytest.skip("interrupted undo is tested on SQLite and PostgreSQL")
    # Enough invite rows for a dozen batches of BATCH.
    t: TargetDatabase = make_target(travel=True, appointments=1500, invite_share=0.1)
    return t


def open_target(t: TargetDatabase, *, read_only: bool = False) -> Database:
    return open_database(
        ConnectionSettings(database_url=t.url, table_prefix=t.prefix), read_only=read_only
    )


def upgrade(t: TargetDatabase, **settings: Any) -> UpgradeResult:
    db = open_target(t)
    try:
        return run_upgrade(
            db,
            OperatorAnswers(),
            UpgradeSettings(**{"batch_size": BATCH, "fix_overrides": True, **settings}),
            NoHostProbe(),
            UnattendedInteraction(),
            lock_timeout=10,  # a killed run's lock may take the server a moment to free
        )
    finally:
        db.dispose()


def plan(t: TargetDatabase) -> UpgradePlan:
    db = open_target(t, read_only=True)
    try:
        return plan_upgrade(db, OperatorAnswers(), UpgradeSettings(batch_size=BATCH), NoHostProbe())
    finally:
        db.dispose()


def run_undo(
    t: TargetDatabase, on_open: Callable[[Database], None] | None = None, **options: Any
) -> UndoResult:
    db = open_target(t)
    try:
        if on_open is not None:
            on_open(db)
        return undo(
            db,
            acting_associate_id=UNDOER,
            lock_timeout=10,
            **{"batch_size": BATCH, **options},
        )
    finally:
        db.dispose()


def after(calls: int) -> Callable[[], bool]:
    """A should_stop that says stop at its `calls`-th call (one call per batch)."""
    count = iter(range(1, 10**6))
    return lambda: next(count) >= calls


def fail_restore(after: int) -> Callable[[Database], None]:
    """An engine event that fails the (after+1)-th UPDATE of the appointment table, inside its
    batch's transaction: the connection is lost mid-batch, as far as undo can tell."""
    pattern = re.compile(r"^\s*UPDATE\s+(\w+\.)?appointment\b", re.IGNORECASE)

    def attach(db: Database) -> None:
        seen = iter(range(10**6))

        @event.listens_for(db.engine, "before_cursor_execute")
        def fail(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if pattern.match(statement) and next(seen) == after:
                raise Injected("connection lost (injected)")

    return attach


# --- reading the database with plain SQL -------------------------------------------------------


def marked(t: TargetDatabase) -> set[int]:
    rows = t.query(f"SELECT appointment_id FROM {t.table('appointment')} WHERE cautionWarning = 1")
    return {int(r[0]) for r in rows}


def runs(t: TargetDatabase) -> list[dict[str, Any]]:
    return t.records(
        f"SELECT run_id, mode, status, undone_by_run_id FROM {t.table('setup_tool_run')} "
        "ORDER BY run_id"
    )


def undo_log(t: TargetDatabase) -> list[int]:
    """The appointments the undo told Travel it changed, one entry per log row."""
    rows = t.query(
        f"SELECT record_id FROM {t.table('traveltransactionlog')} "
        "WHERE associate_id = :who AND type = :kind AND tablenumber = :table ORDER BY record_id",
        who=UNDOER,
        kind=UPDATED,
        table=APPOINTMENT_TABLE,
    )
    return [int(r[0]) for r in rows]


@dataclass
class Upgraded:
    """A database before and after one clean upgrade run."""

    original: dict[str, list[tuple[Any, ...]]]
    marked_before: set[int]
    clean: set[int]  # what the clean run marked


@pytest.fixture
def upgraded(target: TargetDatabase) -> Upgraded:
    original = target.snapshot(*SUPEROFFICE)
    rows: DatabaseRows = target.database_rows()
    before = marked(target)
    result = upgrade(target)
    assert result.run_id == 1
    clean = marked(target) - before
    started = target.first_run_started()
    assert started is not None
    # The clean run marked what SPEC step 4 says (the oracle, over the rows before the run).
    assert clean == invites_to_mark(rows, started)
    assert len(clean) > 6 * BATCH
    return Upgraded(original, before, clean)


def assert_half_undone(t: TargetDatabase, u: Upgraded, undo_status: str) -> set[int]:
    """Some rows are back, some still marked; the upgrade run is claimed by the unfinished
    undo run, so it protects nothing any more. Returns the rows that came back."""
    back = u.clean - marked(t)
    assert back and back != u.clean
    assert [(r["run_id"], r["mode"], r["status"], r["undone_by_run_id"]) for r in runs(t)] == [
        (1, "upgrade", "completed", 2),
        (2, "undo", undo_status, None),
    ]
    history = plan(t).findings.history
    assert history.last_preference_on_at is None and history.unfinished is None
    said = " ".join(e.detail for e in history.evidence)
    assert f"run 1 is half undone (undo run 2 {undo_status})" in said
    return back


def assert_exactly_as_before(t: TargetDatabase, u: Upgraded) -> None:
    assert t.snapshot(*SUPEROFFICE) == u.original
    assert marked(t) == u.marked_before


def assert_remarked_as_a_clean_run(t: TargetDatabase, u: Upgraded, back: set[int]) -> None:
    """The upgrade after an interrupted undo: what came back is marked again, nothing else."""
    mark = next(s for s in plan(t).steps if s.id == "mark_invites")
    assert mark.decision == "change" and mark.rows == len(back)
    assert "no new rows" not in mark.reason
    before = marked(t)
    result = upgrade(t)
    assert result.run_id is not None and result.exit_code in (0, 4)
    assert marked(t) - before == back
    assert marked(t) - u.marked_before == u.clean


# --- stopped between batches (Ctrl-C) ---------------------------------------------------------


def test_undo_stopped_between_batches_finishes_when_run_again(
    target: TargetDatabase, upgraded: Upgraded
) -> None:
    with pytest.raises(InterruptedRun) as raised:
        run_undo(target, should_stop=after(3))

    assert int(raised.value.exit_code) == 130 and "Undo stopped after batch 3" in str(raised.value)
    back = assert_half_undone(target, upgraded, "interrupted")
    assert len(back) == 3 * BATCH
    assert sorted(undo_log(target)) == sorted(back)  # Travel heard of each row that came back

    again = run_undo(target)

    assert again.undone_runs == [1] and again.resumed_runs == [1] and again.conflicts == []
    assert again.restored == len(upgraded.clean) - len(back) + 1  # + the override row
    assert again.removed == 1  # the preference row the upgrade added
    assert_exactly_as_before(target, upgraded)
    assert undo_log(target) == sorted(upgraded.clean)  # each row once, over both undo runs
    assert [(r["status"], r["undone_by_run_id"]) for r in runs(target)] == [
        ("completed", 3),
        ("interrupted", None),
        ("completed", None),
    ]
    assert run_undo(target).undone_runs == []  # done for good


def test_an_upgrade_after_a_stopped_undo_marks_again_what_came_back(
    target: TargetDatabase, upgraded: Upgraded
) -> None:
    with pytest.raises(InterruptedRun):
        run_undo(target, should_stop=after(2))
    back = assert_half_undone(target, upgraded, "interrupted")

    assert_remarked_as_a_clean_run(target, upgraded, back)

    # And undo still puts everything back: the new run, then the rest of the old one.
    result = run_undo(target)
    assert result.undone_runs == [3, 1] and result.resumed_runs == [1]
    assert result.conflicts == []
    assert_exactly_as_before(target, upgraded)


def test_a_stop_after_the_last_row_came_back_is_finished_too(
    target: TargetDatabase, upgraded: Upgraded
) -> None:
    """Stopped after the marks came back, before the preference steps: the preference is still
    on, the upgrade run is claimed, and undo again puts the preference back."""
    batches = -(-len(upgraded.clean) // BATCH)  # every batch of the marking step
    with pytest.raises(InterruptedRun):
        run_undo(target, should_stop=after(batches + 1))  # + the marking step's own stop check
    assert marked(target) == upgraded.marked_before
    assert target.snapshot("userpreference") != {
        "userpreference": upgraded.original["userpreference"]
    }

    upgrade(target)  # marks every row again: the preference stayed on, the run protects nothing
    assert marked(target) - upgraded.marked_before == upgraded.clean

    assert run_undo(target).conflicts == []
    assert_exactly_as_before(target, upgraded)


# --- a failing statement (a lost connection) ----------------------------------------------------


@pytest.mark.parametrize("then", ["undo", "upgrade"])
def test_a_connection_lost_mid_batch(target: TargetDatabase, upgraded: Upgraded, then: str) -> None:
    with pytest.raises(Injected):
        run_undo(target, on_open=fail_restore(after=4))

    back = assert_half_undone(target, upgraded, "failed")
    assert len(back) == 4 * BATCH  # the fifth batch rolled back whole, its travel log with it
    assert sorted(undo_log(target)) == sorted(back)

    if then == "upgrade":
        assert_remarked_as_a_clean_run(target, upgraded, back)
    result = run_undo(target)

    assert result.conflicts == [] and 1 in result.resumed_runs
    assert_exactly_as_before(target, upgraded)


# --- a real signal or a terminated session, in a subprocess --------------------------------------

UNDO_SCRIPT = """
import sys, time
from setup_tool.connection import ConnectionSettings
from setup_tool.database import open_database
from setup_tool.undo import undo

url, prefix = sys.argv[1], sys.argv[2] or None
db = open_database(
    ConnectionSettings(database_url=url, table_prefix=prefix), read_only=False
)

def progress(done, total):
    print(done, total, flush=True)
    time.sleep(0.01)

try:
    undo(db, batch_size=1, acting_associate_id=UNDOER, progress=progress)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
""".replace("UNDOER", str(UNDOER))


def start_undo(t: TargetDatabase) -> subprocess.Popen[str]:
    """`undo` in a process of its own, one row per batch, printing its progress per batch."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", UNDO_SCRIPT, t.url, t.prefix or ""],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_rows(process: subprocess.Popen[str], rows: int) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    seen = 0
    while seen < rows:
        assert time.monotonic() < deadline, "the undo never got that far"
        line = process.stdout.readline()
        assert line, f"the undo ended early: {process.communicate()}"
        seen += 1


def terminate_sessions(t: TargetDatabase) -> None:
    t.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE usename = 'crm_user' AND datname = current_database() AND pid <> pg_backend_pid()"
    )


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL", "terminated session"])
def test_an_undo_process_stopped_for_real(
    target: TargetDatabase, upgraded: Upgraded, request: pytest.FixtureRequest, how: str
) -> None:
    if how == "terminated session" and target.kind != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    process = start_undo(target)
    wait_for_rows(process, 20)
    if how == "terminated session":
        terminate_sessions(target)
    else:
        os.kill(process.pid, getattr(signal, how))
    _out, err = process.communicate(timeout=60)
    expected_code = {"SIGINT": 130, "SIGKILL": -signal.SIGKILL, "terminated session": 1}[how]
    assert process.returncode == expected_code, err
    status = {"SIGINT": "interrupted", "SIGKILL": "running", "terminated session": "failed"}[how]
    back = assert_half_undone(target, upgraded, status)
    assert sorted(undo_log(target)) == sorted(back)  # nothing logged of a batch rolled back

    # The next upgrade marks again what came back, as a clean run would ...
    assert_remarked_as_a_clean_run(target, upgraded, back)
    assert runs(target)[1]["status"] != "running"  # the killed undo run was closed
    # ... and undo, run again, puts everything back.
    result = run_undo(target)
    assert result.undone_runs == [3, 1] and result.resumed_runs == [1]
    assert result.conflicts == []
    assert_exactly_as_before(target, upgraded)
