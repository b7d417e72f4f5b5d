"""Which appointments the upgrade marks (SPEC step 4), against an independent oracle.

- A property test generates small SuperOffice databases (plain appointments and meetings with
  colleague, external and resource rows; random footprints; registered dates around
  invites-since; recurring series crossing it; owned_externally and cautionWarning values;
  invitation rows; a system Diary Synchronizer Active row; the operator's --invites-since and
  --footprints), runs the dry run, the real upgrade and undo, and checks each against
  `invite_oracle` and the snapshot taken before: on SQLite and on a real PostgreSQL server.
- Explicit examples pin every clause of the rule with ids worked out by hand, and check that the
  oracle agrees with them too.

Everything is read back with plain SQL (scenarios.Target), never with the tool's query builders.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from invite_oracle import (
    ALL_FOOTPRINTS,
    DatabaseRows,
    as_datetime,
    is_8_5_r10_or_newer,
    marking_until,
    rows_to_mark,
)
from scenarios import (
    NEVER,
    Row,
    Scenario,
    Target,
    appointment,
    invitation,
    preference,
    product_version,
)
from sqlalchemy import create_engine, text

from setup_tool.cli import cli
from setup_tool.detect import OperatorAnswers
from setup_tool.errors import ExitCode
from setup_tool.upgrade import UpgradePlan

SINCE = datetime(2024, 3, 1, 8, 0, 0)  # the invites-since moment the scenarios revolve around
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)
EMPTY_DATES = [NEVER, datetime(1753, 1, 1)]  # SuperOffice's "empty" dates: no evidence
SYNCHRONIZER = "3.2.284"
MARK_STEP = "mark_invites"
MAINTAINED = {"cautionwarning", "updated", "updated_associate_id", "updatedcount"}
SNAPSHOT_TABLES = ("appointment", "invitation", "ProductVersion", "UserPreference")
COLLEAGUE, ROOM, EXTERNAL = 2, 50, 0
SYNCHRONIZER_ROW = product_version(
    99, "InfoBridge", "Synchronizer", SYNCHRONIZER
)  # associate_ids: a colleague, a meeting room, nobody


# --- running and checking ---------------------------------------------------------------------


def answers(
    since: datetime | None = None, footprints: Iterable[str] | None = None
) -> OperatorAnswers:
    narrowed: dict[str, Any] = {} if footprints is None else {"footprints": frozenset(footprints)}
    return OperatorAnswers(synchronizer_version=SYNCHRONIZER, invites_since=since, **narrowed)


def snapshot(target: Target) -> dict[str, list[Row]]:
    return target.snapshot(*SNAPSHOT_TABLES)


def mark_step_rows(plan: UpgradePlan) -> int:
    (step,) = [s for s in plan.steps if s.id == MARK_STEP]
    return step.rows


def run_started(target: Target, run_id: int | None) -> datetime:
    if run_id is None:
        return datetime.now(UTC).replace(tzinfo=None)
    (row,) = target.query(
        f"SELECT started_at FROM {target.table('setup_tool_run')} WHERE run_id = :run_id",
        run_id=run_id,
    )
    started = as_datetime(row["started_at"])
    assert started is not None
    return started


def rows_changed_by_marking(target: Target, run_id: int | None) -> int:
    if run_id is None:
        return 0
    (row,) = target.query(
        f"SELECT COALESCE(SUM(rows_changed), 0) AS n FROM {target.table('setup_tool_step')} "
        "WHERE run_id = :run_id AND step_key = :step",
        run_id=run_id,
        step=MARK_STEP,
    )
    return int(row["n"])


def newly_marked(before: list[Row], after: list[Row]) -> set[int]:
    old = {r["appointment_id"]: r for r in before}
    return {
        r["appointment_id"]
        for r in after
        if r["cautionwarning"] == 1 and old[r["appointment_id"]]["cautionwarning"] != 1
    }


def assert_only_marking_changed(
    before: list[Row], after: list[Row], marked: set[int], run_time: Any
) -> None:
    """Marked rows: cautionWarning 1 and the three maintained columns; everything else as it was."""
    assert [r["appointment_id"] for r in after] == [r["appointment_id"] for r in before]
    for old, new in zip(before, after, strict=True):
        if old["appointment_id"] not in marked:
            assert new == old, f"row {old['appointment_id']} changed but was not to be marked"
            continue
        kept = {k: v for k, v in old.items() if k not in MAINTAINED}
        assert {k: v for k, v in new.items() if k not in MAINTAINED} == kept
        assert new["cautionwarning"] == 1
        assert new["updated_associate_id"] == 0  # the system acts
        assert new["updated"] == run_time
        assert new["updatedcount"] == min(old["updatedcount"] + 1, 65535)


def check_run(
    target: Target, operator: OperatorAnswers, expected: set[int] | None = None
) -> set[int]:
    """Dry run, real run and undo on `target`, each checked; returns the ids the run marked.

    The marked set must equal the oracle's, and `expected` (worked out by hand) when given."""
    before = snapshot(target)
    predicted = mark_step_rows(target.plan(operator))
    assert snapshot(target) == before, "the dry run changed the database"

    result = target.upgrade(operator)
    assert result.exit_code == ExitCode.DONE, result.outcome
    after = snapshot(target)
    marked = newly_marked(before["appointment"], after["appointment"])

    (run,) = target.query(
        f"SELECT started_at FROM {target.table('setup_tool_run')} WHERE run_id = :run_id",
        run_id=result.run_id,
    )
    database = DatabaseRows(
        appointments=before["appointment"],
        invitations=before["invitation"],
        product_versions=before["ProductVersion"],
        preferences=before["UserPreference"],
    )
    oracle = rows_to_mark(
        database,
        until=marking_until(before["UserPreference"], run_started(target, result.run_id)),
        operator_since=operator.invites_since,
        footprints=operator.footprints,
    )
    if expected is not None:
        assert marked == expected, "the tool marked other rows than worked out by hand"
        assert oracle == expected, "the oracle disagrees with the rows worked out by hand"
    assert marked == oracle, (
        f"tool marked {sorted(marked)}, SPEC step 4 says {sorted(oracle)}: "
        f"extra {sorted(marked - oracle)}, missing {sorted(oracle - marked)}"
    )
    assert_only_marking_changed(
        before["appointment"], after["appointment"], marked, run["started_at"]
    )
    for table in ("invitation", "ProductVersion"):
        assert after[table] == before[table]
    real = mark_step_rows(result.plan)
    assert predicted == real == rows_changed_by_marking(target, result.run_id) == len(marked)

    target.undo()
    assert target.rows("appointment") == before["appointment"], "undo did not restore"
    return marked


