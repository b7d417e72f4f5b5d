"""The demo database: SuperOffice-shaped, truthful about invites, and reproducible.

Everything is checked with plain SQL on the built SQLite file, independently of the tool's own
query builders. A meeting is its master row plus the rows pointing at it; a plain appointment
(mother_id = 0) is a meeting of one row. Its footprints of the invite system (SPEC step 4):
(a) an invitation row, (b) SendEmail = 1, (c) emailId <> 0 registered from the 8.5 R10 upgrade on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, SmallInteger, Table, create_engine, inspect, text
from sqlalchemy.engine import Connection, Dialect

from setup_tool.demo import (
    NEVER,
    DemoOptions,
    DemoSummary,
    _TableWriter,
    build_demo_database,
    create_demo_schema,
    populate_demo,
    updated_count_cap,
)
from setup_tool.demo import (
    SCENARIOS as DEMO_SCENARIOS,
)
from setup_tool.errors import UsageError
from setup_tool.model_data import read_model_data
from setup_tool.schema import (
    AFTER_R10_COLUMNS,
    TABLE_SPECS,
    canonical_metadata,
    canonical_tables,
    reflect_tables,
)

NOW = datetime(2024, 6, 1, 12, 0, 0)
R10_AT = NOW - timedelta(days=400)
SCENARIOS = ["new-customer", "existing-customer", "r10-shape"]
APPOINTMENTS = 5_000
OPTIONS = DemoOptions(appointments=APPOINTMENTS, now=NOW)


def meeting(alias: str = "") -> str:
    """The meeting a row belongs to: its master, or itself when it is a plain appointment."""
    a = f"{alias}." if alias else ""
    return f"CASE WHEN {a}mother_id = 0 THEN {a}appointment_id ELSE {a}mother_id END"


def master(alias: str = "") -> str:
    a = f"{alias}." if alias else ""
    return f"{a}mother_id = {a}appointment_id"


def participant(alias: str = "") -> str:
    a = f"{alias}." if alias else ""
    return f"{a}mother_id NOT IN (0, {a}appointment_id)"


MEETING, MASTER, PARTICIPANT = meeting(), master(), participant()


def ts(moment: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite (and so as string comparisons need it)."""
    return moment.isoformat(" ", "microseconds")


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, DemoSummary]]:
    folder = tmp_path_factory.mktemp("demo")
    built = {}
    for scenario in SCENARIOS:
        path = folder / scenario / "demo.db"
        path.parent.mkdir()
        options = DemoOptions(appointments=APPOINTMENTS, now=NOW, scenario=scenario)
        built[scenario] = path, build_demo_database(path, options)
    return built


@pytest.fixture(scope="module")
def demo(demos: dict[str, tuple[Path, DemoSummary]]) -> tuple[Path, DemoSummary]:
    return demos["new-customer"]


@pytest.fixture
def db(demo: tuple[Path, DemoSummary]) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(demo[0])
    yield conn
    conn.close()


@pytest.fixture(params=SCENARIOS)
def scenario_db(
    request: pytest.FixtureRequest, demos: dict[str, tuple[Path, DemoSummary]]
) -> Iterator[tuple[sqlite3.Connection, DemoSummary]]:
    path, summary = demos[request.param]
    conn = sqlite3.connect(path)
    yield conn, summary
    conn.close()


def scalar(db: sqlite3.Connection, sql: str, *params: object) -> int:
    value = db.execute(sql, params).fetchone()[0]
    assert isinstance(value, int)
    return value


def build(tmp_path: Path, name: str, **options: object) -> sqlite3.Connection:
    path = tmp_path / name
    build_demo_database(path, DemoOptions(now=NOW, **options))  # type: ignore[arg-type]
    return sqlite3.connect(path)


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}


