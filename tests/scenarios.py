"""Small hand-made SuperOffice databases with exact rows, and plain-SQL views of any database.

Used by test_detect, test_steps, test_undo, test_resume and test_invite_selection. Everything the
tests check about the database is read here with plain SQL (the standard sqlite3 module, or plain
text SQL on PostgreSQL), never through the tool's own query builders, so a wrong statement in the
tool cannot also be wrong in its test.

A Scenario builds on SQLite (`build`) or, DBA-style with lower-case names, in a PostgreSQL schema
(`build_postgresql`); `after_r10=False` gives the shape of a genuine 8.5 R10 database (no
SendEmail, owned_externally, mother_associate_id, invitation table). `Target` runs the tool
against either and reads it back. What a run must mark is worked out by the independent oracle
(invite_oracle, through `database_rows` and `oracle_marks`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from invite_oracle import ALL_FOOTPRINTS, DatabaseRows, marking_until, rows_to_mark
from sqlalchemy import Connection, Table, create_engine, text
from superoffice_databases import dba_metadata, dba_script

from setup_tool.connection import ConnectionSettings
from setup_tool.database import Database, open_database
from setup_tool.demo import TABLE_NUMBERS, create_demo_schema
from setup_tool.detect import OperatorAnswers
from setup_tool.findings import Findings
from setup_tool.host_probe import HostProbe, HostTrace, NoHostProbe
from setup_tool.interaction import UnattendedInteraction
from setup_tool.schema import canonical_metadata
from setup_tool.steps import UpgradeSettings
from setup_tool.undo import UndoResult, undo
from setup_tool.upgrade import UpgradePlan, UpgradeResult, plan_upgrade, run_upgrade

NEVER = datetime(1900, 1, 1)
BASE = datetime(2024, 1, 1, 9, 0, 0)  # registered dates of hand-made rows count from here
Row = dict[str, Any]


# --- building ---------------------------------------------------------------------------------


def ts(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite (and as the tool's rows read back)."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def appointment(
    appointment_id: int,
    mother_id: int = 0,
    associate_id: int = 1,
    invited: int = 0,
    *,
    registered: datetime = BASE,
    warning: int | None = 0,
    updated: datetime = NEVER,
    updated_by: int = 0,
    count: int = 0,
    email_id: int = 0,
    send_email: int | None = 0,
    owned_externally: int | None = 0,
    recurrence: int = 0,
    type_: int | None = None,
    status: int | None = None,
) -> Row:
    """One appointment row; an external participant is associate_id=0 with invited set.

    It carries no footprint of the invite system unless asked: `email_id` (footprint (c)),
    `send_email=1` (footprint (b)). `recurrence` is the recurrenceRuleId of a recurring meeting;
    `owned_externally` 2/3 = created by the synchronizer from Outlook/Google.
    """
    return {
        "appointment_id": appointment_id,
        "contact_id": 0,
        "person_id": invited,
        "associate_id": associate_id,
        "registered": registered,
        "registered_associate_id": 1,
        "updated": updated,
        "updated_associate_id": updated_by,
        "updatedCount": count,
        "type": (1 if associate_id else 6) if type_ is None else type_,
        "status": (1 if associate_id else 5) if status is None else status,
        "mother_id": mother_id,
        "invitedPersonId": invited,
        "emailId": email_id,
        "activeDate": registered + timedelta(days=3),
        "do_by": registered + timedelta(days=3),
        "endDate": registered + timedelta(days=3, hours=1),
        "cautionWarning": warning,
        "recurrenceRuleId": recurrence,
        "mother_associate_id": 1 if mother_id else 0,
        "SendEmail": send_email,
        "owned_externally": owned_externally,
    }


def preference(
    pref_id: int,
    level: int,
    value: str | None,
    owner: int = 0,
    *,
    section: str = "Mail",
    key: str = "DiarySynchronizerActive",
    maxlevel: int = 5,
    registered: datetime = BASE - timedelta(days=400),
    updated: datetime = NEVER,
    count: int = 0,
) -> Row:
    return {
        "userpreference_id": pref_id,
        "deflevel": level,
        "maxlevel": maxlevel,
        "owner_id": owner,
        "prefsection": section,
        "prefkey": key,
        "prefvalue": value,
        "registered": registered,
        "registered_associate_id": 0,
        "updated": updated,
        "updated_associate_id": 0,
        "updatedCount": count,
    }


def travel_preference(pref_id: int, on: bool) -> Row:
    return preference(
        pref_id, 2, "1" if on else "0", section="Travel", key="EnableTravel", maxlevel=2
    )


def product_version(
    row_id: int,
    owner: str,
    code: str,
    version: str,
    *,
    registered: datetime = BASE - timedelta(days=100),
) -> Row:
    return {
        "ProductVersion_id": row_id,
        "ownerName": owner,
        "codeName": code,
        "version": version,
        "comment": None,
        "updatePath": None,
        "registered": registered,
        "registered_associate_id": 0,
        "updated": NEVER,
        "updated_associate_id": 0,
        "updatedCount": 0,
    }


SUPEROFFICE_8_5_R10 = product_version(1, "SuperOffice", "CRM", "8.5 R10")

# travelcurrent rows: current_id "Central=0, Departm.=H01000000-H7F000000, Travel=assoc_id",
# systemlevel "10 = central, 9 = first child" (SOD tables/travelcurrent.md).
CENTRAL: Row = {"travelcurrent_id": 1, "current_id": 0, "systemlevel": 10}
SATELLITE: Row = {"travelcurrent_id": 1, "current_id": 0x01000002, "systemlevel": 9}
TRAVELLER: Row = {"travelcurrent_id": 1, "current_id": 3, "systemlevel": 9}
SYNCHRONIZER_3_2_284 = product_version(2, "InfoBridge", "Synchronizer", "3.2.284")


def invitation(invitation_id: int, appointment_id: int, *, registered: datetime = BASE) -> Row:
    """An `invitation` row (footprint (a)) for the meeting whose master row is appointment_id."""
    return {
        "invitation_id": invitation_id,
        "event_uid": f"{invitation_id}@superoffice.example",
        "event_sequence": 0,
        "event_dtstamp": registered,
        "appointment_id": appointment_id,
        "organizer_email": "organizer@example.com",
        "organizer_fullname": "Olga Organizer",
        "recurring_start_date": None,
        "recurring_end_date": None,
        "template_language": "en",
        "registered": registered,
        "registered_associate_id": 1,
        "updated": NEVER,
        "updated_associate_id": 0,
        "updatedCount": 0,
    }


@dataclass
class Scenario:
    """The exact rows of a small SuperOffice database.

    `after_r10=False` builds the shape of a genuine 8.5 R10 database: no SendEmail,
    owned_externally or mother_associate_id column and no invitation table. Rows may carry keys
    the table lacks: they are left out when inserting (so are invitations without their table).
    """

    appointments: list[Row] = field(default_factory=list)
    preferences: list[Row] = field(default_factory=list)
    product_versions: list[Row] = field(
        default_factory=lambda: [SUPEROFFICE_8_5_R10, SYNCHRONIZER_3_2_284]
    )
    model_versions: list[str] = field(default_factory=list)
    licences: list[str] = field(default_factory=list)  # ModuleLicense names (owner SuperOffice)
    travel_log: list[Row] = field(default_factory=list)
    next_ids: dict[str, int] = field(default_factory=dict)  # sequence.next_id per TableName
    invitations: list[Row] = field(default_factory=list)
    after_r10: bool = True
    model_data: bytes | None = None  # DatabaseModel.ModelData of every model_versions row
    # What this database is in the Travel hierarchy (SOD tables/travelcurrent.md): the central
    # database by default; SATELLITE / TRAVELLER rows, or none at all.
    travel_current: list[Row] = field(default_factory=lambda: [CENTRAL])

    def build(self, path: Path) -> Path:
        engine = create_engine(f"sqlite:///{path}")
        try:
            with engine.begin() as conn:
                self._fill(conn, _sqlite_tables(conn, self.after_r10))
        finally:
            engine.dispose()
        return path

    def build_postgresql(self, url: str, schema: str) -> Target:
        """Build in a new schema `schema` of the PostgreSQL database at `url`, DBA-style."""
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                self._fill(conn, _dba_tables(conn, schema, self.after_r10))
        finally:
            engine.dispose()
        return Target(url, schema)

    def contents(self) -> list[tuple[str, list[Row]]]:
        """(documented table name, rows), in the order they are inserted."""
        return [
            ("appointment", self.appointments),
            ("UserPreference", self.preferences),
            ("ProductVersion", self.product_versions),
            (
                "DatabaseModel",
                [
                    {"DatabaseModel_id": i + 1, "ModelVersion": v, "ModelData": self.model_data}
                    for i, v in enumerate(self.model_versions)
                ],
            ),
            (
                "ModuleOwner",
                [{"ModuleOwner_id": 1, "ownerName": "SuperOffice", "ownerDescription": None}],
            ),
            (
                "ModuleLicense",
                [
                    {
                        "ModuleLicense_id": i + 1,
                        "ModuleOwner_id": 1,
                        "moduleName": n,
                        "moduleDescription": None,
                    }
                    for i, n in enumerate(self.licences)
                ],
            ),
            ("travelcurrent", self.travel_current),
            ("traveltransactionlog", self.travel_log),
            ("invitation", self.invitations),
            ("sequence", self._sequence_rows()),
        ]

    def _fill(self, conn: Connection, tables: dict[str, Table]) -> None:
        for name, rows in self.contents():
            table = tables.get(name)
            if table is not None and rows:
                conn.execute(table.insert(), [_fit(table, row) for row in rows])

    def _sequence_rows(self) -> list[Row]:
        highest = {
            "appointment": max((r["appointment_id"] for r in self.appointments), default=0),
            "UserPreference": max((r["userpreference_id"] for r in self.preferences), default=0),
            "traveltransactionlog": max(
                (r["traveltransactionlog_id"] for r in self.travel_log), default=0
            ),
        }
        names = [
            "appointment",
            "UserPreference",
            "traveltransactionlog",
            "ProductVersion",
            "sequence",
        ]
        return [
            {
                "id": i + 1,
                "TableName": name,
                "TableNumber": TABLE_NUMBERS[name],
                "next_id": self.next_ids.get(name, highest.get(name, 0) + 17),
            }
            for i, name in enumerate(names)
        ]


def _fit(table: Table, row: Row) -> Row:
    """The row with only the columns `table` has, keyed as the table names them."""
    columns = {column.key.lower(): column.key for column in table.c}
    return {columns[key.lower()]: value for key, value in row.items() if key.lower() in columns}


def _sqlite_tables(conn: Connection, after_r10: bool) -> dict[str, Table]:
    """The canonical tables and SuperOffice's indexes, as the demo builds them."""
    metadata = create_demo_schema(conn, after_r10=after_r10).appointment.metadata
    return {table.name: table for table in metadata.tables.values()}