@pytest.fixture
def on_sqlite(tmp_path: Path) -> Callable[[Scenario], Target]:
    counter = itertools.count()
    return lambda scenario: Target.sqlite(scenario.build(tmp_path / f"crm{next(counter)}.db"))


@pytest.fixture(params=["sqlite", "postgresql"])
def on_each_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Scenario], Target]:
    """Build a scenario on SQLite, or in a schema of its own on the real PostgreSQL server."""
    counter = itertools.count()
    if request.param == "sqlite":
        return lambda scenario: Target.sqlite(scenario.build(tmp_path / f"crm{next(counter)}.db"))
    database = request.getfixturevalue("pg_database")
    return lambda scenario: scenario.build_postgresql(database.url(), f"crm7_{next(counter)}")


# --- building meetings by hand ----------------------------------------------------------------


def r10_at(registered: datetime, row_id: int = 1, version: str = "8.5 R10") -> Row:
    return product_version(row_id, "SuperOffice", f"CRM{row_id}", version, registered=registered)


def sdk_meeting(
    master: int,
    registered: datetime,
    *,
    recurrence: int = 0,
    external: dict[str, Any] | None = None,
    **master_traits: Any,
) -> list[Row]:
    """SuperOffice's SDK trace of saving a meeting: the organizer's master row, a colleague
    (BookingForDiary/Booking), an external person (associate 0, automatically accepted) and a
    meeting room; all emailId 0, no SendEmail. Ids master .. master+3."""
    common: dict[str, Any] = {"registered": registered, "recurrence": recurrence}
    return [
        appointment(master, master, 1, invited=101, **common, **master_traits),
        appointment(master + 1, master, COLLEAGUE, invited=102, type_=6, status=5, **common),
        appointment(
            master + 2,
            master,
            EXTERNAL,
            invited=900,
            type_=1,
            status=1,
            **common,
            **(external or {}),
        ),
        appointment(master + 3, master, ROOM, invited=0, **common),
    ]


def diary_rows(master: int) -> set[int]:
    """The rows of an sdk_meeting in somebody's diary: organizer, colleague, room."""
    return {master, master + 1, master + 3}