def tables(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def invite_meetings_sql(db: sqlite3.Connection) -> str:
    """The meetings carrying a footprint, as a subquery (only what this shape can express)."""
    parts = [
        f"SELECT DISTINCT {MEETING} FROM appointment WHERE emailId <> 0 AND registered >= :r10"
    ]
    if "SendEmail" in columns(db, "appointment"):
        parts.append(f"SELECT {MEETING} FROM appointment WHERE SendEmail = 1")
    if "invitation" in tables(db):
        parts.append("SELECT appointment_id FROM invitation")
    return " UNION ".join(parts)


def invite_set_sql(db: sqlite3.Connection) -> str:
    """The invite meetings of the rule: a footprint on one occurrence takes in the whole series."""
    own = invite_meetings_sql(db)
    return f"""{own} UNION SELECT appointment_id FROM appointment
               WHERE mother_id = appointment_id AND recurrenceRuleId IN (
                   SELECT recurrenceRuleId FROM appointment
                   WHERE recurrenceRuleId <> 0 AND appointment_id IN ({own}))"""


def count(db: sqlite3.Connection, sql: str) -> int:
    value = db.execute(sql, {"r10": ts(R10_AT)}).fetchone()[0]
    assert isinstance(value, int)
    return value


# --- schema -------------------------------------------------------------------------------------


def test_documented_not_null_columns_are_not_null(demo: tuple[Path, DemoSummary]) -> None:
    engine = create_engine(f"sqlite:///{demo[0]}")
    inspector = inspect(engine)
    for table, specs in TABLE_SPECS.items():
        nullable = {c["name"]: c["nullable"] for c in inspector.get_columns(table)}
        for spec in specs:
            if not spec.nullable:
                assert nullable[spec.name] is False, f"{table}.{spec.name}"
    engine.dispose()


def test_the_built_file_has_a_normal_journal_and_no_leftovers(
    demo: tuple[Path, DemoSummary], db: sqlite3.Connection
) -> None:
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sorted(p.name for p in demo[0].parent.iterdir()) == ["demo.db"]


def test_mother_id_is_indexed(db: sqlite3.Connection) -> None:
    indexed = [row[2] for name in _index_names(db) for row in _index_info(db, name)]
    assert "mother_id" in indexed


def _index_names(db: sqlite3.Connection) -> list[str]:
    return [row[1] for row in db.execute("PRAGMA index_list(appointment)")]


def _index_info(db: sqlite3.Connection, index: str) -> list[tuple[int, int, str]]:
    return db.execute(f'PRAGMA index_info("{index}")').fetchall()


def test_r10_shape_lacks_what_came_after_8_5_r10(
    demos: dict[str, tuple[Path, DemoSummary]],
) -> None:
    for scenario, (path, summary) in demos.items():
        with sqlite3.connect(path) as db:
            appointment = columns(db, "appointment")
            later = set(AFTER_R10_COLUMNS["appointment"])
            assert "recurrenceRuleId" in appointment  # in SuperOffice's 2006 trace already
            if scenario == "r10-shape":
                assert not appointment & later
                assert "invitation" not in tables(db)
                assert summary.absent == (
                    "appointment.mother_associate_id",
                    "appointment.SendEmail",
                    "appointment.owned_externally",
                    "invitation table",
                )
            else:
                assert later <= appointment
                assert "invitation" in tables(db)
                assert summary.absent == ()


@pytest.mark.parametrize(
    ("scenario", "invitation_steps"),
    [("new-customer", [1, 2, 3, 4, 5]), ("existing-customer", [1, 2, 3, 4, 5]),
     ("r10-shape", [1, 2, 3])],
)  # fmt: skip
def test_model_data_holds_the_applied_dictionary_steps(
    demos: dict[str, tuple[Path, DemoSummary]], scenario: str, invitation_steps: list[int]
) -> None:
    with sqlite3.connect(demos[scenario][0]) as db:
        ((version, data),) = db.execute("SELECT ModelVersion, ModelData FROM DatabaseModel")
    assert version == "8.5 R10"
    reading = read_model_data(data)
    assert reading.decoded
    steps = {(s.name, s.step_number) for s in reading.steps}
    assert ("SuperOffice", 45) in steps
    assert sorted(n for name, n in steps if name == "invitation") == invitation_steps
    assert reading.invitation_step_3_ran()


# --- appointments: the SDK trace ----------------------------------------------------------------


def test_exactly_the_requested_number_of_appointments(
    scenario_db: tuple[sqlite3.Connection, DemoSummary],
) -> None:
    db, _ = scenario_db
    assert scalar(db, "SELECT COUNT(*) FROM appointment") == APPOINTMENTS


def test_every_meeting_row_points_to_a_master_that_points_to_itself(
    db: sqlite3.Connection,
) -> None:
    orphans = f"""
        SELECT COUNT(*) FROM appointment p WHERE {participant("p")} AND NOT EXISTS (
            SELECT 1 FROM appointment m
            WHERE m.appointment_id = p.mother_id AND m.mother_id = m.appointment_id)
    """
    assert scalar(db, orphans) == 0
    masters = scalar(db, f"SELECT COUNT(*) FROM appointment WHERE {MASTER}")
    assert masters > 50
    assert scalar(db, f"SELECT COUNT(*) FROM appointment WHERE {PARTICIPANT}") > masters


def test_master_rows_are_in_the_organizers_diary_as_in_the_sdk_trace(
    scenario_db: tuple[sqlite3.Connection, DemoSummary],
) -> None:
    db, _ = scenario_db
    masters = f"""FROM appointment a JOIN associate s ON s.associate_id = a.associate_id
                  WHERE {master("a")}"""
    assert scalar(db, f"SELECT COUNT(*) {masters}") > 50
    malformed = f"""SELECT COUNT(*) {masters} AND NOT (a.type = 1 AND a.status = 1
                    AND a.emailId = 0 AND a.invitedPersonId = s.person_id AND s.person_id <> 0)"""
    assert scalar(db, malformed) == 0
    assert scalar(db, f"SELECT COUNT(*) FROM appointment WHERE {MASTER} AND associate_id = 0") == 0


def test_colleague_rows_are_bookings_for_the_colleagues_person(db: sqlite3.Connection) -> None:
    colleagues = f"""FROM appointment a JOIN associate s ON s.associate_id = a.associate_id
                     WHERE {participant("a")} AND s.person_id <> 0"""
    malformed = f"SELECT COUNT(*) {colleagues} AND a.invitedPersonId <> s.person_id"
    assert scalar(db, malformed) == 0
    answers = dict(
        db.execute(f"SELECT a.type || '/' || a.status, COUNT(*) {colleagues} GROUP BY 1")
    )
    assert set(answers) <= {"6/5", "6/6", "6/7", "6/8", "6/9", "6/10", "1/1"}
    assert {"6/5", "6/7", "6/9", "6/10", "1/1"} <= set(answers)  # pending, seen, declined, ...
    assert max(answers, key=answers.__getitem__) == "6/5"  # most wait for an answer


def test_external_rows_are_in_nobodys_diary_and_automatically_accepted(
    db: sqlite3.Connection,
) -> None:
    external = "FROM appointment WHERE associate_id = 0"
    assert scalar(db, f"SELECT COUNT(*) {external}") > 50
    malformed = f"""SELECT COUNT(*) {external} AND (invitedPersonId = 0 OR type <> 1
                    OR status <> 1 OR mother_id IN (0, appointment_id))"""
    assert scalar(db, malformed) == 0
    # emailId is 0 unless the invitation was e-mailed, and then it is the person's address.
    wrong_address = f"SELECT COUNT(*) {external} AND emailId NOT IN (0, 100000 + invitedPersonId)"
    assert scalar(db, wrong_address) == 0
    assert scalar(db, f"SELECT COUNT(*) {external} AND emailId = 0") > 0
    assert scalar(db, f"SELECT COUNT(*) {external} AND emailId <> 0") > 0


def test_resource_rows_are_associates_without_a_person(db: sqlite3.Connection) -> None:
    resources = scalar(db, "SELECT COUNT(*) FROM associate WHERE person_id = 0")
    assert resources >= 2
    rooms = """FROM appointment a JOIN associate s ON s.associate_id = a.associate_id
               WHERE s.person_id = 0"""
    assert scalar(db, f"SELECT COUNT(*) {rooms}") > 10
    malformed = f"""SELECT COUNT(*) {rooms} AND NOT (a.invitedPersonId = 0 AND a.type = 1
                    AND a.status = 1 AND a.mother_id NOT IN (0, a.appointment_id))"""
    assert scalar(db, malformed) == 0


def test_rows_of_a_meeting_share_its_person_contact_and_organizer(db: sqlite3.Connection) -> None:
    differing = f"""SELECT COUNT(*) FROM appointment p JOIN appointment m
                    ON m.appointment_id = p.mother_id WHERE {participant("p")}
                    AND (p.person_id <> m.person_id OR p.contact_id <> m.contact_id
                         OR p.mother_associate_id <> m.associate_id
                         OR m.mother_associate_id <> m.associate_id
                         OR p.recurrenceRuleId <> m.recurrenceRuleId)"""
    assert scalar(db, differing) == 0


def test_invited_persons_exist(scenario_db: tuple[sqlite3.Connection, DemoSummary]) -> None:
    db, _ = scenario_db
    missing = """SELECT COUNT(*) FROM appointment a WHERE a.invitedPersonId <> 0
                 AND NOT EXISTS (SELECT 1 FROM person p WHERE p.person_id = a.invitedPersonId)"""
    assert scalar(db, missing) == 0


# --- appointments: footprints of the invite system ----------------------------------------------


def test_invitation_rows_point_at_masters_and_plain_appointments_after_the_upgrade(
    db: sqlite3.Connection,
) -> None:
    invitations = db.execute(
        """SELECT i.invitation_id, i.registered, a.registered, a.mother_id = 0, i.event_uid,
                  i.organizer_email, i.template_language
           FROM invitation i LEFT JOIN appointment a ON a.appointment_id = i.appointment_id
           WHERE a.mother_id IS NULL OR a.mother_id IN (0, a.appointment_id)
           ORDER BY i.invitation_id"""
    ).fetchall()
    assert len(invitations) == scalar(db, "SELECT COUNT(*) FROM invitation") > 5
    assert [row[0] for row in invitations] == list(range(1, len(invitations) + 1))
    for _, registered, appointment_registered, _, uid, email, language in invitations:
        assert appointment_registered is not None, "an invitation row without its appointment"
        assert registered == appointment_registered >= ts(R10_AT)
        assert "@" in email and " " not in email
        assert language in {"en", "nb", "sv", "da", "nl", "de"}
        assert uid.endswith("@google.com") or uid.startswith("040000008200E00074C5B7101A82E008")
    plain = {row[3] for row in invitations}
    assert plain == {0, 1}  # meetings and plain appointments made from received invitations
    assert len({row[4] for row in invitations}) == len(invitations)


def test_footprints_occur_only_on_meetings_registered_since_the_upgrade(
    scenario_db: tuple[sqlite3.Connection, DemoSummary],
) -> None:
    db, summary = scenario_db
    assert summary.r10_upgraded_at == R10_AT
    invite = invite_meetings_sql(db)
    early = f"""SELECT COUNT(*) FROM appointment m WHERE m.appointment_id IN ({invite})
                AND m.registered < :r10"""
    assert count(db, early) == 0
    # ...and no row of a meeting from before it has a later footprint of its own.
    leaking = f"""SELECT COUNT(*) FROM appointment p JOIN appointment m
                  ON m.appointment_id = {meeting("p")} WHERE m.registered < :r10
                  AND p.emailId <> 0 AND p.registered >= :r10"""
    assert count(db, leaking) == 0
    if "SendEmail" in columns(db, "appointment"):
        send_email_early = (
            "SELECT COUNT(*) FROM appointment WHERE SendEmail = 1 AND registered < :r10"
        )
        assert count(db, send_email_early) == 0
        assert scalar(db, "SELECT COUNT(*) FROM appointment WHERE SendEmail NOT IN (0, 1)") == 0


@pytest.mark.parametrize(
    ("scenario", "footprints"),
    [("new-customer", {"invitation", "SendEmail", "emailId"}),
     ("existing-customer", {"SendEmail", "emailId"}),  # with the preference on, no invitations
     ("r10-shape", {"emailId"})],
)  # fmt: skip
def test_each_scenario_carries_the_footprints_its_shape_allows(
    demos: dict[str, tuple[Path, DemoSummary]], scenario: str, footprints: set[str]
) -> None:
    summary = demos[scenario][1]
    found = {
        "invitation": summary.invitation_meetings,
        "SendEmail": summary.send_email_meetings,
        "emailId": summary.email_id_meetings,
    }
    assert {name for name, meetings in found.items() if meetings > 0} == footprints


def test_old_email_ids_exist_before_the_upgrade(
    scenario_db: tuple[sqlite3.Connection, DemoSummary],
) -> None:
    db, summary = scenario_db
    old = f"""SELECT COUNT(DISTINCT {MEETING}) FROM appointment
              WHERE emailId <> 0 AND registered < :r10"""
    assert count(db, old) == summary.old_email_id_meetings > 10
    first = db.execute("SELECT MIN(registered) FROM appointment WHERE emailId <> 0").fetchone()[0]
    assert first < ts(R10_AT - timedelta(days=3 * 365))


def test_ordinary_meetings_with_external_participants_exist_on_both_sides(
    scenario_db: tuple[sqlite3.Connection, DemoSummary],
) -> None:
    db, _ = scenario_db
    ordinary = f"""SELECT COUNT(*) FROM appointment m WHERE {master("m")}
                   AND m.appointment_id NOT IN ({invite_set_sql(db)})
                   AND EXISTS (SELECT 1 FROM appointment p WHERE p.mother_id = m.appointment_id
                               AND p.associate_id = 0 AND p.emailId = 0)"""
    assert count(db, f"{ordinary} AND m.registered < :r10") > 20
    assert count(db, f"{ordinary} AND m.registered >= :r10") > 5


def test_invite_rows_are_about_the_requested_share(
    scenario_db: tuple[sqlite3.Connection, DemoSummary],
) -> None:
    db, summary = scenario_db
    rows = count(db, f"SELECT COUNT(*) FROM appointment WHERE {MEETING} IN ({invite_set_sql(db)})")
    assert rows == summary.invite_rows
    assert rows / APPOINTMENTS == pytest.approx(OPTIONS.invite_share, abs=0.008)


@pytest.mark.parametrize("share", [0.0, 0.1, 1.0])
def test_invite_share_is_followed_up_to_the_rows_after_the_upgrade(
    tmp_path: Path, share: float
) -> None:
    db = build(tmp_path, "share.db", appointments=2_000, invite_share=share)
    invite = invite_set_sql(db)
    rows = count(db, f"SELECT COUNT(*) FROM appointment WHERE {MEETING} IN ({invite})")
    after = count(db, "SELECT COUNT(*) FROM appointment WHERE registered >= :r10")
    if share == 0.0:
        assert rows == 0
        assert scalar(db, "SELECT COUNT(*) FROM invitation") == 0
    elif share < after / 2_000:
        assert rows / 2_000 == pytest.approx(share, abs=0.015)
    else:  # more than fits: every meeting since the upgrade is an invite meeting
        assert rows / after > 0.8


def test_a_version_older_than_r10_has_no_footprints(tmp_path: Path) -> None:
    db = build(tmp_path, "old.db", appointments=2_000, superoffice_version="8.1 R03")
    assert scalar(db, "SELECT COUNT(*) FROM invitation") == 0
    assert scalar(db, "SELECT COUNT(*) FROM appointment WHERE SendEmail <> 0") == 0
    assert scalar(db, "SELECT COUNT(*) FROM appointment WHERE emailId <> 0") > 0  # old ones


# --- appointments: series, Outlook/Google rows, warnings -----------------------------------------


def series(db: sqlite3.Connection) -> list[tuple[int, int, str, int]]:
    """(recurrenceRuleId, occurrences, first master's registered, invite occurrences)."""
    return db.execute(
        f"""SELECT recurrenceRuleId, COUNT(*), MIN(registered),
                   SUM(appointment_id IN ({invite_meetings_sql(db)}))
            FROM appointment WHERE {MASTER} AND recurrenceRuleId <> 0 GROUP BY 1""",
        {"r10": ts(R10_AT)},
    ).fetchall()


def test_recurring_series_share_their_rule_and_some_cross_the_upgrade(
    scenario_db: tuple[sqlite3.Connection, DemoSummary],
) -> None:
    db, summary = scenario_db
    found = series(db)
    assert len(found) == summary.recurring_series > 5
    assert all(occurrences >= 2 for _, occurrences, _, _ in found)
    invite = [s for s in found if s[3] > 0]
    crossing = [s for s in invite if s[2] < ts(R10_AT)]
    assert len(invite) == summary.recurring_invite_series
    assert len(crossing) == summary.series_begun_before_r10 >= 2
    assert all(invites < occurrences for _, occurrences, _, invites in crossing)
    assert any(s[2] >= ts(R10_AT) for s in invite) or summary.scenario == "existing-customer"
    # Every row of an occurrence carries the series' rule; plain appointments never do.
    plain = "SELECT COUNT(*) FROM appointment WHERE mother_id = 0 AND recurrenceRuleId <> 0"
    assert scalar(db, plain) == 0


def test_some_invite_series_have_a_footprint_only_on_later_occurrences(
    db: sqlite3.Connection,
) -> None:
    later_only = """SELECT COUNT(*) FROM (SELECT recurrenceRuleId FROM appointment m
                    WHERE m.mother_id = m.appointment_id AND m.recurrenceRuleId <> 0
                    GROUP BY 1 HAVING MIN(registered) >= :r10
                    AND SUM(appointment_id IN ({invite})) BETWEEN 1 AND COUNT(*) - 1)"""
    assert count(db, later_only.format(invite=invite_meetings_sql(db))) > 0


def test_outlook_and_google_own_some_diary_rows_since_the_upgrade(
    scenario_db: tuple[sqlite3.Connection, DemoSummary],
) -> None:
    db, summary = scenario_db
    if "owned_externally" not in columns(db, "appointment"):
        assert summary.externally_owned_rows == 0
        return
    owners = {o for (o,) in db.execute("SELECT DISTINCT owned_externally FROM appointment")}
    assert owners == {0, 2, 3}
    owned = "FROM appointment WHERE owned_externally <> 0"
    assert scalar(db, f"SELECT COUNT(*) {owned}") == summary.externally_owned_rows
    assert scalar(db, f"SELECT COUNT(*) {owned} AND associate_id = 0") == 0
    assert count(db, f"SELECT COUNT(*) {owned} AND registered < :r10") == 0
    in_invites = f"SELECT COUNT(*) {owned} AND {MEETING} IN ({invite_meetings_sql(db)})"
    assert count(db, in_invites) > 0


@pytest.mark.parametrize(
    "rows",
    ["mother_id = 0", f"mother_id <> 0 AND {MEETING} NOT IN (invite)", f"{MEETING} IN (invite)"],
    ids=["plain", "ordinary meetings", "invite meetings"],
)
def test_other_warnings_marks_and_nulls_occur_everywhere(db: sqlite3.Connection, rows: str) -> None:
    where = rows.replace("invite", invite_set_sql(db))
    sql = f"SELECT DISTINCT cautionWarning FROM appointment WHERE {where}"
    warnings = {w for (w,) in db.execute(sql, {"r10": ts(R10_AT)})}
    assert {None, 0, 1} <= warnings
    assert warnings & {2, 3, 4, 5}


def test_statuses_include_declined_deleted_and_pending_bookings(db: sqlite3.Connection) -> None:
    statuses = {s for (s,) in db.execute("SELECT DISTINCT status FROM appointment")}
    assert {1, 3, 5, 7, 9, 10, 11} <= statuses
    types = {t for (t,) in db.execute("SELECT DISTINCT type FROM appointment")}
    assert {1, 2, 3, 4, 6} <= types


def test_ids_start_high_and_have_gaps(db: sqlite3.Connection) -> None:
    low, high, total = db.execute(
        "SELECT MIN(appointment_id), MAX(appointment_id), COUNT(*) FROM appointment"
    ).fetchone()
    assert low == 1000
    assert high - low + 1 > total + 10_000  # small gaps and one purged range


def test_some_meetings_are_not_adjacent_ids(db: sqlite3.Connection) -> None:
    spread = (
        "SELECT COUNT(*) FROM appointment WHERE mother_id <> 0 AND appointment_id - mother_id > 20"
    )
    assert scalar(db, spread) > 0


def test_late_participants_are_registered_after_their_master(db: sqlite3.Connection) -> None:
    late = f"""SELECT COUNT(*) FROM appointment p JOIN appointment m
               ON m.appointment_id = p.mother_id WHERE {participant("p")}"""
    assert scalar(db, f"{late} AND p.registered > m.registered") > 0
    assert scalar(db, f"{late} AND p.registered < m.registered") == 0


def test_update_bookkeeping_is_realistic(db: sqlite3.Connection) -> None:
    never = NEVER.isoformat(sep=" ")
    assert scalar(db, "SELECT COUNT(*) FROM appointment WHERE updatedCount = 65535") > 0
    assert scalar(db, "SELECT COUNT(*) FROM appointment WHERE updatedCount = 0") > 0
    inconsistent = """SELECT COUNT(*) FROM appointment
                      WHERE (updatedCount = 0) <> (updated LIKE ? || '%')"""
    assert scalar(db, inconsistent, never[:10]) == 0
    bad_order = """SELECT COUNT(*) FROM appointment WHERE updatedCount <> 0
                   AND NOT (registered < updated AND updated < ?)"""
    assert scalar(db, bad_order, ts(NOW)) == 0


def test_dates_are_stored_as_sqlalchemy_stores_them(db: sqlite3.Connection) -> None:
    # The tool compares dates as SQLAlchemy writes them; a shorter form would sort wrongly.
    lengths = db.execute(
        """SELECT DISTINCT LENGTH(registered), LENGTH(updated), LENGTH(activeDate)
           FROM appointment"""
    ).fetchall()
    assert lengths == [(26, 26, 26)]
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        tables = create_demo_schema(conn)
        populate_demo(conn, tables, DemoOptions(appointments=50, now=NOW))
        stored = conn.execute(text("SELECT registered FROM ProductVersion")).scalars().first()
        typed = conn.execute(tables.productversion.select()).first()  # type: ignore[union-attr]
    engine.dispose()
    assert typed is not None and ts(typed.registered) == stored


def dialect(name: str) -> Dialect:
    return create_engine(f"{name}://").dialect  # no connection is made


def test_updated_count_cap_fits_the_column() -> None:
    canonical = canonical_tables().appointment
    smallint = Table("appointment", MetaData(), Column("updatedCount", SmallInteger))
    for name in ("sqlite", "postgresql+psycopg", "mssql+pyodbc"):
        assert updated_count_cap(dialect(name), canonical) == 65535
    # A DBA script's SMALLINT holds 65535 on SQLite only; the server engines' is signed.
    assert updated_count_cap(dialect("sqlite"), smallint) == 65535
    assert updated_count_cap(dialect("postgresql+psycopg"), smallint) == 32767
    assert updated_count_cap(dialect("mssql+pyodbc"), smallint) == 32767


def test_registered_dates_span_years_before_now(db: sqlite3.Connection) -> None:
    first, last = db.execute("SELECT MIN(registered), MAX(registered) FROM appointment").fetchone()
    assert first < "2019-07-01" < "2024-01-01" < last < ts(NOW)


# --- preferences, versions, licences, travel, sequence ------------------------------------------


def diary_sync_rows(db: sqlite3.Connection) -> dict[int, tuple[int, str, str, str]]:
    """Mail/DiarySynchronizerActive rows by level: (owner, value, registered, updated)."""
    rows = db.execute(
        """SELECT deflevel, owner_id, prefvalue, registered, updated FROM UserPreference
           WHERE prefsection = 'Mail' AND prefkey = 'DiarySynchronizerActive' ORDER BY deflevel"""
    ).fetchall()
    return {
        level: (owner, value, registered, updated)
        for level, owner, value, registered, updated in rows
    }


@pytest.mark.parametrize("scenario", ["new-customer", "r10-shape"])
def test_new_customers_have_overrides_but_no_system_row(
    demos: dict[str, tuple[Path, DemoSummary]], scenario: str
) -> None:
    with sqlite3.connect(demos[scenario][0]) as db:
        levels = diary_sync_rows(db)
        assert 2 not in levels
        assert levels[1][:2] == (0, "0")
        assert levels[4][1] == "1"
        owner, value = levels[5][:2]
        assert value == "0"
        assert scalar(db, "SELECT COUNT(*) FROM associate WHERE associate_id = ?", owner) == 1
    assert demos[scenario][1].diary_sync_on_since is None


def test_existing_customer_has_the_system_row_from_before_any_footprint(
    demos: dict[str, tuple[Path, DemoSummary]],
) -> None:
    path, summary = demos["existing-customer"]
    with sqlite3.connect(path) as db:
        levels = diary_sync_rows(db)
        owner, value, registered, updated = levels[2]
        assert (owner, value) == (0, "1")
        assert updated.startswith("1900-01-01")
        assert summary.diary_sync_on_since == R10_AT - timedelta(minutes=7)
        assert registered == ts(summary.diary_sync_on_since)
        first_footprint = count(
            db,
            f"""SELECT COUNT(*) FROM appointment WHERE {MEETING} IN ({invite_meetings_sql(db)})
                AND registered <= '{registered}'""",
        )
        assert first_footprint == 0
        assert {k: v[:2] for k, v in levels.items() if k != 2} == {
            1: (0, "0"),
            4: (2, "1"),
            5: (levels[5][0], "0"),
        }


@pytest.mark.parametrize(
    ("scenario", "synchronizer_age"),
    [("new-customer", timedelta(days=2)), ("existing-customer", timedelta(days=4 * 365)),
     ("r10-shape", timedelta(days=2))],
)  # fmt: skip
def test_versions_tell_when_superoffice_and_the_synchronizer_arrived(
    demos: dict[str, tuple[Path, DemoSummary]], scenario: str, synchronizer_age: timedelta
) -> None:
    path, summary = demos[scenario]
    with sqlite3.connect(path) as db:
        versions = {
            (owner, version): registered
            for owner, version, registered in db.execute(
                "SELECT ownerName, version, registered FROM ProductVersion"
            )
        }
        licences = {n for (n,) in db.execute("SELECT moduleName FROM ModuleLicense")}
    assert versions[("SuperOffice", "8.5 R10")] == ts(R10_AT)
    assert versions[("SuperOffice", "8.1 R03")] < ts(R10_AT - timedelta(days=365))
    assert versions[("InfoBridge", "3.2.284")] == ts(NOW - synchronizer_age)
    assert summary.synchronizer_installed_at == NOW - synchronizer_age
    assert "superoffice.exchange-sync" in licences


def test_preferences_fill_every_column_and_spell_bools_consistently(
    db: sqlite3.Connection,
) -> None:
    assert scalar(db, "SELECT COUNT(*) FROM UserPreference WHERE maxlevel NOT BETWEEN 1 AND 5") == 0
    system_bools = (
        "SELECT COUNT(*) FROM UserPreference WHERE deflevel = 2 AND prefvalue IN ('1', '0')"
    )
    assert scalar(db, system_bools) >= 3


def test_bool_spelling_can_be_chosen(tmp_path: Path) -> None:
    db = build(tmp_path, "yes.db", appointments=100, bool_values=("True", "False"), travel=True,
               scenario="existing-customer")  # fmt: skip
    values = {v for (v,) in db.execute("SELECT prefvalue FROM UserPreference WHERE deflevel = 2")}
    assert {"True", "False"} <= values
    assert not values & {"1", "0"}
    assert diary_sync_rows(db)[2][1] == "True"


@pytest.mark.parametrize("travel", [True, False])
def test_travel_flag_sets_enable_travel(tmp_path: Path, travel: bool) -> None:
    db = build(tmp_path, "travel.db", appointments=100, travel=travel)
    value = db.execute(
        """SELECT prefvalue FROM UserPreference WHERE prefsection = 'Travel'
           AND prefkey = 'EnableTravel' AND deflevel = 2 AND owner_id = 0"""
    ).fetchall()
    assert value == [("1" if travel else "0",)]
    assert db.execute("SELECT current_id, systemlevel FROM travelcurrent").fetchall() == [(0, 10)]


def test_no_synchronizer_means_no_version_row_and_no_licence(tmp_path: Path) -> None:
    db = build(tmp_path, "nosync.db", appointments=100, synchronizer_version=None)
    assert scalar(db, "SELECT COUNT(*) FROM ProductVersion WHERE ownerName = 'InfoBridge'") == 0
    licences = {n for (n,) in db.execute("SELECT moduleName FROM ModuleLicense")}
    assert "superoffice.exchange-sync" not in licences
    assert licences  # unrelated licences stay


def test_a_newer_version_keeps_the_r10_upgrade_row(tmp_path: Path) -> None:
    db = build(tmp_path, "v.db", appointments=100, superoffice_version="10.2.6.1269",
               synchronizer_version="3.2.292")  # fmt: skip
    versions = dict(db.execute("SELECT version, registered FROM ProductVersion"))
    assert set(versions) == {"8.1 R03", "8.5 R10", "10.2.6.1269", "3.2.292"}
    assert versions["8.5 R10"] == ts(R10_AT) < versions["10.2.6.1269"] < ts(NOW)
    assert db.execute("SELECT ModelVersion FROM DatabaseModel").fetchall() == [("10.2.6.1269",)]


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ("SuperOffice G8 8.5 R17", {"8.1 R03", "8.5 R10", "SuperOffice G8 8.5 R17"}),
        ("SuperOffice CRM 8.5 R10", {"8.1 R03", "SuperOffice CRM 8.5 R10"}),
        ("8.5.7346.1605", {"8.1 R03", "8.5.7346.1605"}),  # undetermined: no R10 row added
        ("8.1 R03", {"8.1 R03"}),  # no duplicate of the unique (owner, code, version)
        ("8.0 R05", {"8.0 R05"}),  # no "older" row that is newer than the current one
        ("unknown", {"unknown"}),
    ],
)
def test_an_older_superoffice_row_only_when_it_is_older(
    tmp_path: Path, current: str, expected: set[str]
) -> None:
    db = build(tmp_path, "old.db", appointments=10, superoffice_version=current)
    versions = {v for (v,) in db.execute("SELECT version FROM ProductVersion")}
    assert versions - {"3.2.284"} == expected


