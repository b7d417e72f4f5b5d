"""Crash and Ctrl-C in the middle of the marking: nothing half-done, and the next run resumes.

Failures are real: a SQLite trigger that refuses one appointment's update, or an engine event
that breaks the connection's statement after a number of batches. Interruptions use the same
`should_stop` callback the CLI's Ctrl-C handler sets.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scenarios import (
    database_rows,
    dump,
    execute,
    final_state,
    next_id,
    oracle_marks,
    query,
    run_rows,
    run_time,
    upgrade,
)
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from setup_tool.database import Database
from setup_tool.detect import OperatorAnswers
from setup_tool.errors import ExitCode, InterruptedRun

BATCH = 7


class Injected(RuntimeError):
    """The failure an engine event injects (a lost connection, say)."""


@pytest.fixture
def template(make_demo: Callable[..., Path]) -> Path:
    # Enough invite rows for several batches of BATCH.
    return make_demo(travel=True, appointments=1500, invite_share=0.1)


@pytest.fixture
def reference(template: Path, tmp_path: Path) -> dict[str, Any]:
    """The state one uninterrupted run leaves behind."""
    path = tmp_path / "reference.db"
    shutil.copyfile(template, path)
    result = upgrade(path, batch_size=BATCH)
    assert result.exit_code == ExitCode.DONE or result.exit_code == ExitCode.ACTION_REQUIRED
    return final_state(path)


@pytest.fixture
def crm(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    shutil.copyfile(template, path)
    return path


def candidates(path: Path) -> list[int]:
    """The rows a run now would mark (SPEC step 4, invite_oracle), in the order the batches
    take them."""
    return sorted(oracle_marks(path, datetime.now(UTC).replace(tzinfo=None)))


def main_statement(statement: str) -> str:
    """The statement after its leading WITH clause, if any: the staging INSERT carries the
    invite footprints as a common table expression ("WITH invite_footprints AS (...) INSERT")."""
    text = " ".join(statement.split())
    if not text.upper().startswith("WITH "):
        return text
    depth, seen_body = 0, False
    for index, char in enumerate(text):
        if char == "(":
            depth, seen_body = depth + 1, True
        elif char == ")":
            depth -= 1
            rest = text[index + 1 :].lstrip()
            if depth == 0 and seen_body and not rest.startswith(","):
                return rest
    return text


def is_staging(statement: str) -> bool:
    return main_statement(statement).upper().startswith("INSERT INTO SETUP_TOOL_CANDIDATE")


def marked_since(before: list[dict[str, Any]], path: Path) -> list[int]:
    old = {r["appointment_id"]: r for r in before}
    return sorted(
        r["appointment_id"] for r in dump(path, "appointment") if r != old[r["appointment_id"]]
    )


def marking_step(path: Path) -> dict[str, Any]:
    (step,) = query(path, "SELECT * FROM setup_tool_step WHERE step_key = 'mark_invites'")
    return step


def recorded_ids(path: Path) -> list[int]:
    return [
        r["record_id"]
        for r in query(
            path,
            "SELECT record_id FROM setup_tool_previous_value WHERE table_name = 'appointment' "
            "ORDER BY record_id",
        )
    ]


def statements_of(db: Database, log: list[str]) -> None:
    @event.listens_for(db.engine, "before_cursor_execute")
    def remember(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        log.append(" ".join(statement.split()))


def fail_on(statement_start: str, after: int = 0) -> Callable[[Database], None]:
    """An engine event that fails the (after+1)-th statement starting so, mid-transaction."""

    def attach(db: Database) -> None:
        seen = iter(range(10**6))

        @event.listens_for(db.engine, "before_cursor_execute")
        def fail(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if (
                main_statement(statement).upper().startswith(statement_start.upper())
                and next(seen) == after
            ):
                raise Injected("connection lost (injected)")

    return attach


def assert_half_run(
    path: Path, before: list[dict[str, Any]], todo: list[int], batches: int, log_start: int
) -> None:
    """Exactly `batches` complete batches are in the database, and nothing of the next one."""
    done = todo[: batches * BATCH]
    assert marked_since(before, path) == done
    assert recorded_ids(path) == done  # previous values and updates agree
    step = marking_step(path)
    assert step["status"] == "marking"
    assert step["checkpoint_key"] == done[-1]
    assert step["batches_done"] == batches and step["rows_changed"] == len(done)
    assert step["rows_planned"] == len(todo)
    # Travel: one log row per committed change (plus the preference insert), no gap, no extra.
    logged = query(
        path,
        "SELECT traveltransactionlog_id AS id, record_id, tablenumber "
        "FROM traveltransactionlog WHERE traveltransactionlog_id >= ? ORDER BY 1",
        [log_start],
    )
    assert [r["id"] for r in logged] == list(range(log_start, log_start + len(done) + 1))
    assert sorted(r["record_id"] for r in logged if r["tablenumber"] == 9) == done
    assert next_id(path, "traveltransactionlog") == log_start + len(done) + 1


def assert_resumed_to_the_end(
    path: Path, reference: dict[str, Any], todo: list[int], log_start: int
) -> None:
    assert final_state(path) == reference
    assert recorded_ids(path) == todo  # no duplicates
    step = marking_step(path)  # the one marking step, resumed: no second one
    assert step["status"] == "completed" and step["checkpoint_key"] == todo[-1]
    assert step["rows_changed"] == len(todo)
    assert step["batches_done"] == math.ceil(len(todo) / BATCH)
    assert query(path, "SELECT COUNT(*) AS n FROM setup_tool_candidate") == [{"n": 0}]
    logged = query(
        path,
        "SELECT traveltransactionlog_id AS id FROM traveltransactionlog "
        "WHERE traveltransactionlog_id >= ? ORDER BY 1",
        [log_start],
    )
    assert [r["id"] for r in logged] == list(range(log_start, log_start + len(todo) + 1))
    assert next_id(path, "traveltransactionlog") == log_start + len(todo) + 1


def resume(path: Path, todo: list[int], done: int) -> Any:
    """Run again, checking it resumes without staging again; yields the result."""
    planned_log: list[str] = []
    result = upgrade(path, batch_size=BATCH, on_open=lambda db: statements_of(db, planned_log))
    mark = next(s for s in result.plan.steps if s.id == "mark_invites")
    assert "resumes run 1's marking" in mark.reason.lower()
    assert mark.rows == len(todo) - done  # the plan counted exactly what was left
    assert not [s for s in planned_log if is_staging(s)]
    return result


# --- a failed batch ----------------------------------------------------------------------------


def test_failed_batch_is_rolled_back_and_the_next_run_resumes(
    crm: Path, reference: dict[str, Any]
) -> None:
    todo = candidates(crm)
    assert len(todo) > 5 * BATCH
    before = dump(crm, "appointment")
    log_start = next_id(crm, "traveltransactionlog")
    victim = todo[3 * BATCH + 2]  # the third row of the fourth batch
    execute(
        crm,
        f"CREATE TRIGGER refuse BEFORE UPDATE ON appointment WHEN OLD.appointment_id "
        f"= {victim} BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )

    with pytest.raises(DBAPIError, match="injected failure"):
        upgrade(crm, batch_size=BATCH)

    assert_half_run(crm, before, todo, batches=3, log_start=log_start)
    (run,) = run_rows(crm)
    assert (run["status"], run["outcome"], run["exit_code"]) == ("failed", "failed", 1)
    assert run["finished_at"] is not None

    execute(crm, "DROP TRIGGER refuse")
    result = resume(crm, todo, done=3 * BATCH)

    assert result.run_id == 2 and result.exit_code == ExitCode.ACTION_REQUIRED  # overrides left
    assert_resumed_to_the_end(crm, reference, todo, log_start)
    assert [r["status"] for r in run_rows(crm)] == ["failed", "completed"]
    # The resumed rows carry the time of the run that marked them.
    rows = {r["appointment_id"]: r for r in dump(crm, "appointment")}
    assert rows[todo[0]]["updated"] == run_time(crm, 1)
    assert rows[todo[-1]]["updated"] == run_time(crm, 2)


def test_engine_failure_after_two_batches(crm: Path, reference: dict[str, Any]) -> None:
    todo = candidates(crm)
    before = dump(crm, "appointment")
    log_start = next_id(crm, "traveltransactionlog")

    with pytest.raises(Injected):
        upgrade(crm, batch_size=BATCH, on_open=fail_on("UPDATE appointment", after=2))

    # The third batch had recorded its previous values when its update failed: all rolled back.
    assert_half_run(crm, before, todo, batches=2, log_start=log_start)
    assert run_rows(crm)[0]["status"] == "failed"

    result = resume(crm, todo, done=2 * BATCH)

    assert result.exit_code == ExitCode.ACTION_REQUIRED
    assert_resumed_to_the_end(crm, reference, todo, log_start)


# --- Ctrl-C ------------------------------------------------------------------------------------


def test_stop_after_the_first_batch_then_resume(crm: Path, reference: dict[str, Any]) -> None:
    todo = candidates(crm)
    before = dump(crm, "appointment")
    log_start = next_id(crm, "traveltransactionlog")

    with pytest.raises(InterruptedRun) as raised:
        upgrade(crm, batch_size=BATCH, should_stop=lambda: True)

    assert raised.value.exit_code == ExitCode.INTERRUPTED and int(raised.value.exit_code) == 130
    assert "Stopped after batch 1" in str(raised.value)
    assert_half_run(crm, before, todo, batches=1, log_start=log_start)
    (run,) = run_rows(crm)
    assert (run["status"], run["outcome"], run["exit_code"]) == ("interrupted", "interrupted", 130)

    result = resume(crm, todo, done=BATCH)

    assert_resumed_to_the_end(crm, reference, todo, log_start)
    assert result.run_id == 2


def test_a_resumed_run_can_itself_be_stopped_and_resumed(
    crm: Path, reference: dict[str, Any]
) -> None:
    todo = candidates(crm)
    before = dump(crm, "appointment")
    log_start = next_id(crm, "traveltransactionlog")
    with pytest.raises(InterruptedRun):
        upgrade(crm, batch_size=BATCH, should_stop=lambda: True)
    stops = iter([False, True])

    with pytest.raises(InterruptedRun) as raised:
        upgrade(crm, batch_size=BATCH, should_stop=lambda: next(stops))

    assert "Stopped after batch 3" in str(raised.value)  # numbering goes on from the checkpoint
    assert_half_run(crm, before, todo, batches=3, log_start=log_start)
    assert [r["status"] for r in run_rows(crm)] == ["interrupted", "interrupted"]

    result = upgrade(crm, batch_size=BATCH)

    assert result.run_id == 3
    assert_resumed_to_the_end(crm, reference, todo, log_start)


def test_a_stop_after_the_last_batch_is_closed_by_the_next_run(
    crm: Path, reference: dict[str, Any]
) -> None:
    todo = candidates(crm)
    log_start = next_id(crm, "traveltransactionlog")
    with pytest.raises(InterruptedRun):  # Ctrl-C while the last batch was committing
        upgrade(crm, batch_size=len(todo), should_stop=lambda: True)
    assert marking_step(crm)["status"] == "marking"
    assert marking_step(crm)["checkpoint_key"] == todo[-1]

    result = resume(crm, todo, done=len(todo))

    assert result.run_id == 2 and result.outcome == "action_required"  # the override is left
    step = marking_step(crm)
    assert step["status"] == "completed" and step["rows_changed"] == len(todo)
    assert query(crm, "SELECT COUNT(*) AS n FROM setup_tool_candidate") == [{"n": 0}]
    assert final_state(crm)["appointment"] == reference["appointment"]
    assert next_id(crm, "traveltransactionlog") == log_start + len(todo) + 1
    # Closed for good: the next run finds nothing to resume and records nothing.
    third = upgrade(crm, batch_size=BATCH)
    assert third.run_id is None
    mark = next(s for s in third.plan.steps if s.id == "mark_invites")
    assert mark.decision == "done" and "resumes" not in mark.reason.lower()


# --- failures before the first batch -----------------------------------------------------------


def test_failure_while_staging_restages_on_the_next_run(
    crm: Path, reference: dict[str, Any]
) -> None:
    todo = candidates(crm)
    before = dump(crm, "appointment")

    with pytest.raises(Injected):
        upgrade(crm, batch_size=BATCH, on_open=fail_on("INSERT INTO setup_tool_candidate"))

    assert dump(crm, "appointment") == before
    step = marking_step(crm)
    assert (step["status"], step["rows_planned"], step["checkpoint_key"]) == ("staging", 0, None)
    assert query(crm, "SELECT COUNT(*) AS n FROM setup_tool_candidate") == [{"n": 0}]

    result = upgrade(crm, batch_size=BATCH)

    mark = next(s for s in result.plan.steps if s.id == "mark_invites")
    assert "resumes run 1's marking" in mark.reason.lower() and mark.rows == len(todo)
    assert final_state(crm) == reference


def test_failure_in_the_preference_step_leaves_nothing_half_done(
    crm: Path, reference: dict[str, Any]
) -> None:
    before = {
        t: dump(crm, t)
        for t in ("appointment", "UserPreference", "sequence", "traveltransactionlog")
    }
    execute(
        crm,
        "CREATE TRIGGER refuse BEFORE INSERT ON UserPreference "
        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )

    with pytest.raises(DBAPIError, match="injected failure"):
        upgrade(crm, batch_size=BATCH)

    # The id reservation, the travel log and the bookkeeping of the insert rolled back with it.
    assert {t: dump(crm, t) for t in before} == before
    assert query(crm, "SELECT COUNT(*) AS n FROM setup_tool_previous_value") == [{"n": 0}]
    assert query(crm, "SELECT COUNT(*) AS n FROM setup_tool_step") == [{"n": 0}]
    (run,) = run_rows(crm)
    assert (run["status"], run["preference_on_at"]) == ("failed", None)

    execute(crm, "DROP TRIGGER refuse")
    upgrade(crm, batch_size=BATCH)

    assert final_state(crm) == reference


def test_a_step_stopped_before_staging_resumes_with_the_selection_it_recorded(
    crm: Path,
) -> None:
    database = database_rows(crm)
    (r10,) = [r for r in database.product_versions if r["version"] == "8.5 R10"]
    first_answers = OperatorAnswers(footprints=frozenset({"send-email", "email-id"}))

    with pytest.raises(Injected):
        upgrade(
            crm,
            first_answers,
            batch_size=BATCH,
            on_open=fail_on("INSERT INTO setup_tool_candidate"),
        )

    step = marking_step(crm)
    assert (step["status"], step["checkpoint_key"]) == ("staging", None)
    assert step["invites_since"] == r10["registered"]  # detected: the first 8.5 R10 row
    assert step["footprints"] == "email-id,send-email"
    first_run = datetime.fromisoformat(run_time(crm, 1))
    expected = oracle_marks(database, first_run, footprints=first_answers.footprints)
    # The operator now says otherwise; a fresh selection would mark other rows.
    later_since = datetime.fromisoformat(r10["registered"]) + timedelta(days=200)
    resumed_answers = OperatorAnswers(
        footprints=frozenset({"invitation"}), invites_since=later_since
    )
    other = oracle_marks(
        database,
        first_run,
        operator_since=resumed_answers.invites_since,
        footprints=resumed_answers.footprints,
    )
    assert expected and other and expected != other
    assert expected != oracle_marks(database, first_run)  # the narrowing matters here
    before = dump(crm, "appointment")

    result = upgrade(crm, resumed_answers, batch_size=BATCH)

    mark = next(s for s in result.plan.steps if s.id == "mark_invites")
    assert "resumes run 1's marking" in mark.reason.lower() and mark.rows == len(expected)
    assert set(marked_since(before, crm)) == expected
    assert recorded_ids(crm) == sorted(expected)
    step = marking_step(crm)  # the one marking step, resumed: its selection unchanged
    assert (step["status"], step["rows_changed"]) == ("completed", len(expected))
    assert step["invites_since"] == r10["registered"]
    assert step["footprints"] == "email-id,send-email"
    rows = {r["appointment_id"]: r for r in dump(crm, "appointment")}
    assert {rows[i]["updated"] for i in expected} == {run_time(crm, 2)}