def e_mailed(master: int, registered: datetime, **kw: Any) -> list[Row]:
    """A meeting whose external participant was e-mailed an invitation (footprint (c))."""
    return sdk_meeting(master, registered, external={"email_id": 9900}, **kw)


def system_row(
    on: bool = True, *, registered: datetime, updated: datetime = NEVER, value: str | None = None
) -> Row:
    """The system-level (deflevel 2, owner 0) Mail/DiarySynchronizerActive row."""
    return preference(2, 2, value or ("1" if on else "0"), registered=registered, updated=updated)


# --- the property ------------------------------------------------------------------------------

MOMENTS = [
    SINCE - 400 * DAY,
    SINCE - 30 * DAY,
    SINCE - SECOND,
    SINCE,
    SINCE + SECOND,
    SINCE + 30 * DAY,
    SINCE + 90 * DAY,
    SINCE + 200 * DAY,
]
moments = st.sampled_from(MOMENTS)
recorded_dates = st.sampled_from(MOMENTS + EMPTY_DATES)  # a registered date, maybe "empty"
GATE_VERSIONS = ["8.5 R10", "8.5 R12", "9.2", "10.2.6"]
OLD_VERSIONS = ["8.1 R03", "8.5 R09"]


@st.composite
def row_traits(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "email_id": draw(st.sampled_from([0, 0, 0, 9100])),
        "send_email": draw(st.sampled_from([0, 0, 0, None, 1])),
        "owned_externally": draw(st.sampled_from([0, 0, 0, None, 1, 2, 3])),
        "warning": draw(st.sampled_from([0, 0, None, 1, 2, 3, 4, 5])),
        "count": draw(st.sampled_from([0, 4, 65535])),
    }


PARTICIPANTS = {"colleague": (COLLEAGUE, 102), "external": (EXTERNAL, 900), "room": (ROOM, 0)}


@st.composite
def appointment_rows(draw: st.DrawFn) -> tuple[list[Row], list[Row]]:
    """Plain appointments and meetings, some recurring (two series), some with invitation rows
    (and one for an appointment deleted since); participants now and then added later."""
    ids = itertools.count(100)
    appointments: list[Row] = []
    invitations: list[Row] = []
    for _ in range(draw(st.integers(1, 7))):
        master = next(ids)
        registered = draw(moments)
        recurrence = draw(st.sampled_from([0, 0, 0, 7001, 7002]))
        plain = draw(st.booleans())
        owner = draw(st.sampled_from([1, 1, 1, EXTERNAL])) if plain else 1
        appointments.append(
            appointment(
                master,
                0 if plain else master,
                owner,
                registered=registered,
                recurrence=recurrence,
                **draw(row_traits()),
            )
        )
        kinds = [] if plain else draw(st.lists(st.sampled_from(sorted(PARTICIPANTS)), max_size=3))
        for kind in kinds:
            associate, person = PARTICIPANTS[kind]
            added_later = draw(st.sampled_from([0, 0, 0, 45])) * DAY
            appointments.append(
                appointment(
                    next(ids),
                    master,
                    associate,
                    invited=person,
                    registered=registered + added_later,
                    recurrence=recurrence,
                    **draw(row_traits()),
                )
            )
        if draw(st.integers(0, 4)) == 0:
            invitations.append(
                invitation(len(invitations) + 1, master, registered=draw(recorded_dates))
            )
    if draw(st.integers(0, 5)) == 0:
        invitations.append(
            invitation(len(invitations) + 1, 99_999, registered=draw(recorded_dates))
        )
    return appointments, invitations


@st.composite
def product_versions(draw: st.DrawFn) -> list[Row]:
    """One SuperOffice row the version gate passes on (its date maybe empty), maybe older and
    newer module rows, a row of another vendor, and the synchronizer's row."""
    rows = [r10_at(draw(recorded_dates), 1, draw(st.sampled_from(GATE_VERSIONS)))]
    extras = st.tuples(
        st.sampled_from(["SuperOffice", "SuperOffice", "Acme Add-ons"]),
        st.sampled_from(GATE_VERSIONS + OLD_VERSIONS),
        recorded_dates,
    )
    for i, (owner, version, registered) in enumerate(draw(st.lists(extras, max_size=2))):
        code = f"Module{i}"
        rows.append(product_version(10 + i, owner, code, version, registered=registered))
    return [*rows, SYNCHRONIZER_ROW]