def test_sequence_runs_ahead_of_every_table(
    scenario_db: tuple[sqlite3.Connection, DemoSummary],
) -> None:
    db, _ = scenario_db
    sequence = db.execute("SELECT TableName, TableNumber, next_id FROM sequence").fetchall()
    assert {name for name, _, _ in sequence} == set(TABLE_SPECS) & tables(db)
    numbers = {name: number for name, number, _ in sequence}
    assert numbers["appointment"] == 9 and numbers["UserPreference"] == 56
    assert numbers["sequence"] == 0 and numbers["ProductVersion"] == 240
    assert len(set(numbers.values())) == len(numbers)
    for name, _, next_id in sequence:
        key = TABLE_SPECS[name][0].name
        highest = scalar(db, f'SELECT COALESCE(MAX("{key}"), 0) FROM "{name}"')
        assert next_id > highest + 1, name


def test_persons_include_tricky_names(db: sqlite3.Connection) -> None:
    names = {
        f"{first} {last}" for first, last in db.execute("SELECT firstname, lastname FROM person")
    }
    assert "Søren Ødegård" in names
    assert any("'" in name for name in names)
    organizers = {n for (n,) in db.execute("SELECT organizer_fullname FROM invitation")}
    assert organizers <= names


# --- summary, determinism, files ----------------------------------------------------------------


