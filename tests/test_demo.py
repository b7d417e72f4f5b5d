"""The demo database: SuperOffice-shaped, realistic in what the upgrade meets, and reproducible."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, SmallInteger, Table, create_engine, inspect, text
from sqlalchemy.engine import Connection, Dialect

from setup_tool.demo import (
    NEVER,
    DemoOptions,
    DemoSummary,
    build_demo_database,
    create_demo_schema,
    populate_demo,
    updated_count_cap,
)
from setup_tool.errors import UsageError
from setup_tool.schema import TABLE_SPECS, canonical_metadata, canonical_tables, reflect_tables

NOW = datetime(2024, 6, 1, 12, 0, 0)
OPTIONS = DemoOptions(appointments=5_000, now=NOW)

# Rows of meetings that have at least one external participant row (the tool's definition).
IN_INVITE_MEETING = """mother_id IN (SELECT mother_id FROM appointment
                       WHERE associate_id = 0 AND invitedPersonId <> 0 AND mother_id <> 0)"""
INVITE_ROWS = f"SELECT COUNT(*) FROM appointment WHERE {IN_INVITE_MEETING}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSummary]:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    return path, build_demo_database(path, OPTIONS)


@pytest.fixture
def db(demo: tuple[Path, DemoSummary]) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(demo[0])
    yield conn
    conn.close()


def scalar(db: sqlite3.Connection, sql: str, *params: object) -> int:
    value = db.execute(sql, params).fetchone()[0]
    assert isinstance(value, int)
    return value


def build(tmp_path: Path, name: str, **options: object) -> sqlite3.Connection:
    path = tmp_path / name
    build_demo_database(path, DemoOptions(now=NOW, **options))  # type: ignore[arg-type]
    return sqlite3.connect(path)


# --- schema -------------------------------------------------------------------------------------


def test_documented_not_null_columns_are_not_null(demo: tuple[Path, DemoSummary]) -> None:
    engine = create_engine(f"sqlite:///{demo[0]}")
    inspector = inspect(engine)
    for table, specs in TABLE_SPECS.items():
        nullable = {c["name"]: c["nullable"] for c in inspector.get_columns(table)}
        for name, _, documented_nullable in specs:
            if not documented_nullable:
                assert nullable[name] is False, f"{table}.{name}"
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


# --- appointments -------------------------------------------------------------------------------


def test_exactly_the_requested_number_of_appointments(db: sqlite3.Connection) -> None:
    assert scalar(db, "SELECT COUNT(*) FROM appointment") == OPTIONS.appointments


def test_invite_rows_are_about_the_requested_share(db: sqlite3.Connection) -> None:
    share = scalar(db, INVITE_ROWS) / OPTIONS.appointments
    assert share == pytest.approx(OPTIONS.invite_share, abs=0.005)


@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_invite_share_is_followed_at_the_extremes(tmp_path: Path, share: float) -> None:
    db = build(tmp_path, "share.db", appointments=1_000, invite_share=share)
    assert scalar(db, INVITE_ROWS) / 1_000 == pytest.approx(share, abs=0.01)


def test_every_meeting_row_points_to_a_master_that_points_to_itself(
    db: sqlite3.Connection,
) -> None:
    orphans = """
        SELECT COUNT(*) FROM appointment p WHERE p.mother_id <> 0 AND NOT EXISTS (
            SELECT 1 FROM appointment m
            WHERE m.appointment_id = p.mother_id AND m.mother_id = m.appointment_id)
    """
    assert scalar(db, orphans) == 0
    masters = "SELECT COUNT(*) FROM appointment WHERE mother_id = appointment_id"
    participants = "SELECT COUNT(*) FROM appointment WHERE mother_id NOT IN (0, appointment_id)"
    assert scalar(db, masters) > 50
    assert scalar(db, participants) > scalar(db, masters)


def test_external_participants_have_no_associate_and_an_invited_person(
    db: sqlite3.Connection,
) -> None:
    external = "FROM appointment WHERE associate_id = 0"
    assert scalar(db, f"SELECT COUNT(*) {external}") > 50
    malformed = f"""SELECT COUNT(*) {external} AND (invitedPersonId = 0 OR emailId = 0
                    OR person_id <> invitedPersonId OR mother_id IN (0, appointment_id))"""
    assert scalar(db, malformed) == 0
    internal_with_invited = (
        "SELECT COUNT(*) FROM appointment WHERE associate_id <> 0 AND invitedPersonId <> 0"
    )
    assert scalar(db, internal_with_invited) == 0


def test_invited_persons_exist(db: sqlite3.Connection) -> None:
    missing = """SELECT COUNT(*) FROM appointment a WHERE a.invitedPersonId <> 0
                 AND NOT EXISTS (SELECT 1 FROM person p WHERE p.person_id = a.invitedPersonId)"""
    assert scalar(db, missing) == 0


@pytest.mark.parametrize(
    "rows",
    [
        "mother_id = 0",
        f"mother_id <> 0 AND NOT {IN_INVITE_MEETING}",
        IN_INVITE_MEETING,
    ],
    ids=["plain", "internal meetings", "invite meetings"],
)
def test_other_warnings_marks_and_nulls_occur_everywhere(db: sqlite3.Connection, rows: str) -> None:
    warnings = {
        w for (w,) in db.execute(f"SELECT DISTINCT cautionWarning FROM appointment WHERE {rows}")
    }
    assert {None, 0, 1} <= warnings
    assert warnings & {2, 3, 4, 5}


def test_statuses_include_declined_deleted_and_pending_bookings(db: sqlite3.Connection) -> None:
    statuses = {s for (s,) in db.execute("SELECT DISTINCT status FROM appointment")}
    assert {1, 3, 5, 7, 9, 10, 11} <= statuses
    types = {t for (t,) in db.execute("SELECT DISTINCT type FROM appointment")}
    assert {1, 2, 3, 4, 6} <= types


def test_ids_start_high_and_have_gaps(db: sqlite3.Connection) -> None:
    low, high, count = db.execute(
        "SELECT MIN(appointment_id), MAX(appointment_id), COUNT(*) FROM appointment"
    ).fetchone()
    assert low == 1000
    assert high - low + 1 > count + 10_000  # small gaps and one purged range


def test_some_meetings_are_not_adjacent_ids(db: sqlite3.Connection) -> None:
    spread = (
        "SELECT COUNT(*) FROM appointment WHERE mother_id <> 0 AND appointment_id - mother_id > 20"
    )
    assert scalar(db, spread) > 0


def test_update_bookkeeping_is_realistic(db: sqlite3.Connection) -> None:
    never = NEVER.isoformat(sep=" ")
    assert scalar(db, "SELECT COUNT(*) FROM appointment WHERE updatedCount = 65535") > 0
    assert scalar(db, "SELECT COUNT(*) FROM appointment WHERE updatedCount = 0") > 0
    inconsistent = """SELECT COUNT(*) FROM appointment
                      WHERE (updatedCount = 0) <> (updated LIKE ? || '%')"""
    assert scalar(db, inconsistent, never[:10]) == 0
    bad_order = """SELECT COUNT(*) FROM appointment WHERE updatedCount <> 0
                   AND NOT (registered < updated AND updated < ?)"""
    assert scalar(db, bad_order, NOW.isoformat(sep=" ")) == 0


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
    assert first < "2019-07-01" < "2024-01-01" < last < NOW.isoformat(sep=" ")


# --- preferences, versions, licences, travel, sequence ------------------------------------------


def test_diary_synchronizer_has_overrides_but_no_system_row(db: sqlite3.Connection) -> None:
    rows = db.execute(
        """SELECT deflevel, owner_id, prefvalue FROM UserPreference
           WHERE prefsection = 'Mail' AND prefkey = 'DiarySynchronizerActive' ORDER BY deflevel"""
    ).fetchall()
    levels = {level: (owner, value) for level, owner, value in rows}
    assert 2 not in levels
    assert levels[1] == (0, "0")
    assert levels[4][1] == "1"
    owner, value = levels[5]
    assert value == "0"
    assert scalar(db, "SELECT COUNT(*) FROM associate WHERE associate_id = ?", owner) == 1


def test_preferences_fill_every_column_and_spell_bools_consistently(
    db: sqlite3.Connection,
) -> None:
    assert scalar(db, "SELECT COUNT(*) FROM UserPreference WHERE maxlevel NOT BETWEEN 1 AND 5") == 0
    system_bools = (
        "SELECT COUNT(*) FROM UserPreference WHERE deflevel = 2 AND prefvalue IN ('1', '0')"
    )
    assert scalar(db, system_bools) >= 3


def test_bool_spelling_can_be_chosen(tmp_path: Path) -> None:
    db = build(tmp_path, "yes.db", appointments=100, bool_values=("True", "False"), travel=True)
    values = {v for (v,) in db.execute("SELECT prefvalue FROM UserPreference WHERE deflevel = 2")}
    assert {"True", "False"} <= values
    assert not values & {"1", "0"}


@pytest.mark.parametrize("travel", [True, False])
def test_travel_flag_sets_enable_travel(tmp_path: Path, travel: bool) -> None:
    db = build(tmp_path, "travel.db", appointments=100, travel=travel)
    value = db.execute(
        """SELECT prefvalue FROM UserPreference WHERE prefsection = 'Travel'
           AND prefkey = 'EnableTravel' AND deflevel = 2 AND owner_id = 0"""
    ).fetchall()
    assert value == [("1" if travel else "0",)]
    assert db.execute("SELECT current_id, systemlevel FROM travelcurrent").fetchall() == [(0, 10)]


def test_versions_and_licences_with_a_synchronizer(db: sqlite3.Connection) -> None:
    versions = db.execute("SELECT ownerName, codeName, version FROM ProductVersion").fetchall()
    assert ("SuperOffice", "CRM", "8.5 R10") in versions
    assert ("SuperOffice", "CRM", "8.1 R03") in versions
    assert ("InfoBridge", "Synchronizer", "3.2.284") in versions
    assert db.execute("SELECT ModelVersion FROM DatabaseModel").fetchall() == [("8.5 R10",)]
    licences = {n for (n,) in db.execute("SELECT moduleName FROM ModuleLicense")}
    assert "superoffice.exchange-sync" in licences


def test_no_synchronizer_means_no_version_row_and_no_licence(tmp_path: Path) -> None:
    db = build(tmp_path, "nosync.db", appointments=100, synchronizer_version=None)
    assert scalar(db, "SELECT COUNT(*) FROM ProductVersion WHERE ownerName = 'InfoBridge'") == 0
    licences = {n for (n,) in db.execute("SELECT moduleName FROM ModuleLicense")}
    assert "superoffice.exchange-sync" not in licences
    assert licences  # unrelated licences stay


def test_version_options_are_written(tmp_path: Path) -> None:
    db = build(tmp_path, "v.db", appointments=100, superoffice_version="10.2.6.1269",
               synchronizer_version="3.2.292")  # fmt: skip
    versions = {v for (v,) in db.execute("SELECT version FROM ProductVersion")}
    assert versions == {"8.1 R03", "10.2.6.1269", "3.2.292"}
    assert db.execute("SELECT ModelVersion FROM DatabaseModel").fetchall() == [("10.2.6.1269",)]


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ("SuperOffice G8 8.5 R17", {"8.1 R03", "SuperOffice G8 8.5 R17"}),
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


def test_sequence_runs_ahead_of_every_table(db: sqlite3.Connection) -> None:
    sequence = db.execute("SELECT TableName, TableNumber, next_id FROM sequence").fetchall()
    assert {name for name, _, _ in sequence} == set(TABLE_SPECS)
    numbers = {name: number for name, number, _ in sequence}
    assert numbers["appointment"] == 9 and numbers["UserPreference"] == 56
    assert numbers["sequence"] == 0 and numbers["ProductVersion"] == 240
    assert len(set(numbers.values())) == len(numbers)
    for name, _, next_id in sequence:
        key = TABLE_SPECS[name][0][0]
        highest = scalar(db, f'SELECT COALESCE(MAX("{key}"), 0) FROM "{name}"')
        assert next_id > highest + 1, name


def test_persons_include_tricky_names(db: sqlite3.Connection) -> None:
    names = {
        f"{first} {last}" for first, last in db.execute("SELECT firstname, lastname FROM person")
    }
    assert "Søren Ødegård" in names
    assert any("'" in name for name in names)


# --- summary, determinism, files ----------------------------------------------------------------


def test_summary_matches_the_database(
    demo: tuple[Path, DemoSummary], db: sqlite3.Connection
) -> None:
    summary = demo[1]
    invite = IN_INVITE_MEETING

    def count(where: str) -> int:
        return scalar(db, f"SELECT COUNT(*) FROM appointment WHERE {where}")

    assert summary.appointments == count("1 = 1")
    assert summary.meetings == count("mother_id = appointment_id")
    assert summary.invite_meetings == count(f"mother_id = appointment_id AND {invite}")
    assert summary.invite_rows == count(invite)
    assert summary.external_participant_rows == count("associate_id = 0")
    assert summary.invite_rows_to_mark == count(f"COALESCE(cautionWarning, 0) = 0 AND {invite}")
    assert summary.invite_rows_already_marked == count(f"cautionWarning = 1 AND {invite}")
    assert summary.other_warning_rows == count(f"cautionWarning BETWEEN 2 AND 5 AND {invite}")
    low, high = db.execute(
        "SELECT MIN(appointment_id), MAX(appointment_id) FROM appointment"
    ).fetchone()
    assert (summary.first_appointment_id, summary.last_appointment_id) == (low, high)
    assert summary.persons == scalar(db, "SELECT COUNT(*) FROM person")
    assert summary.associates == scalar(db, "SELECT COUNT(*) FROM associate")
    overrides = """SELECT COUNT(*) FROM UserPreference WHERE prefsection = 'Mail'
                   AND prefkey = 'DiarySynchronizerActive' AND deflevel BETWEEN 3 AND 5"""
    assert summary.diary_sync_overrides == scalar(db, overrides)
    assert summary.now == NOW
    assert any("invite meetings" in line for line in summary.lines())


def test_same_seed_and_now_give_identical_content(tmp_path: Path) -> None:
    first = build(tmp_path, "a.db", appointments=2_000)
    second = build(tmp_path, "b.db", appointments=2_000)
    other = build(tmp_path, "c.db", appointments=2_000, seed=7)
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
     {"synchronizer_version": ""}, {"bool_values": ("1", "1")}],
)  # fmt: skip
def test_invalid_options_are_usage_errors(options: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        DemoOptions(**options)  # type: ignore[arg-type]


# --- populate into tables a DBA created ---------------------------------------------------------


def _lower_case_schema(conn: Connection) -> None:
    """What a DBA script on PostgreSQL leaves behind: every name folded to lower case."""
    lowered = MetaData()
    for table in canonical_metadata().tables.values():
        columns = [Column(c.name.lower(), c.type, nullable=c.nullable, primary_key=c.primary_key)
                   for c in table.columns]  # fmt: skip
        Table(table.name.lower(), lowered, *columns)
    lowered.create_all(conn)


def test_populate_works_on_reflected_lower_case_tables(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'dba.db'}")
    with engine.begin() as conn:
        _lower_case_schema(conn)
        summary = populate_demo(conn, reflect_tables(conn, None), DemoOptions(1_000, now=NOW))
    with engine.connect() as conn:
        count = conn.execute(text("SELECT COUNT(*) FROM appointment WHERE cautionwarning = 1"))
        assert summary.appointments == 1_000
        assert count.scalar_one() >= 1
        names = conn.execute(text("SELECT tablename FROM sequence")).scalars().all()
        assert "UserPreference" in names and "associate" in names
    engine.dispose()


def test_populate_leaves_the_commit_to_the_caller(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'tx.db'}")
    with engine.connect() as conn:
        tables = create_demo_schema(conn)
        populate_demo(conn, tables, DemoOptions(500, now=NOW))
        conn.rollback()  # nothing was committed behind the caller's back
        assert conn.execute(text("SELECT COUNT(*) FROM appointment")).scalar_one() == 0
    engine.dispose()