@st.composite
def preferences(draw: st.DrawFn) -> list[Row]:
    rows = [preference(1, 1, "0")]  # the hard default: off
    system = draw(st.sampled_from(["none", "on", "off"]))
    if system == "on":
        value = draw(st.sampled_from(["1", "True", "Yes"]))
        updated = draw(st.sampled_from(MOMENTS + EMPTY_DATES))
        rows.append(system_row(registered=draw(moments), updated=updated, value=value))
    elif system == "off":
        rows.append(system_row(False, registered=draw(moments)))
    return rows


@st.composite
def cases(draw: st.DrawFn) -> tuple[Scenario, OperatorAnswers]:
    appointments, invitations = draw(appointment_rows())
    scenario = Scenario(
        appointments=appointments,
        invitations=invitations,
        preferences=draw(preferences()),
        product_versions=draw(product_versions()),
        after_r10=draw(st.sampled_from([True, True, True, False])),
    )
    since = draw(moments) if draw(st.integers(0, 3)) == 3 else None  # mostly the database's
    footprints = None
    if draw(st.booleans()):
        footprints = draw(st.sets(st.sampled_from(sorted(ALL_FOOTPRINTS)), min_size=1))
    return scenario, answers(since, footprints)


def describe(scenario: Scenario, operator: OperatorAnswers, marked: set[int]) -> None:
    """What the examples covered (pytest --hypothesis-show-statistics)."""
    event(f"rows marked: {'none' if not marked else '1-3' if len(marked) < 4 else '4+'}")
    event("shape: after R10" if scenario.after_r10 else "shape: 8.5 R10")
    series = {r["recurrenceRuleId"] for r in scenario.appointments if r["recurrenceRuleId"]}
    event(f"series: {len(series)}")
    system = [p["prefvalue"] for p in scenario.preferences if p["deflevel"] == 2]
    event(f"system row: {system[0] if system else 'none'}")
    event("invites-since: operator" if operator.invites_since else "invites-since: database")
    event("footprints: all" if operator.footprints == ALL_FOOTPRINTS else "footprints: narrowed")


PROPERTY = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(PROPERTY, max_examples=30)
@given(case=cases())
def test_sqlite_marks_what_spec_step_4_says(
    case: tuple[Scenario, OperatorAnswers], tmp_path: Path
) -> None:
    scenario, operator = case
    path = scenario.build(tmp_path / f"crm-{uuid.uuid4().hex[:8]}.db")
    try:
        describe(scenario, operator, check_run(Target.sqlite(path), operator))
    finally:
        path.unlink()


@settings(PROPERTY, max_examples=15)
@given(case=cases())
def test_postgresql_marks_what_spec_step_4_says(
    case: tuple[Scenario, OperatorAnswers], pg_database: Any
) -> None:
    scenario, operator = case
    schema = f"crm7_{uuid.uuid4().hex[:8]}"
    try:
        marked = check_run(scenario.build_postgresql(pg_database.url(), schema), operator)
        describe(scenario, operator, marked)
    finally:
        engine = create_engine(pg_database.url())
        try:
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        finally:
            engine.dispose()


# --- footprints --------------------------------------------------------------------------------


@pytest.mark.parametrize("footprint", ["invitation", "send-email", "email-id"])
def test_each_footprint_on_its_own_makes_an_invite_meeting(
    footprint: str, on_each_engine: Callable[[Scenario], Target]
) -> None:
    after = SINCE + 5 * DAY
    meeting = {
        "invitation": sdk_meeting(100, after),
        "send-email": sdk_meeting(100, after, external={"send_email": 1}),
        "email-id": e_mailed(100, after),
    }[footprint]
    scenario = Scenario(
        appointments=[*meeting, *sdk_meeting(200, after)],  # 200: no footprint
        invitations=[invitation(1, 100, registered=after)] if footprint == "invitation" else [],
        product_versions=[r10_at(SINCE - 10 * DAY), SYNCHRONIZER_ROW],
    )
    check_run(on_each_engine(scenario), answers(), expected=diary_rows(100))


def test_the_sdk_trace_meeting_is_no_invite(on_sqlite: Callable[[Scenario], Target]) -> None:
    """Colleague, external person and room, nothing e-mailed: decades-old meetings look so."""
    scenario = Scenario(
        appointments=[*sdk_meeting(100, SINCE + DAY), *sdk_meeting(200, SINCE - 300 * DAY)],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )
    check_run(on_sqlite(scenario), answers(), expected=set())