def expected_summary(db: sqlite3.Connection, summary: DemoSummary) -> dict[str, object]:
    """The summary's counts, worked out with plain SQL."""
    invite = invite_set_sql(db)
    has_invitation = "invitation" in tables(db)
    has_send_email = "SendEmail" in columns(db, "appointment")
    has_owned = "owned_externally" in columns(db, "appointment")

    def n(sql: str) -> int:
        return count(db, sql)

    series_found = series(db)
    system_row = diary_sync_rows(db).get(2)
    return {
        "appointments": n("SELECT COUNT(*) FROM appointment"),
        "first_appointment_id": n("SELECT MIN(appointment_id) FROM appointment"),
        "last_appointment_id": n("SELECT MAX(appointment_id) FROM appointment"),
        "meetings": n(f"SELECT COUNT(*) FROM appointment WHERE {MASTER}"),
        "meetings_with_external_participants": n(
            "SELECT COUNT(DISTINCT mother_id) FROM appointment WHERE associate_id = 0"
        ),
        "external_participant_rows": n("SELECT COUNT(*) FROM appointment WHERE associate_id = 0"),
        "invite_meetings": n(f"SELECT COUNT(*) FROM ({invite})"),
        "invite_rows": n(f"SELECT COUNT(*) FROM appointment WHERE {MEETING} IN ({invite})"),
        "invitation_meetings": n("SELECT COUNT(DISTINCT appointment_id) FROM invitation")
        if has_invitation
        else 0,
        "send_email_meetings": n(
            f"SELECT COUNT(DISTINCT {MEETING}) FROM appointment WHERE SendEmail = 1"
        )
        if has_send_email
        else 0,
        "email_id_meetings": n(
            f"""SELECT COUNT(DISTINCT {MEETING}) FROM appointment
                WHERE emailId <> 0 AND registered >= :r10"""
        ),
        "old_email_id_meetings": n(
            f"""SELECT COUNT(DISTINCT {MEETING}) FROM appointment
                WHERE emailId <> 0 AND registered < :r10"""
        ),
        "recurring_series": n(
            "SELECT COUNT(DISTINCT recurrenceRuleId) FROM appointment WHERE recurrenceRuleId <> 0"
        ),
        "recurring_invite_series": sum(1 for s in series_found if s[3]),
        "series_begun_before_r10": sum(1 for s in series_found if s[3] and s[2] < ts(R10_AT)),
        "externally_owned_rows": n("SELECT COUNT(*) FROM appointment WHERE owned_externally <> 0")
        if has_owned
        else 0,
        "persons": n("SELECT COUNT(*) FROM person"),
        "associates": n("SELECT COUNT(*) FROM associate"),
        "resources": n("SELECT COUNT(*) FROM associate WHERE person_id = 0"),
        "diary_sync_overrides": n(
            """SELECT COUNT(*) FROM UserPreference WHERE prefsection = 'Mail'
               AND prefkey = 'DiarySynchronizerActive' AND deflevel BETWEEN 3 AND 5"""
        ),
        "diary_sync_on_since": system_row[2] if system_row else None,
        "r10_upgraded_at": db.execute(
            "SELECT registered FROM ProductVersion WHERE version = '8.5 R10'"
        ).fetchone()[0],
        "synchronizer_installed_at": db.execute(
            "SELECT registered FROM ProductVersion WHERE ownerName = 'InfoBridge'"
        ).fetchone()[0],
    }