def _dba_tables(conn: Connection, schema: str, after_r10: bool) -> dict[str, Table]:
    """The tables as a DBA script makes them on PostgreSQL (superoffice_databases.dba_script):
    unquoted, so stored lower-case (the tool must find `cautionWarning` as `cautionwarning`)."""
    for statement in dba_script(schema, after_r10=after_r10):
        conn.execute(text(statement))
    lower = dba_metadata(schema, after_r10=after_r10)
    return {
        table.name: lower.tables[f"{schema}.{table.name.lower()}"]
        for table in canonical_metadata(after_r10=after_r10).tables.values()
    }


# --- running the tool -------------------------------------------------------------------------


def open_db(path: Path, *, read_only: bool = False) -> Database:
    return open_database(ConnectionSettings(database_url=f"sqlite:///{path}"), read_only=read_only)


@dataclass
class FakeProbe:
    """A HostProbe that reports the traces it was given (what a Windows machine would show)."""

    traces: list[HostTrace] = field(default_factory=list)

    def synchronizer_traces(self) -> list[HostTrace]:
        return list(self.traces)

    def describe(self) -> str:
        return "fake host"


def plan(
    path: Path,
    answers: OperatorAnswers | None = None,
    settings: UpgradeSettings | None = None,
    probe: HostProbe | None = None,
    now: datetime | None = None,
) -> UpgradePlan:
    """The dry run's plan; `now` fixes the moment it is made (default: the clock)."""
    db = open_db(path, read_only=True)
    try:
        return plan_upgrade(
            db,
            answers or OperatorAnswers(),
            settings or UpgradeSettings(),
            probe or NoHostProbe(),
            now,
        )
    finally:
        db.dispose()