def test_a_plain_appointment_with_an_invitation_row_is_marked(
    on_sqlite: Callable[[Scenario], Target],
) -> None:
    after = SINCE + DAY
    scenario = Scenario(
        appointments=[
            appointment(300, 0, 1, registered=after),
            appointment(301, 0, 1, registered=after),  # no footprint
            appointment(302, 0, 1, registered=after, send_email=1),
        ],
        invitations=[invitation(1, 300, registered=after)],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )
    check_run(on_sqlite(scenario), answers(), expected={300, 302})


@pytest.mark.parametrize(
    ("footprints", "expected"),
    [
        ({"invitation"}, diary_rows(100)),
        ({"send-email"}, diary_rows(200)),
        ({"email-id"}, diary_rows(300)),
        ({"send-email", "email-id"}, diary_rows(200) | diary_rows(300)),
    ],
)
def test_the_operator_narrows_which_footprints_count(
    footprints: set[str], expected: set[int], on_sqlite: Callable[[Scenario], Target]
) -> None:
    after = SINCE + DAY
    scenario = Scenario(
        appointments=[
            *sdk_meeting(100, after),
            *sdk_meeting(200, after, external={"send_email": 1}),
            *e_mailed(300, after),
        ],
        invitations=[invitation(1, 100, registered=after)],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )
    check_run(on_sqlite(scenario), answers(footprints=footprints), expected=expected)


# --- which rows of an invite meeting ----------------------------------------------------------


def test_rows_left_out_external_outlook_google_and_other_warnings(
    on_each_engine: Callable[[Scenario], Target],
) -> None:
    at = SINCE + DAY
    scenario = Scenario(
        appointments=[
            *e_mailed(100, at),  # 100, 101, 103 marked; 102 external
            appointment(110, 100, 3, registered=at, owned_externally=None),  # marked
            appointment(111, 100, 4, registered=at, owned_externally=1),  # Other
            appointment(112, 100, 5, registered=at, owned_externally=2),  # Outlook
            appointment(113, 100, 6, registered=at, owned_externally=3),  # Google
            appointment(114, 100, 7, registered=at, warning=None),  # marked
            appointment(115, 100, 8, registered=at, warning=1, count=9),  # already: untouched
            *[appointment(120 + w, 100, 9, registered=at, warning=w) for w in (2, 3, 4, 5)],
            appointment(130, 100, 10, registered=at, count=65535),  # marked, count stays capped
        ],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )
    # check_run also proves every row left out is exactly as it was (other warnings kept).
    check_run(on_each_engine(scenario), answers(), expected={100, 101, 103, 110, 114, 130})


# --- registered when ---------------------------------------------------------------------------


def test_the_window_starts_at_invites_since(on_sqlite: Callable[[Scenario], Target]) -> None:
    scenario = Scenario(
        appointments=[
            *e_mailed(100, SINCE),  # exactly at invites-since: in
            *e_mailed(200, SINCE - SECOND),  # a second before: out
            *e_mailed(300, SINCE - 400 * DAY),  # an old meeting with emailId: out
            *sdk_meeting(400, SINCE - DAY, external={"send_email": 1}),  # any footprint: out
        ],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )
    check_run(on_sqlite(scenario), answers(), expected=diary_rows(100))


@pytest.mark.parametrize(
    ("registered", "updated"),
    [
        (SINCE + 50 * DAY, NEVER),  # never updated: on since it was registered
        (SINCE + 50 * DAY, datetime(1753, 1, 1)),
        (SINCE - 50 * DAY, SINCE + 50 * DAY),  # switched on when last updated
    ],
)
def test_the_window_ends_when_the_system_row_said_on(
    registered: datetime, updated: datetime, on_sqlite: Callable[[Scenario], Target]
) -> None:
    on = SINCE + 50 * DAY
    scenario = Scenario(
        appointments=[
            *e_mailed(100, on - SECOND),  # in
            *e_mailed(200, on),  # exactly when it said on: out
            *e_mailed(300, on + DAY),  # out
        ],
        preferences=[preference(1, 1, "0"), system_row(registered=registered, updated=updated)],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )
    check_run(on_sqlite(scenario), answers(), expected=diary_rows(100))