def test_summary_matches_the_database(scenario_db: tuple[sqlite3.Connection, DemoSummary]) -> None:
    db, summary = scenario_db
    expected = expected_summary(db, summary)
    dates = ("diary_sync_on_since", "r10_upgraded_at", "synchronizer_installed_at")
    actual = {name: getattr(summary, name) for name in expected}
    actual |= {name: ts(actual[name]) for name in dates if isinstance(actual[name], datetime)}
    assert actual == expected
    assert summary.now == NOW
    assert summary.invite_meetings > 20 and summary.recurring_invite_series > 0
    lines = summary.lines()
    assert any("invite meetings" in line for line in lines)
    assert any(summary.scenario in line for line in lines)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_seed_and_now_give_identical_content(tmp_path: Path, scenario: str) -> None:
    first = build(tmp_path, "a.db", appointments=2_000, scenario=scenario)
    second = build(tmp_path, "b.db", appointments=2_000, scenario=scenario)
    other = build(tmp_path, "c.db", appointments=2_000, scenario=scenario, seed=7)
    assert list(first.iterdump()) == list(second.iterdump())
    assert list(first.iterdump()) != list(other.iterdump())


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    path.write_bytes(b"precious")
    with pytest.raises(UsageError, match="already exists"):
        build_demo_database(path, DemoOptions(appointments=10, now=NOW))
    assert path.read_bytes() == b"precious"
    summary = build_demo_database(path, DemoOptions(appointments=10, now=NOW), overwrite=True)
    assert summary.appointments == 10
    assert scalar(sqlite3.connect(path), "SELECT COUNT(*) FROM appointment") == 10


