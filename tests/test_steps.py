"""Each upgrade step's effect on the database, row by row, checked with plain SQL.

The expected rows come from the independent oracle of SPEC step 4 (invite_oracle, through
scenarios.oracle_marks) applied to a plain dump, and from ids worked out by hand; never from the
tool's own queries.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from invite_oracle import rows_to_mark
from scenarios import (
    BASE,
    NEVER,
    SUPEROFFICE_8_5_R10,
    Row,
    Scenario,
    Target,
    appointment,
    backdate_run,
    by_id,
    database_rows,
    dump,
    execute,
    final_state,
    insert,
    invitation,
    invite_meeting,
    next_id,
    oracle_marks,
    plan,
    preference,
    product_version,
    query,
    run_rows,
    run_time,
    tables_named,
    travel_preference,
    ts,
    upgrade,
    whole_database,
)

from setup_tool.detect import OperatorAnswers
from setup_tool.errors import BlockedError, ExitCode, MissingAnswerError

ACTING = 7
NEVER_TEXT = ts(NEVER)
FUTURE = datetime(2099, 1, 1)


def steps_of(result: Any) -> dict[str, Any]:
    """The steps of an UpgradeResult or an UpgradePlan, by id."""
    steps = result.plan.steps if hasattr(result, "plan") else result.steps
    return {step.id: step for step in steps}


def previous_values(path: Path, table: str = "appointment") -> list[Row]:
    return query(
        path,
        "SELECT * FROM setup_tool_previous_value WHERE table_name = ? ORDER BY previous_value_id",
        [table],
    )


def assert_marked_exactly(
    before: list[Row],
    after: list[Row],
    expected: set[int],
    when: str,
    acting: int = ACTING,
) -> None:
    """Rows in `expected` are marked as the spec says; every other row is untouched."""
    old, new = by_id(before), by_id(after)
    assert old.keys() == new.keys()
    for row_id, row in new.items():
        was = old[row_id]
        if row_id in expected:
            assert row["cautionWarning"] == 1, row_id
            assert row["updated"] == when, row_id
            assert row["updated_associate_id"] == acting, row_id
            assert row["updatedCount"] == min(was["updatedCount"] + 1, 65535), row_id
            unchanged = {
                k: v
                for k, v in row.items()
                if k not in ("cautionWarning", "updated", "updated_associate_id", "updatedCount")
            }
            assert unchanged == {k: was[k] for k in unchanged}, row_id
        else:
            assert row == was, row_id


def assert_previous_values_recorded(path: Path, before: list[Row], expected: set[int]) -> None:
    old = by_id(before)
    recorded = previous_values(path)
    assert sorted(r["record_id"] for r in recorded) == sorted(expected)  # each exactly once
    for r in recorded:
        was = old[r["record_id"]]
        assert r["inserted"] == 0
        assert r["caution_warning"] == was["cautionWarning"]
        assert r["updated"] == was["updated"]
        assert r["updated_associate_id"] == was["updated_associate_id"]
        assert r["updated_count"] == was["updatedCount"]
        assert r["new_updated_count"] == min(was["updatedCount"] + 1, 65535)


# --- marking invite appointments -------------------------------------------------------------


def marking_scenario() -> Scenario:
    """Invite meetings (each with a footprint of the invite system) and look-alikes without one.

    invites-since is SUPEROFFICE_8_5_R10's registration, 100 days before BASE.
    """
    later = BASE + timedelta(days=2)
    return Scenario(
        appointments=[
            appointment(10, 0, 1),  # plain appointment
            appointment(11, 0, 0, invited=9),  # plain row that looks like an external participant
            appointment(12, 0, 1, warning=None),
            appointment(13, 0, 1, warning=None, send_email=1),  # plain, from the invite system
            # Invite meeting by (c), the external participant's emailId: master, internal (NULL
            # warning), external (in nobody's diary: left), a participant added later (950).
            appointment(100, 100, 1, count=3, updated=BASE + timedelta(days=1), updated_by=1),
            appointment(101, 100, 2, warning=None),
            appointment(102, 100, 0, invited=500, email_id=9500),
            # Invite meeting by (b), with other warnings: only the diary row at 0 is marked.
            appointment(200, 200, 1, warning=3, send_email=1),
            appointment(201, 200, 2),
            appointment(202, 200, 0, invited=501, warning=2),
            appointment(203, 200, 0, invited=502, warning=4),
            appointment(204, 200, 3, warning=5),
            appointment(205, 200, 0, invited=507),  # external, warning 0: still left
            # Internal-only meeting; one whose associate-0 row invites nobody; and a meeting with
            # an external participant but no footprint: none is an invite meeting.
            appointment(300, 300, 1),
            appointment(301, 300, 2),
            appointment(400, 400, 1),
            appointment(401, 400, 0, invited=0),
            appointment(450, 450, 1),
            appointment(451, 450, 0, invited=508),
            # Invite meeting by (a), an invitation row; the external participant is marked already.
            appointment(500, 500, 1),
            appointment(501, 500, 0, invited=503, warning=1),
            # Invite meeting by (c); updatedCount at and near its 16-bit cap.
            appointment(600, 600, 1, count=65535),
            appointment(601, 600, 3, count=65534),
            appointment(602, 600, 2, warning=None, count=65535),
            appointment(603, 600, 0, invited=504, email_id=9504, count=65534),
            # Invite meeting by (b) with a row the synchronizer made from Outlook: that row is left.
            appointment(650, 650, 1, send_email=1),
            appointment(651, 650, 2, owned_externally=2),
            # Invite meeting registered after the run: outside the window.
            appointment(700, 700, 1, registered=FUTURE, send_email=1),
            appointment(701, 700, 0, invited=505, registered=FUTURE, email_id=9505),
            # Internal rows first, the footprint (an e-mailed external participant) far away in
            # the id order.
            appointment(800, 800, 1),
            appointment(801, 800, 2),
            appointment(950, 100, 3, registered=later),
            appointment(990, 800, 0, invited=506, registered=later, email_id=9506),
        ],
        invitations=[invitation(1, 500)],
    )


MARKING_EXPECTED = {13, 100, 101, 201, 500, 600, 601, 602, 650, 800, 801, 950}


def test_marking_changes_exactly_the_invite_rows(tmp_path: Path) -> None:
    path = marking_scenario().build(tmp_path / "crm.db")
    database = database_rows(path)
    before = dump(path, "appointment")
    planned = steps_of(plan(path))["mark_invites"]

    result = upgrade(path, acting_associate_id=ACTING, batch_size=5)

    assert result.exit_code == ExitCode.DONE and result.outcome == "done"
    when = run_time(path, result.run_id)
    expected = oracle_marks(database, when)
    assert expected == MARKING_EXPECTED
    after = dump(path, "appointment")
    assert_marked_exactly(before, after, expected, when)
    assert by_id(after)[600]["updatedCount"] == 65535  # capped, not 65536
    assert by_id(after)[601]["updatedCount"] == 65535
    assert_previous_values_recorded(path, before, expected)
    # What the dry run predicted is what happened.
    assert planned.rows == len(expected) == steps_of(result)["mark_invites"].rows
    assert planned.sample_ids == sorted(expected)[:10]
    (step,) = query(path, "SELECT * FROM setup_tool_step WHERE step_key = 'mark_invites'")
    assert step["status"] == "completed" and step["rows_changed"] == len(expected)
    assert step["rows_planned"] == len(expected)
    assert step["checkpoint_key"] == max(expected)
    assert step["window_until"] == when and step["window_from"] is None
    assert step["invites_since"] == ts(SUPEROFFICE_8_5_R10["registered"])
    assert step["footprints"] == "email-id,invitation,send-email"
    assert query(path, "SELECT COUNT(*) AS n FROM setup_tool_candidate") == [{"n": 0}]


def test_marking_on_the_demo_database(make_demo: Any) -> None:
    demo_db = make_demo(appointments=3000, invite_share=0.1)
    database = database_rows(demo_db)
    before = dump(demo_db, "appointment")

    result = upgrade(demo_db, acting_associate_id=ACTING, fix_overrides=True)

    when = run_time(demo_db, result.run_id)
    expected = oracle_marks(database, when)
    assert len(expected) > 50
    assert_marked_exactly(before, dump(demo_db, "appointment"), expected, when)
    assert_previous_values_recorded(demo_db, before, expected)
    old = by_id(before)
    assert any(old[i]["cautionWarning"] is None for i in expected)
    assert any(old[i]["updatedCount"] == 65535 for i in expected)


# --- the preference ---------------------------------------------------------------------------


def not_null_columns(path: Path, table: str) -> list[str]:
    return [r["name"] for r in query(path, f'PRAGMA table_info("{table}")') if r["notnull"]]


def system_rows(path: Path) -> list[Row]:
    return query(
        path,
        "SELECT * FROM UserPreference WHERE prefsection = 'Mail' AND "
        "prefkey = 'DiarySynchronizerActive' AND deflevel = 2 AND owner_id = 0 "
        "ORDER BY userpreference_id",
    )


def test_preference_row_is_inserted_with_an_id_from_sequence(demo_db: Path) -> None:
    assert system_rows(demo_db) == []
    first_free = next_id(demo_db, "UserPreference")
    prefs_before = dump(demo_db, "UserPreference")

    result = upgrade(demo_db, acting_associate_id=ACTING)

    when = run_time(demo_db, result.run_id)
    (row,) = system_rows(demo_db)
    assert row == {
        "userpreference_id": first_free,
        "deflevel": 2,
        "maxlevel": 5,
        "owner_id": 0,
        "prefsection": "Mail",
        "prefkey": "DiarySynchronizerActive",
        "prefvalue": "1",
        "registered": when,
        "registered_associate_id": ACTING,
        "updated": NEVER_TEXT,
        "updated_associate_id": 0,
        "updatedCount": 0,
    }
    assert all(row[c] is not None for c in not_null_columns(demo_db, "UserPreference"))
    assert next_id(demo_db, "UserPreference") == first_free + 1
    others = [r for r in dump(demo_db, "UserPreference") if r["userpreference_id"] != first_free]
    assert others == prefs_before  # the override rows are left as they are (no fix_overrides)
    (recorded,) = previous_values(demo_db, "UserPreference")
    assert (recorded["record_id"], recorded["inserted"]) == (first_free, 1)


def test_inserted_value_uses_the_databases_bool_encoding(tmp_path: Path) -> None:
    path = Scenario(
        preferences=[
            preference(1, 2, "Yes", section="Diary", key="ShowWeekNumbers"),
            preference(2, 2, "No", section="Diary", key="ShowPrivate"),
            preference(3, 5, "no", owner=4, section="Diary", key="ShowPrivate"),
        ]
    ).build(tmp_path / "crm.db")

    upgrade(path)

    (row,) = system_rows(path)
    assert row["prefvalue"] == "Yes"


def test_existing_false_system_row_is_switched_on_in_its_encoding(tmp_path: Path) -> None:
    changed_at = BASE - timedelta(days=30)
    path = Scenario(
        preferences=[
            preference(4, 1, "False"),
            preference(6, 2, "False", updated=changed_at, count=4),
            preference(8, 5, "True", owner=3),
        ]
    ).build(tmp_path / "crm.db")
    first_free = next_id(path, "UserPreference")
    before = by_id(dump(path, "UserPreference"), "userpreference_id")

    result = upgrade(path, acting_associate_id=ACTING)

    when = run_time(path, result.run_id)
    after = by_id(dump(path, "UserPreference"), "userpreference_id")
    assert after[6] == {
        **before[6],
        "prefvalue": "True",
        "updated": when,
        "updated_associate_id": ACTING,
        "updatedCount": 5,
    }
    assert after[4] == before[4] and after[8] == before[8]
    assert len(after) == 3 and next_id(path, "UserPreference") == first_free
    (recorded,) = previous_values(path, "UserPreference")
    assert recorded["record_id"] == 6 and recorded["inserted"] == 0
    assert (
        recorded["prefvalue"],
        recorded["updated"],
        recorded["updated_count"],
        recorded["new_updated_count"],
    ) == ("False", ts(changed_at), 4, 5)


def test_duplicate_system_rows_are_all_switched_on_with_a_warning(tmp_path: Path) -> None:
    path = Scenario(
        preferences=[preference(3, 2, "0"), preference(8, 2, "0", count=2), preference(9, 2, "1")]
    ).build(tmp_path / "crm.db")

    result = upgrade(path)

    step = steps_of(result)["preference"]
    assert step.decision == "change" and step.rows == 2 and step.sample_ids == [3, 8]
    assert any("3 system-wide rows" in w for w in step.warnings)
    values = {
        r["userpreference_id"]: (r["prefvalue"], r["updatedCount"]) for r in system_rows(path)
    }
    assert values == {3: ("1", 1), 8: ("1", 3), 9: ("1", 0)}


def override_rows(path: Path) -> dict[int, Row]:
    return by_id(
        query(
            path,
            "SELECT * FROM UserPreference WHERE deflevel IN (3, 4, 5) AND "
            "prefkey = 'DiarySynchronizerActive'",
        ),
        "userpreference_id",
    )


def test_overrides_are_reported_and_left_unless_asked(demo_db: Path) -> None:
    before = override_rows(demo_db)
    assert {i: r["prefvalue"] for i, r in before.items()} == {18: "1", 19: "0"}

    result = upgrade(demo_db)

    assert result.exit_code == ExitCode.ACTION_REQUIRED and result.outcome == "action_required"
    step = steps_of(result)["overrides"]
    assert step.decision == "skip" and step.action_required and step.sample_ids == [19]
    assert "--fix-overrides" in step.reason
    assert step.warnings == ["Left off: row 19 (individual, owner 3 (USER003: Eva Berg)) = '0'."]
    assert override_rows(demo_db) == before


def test_overrides_are_switched_on_with_fix_overrides(demo_db: Path) -> None:
    before = override_rows(demo_db)

    result = upgrade(demo_db, fix_overrides=True, acting_associate_id=ACTING)

    assert result.exit_code == ExitCode.DONE and result.outcome == "done"
    when = run_time(demo_db, result.run_id)
    after = override_rows(demo_db)
    assert after[18] == before[18]
    assert after[19] == {
        **before[19],
        "prefvalue": "1",
        "updated": when,
        "updated_associate_id": ACTING,
        "updatedCount": 1,
    }
    recorded = {r["record_id"]: r for r in previous_values(demo_db, "UserPreference")}
    assert recorded[19]["prefvalue"] == "0" and recorded[19]["inserted"] == 0


# --- Travel -----------------------------------------------------------------------------------


def log_rows(path: Path, from_id: int) -> list[Row]:
    return query(
        path,
        "SELECT * FROM traveltransactionlog WHERE traveltransactionlog_id >= ? "
        "ORDER BY traveltransactionlog_id",
        [from_id],
    )


def test_travel_on_logs_every_change(make_demo: Any) -> None:
    path = make_demo(travel=True)
    database = database_rows(path)
    before = dump(path, "appointment")
    old_log = dump(path, "traveltransactionlog")
    first_log_id = next_id(path, "traveltransactionlog")
    new_pref_id = next_id(path, "UserPreference")

    result = upgrade(path, fix_overrides=True, acting_associate_id=ACTING, batch_size=9)

    when = run_time(path, result.run_id)
    marked = oracle_marks(database, when)
    assert marked  # the demo has invite rows to mark
    assert_marked_exactly(before, dump(path, "appointment"), marked, when)
    logged = log_rows(path, first_log_id)
    assert [r["traveltransactionlog_id"] for r in logged] == list(
        range(first_log_id, first_log_id + len(marked) + 2)
    )  # contiguous
    assert next_id(path, "traveltransactionlog") == first_log_id + len(marked) + 2
    assert sorted((r["type"], r["tablenumber"], r["record_id"]) for r in logged) == sorted(
        [(4608, 9, i) for i in marked] + [(4352, 56, new_pref_id), (4608, 56, 19)]
    )
    assert {
        (r["flags"], r["associate_id"], r["ttime"], r["prev_record_id"], r["application_id"])
        for r in logged
    } == {(2, ACTING, when, 0, 0)}
    assert dump(path, "traveltransactionlog")[: len(old_log)] == old_log


def test_travel_log_table_number_comes_from_sequence(tmp_path: Path) -> None:
    path = Scenario(
        appointments=[
            appointment(5, 5, 1),
            appointment(6, 5, 2),
            appointment(7, 5, 0, invited=3, email_id=9003),  # e-mailed: not in a diary, not marked
        ],
        preferences=[travel_preference(1, True)],
    ).build(tmp_path / "crm.db")
    execute(
        path,
        "UPDATE sequence SET TableNumber = 1009 WHERE TableName = 'appointment'",
        "UPDATE sequence SET TableNumber = 1056 WHERE TableName = 'UserPreference'",
    )
    first_log_id = next_id(path, "traveltransactionlog")

    upgrade(path)

    # The preference step runs first, then the marking.
    assert [(r["type"], r["tablenumber"], r["record_id"]) for r in log_rows(path, 0)] == [
        (4352, 1056, 18),
        (4608, 1009, 5),
        (4608, 1009, 6),
    ]
    assert log_rows(path, 0)[0]["traveltransactionlog_id"] == first_log_id


def test_travel_off_writes_no_log(demo_db: Path) -> None:
    log_before = dump(demo_db, "traveltransactionlog")
    log_next = next_id(demo_db, "traveltransactionlog")

    result = upgrade(demo_db, fix_overrides=True)

    assert steps_of(result)["mark_invites"].rows > 0
    assert dump(demo_db, "traveltransactionlog") == log_before == []
    assert next_id(demo_db, "traveltransactionlog") == log_next


# --- batches ----------------------------------------------------------------------------------


def test_batch_size_does_not_change_the_result(make_demo: Any, tmp_path: Path) -> None:
    template = make_demo(travel=True, appointments=1500)
    database = database_rows(template)
    states = []
    for batch_size in (1, 7, 100_000):
        path = tmp_path / f"batch-{batch_size}.db"
        shutil.copyfile(template, path)
        result = upgrade(path, batch_size=batch_size)
        expected = oracle_marks(database, run_time(path, result.run_id))
        assert len(expected) > 7  # several batches of 7, one of 100,000
        (step,) = query(path, "SELECT * FROM setup_tool_step WHERE step_key = 'mark_invites'")
        assert step["checkpoint_key"] == max(expected)
        assert step["batches_done"] == math.ceil(len(expected) / batch_size)
        assert step["rows_changed"] == len(expected)
        batches = query(
            path,
            "SELECT batch_no, COUNT(*) AS n FROM setup_tool_previous_value "
            "WHERE table_name = 'appointment' GROUP BY batch_no ORDER BY batch_no",
        )
        assert [b["n"] for b in batches][:-1] == [batch_size] * (len(batches) - 1)
        states.append(final_state(path))
    assert states[0] == states[1] == states[2]


# --- the gate ---------------------------------------------------------------------------------


def test_superoffice_too_old_blocks_before_any_write(tmp_path: Path) -> None:
    path = dataclasses.replace(
        marking_scenario(),
        product_versions=[
            product_version(1, "SuperOffice", "CRM", "8.1 R03"),
            product_version(2, "InfoBridge", "Synchronizer", "3.2.284"),
        ],
    ).build(tmp_path / "crm.db")
    content = path.read_bytes()

    result = upgrade(path)

    assert result.exit_code == ExitCode.BLOCKED and int(result.exit_code) == 3
    assert result.outcome == "blocked"
    assert result.run_id is None
    gate = steps_of(result)["gate"]
    assert gate.decision == "blocked" and "older than 8.5 R10" in gate.reason
    # Every step is there, and none after the gate changes anything (an `all()` over the
    # steps it finds would also pass with no step at all).
    assert {k: s.decision for k, s in steps_of(result).items()} == {
        "gate": "blocked",
        "preference": "skip",
        "overrides": "skip",
        "mark_invites": "skip",
        "synchronizer_check": "done",
    }
    assert all(s.rows == 0 for s in steps_of(result).values())
    assert path.read_bytes() == content
    assert tables_named(path, "setup_tool") == []


def test_undetermined_superoffice_version_is_an_error_unattended(tmp_path: Path) -> None:
    path = dataclasses.replace(
        marking_scenario(),
        product_versions=[
            product_version(1, "SuperOffice", "CRM", "8.5.7346.1605"),
            product_version(2, "InfoBridge", "Synchronizer", "3.2.284"),
        ],
    ).build(tmp_path / "crm.db")
    content = path.read_bytes()

    with pytest.raises(BlockedError) as raised:
        upgrade(path)

    assert raised.value.exit_code == ExitCode.BLOCKED
    assert "--superoffice-version" in str(raised.value)
    assert "SETUP_TOOL_SUPEROFFICE_VERSION" in str(raised.value)
    assert path.read_bytes() == content

    answered = upgrade(path, OperatorAnswers(superoffice_version="8.5 R10"))
    assert answered.exit_code == ExitCode.DONE
    assert dump(path, "appointment")[0]["appointment_id"] == 10


# --- the synchronizer check -------------------------------------------------------------------


def test_old_synchronizer_still_protects_the_data(tmp_path: Path) -> None:
    path = dataclasses.replace(
        marking_scenario(),
        product_versions=[
            SUPEROFFICE_8_5_R10,
            product_version(2, "InfoBridge", "Synchronizer", "3.2.283"),
        ],
    ).build(tmp_path / "crm.db")

    result = upgrade(path)

    assert result.exit_code == ExitCode.ACTION_REQUIRED and int(result.exit_code) == 4
    assert result.outcome == "action_required"
    check = steps_of(result)["synchronizer_check"]
    assert check.decision == "blocked" and check.action_required
    assert "Synchronizer 3.2.283 is older than 3.2.284" in check.reason
    assert "install synchronizer 3.2.284 or newer" in check.reason
    assert system_rows(path)[0]["prefvalue"] == "1"
    marked = {r["appointment_id"] for r in dump(path, "appointment") if r["cautionWarning"] == 1}
    assert marked == MARKING_EXPECTED | {501}  # 501 was marked before


def test_unknown_synchronizer_version_still_protects_the_data(tmp_path: Path) -> None:
    path = dataclasses.replace(
        marking_scenario(),
        product_versions=[SUPEROFFICE_8_5_R10],
        licences=["superoffice.exchange-sync"],
    ).build(tmp_path / "crm.db")
    content = path.read_bytes()

    with pytest.raises(MissingAnswerError) as raised:
        upgrade(path)
    assert raised.value.exit_code == ExitCode.USAGE
    assert "--synchronizer-version" in str(raised.value)
    assert "--no-synchronizer" in str(raised.value)
    assert path.read_bytes() == content

    result = upgrade(path, OperatorAnswers(synchronizer_version="unknown"))

    assert result.exit_code == ExitCode.ACTION_REQUIRED
    check = steps_of(result)["synchronizer_check"]
    assert check.action_required and "version is unknown" in check.reason
    assert system_rows(path)[0]["prefvalue"] == "1"
    marked = {r["appointment_id"] for r in dump(path, "appointment") if r["cautionWarning"] == 1}
    assert marked == MARKING_EXPECTED | {501}  # 501 was marked before


# --- running again ----------------------------------------------------------------------------


def test_second_run_changes_nothing_and_records_nothing(make_demo: Any) -> None:
    path = make_demo(travel=True)
    first = upgrade(path, fix_overrides=True)
    assert first.exit_code == ExitCode.DONE and first.run_id == 1
    state = whole_database(path)

    second = upgrade(path, fix_overrides=True)

    assert second.exit_code == ExitCode.DONE and second.outcome == "nothing_to_do"
    assert second.run_id is None
    assert {s.id: s.decision for s in second.plan.steps} == {
        "gate": "done",
        "preference": "done",
        "overrides": "done",
        "mark_invites": "done",
        "synchronizer_check": "done",
    }
    assert not second.plan.changes_pending
    assert [r["run_id"] for r in run_rows(path)] == [1]
    assert whole_database(path) == state


def test_preference_already_on_records_when_and_marks_only_before(tmp_path: Path) -> None:
    switched_on = BASE + timedelta(days=10)
    path = Scenario(
        appointments=[
            # Before it was switched on: the diary rows are marked.
            appointment(1, 1, 1),
            appointment(2, 1, 2),
            appointment(3, 1, 0, invited=4, email_id=9004),
            # From then on: not.
            appointment(4, 4, 1, registered=switched_on),
            appointment(5, 4, 2, registered=switched_on),
            appointment(6, 4, 0, invited=5, registered=switched_on, email_id=9005),
        ],
        preferences=[preference(5, 2, "1", updated=switched_on, count=1)],
    ).build(tmp_path / "crm.db")
    database = database_rows(path)

    first = upgrade(path)

    assert first.run_id == 1 and first.outcome == "done"
    assert steps_of(first)["preference"].decision == "done"
    assert oracle_marks(database, run_time(path, 1)) == {1, 2}
    assert [r["cautionWarning"] for r in dump(path, "appointment")] == [1, 1, 0, 0, 0, 0]
    assert run_rows(path)[0]["preference_on_at"] == run_time(path, 1)

    second = upgrade(path)
    assert second.run_id is None and second.outcome == "nothing_to_do"
    assert len(run_rows(path)) == 1


def test_after_an_admin_switched_it_off_only_rows_since_then_are_marked(tmp_path: Path) -> None:
    path = marking_scenario().build(tmp_path / "crm.db")
    first = upgrade(path)
    assert first.run_id == 1
    now = datetime.fromisoformat(run_time(path, 1))
    backdate_run(path, 1, now - timedelta(days=10))
    switched_off = now - timedelta(days=5)
    (pref,) = system_rows(path)
    execute(
        path,
        f"UPDATE UserPreference SET prefvalue = '0', updated = '{ts(switched_off)}', "
        f"updatedCount = 1 WHERE userpreference_id = {pref['userpreference_id']}",
    )
    while_on = now - timedelta(days=7)
    since_off = now - timedelta(days=3)
    insert(
        path,
        "appointment",
        [
            *invite_meeting(2000, while_on, 600),  # registered while it was on: left alone
            *invite_meeting(2100, since_off, 601),  # registered while it was off: marked
            *invite_meeting(2200, since_off, 602, warning=4),  # the warned master is left
            appointment(2300, 2300, 1, registered=since_off),  # internal only
            appointment(2301, 2300, 2, registered=since_off),
        ],
    )
    database = database_rows(path)
    before = dump(path, "appointment")

    second = upgrade(path, acting_associate_id=ACTING)

    assert second.run_id == 2 and second.outcome == "done"
    window = second.plan.findings.invites.window
    assert window is not None and window.start == switched_off
    when = run_time(path, 2)
    # The oracle's window starts at invites-since; the meetings registered from switched_off on
    # are those selected until now and not until switched_off.
    expected = rows_to_mark(database, until=datetime.fromisoformat(when)) - rows_to_mark(
        database, until=switched_off
    )
    assert expected == {2100, 2101, 2201}  # external rows and the warned master are left
    assert_marked_exactly(before, dump(path, "appointment"), expected, when)
    assert sorted(
        r["record_id"]
        for r in query(
            path,
            "SELECT record_id FROM setup_tool_previous_value pv JOIN setup_tool_step s "
            "ON s.step_row_id = pv.step_row_id WHERE s.run_id = 2 AND table_name = 'appointment'",
        )
    ) == sorted(expected)
    assert system_rows(path)[0]["prefvalue"] == "1"


def test_new_invites_while_it_stayed_on_are_not_marked(tmp_path: Path) -> None:
    path = marking_scenario().build(tmp_path / "crm.db")
    upgrade(path)
    now = datetime.fromisoformat(run_time(path, 1))
    backdate_run(path, 1, now - timedelta(days=10))
    insert(path, "appointment", invite_meeting(2000, now - timedelta(days=2), 600))
    state = whole_database(path)

    second = upgrade(path)

    assert second.run_id is None and second.outcome == "nothing_to_do"
    assert steps_of(second)["mark_invites"].decision == "done"
    assert "stayed on since the last run" in steps_of(second)["mark_invites"].reason
    assert whole_database(path) == state


def test_synchronizer_installed_later(demo_db: Path) -> None:
    database = database_rows(demo_db)
    state = whole_database(demo_db)

    without = upgrade(demo_db, OperatorAnswers(no_synchronizer=True))

    assert without.exit_code == ExitCode.DONE and without.outcome == "nothing_to_do"
    assert {s.id: s.decision for s in without.plan.steps} == {
        "gate": "done",
        "preference": "skip",
        "overrides": "skip",
        "mark_invites": "skip",
        "synchronizer_check": "skip",
    }
    assert "No synchronizer" in steps_of(without)["mark_invites"].reason
    assert whole_database(demo_db) == state and run_rows(demo_db) == []

    later = upgrade(demo_db, fix_overrides=True)

    when = run_time(demo_db, later.run_id)
    expected = oracle_marks(database, when)
    assert expected
    assert_marked_exactly(
        state["appointment"], dump(demo_db, "appointment"), expected, when, acting=0
    )
    assert system_rows(demo_db)[0]["prefvalue"] == "1"


# --- the step's bookkeeping -------------------------------------------------------------------


@pytest.mark.parametrize(
    "engine",
    [
        "sqlite",  # sqlite3 reports rowcount -1 for the staging INSERT (it starts WITH ...)
        "postgresql",
    ],
)
def test_rows_planned_is_what_was_staged(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    scenario = Scenario(
        appointments=[
            *invite_meeting(100, BASE, 500),  # e-mailed: 100 and 101 marked, 102 external
            appointment(200, 200, 1, send_email=1),
            appointment(201, 200, 2),
            appointment(300, 300, 1),  # no footprint
        ]
    )
    if engine == "sqlite":
        target = Target.sqlite(scenario.build(tmp_path / "crm.db"))
    else:
        target = scenario.build_postgresql(request.getfixturevalue("pg_database").url(), "crm7")

    result = target.upgrade(OperatorAnswers())

    assert result.exit_code == ExitCode.DONE
    (step,) = target.query(
        f"SELECT rows_planned, rows_changed FROM {target.table('setup_tool_step')} "
        "WHERE step_key = 'mark_invites'"
    )
    assert step == {"rows_planned": 4, "rows_changed": 4}