def test_an_existing_synchronizer_customer_gets_nothing_marked(
    on_each_engine: Callable[[Scenario], Target],
) -> None:
    """SuperOffice's own upgrade switched the preference on before any invite existed."""
    after = SINCE + 10 * DAY
    scenario = Scenario(
        appointments=[
            *e_mailed(100, after),
            *sdk_meeting(200, after, external={"send_email": 1}),
            *sdk_meeting(300, after),
        ],
        invitations=[invitation(1, 300, registered=after)],
        preferences=[system_row(registered=SINCE - 30 * DAY, value="True")],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )
    check_run(on_each_engine(scenario), answers(), expected=set())


# --- recurring meetings ------------------------------------------------------------------------


def test_a_series_is_marked_whole_or_not_at_all(on_sqlite: Callable[[Scenario], Target]) -> None:
    on = SINCE + 60 * DAY
    scenario = Scenario(
        appointments=[
            # Series 7001 began before invites-since; a later occurrence was e-mailed: none.
            *sdk_meeting(100, SINCE - 7 * DAY, recurrence=7001),
            *e_mailed(110, SINCE + 7 * DAY, recurrence=7001),
            # Series 7002 began after: the footprint on its second occurrence marks both.
            *sdk_meeting(200, SINCE + DAY, recurrence=7002),
            *e_mailed(210, SINCE + 8 * DAY, recurrence=7002),
            # Series 7003 began before the preference went on: whole, later occurrence included.
            *sdk_meeting(300, on - DAY, recurrence=7003),
            *sdk_meeting(310, on + DAY, recurrence=7003, external={"send_email": 1}),
            # Series 7004 has no footprint at all.
            *sdk_meeting(400, SINCE + DAY, recurrence=7004),
            *sdk_meeting(410, SINCE + 2 * DAY, recurrence=7004),
        ],
        preferences=[system_row(registered=on)],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )
    expected = diary_rows(200) | diary_rows(210) | diary_rows(300) | diary_rows(310)
    check_run(on_sqlite(scenario), answers(), expected=expected)


# --- where invites-since comes from -------------------------------------------------------------


def test_invites_since_from_the_first_r10_or_newer_product_version(
    on_sqlite: Callable[[Scenario], Target],
) -> None:
    scenario = Scenario(
        appointments=[*e_mailed(100, SINCE), *e_mailed(200, SINCE - SECOND)],
        product_versions=[
            product_version(1, "SuperOffice", "CRM", "8.1 R03", registered=SINCE - 900 * DAY),
            product_version(2, "SuperOffice", "CRM", "8.5 R09", registered=SINCE - 300 * DAY),
            product_version(3, "Acme Add-ons", "Calendar", "9.2", registered=SINCE - 200 * DAY),
            product_version(4, "SuperOffice", "CRM", "8.5 R12", registered=SINCE),
            product_version(5, "SuperOffice", "CRM", "10.2.6", registered=SINCE + 90 * DAY),
            SYNCHRONIZER_ROW,
        ],
    )
    check_run(on_sqlite(scenario), answers(), expected=diary_rows(100))


def test_invites_since_from_an_earlier_invitation_row(
    on_sqlite: Callable[[Scenario], Target],
) -> None:
    first_invitation = SINCE - 50 * DAY
    scenario = Scenario(
        appointments=[
            *e_mailed(100, SINCE - 10 * DAY),  # after the first invitation: in
            *e_mailed(200, first_invitation - SECOND),  # out
            appointment(300, 0, 1, registered=first_invitation),  # the invited appointment
        ],
        invitations=[invitation(1, 300, registered=first_invitation)],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )
    check_run(on_sqlite(scenario), answers(), expected=diary_rows(100) | {300})


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        (SINCE + 20 * DAY, diary_rows(300)),  # later than the database says
        (SINCE - 40 * DAY, diary_rows(100) | diary_rows(200) | diary_rows(300)),  # earlier
    ],
)
def test_the_operators_invites_since_wins(
    operator: datetime, expected: set[int], on_sqlite: Callable[[Scenario], Target]
) -> None:
    scenario = Scenario(
        appointments=[
            *e_mailed(100, SINCE - 30 * DAY),
            *sdk_meeting(200, SINCE + 10 * DAY, external={"send_email": 1}),
            *e_mailed(300, SINCE + 20 * DAY),
        ],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )
    check_run(on_sqlite(scenario), answers(since=operator), expected=expected)


