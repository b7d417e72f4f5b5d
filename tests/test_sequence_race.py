"""Two sessions taking ids from SuperOffice's `sequence` table at the same moment, on a real
PostgreSQL server.

SuperOffice hands out row ids from `sequence` (SUPEROFFICE.md, "sequence"): whoever takes ids
must UPDATE the row first and read `next_id` afterwards, in the same transaction, so that the
UPDATE's row lock makes the reservation its own. Reading first is the race SuperOffice's docs warn
about: two sessions read the same `next_id` and hand out the same ids. Here the second session
starts while the first still holds its reservation uncommitted, which is exactly that moment.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from scenarios import Scenario, Target
from sqlalchemy import text

from setup_tool.database import Database
from setup_tool.sequence import SequenceRowError, reserve_ids

START = 5000


@pytest.fixture
def target(pg_database: Any) -> Target:
    scenario = Scenario(next_ids={"appointment": START, "UserPreference": START})
    return scenario.build_postgresql(pg_database.url(), "crm7")


def _next_id(target: Target, table_name: str) -> int:
    rows = target.query(
        f"SELECT next_id FROM {target.table('sequence')} WHERE TableName = :name",
        name=table_name,
    )
    return int(rows[0]["next_id"])


def _waiting_for_a_lock(db: Database) -> bool:
    with db.engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


def test_two_sessions_reserving_at_once_get_disjoint_ids(target: Target) -> None:
    first_db, second_db = target.open(), target.open()
    try:
        second: dict[str, Any] = {}

        def reserve_in_second_session() -> None:
            try:
                with second_db.engine.begin() as conn:
                    second["id"] = reserve_ids(conn, second_db.tables, "appointment", 3)
            except BaseException as error:  # reported by the main thread
                second["error"] = error

        with first_db.engine.begin() as conn:
            first = reserve_ids(conn, first_db.tables, "appointment", 5)
            thread = threading.Thread(target=reserve_in_second_session)
            thread.start()
            # The second session must now be blocked behind the first one's row lock; commit
            # only once it is (or it finished, which is the bug this test is for).
            deadline = time.monotonic() + 20
            while thread.is_alive() and not _waiting_for_a_lock(first_db):
                assert time.monotonic() < deadline, "the second session neither waited nor ended"
                time.sleep(0.05)
        thread.join(timeout=20)
        assert not thread.is_alive()
        assert "error" not in second, second.get("error")
    finally:
        first_db.dispose()
        second_db.dispose()

    assert first == START
    assert second["id"] == START + 5, "the second session took ids the first one holds"
    assert set(range(first, first + 5)).isdisjoint(range(second["id"], second["id"] + 3))
    assert _next_id(target, "appointment") == START + 8
    assert _next_id(target, "UserPreference") == START  # another table's row is not touched


def test_a_reservation_rolled_back_gives_its_ids_back(target: Target) -> None:
    db = target.open()
    try:
        with pytest.raises(RuntimeError), db.engine.begin() as conn:
            assert reserve_ids(conn, db.tables, "appointment", 4) == START
            raise RuntimeError("the change that needed the ids failed")
        with db.engine.begin() as conn:
            assert reserve_ids(conn, db.tables, "appointment", 1) == START
    finally:
        db.dispose()
    assert _next_id(target, "appointment") == START + 1


@pytest.mark.parametrize("rows", [0, 2])
def test_no_ids_without_exactly_one_sequence_row(target: Target, rows: int) -> None:
    sequence = target.table("sequence")
    if rows == 0:
        target_sql = f"DELETE FROM {sequence} WHERE TableName = 'appointment'"
    else:
        target_sql = (
            f"INSERT INTO {sequence} (id, TableName, TableNumber, next_id) "
            "VALUES (99, 'APPOINTMENT', 9, 1)"
        )
    db = target.open()
    try:
        with db.engine.begin() as conn:
            conn.execute(text(target_sql))
        with pytest.raises(SequenceRowError) as raised, db.engine.begin() as conn:
            reserve_ids(conn, db.tables, "appointment", 1)
    finally:
        db.dispose()
    assert raised.value.rows == rows and raised.value.table_name == "appointment"
    if rows == 2:  # rolled back: neither row moved on
        assert _next_id(target, "appointment") == START