def findings(
    path: Path,
    answers: OperatorAnswers | None = None,
    probe: HostProbe | None = None,
    now: datetime | None = None,
) -> Findings:
    return plan(path, answers, probe=probe, now=now).findings


def upgrade(
    path: Path,
    answers: OperatorAnswers | None = None,
    *,
    probe: HostProbe | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_open: Callable[[Database], None] | None = None,
    **settings: Any,
) -> UpgradeResult:
    """A real unattended upgrade run; `settings` are UpgradeSettings fields."""
    db = open_db(path)
    try:
        if on_open is not None:
            on_open(db)
        return run_upgrade(
            db,
            answers or OperatorAnswers(),
            UpgradeSettings(**settings),
            probe or NoHostProbe(),
            UnattendedInteraction(),
            should_stop=should_stop,
        )
    finally:
        db.dispose()


@dataclass(frozen=True)
class Target:
    """A built scenario on SQLite or PostgreSQL: the tool is pointed at it by URL and table
    prefix (as `--database-url`/`--table-prefix` would), and the test reads it with plain SQL."""

    url: str
    prefix: str | None = None

    @classmethod
    def sqlite(cls, path: Path) -> Target:
        return cls(f"sqlite:///{path}")

    @property
    def kind(self) -> str:
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"

    def connection_args(self) -> list[str]:
        prefix = ["--table-prefix", self.prefix] if self.prefix else []
        return ["--database-url", self.url, *prefix]

    def open(self, *, read_only: bool = False) -> Database:
        settings = ConnectionSettings(database_url=self.url, table_prefix=self.prefix)
        return open_database(settings, read_only=read_only)

    def plan(
        self, answers: OperatorAnswers, *, now: datetime | None = None, **settings: Any
    ) -> UpgradePlan:
        """The dry run's plan (read-only connection); `now` fixes the moment it is made."""
        db = self.open(read_only=True)
        try:
            return plan_upgrade(db, answers, UpgradeSettings(**settings), NoHostProbe(), now)
        finally:
            db.dispose()

    def upgrade(self, answers: OperatorAnswers, **settings: Any) -> UpgradeResult:
        """A real unattended upgrade run; `settings` are UpgradeSettings fields."""
        db = self.open()
        try:
            return run_upgrade(
                db, answers, UpgradeSettings(**settings), NoHostProbe(), UnattendedInteraction()
            )
        finally:
            db.dispose()

    def undo(self) -> UndoResult:
        db = self.open()
        try:
            return undo(db)
        finally:
            db.dispose()

    def table(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def query(self, sql: str, **params: Any) -> list[Row]:
        """Plain SQL; rows keyed by lower-case column name (PostgreSQL stores them so), values
        as the driver returns them (SQLite: datetimes are the text SQLAlchemy stored)."""
        with self._connection() as conn:
            return _plain(conn, sql, params)

    def has_table(self, name: str) -> bool:
        with self._connection() as conn:
            return self._has_table(conn, name)

    def rows(self, table: str) -> list[Row]:
        """Every row of `table` ordered by its primary key; [] when the table does not exist."""
        return self.snapshot(table)[table]

    def database_rows(self) -> DatabaseRows:
        """What the oracle (invite_oracle) looks at, read with plain SQL."""
        rows = self.snapshot("appointment", "invitation", "ProductVersion", "UserPreference")
        return DatabaseRows(
            appointments=rows["appointment"],
            invitations=rows["invitation"],
            product_versions=rows["ProductVersion"],
            preferences=rows["UserPreference"],
        )

    def snapshot(self, *tables: str) -> dict[str, list[Row]]:
        """`rows` of each table, read over one connection."""
        with self._connection() as conn:
            return {
                name: _plain(conn, f"SELECT * FROM {self.table(name)} ORDER BY 1", {})
                if self._has_table(conn, name)
                else []
                for name in tables
            }

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def _has_table(self, conn: Connection, name: str) -> bool:
        if self.kind == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND lower(name) = :name"
            return bool(_plain(conn, sql, {"name": name.lower()}))
        sql = (
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = :schema AND table_name = :name"
        )
        return bool(_plain(conn, sql, {"schema": self.prefix or "public", "name": name.lower()}))


def _plain(conn: Connection, sql: str, params: dict[str, Any]) -> list[Row]:
    return [
        {k.lower(): v for k, v in row._mapping.items()} for row in conn.execute(text(sql), params)
    ]


# --- reading with plain SQL -------------------------------------------------------------------


def query(path: Path, sql: str, params: Iterable[Any] = ()) -> list[Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, tuple(params))]
    finally:
        conn.close()