def test_empty_dates_are_no_evidence_of_invites_since(
    on_sqlite: Callable[[Scenario], Target],
) -> None:
    scenario = Scenario(
        appointments=[*e_mailed(100, SINCE), *e_mailed(200, SINCE - 10 * DAY)],
        invitations=[invitation(1, 99_999, registered=datetime(1753, 1, 1))],  # deleted since
        product_versions=[
            r10_at(NEVER, 1),
            r10_at(datetime(1753, 1, 1), 2, "9.2"),
            r10_at(SINCE, 3, "10.2.6"),
            SYNCHRONIZER_ROW,
        ],
    )
    check_run(on_sqlite(scenario), answers(), expected=diary_rows(100))


def test_without_invites_since_email_id_is_no_footprint(
    on_sqlite: Callable[[Scenario], Target],
) -> None:
    """Nothing dates the invite system: emailId proves nothing, the other footprints still do."""
    scenario = Scenario(
        appointments=[
            *e_mailed(100, SINCE + 10 * DAY),
            *sdk_meeting(200, SINCE - 300 * DAY, external={"send_email": 1}),
        ],
        product_versions=[r10_at(NEVER), SYNCHRONIZER_ROW],
    )
    check_run(on_sqlite(scenario), answers(), expected=diary_rows(200))


# --- a genuine 8.5 R10 database ---------------------------------------------------------------


def test_an_8_5_r10_shaped_database_is_marked_by_email_id_only(
    on_each_engine: Callable[[Scenario], Target],
) -> None:
    """No SendEmail, owned_externally, mother_associate_id or invitation table: (c) still works."""
    after = SINCE + DAY
    scenario = Scenario(
        appointments=[
            *e_mailed(100, after),
            *sdk_meeting(200, after, external={"send_email": 1}),  # the column does not exist
            *e_mailed(300, SINCE - DAY),  # before invites-since
            appointment(400, 400, 1, registered=after, owned_externally=2),  # no such column
            appointment(401, 400, EXTERNAL, invited=900, registered=after, email_id=9900),
        ],
        invitations=[invitation(1, 200, registered=after)],  # no such table
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
        after_r10=False,
    )
    target = on_each_engine(scenario)
    assert not target.has_table("invitation")
    columns = set(target.rows("appointment")[0])
    assert not columns & {"sendemail", "owned_externally", "mother_associate_id"}
    check_run(target, answers(), expected=diary_rows(100) | {400})


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.usefixtures("workdir")
def test_the_command_line_passes_invites_since_and_footprints(tmp_path: Path) -> None:
    scenario = Scenario(
        appointments=[
            *e_mailed(100, SINCE + DAY),
            *sdk_meeting(200, SINCE + DAY, external={"send_email": 1}),
            *sdk_meeting(300, SINCE - DAY, external={"send_email": 1}),  # before --invites-since
        ],
        product_versions=[r10_at(SINCE - 100 * DAY), SYNCHRONIZER_ROW],
    )
    target = Target.sqlite(scenario.build(tmp_path / "cli.db"))
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        cli,
        [
            "upgrade",
            *target.connection_args(),
            "--unattended",
            "--synchronizer-version",
            SYNCHRONIZER,
            "--invites-since",
            SINCE.isoformat(),
            "--footprints",
            "send-email",
            "--report",
            str(report),
            "--format",
            "json",
        ],
        prog_name="setup-tool",
    )
    assert result.exit_code == ExitCode.DONE, result.output
    assert json.loads(report.read_text())
    marked = {r["appointment_id"] for r in target.rows("appointment") if r["cautionwarning"] == 1}
    assert marked == diary_rows(200)


# --- the oracle's own pieces --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "newer"),
    [
        ("8.5 R10", True),
        ("8.5 R12", True),
        ("9.2", True),
        ("10.2.6", True),
        ("8.1 R03", False),
        ("8.5 R09", False),
        ("8.5", False),
        ("3.2.284", False),
    ],
)
def test_oracle_reads_superoffice_versions(version: str, newer: bool) -> None:
    assert is_8_5_r10_or_newer(version) is newer


def test_oracle_marks_nothing_in_an_empty_window() -> None:
    rows = DatabaseRows(
        appointments=e_mailed(100, SINCE + DAY),
        product_versions=[r10_at(SINCE)],
    )
    assert rows_to_mark(rows, until=SINCE + 2 * DAY) == diary_rows(100)
    assert rows_to_mark(rows, until=SINCE + DAY) == set()
    assert rows_to_mark(rows, until=SINCE + 2 * DAY, footprints=frozenset({"invitation"})) == set()