def test_progress_reports_every_chunk_up_to_the_total(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    build_demo_database(tmp_path / "p.db", DemoOptions(appointments=25_000, now=NOW),
                        progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert calls == [(10_000, 25_000), (20_000, 25_000), (25_000, 25_000)]


def test_an_empty_appointment_table_is_possible(tmp_path: Path) -> None:
    db = build(tmp_path, "empty.db", appointments=0)
    assert scalar(db, "SELECT COUNT(*) FROM appointment") == 0
    assert scalar(db, "SELECT COUNT(*) FROM sequence WHERE TableName = 'appointment'") == 1


@pytest.mark.parametrize(
    "options",
    [{"appointments": -1}, {"invite_share": 1.5}, {"superoffice_version": " "},
     {"synchronizer_version": ""}, {"bool_values": ("1", "1")}, {"scenario": "old-customer"},
     {"scenario": "existing-customer", "synchronizer_version": None}],
)  # fmt: skip
def test_invalid_options_are_usage_errors(options: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        DemoOptions(**options)  # type: ignore[arg-type]


def test_the_command_line_offers_every_scenario() -> None:
    from setup_tool.cli import demo as demo_command

    (option,) = [p for p in demo_command.params if p.name == "demo_scenario"]
    assert list(option.type.choices) == SCENARIOS == list(DEMO_SCENARIOS)  # type: ignore[attr-defined]
    assert option.default == DemoOptions().scenario


def test_an_unknown_scenario_names_the_choices() -> None:
    with pytest.raises(UsageError) as raised:
        DemoOptions(scenario="r11")
    assert all(name in str(raised.value) for name in SCENARIOS)


# --- populate into tables a DBA created ---------------------------------------------------------


def _lower_case_schema(conn: Connection, after_r10: bool = True) -> None:
    """What a DBA script on PostgreSQL leaves behind: every name folded to lower case."""
    lowered = MetaData()
    for table in canonical_metadata(after_r10=after_r10).tables.values():
        columns = [Column(c.name.lower(), c.type, nullable=c.nullable, primary_key=c.primary_key)
                   for c in table.columns]  # fmt: skip
        Table(table.name.lower(), lowered, *columns)
    lowered.create_all(conn)


@pytest.mark.parametrize("after_r10", [True, False], ids=["current shape", "8.5 R10 shape"])
def test_populate_works_on_reflected_lower_case_tables(tmp_path: Path, after_r10: bool) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'dba.db'}")
    with engine.begin() as conn:
        _lower_case_schema(conn, after_r10)
        options = DemoOptions(2_000, now=NOW)
        summary = populate_demo(conn, reflect_tables(conn, None), options)
    with engine.connect() as conn:
        marked = conn.execute(text("SELECT COUNT(*) FROM appointment WHERE cautionwarning = 1"))
        assert summary.appointments == 2_000
        assert marked.scalar_one() >= 1
        names = conn.execute(text("SELECT tablename FROM sequence")).scalars().all()
        assert "UserPreference" in names and "associate" in names
        assert ("invitation" in names) is after_r10
        footprints = conn.execute(text("SELECT COUNT(*) FROM appointment WHERE emailid <> 0"))
        assert footprints.scalar_one() > 0
        if after_r10:
            invitations = conn.execute(text("SELECT COUNT(*) FROM invitation")).scalar_one()
            assert invitations == summary.invitation_meetings > 0
            owned = "SELECT COUNT(*) FROM appointment WHERE owned_externally <> 0"
            assert conn.execute(text(owned)).scalar_one() == summary.externally_owned_rows > 0
    assert ("invitation table" in summary.absent) is not after_r10
    assert (summary.send_email_meetings > 0) is after_r10
    engine.dispose()


@pytest.mark.parametrize("after_r10", [True, False], ids=["current shape", "8.5 R10 shape"])
def test_the_direct_sqlite_inserts_write_what_sqlalchemy_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_r10: bool
) -> None:
    def dump(name: str) -> list[str]:
        engine = create_engine(f"sqlite:///{tmp_path / name}")
        with engine.begin() as conn:
            _lower_case_schema(conn, after_r10)
            populate_demo(conn, reflect_tables(conn, None), DemoOptions(1_500, now=NOW))
        engine.dispose()
        with sqlite3.connect(tmp_path / name) as db:
            return list(db.iterdump())

    direct = dump("direct.db")
    monkeypatch.setattr(_TableWriter, "direct", False)  # every row through SQLAlchemy
    assert dump("portable.db") == direct


def test_populate_leaves_the_commit_to_the_caller(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'tx.db'}")
    with engine.connect() as conn:
        tables = create_demo_schema(conn)
        populate_demo(conn, tables, DemoOptions(500, now=NOW))
        conn.rollback()  # nothing was committed behind the caller's back
        assert conn.execute(text("SELECT COUNT(*) FROM appointment")).scalar_one() == 0
    engine.dispose()