def execute(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def insert(path: Path, table: str, rows: list[Row]) -> None:
    """Insert rows with plain SQL, datetimes written as SQLAlchemy writes them. Keys the table
    lacks (newer columns in an 8.5 R10-shaped database) are left out."""
    conn = sqlite3.connect(path)
    try:
        present = {r[1].lower() for r in conn.execute(f'PRAGMA table_info("{table}")')}
        with conn:
            for row in rows:
                fitted = {k: v for k, v in row.items() if not present or k.lower() in present}
                values = [ts(v) if isinstance(v, datetime) else v for v in fitted.values()]
                columns = ", ".join(f'"{c}"' for c in fitted)
                marks = ", ".join("?" for _ in fitted)
                conn.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', values)
    finally:
        conn.close()


PRIMARY_KEYS = {
    "appointment": "appointment_id",
    "UserPreference": "userpreference_id",
    "sequence": "id",
    "traveltransactionlog": "traveltransactionlog_id",
}


def dump(path: Path, table: str) -> list[Row]:
    return query(path, f'SELECT * FROM "{table}" ORDER BY "{PRIMARY_KEYS[table]}"')


def by_id(rows: list[Row], key: str = "appointment_id") -> dict[int, Row]:
    return {row[key]: row for row in rows}


def next_id(path: Path, table_name: str) -> int:
    (row,) = query(path, "SELECT next_id FROM sequence WHERE TableName = ?", [table_name])
    return int(row["next_id"])


def tables_named(path: Path, prefix: str) -> list[str]:
    rows = query(
        path, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?", [prefix + "%"]
    )
    return sorted(r["name"] for r in rows)


def run_rows(path: Path) -> list[Row]:
    if not tables_named(path, "setup_tool_run"):
        return []
    return query(path, "SELECT * FROM setup_tool_run ORDER BY run_id")


def run_time(path: Path, run_id: int | None) -> str:
    assert run_id is not None, "no run was recorded"
    (row,) = query(path, "SELECT started_at FROM setup_tool_run WHERE run_id = ?", [run_id])
    return str(row["started_at"])


def database_rows(path: Path) -> DatabaseRows:
    """What the oracle (invite_oracle) looks at, read from a SQLite file with plain SQL: the
    appointment, invitation (none where the table does not exist), ProductVersion and
    UserPreference rows."""
    present = {name.lower() for name in tables_named(path, "")}

    def rows(table: str) -> list[Row]:
        if table.lower() not in present:
            return []
        return query(path, f'SELECT * FROM "{table}" ORDER BY 1')

    return DatabaseRows(
        appointments=rows("appointment"),
        invitations=rows("invitation"),
        product_versions=rows("ProductVersion"),
        preferences=rows("UserPreference"),
    )


def oracle_marks(
    database: Path | DatabaseRows,
    run_started: datetime | str,
    *,
    operator_since: datetime | None = None,
    footprints: frozenset[str] = ALL_FOOTPRINTS,
) -> set[int]:
    """The rows SPEC step 4 says a FIRST run started at `run_started` marks (invite_oracle):
    the window ends when the system row said on, else at the run's start."""
    rows = database_rows(database) if isinstance(database, Path) else database
    started = parse_ts(run_started) if isinstance(run_started, str) else run_started
    return rows_to_mark(
        rows,
        until=marking_until(rows.preferences, started),
        operator_since=operator_since,
        footprints=footprints,
    )


def normalised(rows: list[Row], run_times: Iterable[str]) -> list[Row]:
    """Rows with the tool's run times replaced by a placeholder, to compare runs made at
    different seconds."""
    times = set(run_times)
    return [
        {
            k: ("<run time>" if k in ("updated", "registered", "ttime") and v in times else v)
            for k, v in row.items()
        }
        for row in rows
    ]


def all_run_times(path: Path) -> list[str]:
    return [str(r["started_at"]) for r in run_rows(path)]


def final_state(path: Path) -> dict[str, Any]:
    times = all_run_times(path)
    pv = query(
        path,
        "SELECT table_name, record_id, inserted, caution_warning, prefvalue, "
        "updated, updated_associate_id, updated_count, new_updated_count "
        "FROM setup_tool_previous_value ORDER BY table_name, record_id",
    )
    return {
        "appointment": normalised(dump(path, "appointment"), times),
        "UserPreference": normalised(dump(path, "UserPreference"), times),
        "sequence": dump(path, "sequence"),
        "traveltransactionlog": normalised(
            [
                {k: v for k, v in r.items() if k != "traveltransactionlog_id"}
                for r in dump(path, "traveltransactionlog")
            ],
            times,
        ),
        "previous_value": pv,
    }


def whole_database(path: Path) -> dict[str, list[Row]]:
    return {
        t: dump(path, t)
        for t in ("appointment", "UserPreference", "sequence", "traveltransactionlog")
    }


def backdate_run(path: Path, run_id: int, to: datetime) -> None:
    """Make a finished run look as if it happened at `to` (its records and the preference row
    it inserted), so a test can play what happened between two runs days apart."""
    when = run_time(path, run_id)
    execute(
        path,
        f"UPDATE setup_tool_run SET started_at = '{ts(to)}', finished_at = '{ts(to)}', "
        f"preference_on_at = '{ts(to)}' WHERE run_id = {run_id}",
        f"UPDATE setup_tool_step SET started_at = '{ts(to)}', finished_at = '{ts(to)}', "
        f"window_until = '{ts(to)}' WHERE run_id = {run_id} AND window_until = '{when}'",
        f"UPDATE UserPreference SET registered = '{ts(to)}' WHERE registered = '{when}'",
    )


def invite_meeting(master_id: int, registered: datetime, person: int, **kw: Any) -> list[Row]:
    """A meeting with a colleague and an external person who was e-mailed an invitation: its
    external row carries emailId (footprint (c) once registered after invites-since)."""
    return [
        appointment(master_id, master_id, 1, registered=registered, **kw),
        appointment(master_id + 1, master_id, 2, registered=registered),
        appointment(
            master_id + 2,
            master_id,
            0,
            invited=person,
            registered=registered,
            email_id=9000 + person,
        ),
    ]
